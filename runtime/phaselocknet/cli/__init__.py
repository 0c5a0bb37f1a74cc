"""The ``phaselocknet`` command: run, inspect, evaluate and verify models.

Each subcommand lives in a module of this package with an ``add_parser(subparsers)``
function; heavy imports (torch) happen inside the command functions, not here.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..version import __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    from .errors import run_command

    return run_command(args)


def configure_logging(verbosity: int) -> None:
    """Messages of the `phaselocknet` loggers on stderr: INFO by default, DEBUG with -v... ."""
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 0 else logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("phaselocknet: %(message)s" if level > logging.DEBUG else "%(name)s: %(message)s"))
    logger = logging.getLogger("phaselocknet")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def build_parser() -> argparse.ArgumentParser:
    from . import jobs, models, nervegram, run
    from .. import verify
    from ..evaluate import cli as evaluate_cli

    parser = argparse.ArgumentParser(prog="phaselocknet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"phaselocknet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages on stderr (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors on stderr (-qq: errors)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parsers(sub)
    nervegram.add_parsers(sub)
    verify.add_parser(sub)
    evaluate_cli.add_parsers(sub)
    models.add_parsers(sub)
    jobs.add_parsers(sub)
    return parser
