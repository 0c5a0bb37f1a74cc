"""``phaselocknet nervegram`` (the nerve representation of a sound) and ``phaselocknet demo``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plot import plot_nervegrams

# The four phase-locking limits (inner-hair-cell lowpass cutoffs, Hz) compared in the paper.
IHC_CUTOFFS_HZ = (50, 320, 1000, 3000)
# Input rate of the simplified front end of the localization models (the widest band).
NERVEGRAM_SAMPLE_RATE = 50000.0


def add_parsers(sub) -> None:
    nerve = sub.add_parser("nervegram", help="auditory-nerve representation of a sound (front end only, no weights)")
    nerve.add_argument("sound", type=Path)
    nerve.add_argument("--variant", default="IHC3000", help="IHC0050, IHC0320, IHC1000 or IHC3000 (phase-locking limit)")
    nerve.add_argument("--dbspl", type=float, default=None)
    nerve.add_argument("-o", "--output", type=Path, required=True, help=".png (needs matplotlib) or .npy")
    # --model bez2018: the BEZ2018 auditory-nerve model of the paper's main models (cli/nervegram_bez2018.py).
    nerve.add_argument("--model", choices=("simplified", "bez2018"), default="simplified",
                       help="front end: the simplified one (default) or BEZ2018 (mean rates in spikes/s)")
    nerve.add_argument("--task", choices=("speech", "localization"), default="speech",
                       help="BEZ2018 settings of the word/speaker (default) or localization models")
    nerve.add_argument("--seed", type=int, default=0, help="BEZ2018 noise seed (default 0)")
    nerve.set_defaults(func=cmd_nervegram)

    demo = sub.add_parser("demo", help="nerve representations of a synthetic sound at the four phase-locking limits")
    demo.add_argument("-o", "--output", type=Path, default=Path("phaselocknet_demo.png"))
    demo.set_defaults(func=cmd_demo)


def nerve_rates(waveform: np.ndarray, cutoff_hz: float, sample_rate: float = NERVEGRAM_SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(mean spike counts per time bin (3, 50, time), cfs in Hz) of a mono waveform at ``sample_rate``."""
    import torch

    from ..periphery import Cochlea
    from ..periphery.presets import simplified_cochlea_config

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
    from ..audio import read_audio, resample, set_dbspl

    if args.model == "bez2018":
        from .nervegram_bez2018 import cmd_bez2018_nervegram

        return cmd_bez2018_nervegram(args)
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

    from ..bundle import write_atomic

    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def demo_sound(sample_rate: float = NERVEGRAM_SAMPLE_RATE) -> np.ndarray:
    """30 ms harmonic complex tone (F0 200 Hz), 5 ms silence, 25 ms chirp 300 Hz -> 6 kHz, at 65 dB SPL.

    Short on purpose: at 10 kHz output each nerve sample is 0.1 ms, and phase locking to
    the harmonics is only visible when a few hundred samples fill a panel.
    """
    import scipy.signal

    from ..audio import set_dbspl

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
