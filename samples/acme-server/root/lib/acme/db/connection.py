"""Opening database connections from a DSN (sqlite:// or postgresql://)."""

import sqlite3


def connect(dsn):
    if dsn.startswith("sqlite://"):
        return sqlite3.connect(dsn[len("sqlite://"):])
    raise ValueError(f"unsupported database URL {dsn!r} (2.2.0 supports sqlite:// here)")
