"""``phaselocknet nervegram`` (the nerve representation of a sound) and ``phaselocknet demo``.

Front ends are looked up by ``--model`` in `NERVEGRAM_MODELS`: each entry takes the parsed
arguments and a mono waveform with its rate and returns a `Nervegram`. Adding a front end
(e.g. the BEZ2018 model) is one function and one line there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .arguments import sound_level

log = logging.getLogger(__name__)

# The four phase-locking limits (inner-hair-cell lowpass cutoffs, Hz) compared in the paper.
IHC_CUTOFFS_HZ = (50, 320, 1000, 3000)
# Front end of each task's simplified_IHC* models: (input rate Hz, highest CF Hz).
TASK_FRONT_ENDS = {"localization": (50000.0, 16000.0), "speech": (20000.0, 8000.0)}


@dataclass
class Nervegram:
    rates: "np.ndarray"  # ([ears,] spont-rate groups, CFs, time) firing rates in spikes/s
    cfs: "np.ndarray"  # Hz
    sample_rate: float  # Hz of the time axis
    label: str  # panel title / description


def simplified_nervegram(args, waveform: np.ndarray, rate: float) -> Nervegram:
    """The paper's simplified front end of `args.task` with the cutoff of `args.variant`
    (monaural: a stereo file is mixed down)."""
    from ..audio import resample, set_dbspl

    cutoff = parse_variant(args.variant)
    sr_input, max_cf = TASK_FRONT_ENDS[args.task]
    x = resample(waveform.mean(axis=0), rate, sr_input)
    if args.dbspl is not None:
        x = set_dbspl(x, args.dbspl)
    rates, cfs, sr_out = nerve_rates(x, cutoff, args.task)
    return Nervegram(rates, cfs, sr_out, f"{args.task}, IHC lowpass {cutoff:g} Hz")


def bez2018_nervegram(args, waveform: np.ndarray, rate: float) -> Nervegram:
    """The BEZ2018 auditory-nerve model with the authors' settings for `args.task` (cli/nervegram_bez2018.py)."""
    from .nervegram_bez2018 import bez2018_nervegram as run

    return run(args, waveform, rate)


NERVEGRAM_MODELS: dict[str, Callable] = {"simplified": simplified_nervegram, "bez2018": bez2018_nervegram}


def add_parsers(sub) -> None:
    nerve = sub.add_parser(
        "nervegram", help="auditory-nerve firing rates of a sound (front end only, no weights)",
        description="Writes the firing rates (spikes/s) of the front end of a task's models: "
        ".npy of shape (3 spont-rate groups, 50 CFs, time at 10 kHz), or a figure (.png/.pdf/.svg).",
    )
    nerve.add_argument("sound", type=Path)
    nerve.add_argument("--model", choices=sorted(NERVEGRAM_MODELS), default="simplified",
                       help="front end: the paper's simplified cochlea (default), or bez2018 (the BEZ2018 model "
                            "of the paper's main models, the authors' settings for --task; slow)")
    nerve.add_argument("--task", choices=sorted(TASK_FRONT_ENDS), default="speech",
                       help="whose front end: speech (word/speaker models: 20 kHz input, CFs to 8 kHz; default) "
                            "or localization (50 kHz, CFs to 16 kHz)")
    nerve.add_argument("--variant", default="IHC3000", help="IHC0050, IHC0320, IHC1000 or IHC3000 (phase-locking limit)")
    nerve.add_argument("--dbspl", type=sound_level, default=None,
                       help="set the sound level first (dB SPL, -30..150; default: samples are pascals)")
    nerve.add_argument("-o", "--output", type=Path, required=True, help=".npy (rates), or .png/.pdf/.svg (needs matplotlib)")
    nerve.add_argument("--seed", type=int, default=0, help="--model bez2018: seed of its random draws (default 0)")
    nerve.set_defaults(func=cmd_nervegram)

    demo = sub.add_parser("demo", help="nerve representations of a synthetic sound at the four phase-locking limits")
    demo.add_argument("-o", "--output", type=Path, default=Path("phaselocknet_demo.png"))
    demo.set_defaults(func=cmd_demo)


