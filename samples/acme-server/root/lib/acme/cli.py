"""Command-line entry point shared by acmed and acme-ctl (2.2.0)."""

import argparse
import sys

from acme import __version__


def main(argv=None):
    parser = argparse.ArgumentParser(prog="acmed")
    parser.add_argument("--version", action="version", version=f"acmed {__version__}")
    parser.add_argument("command", choices=["run", "check-config"])
    args = parser.parse_args(argv)
    if args.command == "check-config":
        from acme.config import load
        load()
        print("configuration OK")
        return 0
    from acme.daemon import serve
    return serve()


if __name__ == "__main__":
    sys.exit(main())
