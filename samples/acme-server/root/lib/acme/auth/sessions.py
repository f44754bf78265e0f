"""Server-side sessions with sliding expiry."""

import secrets
from datetime import datetime, timedelta, timezone

LIFETIME = timedelta(hours=8)


def new_session(user_id):
    return {
        "id": secrets.token_hex(16),
        "user_id": user_id,
        "expires_at": (datetime.now(timezone.utc) + LIFETIME).isoformat(),
    }
