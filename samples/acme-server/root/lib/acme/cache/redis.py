"""A Redis-backed cache, used when cache.conf sets backend = redis."""


class RedisCache:
    def __init__(self, url, prefix="acme:2.2:"):
        self.url = url
        self.prefix = prefix

    def key(self, name):
        return self.prefix + name
