"""A durable job queue stored in the jobs table."""


def enqueue(conn, kind, payload, run_at):
    conn.execute("INSERT INTO jobs (kind, payload, run_at) VALUES (?, ?, ?)", (kind, payload, run_at))


def due(conn, now, limit=50):
    return conn.execute(
        "SELECT id, kind, payload FROM jobs WHERE run_at <= ? ORDER BY run_at LIMIT ?", (now, limit)
    ).fetchall()
