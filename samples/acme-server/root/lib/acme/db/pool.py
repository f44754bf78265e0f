"""A bounded connection pool."""

import queue

from acme.db.connection import connect


class Pool:
    def __init__(self, dsn, size=10, timeout=5.0):
        self._dsn = dsn
        self._timeout = timeout
        self._idle = queue.LifoQueue(maxsize=size)
        for _ in range(size):
            self._idle.put(None)

    def acquire(self):
        conn = self._idle.get(timeout=self._timeout)
        return conn or connect(self._dsn)

    def release(self, conn):
        self._idle.put(conn)
