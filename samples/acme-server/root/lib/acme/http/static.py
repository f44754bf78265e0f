"""Serving files from a site's document root."""

import mimetypes
import os


def serve_file(root, relative):
    path = os.path.realpath(os.path.join(root, relative.lstrip("/")))
    # Never serve anything outside the document root (fixed in 2.2.0, ACME-SA-2024-03).
    if not path.startswith(os.path.realpath(root) + os.sep):
        return 404, b""
    with open(path, "rb") as f:
        return 200, f.read(), mimetypes.guess_type(path)[0]
