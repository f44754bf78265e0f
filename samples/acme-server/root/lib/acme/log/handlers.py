"""A file handler that reopens its file on SIGHUP (for logrotate)."""

import logging.handlers


class ReopeningFileHandler(logging.handlers.WatchedFileHandler):
    pass
