"""The ``phaselocknet`` command: run, inspect, evaluate and verify models.

Each subcommand lives in a module of this package with an ``add_parser(subparsers)``
function; heavy imports (torch) happen inside the command functions, not here.
"""

from __future__ import annotations

import argparse
import sys

from ..version import __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"phaselocknet {args.command}: error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    from . import nervegram, run
    from .. import verify
    from ..evaluate import cli as evaluate_cli

    parser = argparse.ArgumentParser(prog="phaselocknet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"phaselocknet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parsers(sub)
    nervegram.add_parsers(sub)
    verify.add_parser(sub)
    evaluate_cli.add_parsers(sub)
    return parser
