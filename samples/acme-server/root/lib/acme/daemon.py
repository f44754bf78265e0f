"""The daemon's main loop: pid file, workers, graceful shutdown."""

import os

from acme.config import load
from acme.signals import install_handlers
from acme.util.paths import instance_path


def serve(home=None):
    config = load(home)
    pid_file = instance_path("var/run/acmed.pid", home)
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()}\n")
    stop = install_handlers()
    try:
        from acme.http.server import Server
        Server(config).run(until=stop)
    finally:
        os.unlink(pid_file)
    return 0
