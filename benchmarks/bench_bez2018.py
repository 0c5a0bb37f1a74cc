"""BEZ2018 in phaselocknet: CPU-seconds per ear-second against the authors' C model, in one run.

    PYTHONPATH=runtime python benchmarks/bench_bez2018.py [--seconds S] [--batches 1,16] [--memory]

Whole nervegram = ``bez2018.nervegram`` (speech preset, rng="torch"), what the models use, on
the sounds below; first-call warm-up (numba compilation into an empty cache, then a second
process reading that cache) in fresh processes; ``--memory``: peak RSS of a batch of 32
two-second sounds in a fresh process. Then its two halves:

Cochlea stage = resample to 100 kHz + middle ear + control path/C1/C2 + IHC (``ihc_potential``),
50 CFs 125..8000 Hz, on a 1 s 1 kHz tone (60 dB SPL) and the speech sample 022_animals.wav, both
cut to ``--seconds`` (the time loop's cost per sample is constant, so shorter runs extrapolate).
Baselines: the C model's CPU time per ear-second from ../shared/reference/bez2018/index.json
(whole nervegram: 50 CFs x 3 spont rates), and, when the authors' Cython wrapper
``cython_bez2018`` happens to be importable (never required), its ``run_ihc`` on the same sound.
CPU time is the process's (all threads counted). Speed targets (issue 8): cochlea stage
<= 1.0 CPU-s per ear-second at batch >= 16; whole nervegram <= 2.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "runtime"))

from phaselocknet.bez2018.hair_cell import ihc_potential  # noqa: E402
from phaselocknet.bez2018.resample import resample_poly  # noqa: E402

PIN_FS = 100000
CF = torch.tensor(np.geomspace(125.0, 8000.0, 50))  # ERB spacing does not change the cost


def c_model_cpu_per_ear_second() -> float | None:
    index = SHARED / "reference" / "bez2018" / "index.json"
    if not index.is_file():
        return None
    cases = json.loads(index.read_text())
    return sum(c["c_cpu_seconds"] for c in cases.values()) / sum(c["seconds"] for c in cases.values())


def sounds(seconds: float) -> dict[str, tuple[np.ndarray, int]]:
    fs = 44100
    t = np.arange(int(seconds * fs)) / fs
    out = {"tone1k_60dB": (20e-6 * 10 ** (60 / 20) * math.sqrt(2) * np.sin(2 * np.pi * 1000 * t), fs)}
    wav = SHARED / "sounds" / "022_animals.wav"
    if wav.is_file():
        import soundfile  # noqa: PLC0415

        x, sr = soundfile.read(str(wav), dtype="float64")
        x = x[: int(seconds * sr)]
        out["speech_65dB"] = (x / np.sqrt(np.mean(x**2)) * 20e-6 * 10 ** (65 / 20), sr)
    return out


def cochlea_stage(signal: np.ndarray, fs: int, batch: int) -> torch.Tensor:
    x = torch.from_numpy(np.tile(signal, (batch, 1)))
    return ihc_potential(resample_poly(x, PIN_FS, fs), CF)


def timed(fn, *args):
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def time_c_wrapper(signal: np.ndarray, fs: int) -> float | None:
    try:
        import cython_bez2018  # noqa: PLC0415  (only if the user built the authors' wrapper)
    except ImportError:
        return None
    import scipy.signal  # noqa: PLC0415

    pin = scipy.signal.resample_poly(signal, PIN_FS, fs)
    start = time.process_time()
    for f in CF.tolist():
        cython_bez2018.run_ihc(pin, float(PIN_FS), f, species=2)
    return time.process_time() - start


_CHILD = """
import resource, sys, time
sys.path.insert(0, {runtime!r})
start_wall, start_cpu = time.perf_counter(), time.process_time()
import numpy as np
from phaselocknet import bez2018
x = np.zeros(({batch}, int({seconds} * 44100)))
x[:, ::441] = 0.02  # clicks: the model does the same work for any sound
bez2018.nervegram(x, 44100, **{kwargs!r})
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"{{time.perf_counter() - start_wall:.2f}} {{time.process_time() - start_cpu:.2f}} {{rss:.2f}}")
"""


def _child(batch: int, seconds: float, env: dict, **kwargs) -> tuple[float, float, float]:
    """(wall s, CPU-s, peak RSS GB) of a fresh process that imports the package and makes one nervegram."""
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    code = _CHILD.format(runtime=str(REPO / "runtime"), batch=batch, seconds=seconds, kwargs=kwargs)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, capture_output=True, text=True)
    wall, cpu, rss = (float(v) for v in out.stdout.split())
    return wall, cpu, rss


def bench_warm_up() -> None:
    import tempfile  # noqa: PLC0415

    print("== first call in a fresh process (import + compile or load the compiled loops + a 10 ms nervegram) ==")
    with tempfile.TemporaryDirectory() as cache:
        for label in ("empty numba cache", "cache from the first process"):
            wall, cpu, _ = _child(1, 0.01, {"NUMBA_CACHE_DIR": cache}, num_cf=2)
            print(f"{label}: {wall:.2f} s wall, {cpu:.2f} CPU-s")


def bench_nervegram(seconds: float, batches: list[int]) -> None:
    from phaselocknet import bez2018  # noqa: PLC0415

    c_nervegram = c_model_cpu_per_ear_second()
    print(f"== whole nervegram (speech preset: 50 CFs x 3 spont rates, rng=torch), {seconds:g} s sounds ==")
    if c_nervegram:
        print(f"baseline: C model, whole nervegram (index.json): {c_nervegram:.2f} CPU-s per ear-second")
    bez2018.nervegram(np.zeros(441), 44100, num_cf=2)  # compiled loops loaded (see the warm-up above)
    for name, (signal, fs) in sounds(seconds).items():
        dur = len(signal) / fs
        for batch in batches:
            x = np.tile(signal, (batch, 1))
            cpu, wall = timed(bez2018.nervegram, x, fs)
            per = cpu / (batch * dur)
            ratio = f", {c_nervegram / per:.1f}x faster than the C model" if c_nervegram else ""
            print(f"{name} {dur:.2f} s batch {batch:3d}: {per:6.2f} CPU-s per ear-second "
                  f"({batch * dur / wall:.3f} ear-s per wall-s{ratio})")


def bench_memory() -> None:
    print("== memory: a batch of 32 two-second sounds, whole nervegram, fresh process ==")
    wall, cpu, rss = _child(32, 2.0, {})
    print(f"peak RSS {rss:.2f} GB (budget 8 GB), {wall:.0f} s wall, {cpu / 64:.2f} CPU-s per ear-second")


def bench_cochlea(seconds: float, batches: list[int]) -> None:
    c_nervegram = c_model_cpu_per_ear_second()
    import os  # noqa: PLC0415

    from phaselocknet.bez2018.dispatch import ENV  # noqa: PLC0415

    if os.environ.get(ENV, "numba") == "torch":
        loop = "tensor ops, " + ("eager" if os.environ.get("PHASELOCKNET_BEZ2018_SCRIPT", "1") in {"0", "false", "no"} else "TorchScript")
    else:
        loop = f"compiled (numba; {ENV}=torch for the tensor ops)"
    print(f"== cochlea stage (resample + middle ear + BM + IHC), 50 CFs, per-sample loop: {loop} ==")
    cpu, wall = timed(cochlea_stage, np.zeros(441), 44100, 1)
    print(f"warm-up (first call, 10 ms of sound): {wall:.2f} s wall, {cpu:.2f} CPU-s")
    if c_nervegram:
        print(f"baseline: C model, whole nervegram (index.json): {c_nervegram:.2f} CPU-s per ear-second")
    for name, (signal, fs) in sounds(seconds).items():
        dur = len(signal) / fs
        c_ihc = time_c_wrapper(signal, fs)
        if c_ihc is not None:
            print(f"{name}: C run_ihc (same run): {c_ihc / dur:.2f} CPU-s per ear-second")
        for batch in batches:
            cpu, wall = timed(cochlea_stage, signal, fs, batch)
            per = cpu / (batch * dur)
            ratio = f", {per / c_nervegram:.2f}x the C nervegram" if c_nervegram else ""
            ratio += f", {per / (c_ihc / dur):.2f}x C run_ihc" if c_ihc else ""
            print(f"{name} {dur:.2f} s batch {batch:3d}: {per:6.2f} CPU-s per ear-second "
                  f"({batch * dur / wall:.3f} ear-s per wall-s{ratio})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS so far: {peak:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="sound duration (default 1 s)")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--memory", action="store_true", help="also measure a batch of 32 two-second sounds")
    args = parser.parse_args()
    torch.manual_seed(0)
    batches = [int(b) for b in args.batches.split(",")]
    bench_warm_up()
    bench_nervegram(args.seconds, batches)
    if args.memory:
        bench_memory()
    bench_cochlea(args.seconds, batches)
    bench_synapse(args.seconds, batches)



# ======================================================================================
# Synapse section (synapse helper): synapse + spike generator + mean rate + decimation
# ======================================================================================
def bench_synapse(seconds: float, batches: list[int]) -> None:
    """CPU-s per ear-second of the stages after the IHC potential, rng="torch" (budget 0.8).

    Input: the IHC potential of 0.1 s of the 1 kHz tone (one cochlea call), repeated along time
    to ``seconds``; 50 CFs x 3 spont rates; the C model's whole nervegram as the baseline."""
    import importlib  # noqa: PLC0415

    from phaselocknet.bez2018 import presets  # noqa: PLC0415
    ng = importlib.import_module("phaselocknet.bez2018.nervegram")
    signal, fs = sounds(0.1)["tone1k_60dB"]
    vihc0 = cochlea_stage(signal, fs, 1)
    reps = max(1, round(seconds / 0.1))
    vihc1 = vihc0.repeat(1, 1, reps)
    dur = vihc1.shape[-1] / PIN_FS
    kw = presets.resolve("speech", 3000.0, {})
    cf = presets.cf_list_of(kw)
    c_nervegram = c_model_cpu_per_ear_second()
    print(f"== synapse stages (mapping .. 10 kHz mean rate), 50 CFs x 3 spont, rng=torch, {dur:.2f} s ==")
    for batch in batches:
        vihc = vihc1.expand(batch, -1, -1).contiguous()
        cpu, wall = timed(ng._torch_examples, vihc, cf, list(range(batch)), kw)
        per = cpu / (batch * dur)
        ratio = f", {per / c_nervegram:.3f}x the C nervegram" if c_nervegram else ""
        print(f"batch {batch:3d}: {per:6.3f} CPU-s per ear-second ({batch * dur / wall:.3f} ear-s per wall-s{ratio})")


if __name__ == "__main__":
    main()
