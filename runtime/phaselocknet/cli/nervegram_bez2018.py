"""``phaselocknet nervegram SOUND --model bez2018``: the BEZ2018 nervegram of a sound.

The nervegram of the whole sound (no localization clip), with the settings the authors used
for the task (``--task speech``: CFs 125..8000 Hz, fractional Gaussian noise; ``--task
localization``: CFs 125..16000 Hz, both ears), at the variant's IHC lowpass cutoff: mean
rates in spikes/s at 10 kHz, (3 spont-rate groups, 50 CFs, time), with a leading ear axis of
2 for localization.
"""

from __future__ import annotations

import logging

import numpy as np

from .nervegram import Nervegram, parse_variant

log = logging.getLogger(__name__)

NERVEGRAM_RATE_HZ = 10000.0


def bez2018_nervegram(args, waveform: np.ndarray, rate: float) -> Nervegram:
    """``waveform`` (channels, time) in Pa at ``rate`` Hz -> its BEZ2018 `Nervegram`."""
    from ..audio import set_dbspl

    cutoff = parse_variant(args.variant)
    if args.task == "localization":
        if waveform.shape[0] == 1:
            log.info("mono sound: the same signal at both ears")
            waveform = np.repeat(waveform, 2, axis=0)
        elif waveform.shape[0] != 2:
            raise ValueError(f"{args.sound} has {waveform.shape[0]} channels; --task localization takes 1 or 2")
    else:
        # The speech models' nerve is monaural: a stereo file is mixed down.
        waveform = waveform.mean(axis=0, keepdims=True)
    if args.dbspl is not None:
        waveform = set_dbspl(waveform, args.dbspl)
    signal = waveform if args.task == "localization" else waveform[0]
    rates, cfs = bez2018_rates(signal, rate, cutoff, args.task, args.seed)
    return Nervegram(rates, cfs, NERVEGRAM_RATE_HZ, f"BEZ2018 {args.task}, IHC lowpass {cutoff:g} Hz")


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
