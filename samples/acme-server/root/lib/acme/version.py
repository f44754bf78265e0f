"""Version of this Acme Server release."""

__version__ = "2.2.0"
BUILD = 2200
SCHEMA_VERSION = "2.2.0"

# Oldest installed release this one can be applied over (see UPGRADING.md).
MINIMUM_UPGRADE_FROM = "2.1"
