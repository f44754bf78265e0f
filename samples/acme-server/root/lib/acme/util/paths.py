"""Paths relative to the instance directory ($ACME_HOME)."""

import os


def home():
    return os.environ.get("ACME_HOME") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def instance_path(relative, base=None):
    return os.path.join(base or home(), relative)
