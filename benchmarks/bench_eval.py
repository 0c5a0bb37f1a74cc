"""Throughput of ``phaselocknet eval`` against the plain loop ``for x in data: model(x)``.

For one simplified localization model and one simplified word/speaker model (published
configurations from ../shared, random weights), on CPU:

- plain loop: the sounds already resampled and padded in memory, ``model(x)`` one at a
  time (the lower bound on work: no reading, no preprocessing, no writing);
- ``eval --batch-size 1`` and ``--batch-size 16``: the whole pipeline from an HDF5 file at
  another sample rate (read, resample, run, write CSV chunks), timed from the first
  batch to the last chunk written (``Summary.seconds``), plus end to end including
  loading the bundle and assembling the outputs.

Shared front end (``--shared``, also run by default after the above): a variant's 10
architectures over the same 32 sounds in one ``eval`` (spikes="mean", fixed excerpt, so
their nerve representation is the same), with the front end computed once per batch
against once per model; the ratio of the two times and whether the outputs are identical.

Prints examples/s and the ratio to the plain loop, timed just before and after each
eval run (shared machines drift). The unbatched runs use fewer
examples (their rate per example is steady after one) to keep the whole benchmark to a
few minutes on two cores. The batched runs span three batches of 16: the first batch at a
new batch size pays one-time costs (fresh buffers, new kernel shapes: ~4.5 s for the
localization model at batch 16) that a single-batch run would report as throughput. Usage:

    python benchmarks/bench_eval.py [--examples 48] [--unbatched-examples 4] [--workers 1] [--threads N]
    python benchmarks/bench_eval.py --shared-only [--variant sound_localization/simplified_IHC3000] [--shared-examples 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

import phaselocknet
from phaselocknet.audio import prepare_waveform
from phaselocknet.evaluate import EvalOptions, evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "phaselocknet_models"
MODELS = ("sound_localization/simplified_IHC3000/arch01", "spkr_word_recognition/simplified_IHC3000/arch0_0000")
STORED_RATE = 44100  # stimuli stored at another rate than the models', as in most stimulus sets


def stimuli(n: int, binaural: bool, seconds: float, seed: int = 0) -> np.ndarray:
    """(n, time[, 2]) noise-plus-harmonics sounds at 60 dB SPL in the authors' layout."""
    rng = np.random.default_rng(seed)
    length = int(seconds * STORED_RATE)
    t = np.arange(length) / STORED_RATE
    out = []
    for _ in range(n):
        x = sum(np.sin(2 * np.pi * rng.uniform(100, 300) * h * t) for h in range(1, 6)) + rng.standard_normal(length)
        x = x * 20e-6 * 10**3 / np.sqrt(np.mean(x**2))
        out.append(np.stack([x, np.roll(x, 5)], axis=-1) if binaural else x)
    return np.asarray(out, dtype=np.float32)


def bench(model_dir: Path, folder: Path, n: int, n_unbatched: int, batch_sizes: list[int],
          workers: int) -> list[tuple[str, float, float]]:
    """(label, examples/s, plain-loop examples/s measured around it) per measurement."""
    config = json.loads((model_dir / "config.json").read_text())
    arch = json.loads((model_dir / "arch.json").read_text())
    model_id = str(model_dir.relative_to(SHARED))
    model = phaselocknet.from_config(config, arch, spikes="sample", model_id=model_id)
    bundle = phaselocknet.save(model, folder / (model_id.replace("/", "_") + ".safetensors"))
    seconds = model.input_length / model.sample_rate
    signals = stimuli(n, model.binaural, seconds)
    data = {}
    for size in {n, n_unbatched}:
        data[size] = folder / (model_id.replace("/", "_") + f"_{size}.h5")
        with h5py.File(data[size], "w") as handle:
            handle["signal"] = signals[:size]
            handle["sr"] = STORED_RATE
    inputs = [
        torch.from_numpy(prepare_waveform(s.T if model.binaural else s, STORED_RATE, sample_rate=model.sample_rate,
                                          length=model.input_length, binaural=model.binaural))[None]
        for s in signals[:n_unbatched]
    ]

    def plain_loop() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            for x in inputs:
                model(x)
        return len(inputs) / (time.perf_counter() - start)

    with torch.inference_mode():
        model(inputs[0])  # warm-up: first-call allocations
    # The plain loop is timed before and after every eval run and each eval is compared
    # with the mean of its two neighbours, so that drifting machine load (shared CI
    # machines) biases neither side.
    loops = [plain_loop()]
    results = []
    for batch in batch_sizes:
        out = folder / f"{model_id.replace('/', '_')}_b{batch}.csv"
        size = n_unbatched if batch == 1 else n
        start = time.perf_counter()
        summary = evaluate(EvalOptions(bundles=[str(bundle)], data=[str(data[size])], out=out, batch_size=batch,
                                       workers=workers, device="cpu", seed=0, progress=False, overwrite=True))
        total = time.perf_counter() - start
        loops.append(plain_loop())
        baseline = (loops[-2] + loops[-1]) / 2
        results.append((f"eval --batch-size {batch}", summary.evaluated_now / summary.seconds, baseline))
        results.append(("  end to end (load, plan, assemble)", size / total, baseline))
    return [("plain loop, batch 1 (mean of runs)", float(np.mean(loops)), float(np.mean(loops)))] + results


