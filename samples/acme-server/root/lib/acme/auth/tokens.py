"""API tokens (new in 2.2.0): random, shown once, stored hashed."""

import hashlib
import secrets


def new_token():
    token = "acme_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def matches(token, token_hash):
    return secrets.compare_digest(hashlib.sha256(token.encode()).hexdigest(), token_hash)
