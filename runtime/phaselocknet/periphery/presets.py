"""The front-end configuration of the paper's "simplified" models, as a function of its free choices."""

from __future__ import annotations


def simplified_cochlea_config(ihc_cutoff_hz: float, sr_input: float = 50000.0, max_cf: float = 16000.0) -> dict:
    """``kwargs_cochlea`` of the published simplified_IHC* models with a given phase-locking limit.

    Localization models use ``sr_input=50000, max_cf=16000``; word/speaker models ``20000, 8000``.
    """
    return {
        "config_filterbank": {"cfs": None, "fir_dur": 0.05, "kwargs_filter_coefs": {}, "max_cf": max_cf,
                              "min_cf": 60.0, "mode": "fir_gammatone_filterbank", "num_cf": 50},
        "config_subband_processing": {"rectify": True},
        "kwargs_custom_slice": {},
        "kwargs_fir_lowpass_filter_input": {},
        "kwargs_fir_lowpass_filter_output": {"cutoff": ihc_cutoff_hz, "fir_dur": 0.05, "ihc_filter": True, "order": 7},
        "kwargs_sigmoid_rate_level_function": {
            "dynamic_range": [20.0, 40.0, 80.0], "dynamic_range_interval": 0.95, "envelope_mode": True,
            "rate_max": [250.0, 250.0, 250.0], "rate_spont": [0.0, 0.0, 0.0], "threshold": [0.0, 12.0, 28.0],
        },
        "kwargs_spike_generator_binomial": {"mode": "approx", "n_per_channel": [384, 160, 96]},
        "kwargs_spike_rate_noise": {},
        "sr_cochlea": sr_input, "sr_input": sr_input, "sr_output": 10000.0,
    }
