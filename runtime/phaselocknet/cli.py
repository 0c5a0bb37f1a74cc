"""The ``phaselocknet`` command: run, inspect, evaluate and verify models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

# The four phase-locking limits (inner-hair-cell lowpass cutoffs, Hz) compared in the paper.
IHC_CUTOFFS_HZ = (50, 320, 1000, 3000)
# Input rate of the simplified front end of the localization models (the widest band).
NERVEGRAM_SAMPLE_RATE = 50000.0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"phaselocknet {args.command}: error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    from .evaluate import cli as evaluate_cli
    from . import verify

    parser = argparse.ArgumentParser(prog="phaselocknet", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="predict the labels of one sound")
    run.add_argument("bundle", type=Path)
    run.add_argument("sound", type=Path, help="WAV (or FLAC with soundfile installed)")
    run.add_argument("--top", type=int, default=5, help="classes to print per head (default 5)")
    run.add_argument("--dbspl", type=float, default=None, help="set the sound level (dB SPL) before running; default: samples are pascals")
    run.add_argument("--diotic", action="store_true", help="play a mono sound to both ears of a binaural model")
    run.add_argument("--spikes", choices=("sample", "mean"), default="sample")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="describe a bundle")
    info.add_argument("bundle", type=Path)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    nerve = sub.add_parser("nervegram", help="auditory-nerve representation of a sound (front end only, no weights)")
    nerve.add_argument("sound", type=Path)
    nerve.add_argument("--variant", default="IHC3000", help="IHC0050, IHC0320, IHC1000 or IHC3000 (phase-locking limit)")
    nerve.add_argument("--dbspl", type=float, default=None)
    nerve.add_argument("-o", "--output", type=Path, required=True, help=".png (needs matplotlib) or .npy")
    nerve.set_defaults(func=cmd_nervegram)

    demo = sub.add_parser("demo", help="nerve representations of a synthetic sound at the four phase-locking limits")
    demo.add_argument("-o", "--output", type=Path, default=Path("phaselocknet_demo.png"))
    demo.set_defaults(func=cmd_demo)

    verify.add_parser(sub)
    evaluate_cli.add_parsers(sub)
    return parser


# ---------------------------------------------------------------------- run / info
def cmd_run(args) -> int:
    import phaselocknet
    from .audio import prepare_waveform, read_audio
    from .labels import format_label

    model = phaselocknet.load(args.bundle, spikes=args.spikes, seed=args.seed)
    if model.input_kind != "waveform":
        raise ValueError(f"{args.bundle} takes nervegrams, not sounds: use `phaselocknet eval` with an HDF5 nervegram_meanrates dataset")
    waveform, rate = read_audio(args.sound)
    x = prepare_waveform(
        waveform, rate, sample_rate=model.sample_rate, length=model.input_length,
        binaural=model.binaural, level_db=args.dbspl, diotic=args.diotic,
    )
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])
    result = {}
    for head, values in logits.items():
        probs = torch.softmax(values[0].double(), dim=0)
        top = torch.topk(probs, min(args.top, probs.numel()))
        labels = model.labels(head)
        result[head] = [
            {"class": int(k), "label": format_label(labels[int(k)]), "probability": float(p)}
            for p, k in zip(top.values, top.indices)
        ]
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "sound": str(args.sound), "predictions": result}, indent=2))
        return 0
    for head, rows in result.items():
        print(f"{head}:")
        for row in rows:
            print(f"  {row['probability']:8.4f}  {row['class']:5d}  {row['label']}")
    return 0


def cmd_info(args) -> int:
    import phaselocknet
    from .bundle import read_metadata

    metadata = read_metadata(args.bundle)
    model = phaselocknet.load(args.bundle)
    facts = {
        "model_id": model.model_id,
        "input_kind": model.input_kind,
        "binaural": model.binaural,
        "sample_rate": model.sample_rate,
        "input_length": model.input_length,
        "input_shape": ["batch", *model.expected_input_shape()],
        "heads": model.heads,
        "labelled_heads": sorted(model.label_names or {}),
        "parameters": sum(p.numel() for p in model.parameters()),
        "ihc_cutoff_hz": model.config["kwargs_cochlea"].get("kwargs_fir_lowpass_filter_output", {}).get("cutoff"),
        "converter_version": metadata["converter_version"],
        "source_sha256": json.loads(metadata["source_sha256"]),
        "layers": model.network.layer_names,
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    for key, value in facts.items():
        if key == "layers":
            value = " -> ".join(value)
        print(f"{key:>18}: {value}")
    return 0


# -------------------------------------------------------------- nerve representations
def nerve_rates(waveform: np.ndarray, cutoff_hz: float, sample_rate: float = NERVEGRAM_SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(mean spike counts per time bin (3, 50, time), cfs in Hz) of a mono waveform at ``sample_rate``."""
    from .periphery import Cochlea
    from .periphery.presets import simplified_cochlea_config

    cochlea = Cochlea(simplified_cochlea_config(cutoff_hz, sample_rate))
    with torch.no_grad():
        rates = cochlea(torch.as_tensor(waveform, dtype=torch.float32)[None])
        counts = cochlea.spike_generator(rates, "mean", None)
    return counts[0].numpy(), np.asarray(cochlea.filterbank.cfs)


def parse_variant(variant: str) -> float:
    digits = "".join(ch for ch in variant if ch.isdigit())
    if not digits or float(digits) not in IHC_CUTOFFS_HZ:
        raise ValueError(f"--variant {variant!r}: use one of " + ", ".join(f"IHC{c:04d}" for c in IHC_CUTOFFS_HZ))
    return float(digits)


def cmd_nervegram(args) -> int:
    from .audio import read_audio, resample, set_dbspl

    cutoff = parse_variant(args.variant)
    waveform, rate = read_audio(args.sound)
    # The front end is monaural: a stereo file is mixed down.
    x = resample(waveform.mean(axis=0), rate, NERVEGRAM_SAMPLE_RATE)
    if args.dbspl is not None:
        x = set_dbspl(x, args.dbspl)
    counts, cfs = nerve_rates(x, cutoff)
    suffix = args.output.suffix.lower()
    if suffix == ".npy":
        _save_npy(args.output, counts)
    elif suffix == ".png":
        plot_nervegrams(args.output, [(f"IHC lowpass {cutoff:g} Hz", counts)], cfs, duration_s=x.shape[-1] / NERVEGRAM_SAMPLE_RATE)
    else:
        raise ValueError(f"-o {args.output}: use a .png or .npy file name")
    print(f"wrote {args.output} (expected spike counts per 0.1 ms bin, shape (3 spont-rate groups, 50 CFs, {counts.shape[-1]} bins))")
    return 0


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    from .bundle import write_atomic

    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def demo_sound(sample_rate: float = NERVEGRAM_SAMPLE_RATE) -> np.ndarray:
    """30 ms harmonic complex tone (F0 200 Hz), 5 ms silence, 25 ms chirp 300 Hz -> 6 kHz, at 65 dB SPL.

    Short on purpose: at 10 kHz output each nerve sample is 0.1 ms, and phase locking to
    the harmonics is only visible when a few hundred samples fill a panel.
    """
    import scipy.signal

    from .audio import set_dbspl

    t = np.arange(int(0.030 * sample_rate)) / sample_rate
    tone = sum(np.sin(2 * np.pi * 200.0 * h * t) for h in range(1, 11))
    tc = np.arange(int(0.025 * sample_rate)) / sample_rate
    chirp = scipy.signal.chirp(tc, f0=300.0, t1=tc[-1], f1=6000.0, method="logarithmic")
    ramp = int(0.002 * sample_rate)
    window = np.hanning(2 * ramp)
    for part in (tone, chirp):
        part[:ramp] *= window[:ramp]
        part[-ramp:] *= window[ramp:]
    sound = np.concatenate([tone, np.zeros(int(0.005 * sample_rate)), chirp])
    return set_dbspl(sound, 65.0)


def plot_nervegrams(path: Path, panels: list[tuple[str, np.ndarray]], cfs: np.ndarray, duration_s: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ValueError("plotting needs matplotlib: pip install 'phaselocknet[plot]' (or write .npy)") from error
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels):
        # Sum the three spontaneous-rate groups: total expected spikes per bin per CF.
        image = counts.sum(axis=0)
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="none",
                  extent=(0, duration_s * 1e3, -0.5, len(cfs) - 0.5))
        ticks = np.linspace(0, len(cfs) - 1, 5).round().astype(int)
        ax.set_yticks(ticks, [f"{cfs[k]:.0f}" for k in ticks])
        ax.set_title(title)
        ax.set_xlabel("time (ms)")
    axes[0][0].set_ylabel("characteristic frequency (Hz)")
    fig.suptitle("Expected auditory-nerve spike counts (harmonic tone, then chirp)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def cmd_demo(args) -> int:
    sound = demo_sound()
    panels = []
    cfs = None
    for cutoff in IHC_CUTOFFS_HZ:
        counts, cfs = nerve_rates(sound, cutoff)
        panels.append((f"IHC lowpass {cutoff} Hz", counts))
    plot_nervegrams(args.output, panels, cfs, duration_s=sound.shape[-1] / NERVEGRAM_SAMPLE_RATE)
    print(f"wrote {args.output.resolve()}: auditory-nerve representations of a harmonic tone and a chirp "
          f"at IHC cutoffs {', '.join(map(str, IHC_CUTOFFS_HZ))} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
