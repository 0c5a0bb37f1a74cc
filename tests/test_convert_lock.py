"""Converters updating one manifest side by side lose no entry (issue 11: 218 of 600 were lost).

No TensorFlow needed: the manifest update itself is what races.
"""

from __future__ import annotations

import hashlib
import multiprocessing

import pytest

from phaselocknet.verify import read_manifest
from phaselocknet_convert import lock as lock_module
from phaselocknet_convert.lock import LockTimeout, lock_path, locked
from phaselocknet_convert.manifest import update_manifest

N_PROCESSES = 4
N_UPDATES = 150  # per process: 600 entries in all, as in the measurement


def _entry(process: int, i: int) -> dict:
    model_id = f"task/p{process}/m{i:04d}"
    return {"id": model_id, "bundle_sha256": hashlib.sha256(model_id.encode()).hexdigest()}


def _writer(path, process: int, barrier) -> None:
    barrier.wait()  # all start together, so their updates really interleave
    for i in range(N_UPDATES):
        update_manifest(path, [_entry(process, i)])


def _run_writers(path) -> None:
    # fork: the children share this process's (possibly patched) lock module.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(N_PROCESSES)
    processes = [context.Process(target=_writer, args=(path, k, barrier)) for k in range(N_PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert all(process.exitcode == 0 for process in processes), [p.exitcode for p in processes]


needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method (POSIX)"
)


@needs_fork
@pytest.mark.parametrize("mechanism", ["flock", "exclusive-create"])
def test_concurrent_updates_lose_no_entry(tmp_path, monkeypatch, mechanism):
    if mechanism == "flock" and lock_module.fcntl is None:
        pytest.skip("no fcntl on this platform")
    if mechanism == "exclusive-create":
        monkeypatch.setattr(lock_module, "fcntl", None)  # the non-POSIX fallback, exercised here
    path = tmp_path / "manifest.json"
    _run_writers(path)
    entries = read_manifest(path)
    expected = {e["id"]: e for k in range(N_PROCESSES) for i in range(N_UPDATES) for e in [_entry(k, i)]}
    assert len(entries) == N_PROCESSES * N_UPDATES, f"{N_PROCESSES * N_UPDATES - len(entries)} entries lost"
    assert {i: e["bundle_sha256"] for i, e in entries.items()} == {i: e["bundle_sha256"] for i, e in expected.items()}
    assert not list(tmp_path.glob("*.partial"))  # every atomic write finished its rename
    if mechanism == "exclusive-create":
        assert not lock_path(path).exists()  # released


def test_a_held_lock_times_out_with_a_message_instead_of_hanging(tmp_path):
    path = tmp_path / "manifest.json"
    with locked(path):
        with pytest.raises(LockTimeout, match="could not lock"):
            update_manifest(path, [_entry(0, 0)], timeout=0.2)
    assert not path.exists()  # nothing was written without the lock
    update_manifest(path, [_entry(0, 0)])  # released: the next update goes through
    assert list(read_manifest(path)) == [_entry(0, 0)["id"]]


def test_a_stale_fallback_lock_names_the_file_to_delete(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "fcntl", None)
    path = tmp_path / "manifest.json"
    lock_path(path).write_text("")  # left by a converter killed while holding it
    with pytest.raises(LockTimeout, match=f"delete {lock_path(path)}"):
        update_manifest(path, [_entry(0, 0)], timeout=0.2)
