"""The command line's one error handler: every failure is one line and a documented exit code.

docs/cli.md holds the table. A traceback is printed only for an internal error, and then
only with PHASELOCKNET_DEBUG=1 set; otherwise that too is one line.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

# exit status -> meaning (docs/cli.md repeats this table; tests/test_cli_errors.py checks both agree)
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # verify / convert: a file failed its check
EXIT_USAGE = 2  # bad arguments or bad input (sound, array, data set, run plan)
EXIT_FLAGGED = 3  # finished, but some items flagged: eval examples ('error' column), verify unverified bundles
EXIT_CONFIG = 4  # a config.json / arch.json value is malformed or out of bounds
EXIT_BUNDLE = 5  # a bundle file is missing, damaged, foreign or inconsistent
EXIT_CONVERSION = 6  # a checkpoint cannot be converted
EXIT_NONFINITE = 7  # the model produced NaN/Inf outputs
EXIT_OS = 8  # the file system refused: unwritable, no space, not a folder, ...
EXIT_DEVICE = 9  # the requested device is not available
EXIT_INTERNAL = 70  # a bug in phaselocknet (please report it)
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "verify/convert: a file failed its check",
    EXIT_USAGE: "bad arguments or bad input",
    EXIT_FLAGGED: "finished, some items flagged (eval examples, verify: unverified bundles)",
    EXIT_CONFIG: "config/arch error",
    EXIT_BUNDLE: "bundle error",
    EXIT_CONVERSION: "conversion error",
    EXIT_NONFINITE: "non-finite output",
    EXIT_OS: "file-system error",
    EXIT_DEVICE: "device not available",
    EXIT_INTERNAL: "internal error",
    EXIT_INTERRUPTED: "interrupted",
}


def exit_code(error: BaseException) -> int:
    """The documented exit status of an exception that reached the command line."""
    from ..errors import BundleError, ConfigError, ConversionError, DeviceError, NonFiniteOutputError

    for cls, code in (
        (NonFiniteOutputError, EXIT_NONFINITE),
        (ConfigError, EXIT_CONFIG),
        (BundleError, EXIT_BUNDLE),
        (ConversionError, EXIT_CONVERSION),
        (DeviceError, EXIT_DEVICE),
    ):
        if isinstance(error, cls):
            return code
    if isinstance(error, FileNotFoundError):
        return EXIT_USAGE  # an input path that does not exist
    if isinstance(error, (OSError, MemoryError)):
        return EXIT_OS
    if isinstance(error, (ValueError, KeyError, RecursionError)):
        return EXIT_USAGE
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL


def describe(error: BaseException) -> str:
    """One line naming the problem (and, for file-system errors, the fix)."""
    if isinstance(error, MemoryError):
        return "out of memory; use a smaller --batch-size or a machine with more memory"
    if isinstance(error, OSError) and error.errno is not None:
        where = f"{error.filename}: " if error.filename else ""
        reason = error.strerror or str(error)
        fix = {
            errno.EACCES: "choose a folder you can write to",
            errno.EPERM: "choose a folder you can write to",
            errno.ENOSPC: "free some disk space or write elsewhere",
            errno.EDQUOT: "free some quota or write elsewhere",
            errno.ENOTDIR: "a path component is a file, not a folder: fix the path",
            errno.EEXIST: "a path component is a file, not a folder: fix the path",
            errno.EROFS: "the file system is read-only: write elsewhere",
            errno.ENOENT: "check the path",
            errno.EISDIR: "that is a folder: name a file",
        }.get(error.errno, "check the path and the disk")
        return f"{where}{reason}; {fix}"
    if isinstance(error, KeyError):
        return f"missing key {error}"
    if isinstance(error, RecursionError):
        return "input nested too deeply to parse (a crafted or broken JSON file?)"
    text = str(error).strip().splitlines()
    return " ".join(line.strip() for line in text) or type(error).__name__


def run_command(args) -> int:
    """Run ``args.func`` and turn anything it raises into one line on stderr and an exit status."""
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"phaselocknet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place where everything is reported
        code = exit_code(error)
        if code == EXIT_INTERNAL:
            print(f"phaselocknet {args.command}: internal error: {type(error).__name__}: {describe(error)} "
                  "(a bug: please report it; set PHASELOCKNET_DEBUG=1 for the traceback)", file=sys.stderr)
            if os.environ.get("PHASELOCKNET_DEBUG"):
                traceback.print_exc()
        else:
            print(f"phaselocknet {args.command}: error: {describe(error)}", file=sys.stderr)
        return code
