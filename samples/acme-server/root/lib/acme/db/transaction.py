"""Transactions as context managers."""

from contextlib import contextmanager


@contextmanager
def transaction(conn):
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
