"""The expected tables of schema 2.2.0."""

TABLES = {
    "users": ["id", "name", "email", "password_hash", "created_at"],
    "sessions": ["id", "user_id", "expires_at"],
    "sites": ["id", "hostname", "root"],
    "jobs": ["id", "kind", "payload", "run_at", "attempts"],
    # New in 2.2.0:
    "api_tokens": ["id", "user_id", "token_hash", "scopes", "expires_at"],
}
