"""Acme Server: a small application server.

Release 2.2.0 (service pack 1, build 2200).
"""

from acme.version import __version__, BUILD

__all__ = ["__version__", "BUILD"]
