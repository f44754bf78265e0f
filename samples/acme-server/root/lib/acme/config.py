"""Loading etc/acme/*.conf (INI syntax) with defaults and validation."""

import configparser
import os

from acme.util.paths import instance_path

DEFAULTS = {
    "server": {"listen": "0.0.0.0:8080", "workers": "4", "max_body_size": "10M"},
    "paths": {"data": "var/lib/acme", "logs": "var/log/acme", "run": "var/run"},
}


def load(home=None):
    """Read acme.conf and the files it includes; later files win."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(DEFAULTS)
    main = instance_path("etc/acme/acme.conf", home)
    parser.read(main)
    for name in parser.get("server", "include", fallback="").split():
        parser.read(instance_path(os.path.join("etc/acme", name), home))
    return parser
