"""/healthz (liveness) and /readyz (readiness, used by load balancers to drain)."""

READY = True


def set_ready(ready):
    global READY
    READY = ready


def readyz():
    return (200, b"ready\n") if READY else (503, b"draining\n")
