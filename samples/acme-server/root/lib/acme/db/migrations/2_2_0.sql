-- Acme Server schema 2.2.0: API tokens.
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL DEFAULT 'read',
    expires_at TEXT
);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
