"""Applying the SQL migrations in lib/acme/db/migrations/ in version order."""

import os

from acme.version import SCHEMA_VERSION

HERE = os.path.join(os.path.dirname(__file__), "migrations")


def pending(current):
    def key(name):
        return tuple(int(p) for p in name[:-4].split("_"))
    names = sorted((n for n in os.listdir(HERE) if n.endswith(".sql")), key=key)
    return [n for n in names if key(n) > tuple(int(p) for p in current.split("."))]


def target():
    return SCHEMA_VERSION