def nerve_rates(waveform: np.ndarray, cutoff_hz: float, task: str = "localization") -> tuple[np.ndarray, np.ndarray, float]:
    """(firing rates (3, 50, time) in spikes/s, CFs in Hz, output rate in Hz) of a mono waveform
    at the input rate of `task`'s front end."""
    import numpy as np

    import torch

    from ..periphery import Cochlea
    from ..periphery.presets import simplified_cochlea_config

    cochlea = Cochlea(simplified_cochlea_config(cutoff_hz, *TASK_FRONT_ENDS[task]))
    with torch.no_grad():
        rates = cochlea(torch.as_tensor(waveform, dtype=torch.float32)[None])
    return rates[0].numpy(), np.asarray(cochlea.filterbank.cfs), cochlea.sr_output


def parse_variant(variant: str) -> float:
    digits = "".join(ch for ch in variant if ch.isdigit())
    if not digits or float(digits) not in IHC_CUTOFFS_HZ:
        raise ValueError(f"--variant {variant!r}: use one of " + ", ".join(f"IHC{c:04d}" for c in IHC_CUTOFFS_HZ))
    return float(digits)


def mean_rate(rates: np.ndarray) -> np.ndarray:
    """(CFs, time) rate averaged over the spontaneous-rate groups, in spikes/s."""
    return rates.mean(axis=0)


def cmd_nervegram(args) -> int:
    import numpy as np

    from ..audio import check_playable, read_audio
    from ..errors import NonFiniteOutputError
    from ..plot import plot_nervegrams

    suffix = args.output.suffix.lower()
    if suffix not in (".npy", ".png", ".pdf", ".svg"):
        raise ValueError(f"-o {args.output}: use a .npy, .png, .pdf or .svg file name")
    waveform, rate = read_audio(args.sound)
    check_playable(waveform, rate, str(args.sound))
    gram = NERVEGRAM_MODELS[args.model](args, waveform, rate)
    if not np.all(np.isfinite(gram.rates)):
        raise NonFiniteOutputError(f"{args.sound}: the nerve representation has NaN/Inf values (is the level absurd?); nothing written")
    if suffix == ".npy":
        _save_npy(args.output, gram.rates.astype(np.float32))
    else:
        ears = [("left ear, ", gram.rates[0]), ("right ear, ", gram.rates[1])] if gram.rates.ndim == 4 else [("", gram.rates)]
        plot_nervegrams(args.output, [(ear + gram.label, mean_rate(r)) for ear, r in ears], gram.cfs, gram.sample_rate,
                        title=f"{args.sound.name}: mean of the spont-rate groups")
    shape = " x ".join(map(str, gram.rates.shape))
    axes = ("ears x " if gram.rates.ndim == 4 else "") + "spont-rate groups x CFs x time"
    log.info("wrote %s (%s: firing rates in spikes/s, %s = %s at %g Hz)", args.output, gram.label, shape, axes, gram.sample_rate)
    return 0


def _save_npy(path: Path, array: np.ndarray) -> None:
    import numpy as np

    import io

    from ..atomic import write_atomic

    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def demo_sound(sample_rate: float = TASK_FRONT_ENDS["localization"][0]) -> np.ndarray:
    """30 ms harmonic complex tone (F0 200 Hz), 5 ms silence, 25 ms chirp 300 Hz -> 6 kHz, at 65 dB SPL.

    Short on purpose: at 10 kHz output each nerve sample is 0.1 ms, and phase locking to
    the harmonics is only visible when a few hundred samples fill a panel.
    """
    import numpy as np

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
    from ..plot import plot_nervegrams

    sound = demo_sound()
    panels, cfs, sr_out = [], None, None
    for cutoff in IHC_CUTOFFS_HZ:
        rates, cfs, sr_out = nerve_rates(sound, cutoff, "localization")
        panels.append((f"IHC lowpass {cutoff} Hz", mean_rate(rates)))
    plot_nervegrams(args.output, panels, cfs, sr_out,
                    title="Auditory-nerve firing rates: harmonic tone (F0 200 Hz), then a chirp (65 dB SPL)")
    log.info("wrote %s: auditory-nerve representations of a harmonic tone and a chirp at IHC cutoffs %s Hz",
             args.output.resolve(), ", ".join(map(str, IHC_CUTOFFS_HZ)))
    return 0
