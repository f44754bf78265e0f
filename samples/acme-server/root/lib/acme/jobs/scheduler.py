"""Periodic jobs, configured in jobs.conf."""

PERIODIC = {
    "expire-sessions": 300,
    "rotate-logs": 86400,
    # 2.2.0: expired API tokens are purged daily.
    "purge-api-tokens": 86400,
}
