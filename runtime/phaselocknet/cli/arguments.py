"""Argument types shared by the commands: each refuses a bad value with argparse's one-line usage error."""

from __future__ import annotations

import argparse


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def sound_level(text: str) -> float:
    """A level in dB SPL within the range a model could have heard (audio.DBSPL_RANGE)."""
    from ..audio import DBSPL_RANGE

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not DBSPL_RANGE[0] <= value <= DBSPL_RANGE[1]:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be within {DBSPL_RANGE[0]:g}..{DBSPL_RANGE[1]:g} dB SPL")
    return value


def excerpt_start(text: str):
    """'random' or an int start offset of an excerpt."""
    if text == "random":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'random' or an integer offset in nerve samples") from None
