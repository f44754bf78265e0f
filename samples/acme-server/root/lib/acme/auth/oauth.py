"""OAuth 2.0 authorization-code login with PKCE."""

import base64
import hashlib
import secrets


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge
