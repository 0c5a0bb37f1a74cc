"""Speed, memory and reduced-precision accuracy of the fast backend against the reference.

For sound_localization/simplified_IHC3000/arch01 and spkr_word_recognition/simplified_IHC3000/
arch0_0000 (published configs from ../shared, random weights, spikes="mean", fixed excerpt):

* time per example of the front end (waveform -> spike counts), the CNN and their sum, for
  both backends, measured alternately in the same process (reference, fast, reference, ...),
  min and median of the repeats, and the speedups (reference / fast, from minima);
* peak resident memory per backend at batch 1, each in a fresh process (VmHWM), next to a
  process that only imports phaselocknet (the interpreter, torch, numpy, scipy: ~280 MB),
  and the target 1.5 x weights + 200 MB for the difference;
* the CNN in bfloat16 / float16 (`model.to_cnn_dtype`): max |softmax - float32 softmax|,
  top-1 agreement and time;
* with --layers, every convolution timed both ways (direct, FFT) at its real size: the
  measurements behind the fast path's per-layer choice.

Usage:  python benchmarks/bench_models.py [--quick] [--device cpu|cuda] [--batch 1 8]
                                          [--threads 2] [--out results.json] [--layers]
Saves the table as JSON (benchmarks/results/<device>-<date>.json unless --out is given).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import phaselocknet
from phaselocknet.fast import conv_fft as fftconv
from phaselocknet.fast.conv import FastConv
from phaselocknet.network.layers import Conv2d

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[0].parent / "shared" / "phaselocknet_models"
MODELS = ("sound_localization/simplified_IHC3000/arch01", "spkr_word_recognition/simplified_IHC3000/arch0_0000")
BACKENDS = ("reference", "fast")
EXCERPT = 1000
MB = 2**20


def read_config(model_id: str) -> tuple[dict, list]:
    directory = SHARED / model_id
    return json.loads((directory / "config.json").read_text()), json.loads((directory / "arch.json").read_text())


def build(model_id: str, device: str, seed: int = 0) -> phaselocknet.PhaselocknetModel:
    config, arch = read_config(model_id)
    torch.manual_seed(seed)
    return phaselocknet.from_config(config, arch, spikes="mean", excerpt=EXCERPT, model_id=model_id).to(device)


def example_input(model, batch: int, device: str, seed: int = 0) -> torch.Tensor:
    """Noise at ~60 dB SPL (0.02 Pa rms)."""
    generator = torch.Generator().manual_seed(seed)
    return (0.02 * torch.randn((batch, *model.expected_input_shape()), generator=generator)).to(device)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str):
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def weights_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.network.state_dict().values())


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "all": values}


# ------------------------------------------------------------------------------ timing


def time_model(model, batch: int, repeats: int, device: str) -> dict:
    x = example_input(model, batch, device)
    seconds = {backend: {"front_end": [], "cnn": [], "total": []} for backend in BACKENDS}
    with torch.no_grad():
        for backend in BACKENDS:  # warm-up: plans, FFT spectra, allocator
            model.set_backend(backend)
            model.cnn(model.nerve_representation(x))
        for _ in range(repeats):
            for backend in BACKENDS:
                model.set_backend(backend)
                nerve, front = timed(lambda: model.nerve_representation(x), device)
                _, cnn = timed(lambda: model.cnn(nerve), device)
                seconds[backend]["front_end"].append(front / batch)
                seconds[backend]["cnn"].append(cnn / batch)
                seconds[backend]["total"].append((front + cnn) / batch)
    model.set_backend("fast")
    result = {backend: {part: summary(v) for part, v in parts.items()} for backend, parts in seconds.items()}
    result["speedup"] = {
        part: result["reference"][part]["min"] / result["fast"][part]["min"] for part in ("front_end", "cnn", "total")
    }
    result["speedup_median"] = {
        part: result["reference"][part]["median"] / result["fast"][part]["median"] for part in ("front_end", "cnn", "total")
    }
    result["examples_per_second_fast"] = 1.0 / result["fast"]["total"]["min"]
    return result


# ------------------------------------------------------------------------------ precision


def reduced_precision(model, device: str, batch: int) -> dict:
    """One forward per dtype (on CPUs without native bfloat16/float16 arithmetic these are
    emulated and slow: the time is reported, not repeated)."""
    x = example_input(model, batch, device, seed=1)
    out = {}
    with torch.no_grad():
        model.set_backend("fast")
        nerve = model.nerve_representation(x)
        reference = {h: v.float().softmax(-1) for h, v in model.cnn(nerve).items()}
        for name, dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
            model.to_cnn_dtype(dtype)
            try:
                logits, seconds = timed(lambda: model.cnn(nerve), device)
                probs = {h: v.float().softmax(-1) for h, v in logits.items()}
                out[name] = {
                    "max_abs_softmax_difference": max(float((probs[h] - reference[h]).abs().max()) for h in probs),
                    "top1_agreement": min(float((probs[h].argmax(-1) == reference[h].argmax(-1)).float().mean()) for h in probs),
                    "cnn_seconds_per_example": seconds / batch,
                    "examples": batch,
                }
            except (RuntimeError, NotImplementedError) as error:
                out[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
            finally:
                model.to_cnn_dtype(torch.float32)
    return out


# ------------------------------------------------------------------------------ per layer


def time_layers(model, repeats: int, device: str) -> list[dict]:
    """Each convolution at its real input size: direct and FFT, and which one the fast path uses."""
    rows = []
    x = example_input(model, 1, device)
    with torch.no_grad():
        model.set_backend("reference")
        _, acts = model.network.forward_with_activations(model.nerve_representation(x), model.network.layer_names)
        model.set_backend("fast")
    previous = model.network.input_shape
    inputs = {}
    for name in model.network.layer_names:
        inputs[name] = previous
        previous = name
    nerve = model.nerve_representation(x)
    for name in model.network.layer_names:
        layer = model.network.get_submodule(name)
        if not isinstance(layer, Conv2d):
            continue
        source = inputs[name]
        layer_input = nerve if isinstance(source, tuple) else acts[source]
        _, _, top, bottom = layer._pads(layer_input.shape[-2], layer_input.shape[-1])
        speedup, nb = fftconv.fft_plan(
            layer.in_channels // layer.groups, layer.out_channels // layer.groups, *layer.window_size,
            layer_input.shape[-1] - layer.window_size[1] + 1, layer_input.shape[-2] + top + bottom - layer.window_size[0] + 1,
            layer.groups,
        )
        row = {"layer": name, "kernel": list(layer.window_size), "in": layer.in_channels, "out": layer.out_channels,
               "input_shape": list(layer_input.shape[1:]), "predicted_fft_speedup": speedup, "fft_length": nb,
               "chosen": "fft" if FastConv(layer).fft_length(layer_input) else "direct"}
        with torch.no_grad():
            direct = [timed(lambda: layer(layer_input), device)[1] for _ in range(repeats)]
            row["direct_s"] = min(direct)
            if nb and device == "cpu":
                spectra = fftconv.weight_spectra(layer.weight, layer.groups, nb)
                run = lambda: fftconv.fft_conv2d(layer_input, spectra, *layer.window_size, top, bottom, layer.bias, False)
                run()
                row["fft_s"] = min(timed(run, device)[1] for _ in range(repeats))
                row["measured_fft_speedup"] = row["direct_s"] / row["fft_s"]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ memory


def _status_bytes(field: str) -> int:
    """VmHWM (peak) / VmRSS of this process from /proc: unlike ru_maxrss, VmHWM starts afresh
    at exec, so it does not include the parent's memory copied at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_memory(model_id: str, backend: str, batch: int, device: str) -> None:
    """Runs in a fresh process: prints its peak resident memory after two forwards with one backend."""
    after_import = _status_bytes("VmRSS")
    weights = 0
    if model_id != "import-only":
        model = build(model_id, device)
        model.set_backend(backend)
        x = example_input(model, batch, device)
        with torch.no_grad():
            for _ in range(2):
                model(x)
        weights = weights_bytes(model)
    print(json.dumps({"peak_rss": _status_bytes("VmHWM"), "rss_after_import": after_import, "weights": weights}))


def measure_memory(model_id: str, backend: str, batch: int, device: str, threads: int) -> dict:
    command = [sys.executable, __file__, "--child-memory", model_id, backend, str(batch), "--device", device,
               "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ report


def print_table(results: dict) -> None:
    print()
    print(f"{'model':52s} {'batch':>5s} {'part':>9s} | {'reference s/ex (min/med)':>24s} | {'fast s/ex (min/med)':>20s} | speedup")
    for model_id, by_batch in results["timing"].items():
        for batch, r in by_batch.items():
            for part in ("front_end", "cnn", "total"):
                ref, fast = r["reference"][part], r["fast"][part]
                print(f"{model_id:52s} {batch:>5s} {part:>9s} | {ref['min']:10.4f} / {ref['median']:10.4f}  | "
                      f"{fast['min']:8.4f} / {fast['median']:8.4f}  | {r['speedup'][part]:6.2f}x")
    if results.get("memory"):
        print()
        print(f"{'model':52s} {'backend':>9s} | peak RSS | minus import-only | weights | target 1.5*w+200MB")
        for model_id, by_backend in results["memory"].items():
            for backend, m in by_backend.items():
                print(f"{model_id:52s} {backend:>9s} | {m['peak_rss'] / MB:7.0f}M | {m['model_rss'] / MB:12.0f}M     | "
                      f"{m['weights'] / MB:6.0f}M | {m['target'] / MB:6.0f}M {'ok' if m['model_rss'] <= m['target'] else 'OVER'}")
    if results.get("precision"):
        print()
        for model_id, by_dtype in results["precision"].items():
            for dtype, p in by_dtype.items():
                if "error" in p:
                    print(f"{model_id:52s} {dtype:>9s} | {p['error']}")
                else:
                    print(f"{model_id:52s} {dtype:>9s} | max|softmax diff| {p['max_abs_softmax_difference']:.2e} | "
                          f"top-1 agreement {p['top1_agreement']:.2f} | CNN {p['cnn_seconds_per_example']:.3f} s/ex")
    if results.get("layers"):
        print()
        for model_id, rows in results["layers"].items():
            for row in rows:
                fft = f"{row['fft_s']:.4f}" if "fft_s" in row else "   -  "
                print(f"{model_id:52s} {row['layer']:14s} {str(row['kernel']):8s} direct {row['direct_s']:.4f} s  "
                      f"fft {fft} s  predicted {row['predicted_fft_speedup']:.2f}x  chosen {row['chosen']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 1, 3 repeats, no per-layer table")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default 1 8; 32 on cuda)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per backend (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--layers", action="store_true", help="also time every convolution both ways")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child-memory", nargs=3, metavar=("MODEL", "BACKEND", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.child_memory:
        model_id, backend, batch = args.child_memory
        child_memory(model_id, backend, int(batch), device)
        return 0
    if not SHARED.is_dir():
        print(f"published configs not found at {SHARED}", file=sys.stderr)
        return 2
    batches = args.batch or ([1] if args.quick else ([1, 8, 32] if device.startswith("cuda") else [1, 8]))
    repeats = args.repeats or (3 if args.quick else 5)

    results = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine(),
        "device_type": device,
        "threads": args.threads,
        "torch": torch.__version__,
        "repeats": repeats,
        "note": "seconds per example; total = front end + CNN of the same repeat; speedup = reference min / fast min",
        "timing": {}, "memory": {}, "precision": {}, "layers": {},
    }
    for model_id in args.models:
        model = build(model_id, device)
        results["timing"][model_id] = {}
        for batch in batches:
            print(f"timing {model_id} batch {batch} ...", flush=True)
            results["timing"][model_id][str(batch)] = time_model(model, batch, repeats, device)
        print(f"reduced precision {model_id} ...", flush=True)
        results["precision"][model_id] = reduced_precision(model, device, 1 if args.quick else 2)
        if args.layers and not args.quick:
            print(f"layers {model_id} ...", flush=True)
            results["layers"][model_id] = time_layers(model, repeats, device)
        del model
    if not args.no_memory and device == "cpu":
        baseline = measure_memory("import-only", "fast", 1, device, args.threads)
        results["memory_import_only_peak_rss"] = baseline["peak_rss"]
        for model_id in args.models:
            results["memory"][model_id] = {}
            for backend in BACKENDS:
                print(f"memory {model_id} {backend} ...", flush=True)
                m = measure_memory(model_id, backend, 1, device, args.threads)
                m["model_rss"] = m["peak_rss"] - baseline["peak_rss"]
                m["target"] = 1.5 * m["weights"] + 200 * MB
                results["memory"][model_id][backend] = m
    elif device.startswith("cuda"):
        for model_id in args.models:
            model = build(model_id, device)
            results["memory"][model_id] = {}
            for backend in BACKENDS:
                torch.cuda.reset_peak_memory_stats()
                model.set_backend(backend)
                with torch.no_grad():
                    model(example_input(model, 1, device))
                peak = torch.cuda.max_memory_allocated()
                w = weights_bytes(model)
                results["memory"][model_id][backend] = {"peak_rss": peak, "model_rss": peak, "weights": w,
                                                        "target": 1.5 * w + 200 * MB, "kind": "cuda max_memory_allocated"}
            del model

    print_table(results)
    out = args.out or HERE / "results" / f"{device.split(':')[0]}-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nsaved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
