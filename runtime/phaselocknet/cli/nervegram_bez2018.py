"""``phaselocknet nervegram SOUND --model bez2018``: the BEZ2018 nervegram of a sound.

The nervegram of the whole sound (no localization clip), with the settings the authors used
for the task (``--task speech``: CFs 125..8000 Hz, fractional Gaussian noise; ``--task
localization``: CFs 125..16000 Hz, both ears), at the variant's IHC lowpass cutoff. Written
as a picture (.png) or as the mean rates in spikes/s (.npy, float32: (3 spont-rate groups,
50 CFs, time at 10 kHz), with a leading ear axis of 2 for localization).
"""

from __future__ import annotations

import numpy as np

NERVEGRAM_RATE_HZ = 10000.0


def cmd_bez2018_nervegram(args) -> int:
    from ..audio import read_audio, set_dbspl
    from .nervegram import _save_npy, parse_variant

    cutoff = parse_variant(args.variant)
    suffix = args.output.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise ValueError(f"-o {args.output}: use a .png or .npy file name")
    waveform, rate = read_audio(args.sound)
    if args.task == "localization":
        if waveform.shape[0] == 1:
            print("mono sound: the same signal at both ears")
            waveform = np.repeat(waveform, 2, axis=0)
        elif waveform.shape[0] != 2:
            raise ValueError(f"{args.sound} has {waveform.shape[0]} channels; --task localization takes 1 or 2")
    else:
        # The speech models' nerve is monaural: a stereo file is mixed down.
        waveform = waveform.mean(axis=0, keepdims=True)
    if args.dbspl is not None:
        waveform = set_dbspl(waveform, args.dbspl)
    rates, cfs = bez2018_rates(waveform if args.task == "localization" else waveform[0], rate, cutoff, args.task, args.seed)
    if suffix == ".npy":
        _save_npy(args.output, rates)
    else:
        _plot(args.output, rates, cfs, cutoff, args.task)
    shape = ("2 ears, " if rates.ndim == 4 else "") + f"3 spont-rate groups, {len(cfs)} CFs, {rates.shape[-1]} bins at 10 kHz"
    print(f"wrote {args.output} (BEZ2018 mean firing rates in spikes/s, shape ({shape}))")
    return 0


def bez2018_rates(waveform: np.ndarray, rate: float, cutoff: float, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean rates (spikes/s) of ``waveform`` ((time,) or (2, time), Pa), CFs in Hz)."""
    import torch

    from ..bez2018 import nervegram

    signal = torch.as_tensor(np.ascontiguousarray(waveform), dtype=torch.float64)[None]
    preset = "localization" if task == "localization" else "speech"
    # The whole sound: no 1.3 s clip (the localization preset's nervegram_dur).
    overrides = {"nervegram_dur": None, "buffer_start_dur": 0.0, "buffer_end_dur": 0.0} if task == "localization" else {}
    with torch.no_grad():
        out = nervegram(signal, rate, ihc_cutoff=cutoff, preset=preset, seed=seed, rng="torch", **overrides)
    rates = np.asarray(torch.as_tensor(out["meanrates"])[0].cpu(), dtype=np.float32)
    return rates, np.asarray(out["cf"], dtype=np.float64)


def _plot(path, rates: np.ndarray, cfs: np.ndarray, cutoff: float, task: str) -> None:
    from ..plot import plot_nervegrams

    ears = [("left ear", rates[0]), ("right ear", rates[1])] if rates.ndim == 4 else [(task, rates)]
    panels = [(f"BEZ2018, IHC {cutoff:g} Hz, {name} (spikes/s)", r) for name, r in ears]
    plot_nervegrams(path, panels, cfs, duration_s=rates.shape[-1] / NERVEGRAM_RATE_HZ)
