"""A threaded HTTP server with a fixed worker pool."""

from concurrent.futures import ThreadPoolExecutor


class Server:
    def __init__(self, config):
        self.listen = config.get("server", "listen")
        self.workers = config.getint("server", "workers")

    def run(self, until):
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            while not until.wait(1.0):
                pass
