"""Request middleware: request ids, timing, security headers."""

import time
import uuid

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    # 2.2.0: HSTS is sent by default when TLS is enabled (see tls.conf).
    "strict-transport-security": "max-age=31536000",
}


def timing(handler):
    def wrapped(request):
        started = time.monotonic()
        response = handler(request)
        response.with_header("server-timing", f"app;dur={(time.monotonic() - started) * 1000:.1f}")
        response.with_header("x-request-id", uuid.uuid4().hex)
        return response
    return wrapped
