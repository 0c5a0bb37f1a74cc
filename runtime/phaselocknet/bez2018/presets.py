"""Settings of the authors' nervegram generation and the wrapper keyword overrides.

``configure_bez2018model_nervegram_generation.ipynb`` (msaddler/phaselocknet): 50 ERB-spaced
CFs from 125 Hz to 8 kHz (speech: word and speaker tasks) or 16 kHz (localization), three
fibre types (spont 70, 4, 0.1 spikes/s), tabs = trel = 0.6 ms, synapseMode 0, implnt 0;
speech with fresh fGn (noiseType 1), localization without (noiseType 0) and a 1.3 s clip
starting uniformly in [0.07 s, end - 1.3 s - 0.01 s].
Overrides use the wrapper's own keyword names (``bez2018model.nervegram``).
"""
from __future__ import annotations

import numpy as np

PRESETS = {
    "speech": {"max_cf": 8000.0, "noiseType": 1, "nervegram_dur": None,
               "buffer_start_dur": 0.0, "buffer_end_dur": 0.0},
    "localization": {"max_cf": 16000.0, "noiseType": 0, "nervegram_dur": 1.3,
                     "buffer_start_dur": 0.07, "buffer_end_dur": 0.01},
}
COMMON = {
    "num_cf": 50, "min_cf": 125.0, "cf_list": None, "spont": [70.0, 4.0, 0.1],
    "tabs": 6e-4, "trel": 6e-4, "synapseMode": 0, "implnt": 0, "species": 2,
    "bandwidth_scale_factor": 1.0, "cohc": 1.0, "cihc": 1.0, "IhcLowPass_order": 7,
    "pin_fs": 100e3, "nervegram_fs": 10e3, "pin_dBSPL_flag": 0, "pin_dBSPL": None,
    "max_spikes_per_train": 1000, "num_spike_trains": 1, "nervegram_dtype": "float32",
}
# Wrapper keywords accepted only at the value these models use (anything else is not ported).
FIXED = {"synapseMode": (0,), "implnt": (0,), "species": (2,), "nervegram_dtype": ("float32",),
         "return_meanrates": (True,), "return_spike_times": (False,),
         "return_spike_tensor_sparse": (False,), "return_spike_tensor_dense": (False,),
         "squeeze_spont_dim": (True,), "squeeze_channel_dim": (True,)}
TUNABLE = set(PRESETS["speech"]) | set(COMMON) | {"IhcLowPass_cutoff", "nervegram_spike_tensor_fs",
                                                   "return_vihcs"}


class PresetError(ValueError):
    """Unknown preset or override."""


def erb_cf_list(num_cf: int, min_cf: float = 125.0, max_cf: float = 8e3) -> np.ndarray:
    """``num_cf`` CFs (Hz) equally spaced on the ERB-number scale (Glasberg & Moore), as the
    wrapper's ``get_ERB_cf_list``. Its last bits depend on the platform's libm: the reference
    machine's cf[0] for 125 Hz came out a little above 125 (synaptic delay 59999 samples)."""
    e_start = 21.4 * np.log10(0.00437 * min_cf + 1.0)
    e_end = 21.4 * np.log10(0.00437 * max_cf + 1.0)
    e = np.linspace(e_start, e_end, num=num_cf)
    return (1.0 / 0.00437) * (10.0 ** (e / 21.4) - 1.0)


def resolve(preset: str, ihc_cutoff: float, overrides: dict) -> dict:
    """The wrapper's keyword arguments for ``preset`` with ``overrides`` applied, validated."""
    if preset not in PRESETS:
        raise PresetError(f"preset={preset!r} is not known: use 'speech' or 'localization'")
    unknown = sorted(set(overrides) - TUNABLE - set(FIXED))
    if unknown:
        raise PresetError(
            f"unsupported override(s) {unknown}: nervegram() takes the wrapper's keyword names "
            f"{sorted(TUNABLE - {'return_vihcs'})} (and {sorted(FIXED)} only at their default); "
            "use return_ihc= instead of return_vihcs")
    for key, allowed in FIXED.items():
        if key in overrides and overrides[key] not in allowed:
            raise PresetError(f"{key}={overrides[key]!r} is not ported; only {allowed[0]!r} is supported")
    kw = {**COMMON, **PRESETS[preset], "IhcLowPass_cutoff": float(ihc_cutoff)}
    kw.update({k: v for k, v in overrides.items() if k in TUNABLE})
    if "IhcLowPass_cutoff" in overrides and float(overrides["IhcLowPass_cutoff"]) != float(ihc_cutoff) \
            and float(ihc_cutoff) != 3000.0:
        raise PresetError("give the IHC lowpass cutoff once: ihc_cutoff= or IhcLowPass_cutoff=, not both")
    _check_values(kw)
    return kw


def _check_values(kw: dict) -> None:
    spont = np.asarray(kw["spont"], dtype=np.float64).reshape(-1)
    if spont.size == 0 or not np.all(np.isfinite(spont)) or np.any(spont <= 0):
        raise PresetError(f"spont={kw['spont']!r}: give positive spontaneous rates (spikes/s)")
    if kw["noiseType"] not in (0, 1):
        raise PresetError(f"noiseType={kw['noiseType']!r}: 0 (no fGn) or 1 (fresh fGn)")
    for key in ("tabs", "trel"):
        if not (np.isfinite(kw[key]) and kw[key] > 0):
            raise PresetError(f"{key}={kw[key]!r} must be a positive time in seconds")
    if not (np.isfinite(kw["IhcLowPass_cutoff"]) and kw["IhcLowPass_cutoff"] > 0):
        raise PresetError(f"IHC lowpass cutoff {kw['IhcLowPass_cutoff']!r} must be a positive frequency (Hz)")
    for key in ("pin_fs", "nervegram_fs"):
        if float(kw[key]) != int(kw[key]) or kw[key] <= 0:
            raise PresetError(f"{key}={kw[key]!r} must be a positive whole number of Hz")
    if kw["max_spikes_per_train"] < 1:
        raise PresetError("max_spikes_per_train must be >= 1")


def cf_list_of(kw: dict) -> np.ndarray:
    if kw["cf_list"] is not None:
        cf = np.asarray(kw["cf_list"], dtype=np.float64).reshape(-1)
    else:
        if int(kw["num_cf"]) < 1:
            raise PresetError(f"num_cf={kw['num_cf']!r} must be >= 1")
        cf = erb_cf_list(int(kw["num_cf"]), float(kw["min_cf"]), float(kw["max_cf"]))
    if cf.size == 0 or not np.all(np.isfinite(cf)) or np.any(cf <= 124.9) or np.any(cf >= 20001.0):
        raise PresetError(f"CFs must lie in 125 Hz .. 20 kHz (human), got {cf.min() if cf.size else 'none'}"
                          f"..{cf.max() if cf.size else ''}")
    return cf
