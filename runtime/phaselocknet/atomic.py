"""Writing files so that readers see either nothing or the whole file: the one helper.

Everything is written to a fresh temporary name beside the target and renamed onto it
(`os.replace` is atomic on one filesystem). mkstemp makes files private (0600); outputs are
for sharing, so they get the permissions of any new file (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_path(path: Path) -> Path:
    """A fresh, empty file beside ``path``, to be renamed onto ``path`` later."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write tmp`` -> ``p`` appears complete when the block ends
    without an exception; on an exception the temporary file is removed and ``p`` untouched."""
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename and the
    rename itself made durable (the folder fsynced)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    fsync_folder(Path(path).parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable: the folder's entry must reach the disk too."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data itself is already synced
    finally:
        os.close(fd)
