"""Logging setup for Acme Server 2.2.0 (configured by etc/acme/logging.conf)."""

import logging.config

from acme.util.paths import instance_path


def configure(home=None):
    logging.config.fileConfig(instance_path("etc/acme/logging.conf", home), disable_existing_loggers=False)
