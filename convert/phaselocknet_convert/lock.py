"""An exclusive lock on a file's read-modify-write, across processes.

Converters started side by side (e.g. one per SLURM task) update the same
``OUT_DIR/manifest.json``; without a lock each rewrites the file from the
copy it read, and the others' entries are lost.

- POSIX: ``fcntl.flock`` on ``<file>.lock``. The kernel drops the lock when
  its holder exits, even on a crash, so a leftover ``.lock`` file is harmless
  (it is never deleted: deleting it would let two processes lock different files).
- Elsewhere (Windows: no ``fcntl``): the lock is the existence of
  ``<file>.lock``, created with ``O_CREAT | O_EXCL`` and deleted on release. A
  process killed while holding it leaves the file behind; the next converter
  then stops after ``timeout`` seconds with a message naming the file to delete.

Waiting never blocks forever: after ``timeout`` seconds a ``LockTimeout``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

DEFAULT_TIMEOUT_S = 120.0
_POLL_S = 0.01


class LockTimeout(OSError):
    """Another process held the lock for longer than the timeout."""


def lock_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT_S):
    """Hold the exclusive lock of ``path`` (the file itself need not exist) inside the ``with``."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = _flock if fcntl is not None else _exclusive_create
    with holder(lock, timeout):
        yield lock


@contextlib.contextmanager
def _flock(lock: Path, timeout: float):
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        # Non-blocking attempts in a loop, so a stuck holder gives an error, not a hang.
        _wait(lambda: _try_flock(fd), lock, timeout, "another process holds it")
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _exclusive_create(lock: Path, timeout: float):
    def attempt() -> bool:
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            return False
        return True

    _wait(attempt, lock, timeout, "another converter holds it, or one was killed holding it: if none is "
                                  f"running, delete {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _wait(attempt, lock: Path, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not attempt():
        if time.monotonic() > deadline:
            raise LockTimeout(f"could not lock {lock} within {timeout:g} s: {why}")
        time.sleep(_POLL_S)