def bench_shared(variant: str, folder: Path, n: int, batch: int, workers: int) -> None:
    """The variant's architectures in one eval, front end shared vs computed per model."""
    bundles = []
    for model_dir in sorted((SHARED / variant).glob("*/config.json")):
        model_dir = model_dir.parent
        config = json.loads((model_dir / "config.json").read_text())
        arch = json.loads((model_dir / "arch.json").read_text())
        model = phaselocknet.from_config(config, arch, model_id=f"{variant}/{model_dir.name}")
        bundles.append(str(phaselocknet.save(model, folder / f"shared_{model_dir.name}.safetensors")))
    data = folder / "shared.h5"
    with h5py.File(data, "w") as handle:
        handle["signal"] = stimuli(n, model.binaural, model.input_length / model.sample_rate, seed=1)
        handle["sr"] = STORED_RATE
    excerpt = 1000 if model.binaural else "random"
    times, outputs = {False: [], True: []}, {}
    # Per model, then shared, then per model again: the first run in a process pays one-time
    # kernel set-up costs, and load drifts; the shared run is compared with the mean of its neighbours.
    for k, share in enumerate((False, True, False)):
        out = folder / f"shared_{share}_{k}.csv"
        summary = evaluate(EvalOptions(bundles=bundles, data=[str(data)], out=out, batch_size=batch, workers=workers,
                                       device="cpu", seed=0, spikes="mean", excerpt=excerpt, probs=True,
                                       progress=False, overwrite=True, share_front_end=share))
        times[share].append(summary.seconds)
        probs = np.load(out.with_suffix(".probs.npz"))
        outputs[share] = (out.read_text(), {k: probs[k] for k in probs.files})
    identical = outputs[True][0] == outputs[False][0] and all(
        np.array_equal(outputs[True][1][k], outputs[False][1][k], equal_nan=True) for k in outputs[True][1])
    times = {share: float(np.mean(values)) for share, values in times.items()}
    print(f"\n{variant}: {len(bundles)} architectures x {n} sounds, spikes mean, batch {batch}")
    print(f"  front end per model  {times[False]:8.1f} s (mean of the runs before and after)   {n / times[False]:7.3f} examples/s")
    print(f"  front end shared     {times[True]:8.1f} s   {n / times[True]:7.3f} examples/s   "
          f"{times[False] / times[True]:5.2f}x faster; outputs identical: {'yes' if identical else 'NO'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=48, help="examples for the batched runs")
    parser.add_argument("--unbatched-examples", type=int, default=4, help="examples for the plain loop and batch 1")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--shared-only", action="store_true", help="only the shared-front-end comparison")
    parser.add_argument("--no-shared", action="store_true", help="skip the shared-front-end comparison")
    parser.add_argument("--variant", default="sound_localization/simplified_IHC3000")
    parser.add_argument("--shared-examples", type=int, default=32)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: published configurations not found at {SHARED}", file=sys.stderr)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.examples} examples "
          f"({args.unbatched_examples} unbatched), "
          f"eval workers {args.workers}, stimuli at {STORED_RATE} Hz (resampled), spikes sampled")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"note: the machine is busy (load {load:.1f} on {cores} cores); timings are noisy")
    with tempfile.TemporaryDirectory() as tmp:
        for model_id in () if args.shared_only else MODELS:
            rows = bench(SHARED / model_id, Path(tmp), args.examples, args.unbatched_examples, batch_sizes, args.workers)
            print(f"\n{model_id}")
            for label, rate, baseline in rows:
                print(f"  {label:<38} {rate:8.3f} examples/s   {rate / baseline:5.2f}x plain loop")
        if not args.no_shared:
            bench_shared(args.variant, Path(tmp), args.shared_examples, 16, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
