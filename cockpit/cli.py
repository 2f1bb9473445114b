"""The command line: `cockpit ...` and `python -m cockpit ...`."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cockpit", description=__doc__)
    p.add_argument("--version", action="version", version=f"cockpit {__version__}")
    p.add_subparsers(dest="command", metavar="COMMAND")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"cockpit: {e}", file=sys.stderr)
        return 2
