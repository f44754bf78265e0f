"""Which responses may be cached, and for how long."""


def ttl_for(response):
    control = response.headers.get("cache-control", "")
    if "no-store" in control or "private" in control:
        return 0
    for part in control.split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age" and value.isdigit():
            return int(value)
    return 60
