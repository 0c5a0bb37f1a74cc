"""The work folder that makes a run resumable after any interruption.

``.RESULTS.csv.work/`` beside the output holds ``state.json`` (what the run is: its
fingerprint and the seed in use) and committed chunks named by the example range they
hold, ``chunk-<first>-<stop>.csv`` with optional ``.probs.npz`` / ``.acts.npz``. A chunk's
arrays are written before its CSV, and the CSV is renamed into place last, so a chunk
exists exactly when its CSV does; anything else found there was cut short by a kill and
is deleted. Rerunning the same command skips the examples of committed chunks. A lock
(``flock``) keeps two processes from writing the same folder; the kernel drops it when a
process dies, even by SIGKILL.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

CHUNK_PATTERN = re.compile(r"chunk-(\d{12})-(\d{12})\.csv")
STATE_FILE = "state.json"
LOCK_FILE = "lock"


class ResumeError(ValueError):
    """The output's work folder belongs to a different run, or another process holds it."""


@dataclass(frozen=True)
class Chunk:
    start: int
    stop: int
    csv: Path

    @property
    def probs(self) -> Path:
        return self.csv.with_name(self.csv.name[: -len(".csv")] + ".probs.npz")

    @property
    def acts(self) -> Path:
        return self.csv.with_name(self.csv.name[: -len(".csv")] + ".acts.npz")


class WorkDir:
    def __init__(self, out: Path):
        self.out = out
        self.path = out.with_name(f".{out.name}.work")
        self._lock_handle = None

    def exists(self) -> bool:
        return self.path.is_dir()

    def acquire(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unguarded
            self._lock_handle = handle
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ResumeError(
                f"another phaselocknet eval is writing {self.out} (lock held on {self.path / LOCK_FILE}); "
                "wait for it or give this run another --out"
            ) from None
        self._lock_handle = handle

    def release(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def load_state(self) -> dict | None:
        path = self.path / STATE_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def save_state(self, state: dict) -> None:
        from ..bundle import write_atomic

        write_atomic(self.path / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode())

    def chunk(self, start: int, stop: int) -> Chunk:
        return Chunk(start, stop, self.path / f"chunk-{start:012d}-{stop:012d}.csv")

    def committed(self) -> list[Chunk]:
        """Committed chunks in example order; leftovers of interrupted writes are deleted."""
        chunks = []
        for path in self.path.glob("chunk-*.csv"):
            match = CHUNK_PATTERN.fullmatch(path.name)
            if match:
                chunks.append(Chunk(int(match.group(1)), int(match.group(2)), path))
        chunks.sort(key=lambda c: c.start)
        keep = {STATE_FILE, LOCK_FILE}
        for chunk in chunks:
            keep |= {chunk.csv.name, chunk.probs.name, chunk.acts.name}
        for path in self.path.iterdir():
            if path.name not in keep:
                path.unlink() if path.is_file() else shutil.rmtree(path)
        return chunks

    def remove(self) -> None:
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)


def fingerprint_differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{key}: {old.get(key)!r} then, {new.get(key)!r} now" for key in keys if old.get(key) != new.get(key)]
