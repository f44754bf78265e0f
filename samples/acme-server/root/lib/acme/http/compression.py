"""Response compression (gzip) for text content types."""

import gzip

COMPRESSIBLE = ("text/", "application/json", "application/javascript")
MIN_SIZE = 1024


def maybe_compress(response, accept_encoding):
    ctype = response.headers.get("content-type", "")
    if "gzip" in accept_encoding and ctype.startswith(COMPRESSIBLE) and len(response.body) >= MIN_SIZE:
        response.body = gzip.compress(response.body)
        response.with_header("content-encoding", "gzip")
    return response
