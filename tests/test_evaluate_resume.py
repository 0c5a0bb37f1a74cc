"""A run killed with SIGKILL resumes, and ends with the files an uninterrupted run writes.

The killed runs are real processes ended by SIGKILL (no cleanup, no Python finally):
once from outside at whatever point the run has reached, and at the two moments where
a kill could do the most harm: between a chunk's arrays and its CSV (the commit mark),
and between the renames of the final files.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from evaluate_sets import nervegrams, save_bundle, word_nervegram_model, write_nervegram_hdf5
from phaselocknet.cli import main

N = 200

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from phaselocknet.evaluate import assemble, runner

    mode, k = sys.argv[1], int(sys.argv[2])
    count = [0]

    def count_and_maybe_die():
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "mid_commit":
        write = runner.write_atomic
        def patched(path, data):
            if str(path).endswith(".csv"):
                count_and_maybe_die()
            write(path, data)
        runner.write_atomic = patched
    elif mode == "finishing":
        replace = os.replace
        def patched(src, dst):
            replace(src, dst)
            if ".work" not in str(dst):
                count_and_maybe_die()
        assemble.os.replace = patched

    from phaselocknet.cli import main
    sys.exit(main(sys.argv[3:]))
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    bundle = save_bundle(word_nervegram_model(), folder, "word_nervegram", seed=1)
    data = write_nervegram_hdf5(folder / "nervegrams.h5", nervegrams(N, (3, 50, 200), seed=0),
                                metadata={"condition": np.arange(N) % 5})
    reference = folder / "reference.csv"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["eval", str(bundle), *options(data, reference)]) == 0
    finally:
        torch.set_num_threads(threads)
    return bundle, data, reference


def options(data, out) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--seed", "11", "--probs", "--batch-size", "2",
            "--chunk-size", "10", "--workers", "0", "--no-progress"]


def environment() -> dict:
    # One intra-op thread: these tiny models are faster that way on a busy 2-core machine.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def assert_same_as_reference(out, reference):
    with open(out, newline="") as handle:
        examples = [row["example"] for row in csv.DictReader(handle)]
    assert examples == [str(i) for i in range(N)]  # every example once, in order
    assert out.read_bytes() == reference.read_bytes()
    with np.load(out.with_suffix(".probs.npz")) as a, np.load(reference.with_suffix(".probs.npz")) as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    assert not out.with_name(f".{out.name}.work").exists()


def resume(bundle, data, out):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["eval", str(bundle), *options(data, out)]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("mode, k", [("mid_commit", 5), ("finishing", 2)])
def test_kill_at_the_worst_moments_then_resume(tmp_path, setup, mode, k):
    bundle, data, reference = setup
    out = tmp_path / "out.csv"
    command = [sys.executable, "-c", KILLER, mode, str(k), "eval", str(bundle), *options(data, out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment())
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    work = tmp_path / ".out.csv.work"
    assert work.is_dir() and not out.exists()
    committed = sorted(work.glob("chunk-*.csv"))
    if mode == "mid_commit":
        assert len(committed) == k - 1 and len(list(work.glob("chunk-*.probs.npz"))) == k  # arrays without their CSV
    if mode == "finishing":
        assert out.with_suffix(".json").exists() and out.with_suffix(".probs.npz").exists()  # renamed before the CSV
    resume(bundle, data, out)
    assert_same_as_reference(out, reference)


def test_kill_from_outside_mid_run_then_resume(tmp_path, setup):
    bundle, data, reference = setup
    out = tmp_path / "out.csv"
    work = tmp_path / ".out.csv.work"
    process = subprocess.Popen([sys.executable, "-m", "phaselocknet.cli", "eval", str(bundle), *options(data, out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment(),
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(work.glob("chunk-*.csv")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed mid-way: {stderr[-2000:]}"
    assert not out.exists() and 1 <= len(list(work.glob("chunk-*.csv"))) < N // 10
    resume(bundle, data, out)
    assert_same_as_reference(out, reference)
