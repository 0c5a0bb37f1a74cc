"""Auditory-nerve front end: gammatone filterbank, IHC lowpass, rate-level function, spikes."""
from .cochlea import Cochlea
from .filterbank import (
    GammatoneFilterbank,
    erb2freq,
    erbspace,
    freq2erb,
    gammatone_biquads,
    gammatone_impulse_responses,
)
from .hair_cell import HairCellLowpass, ihc_lowpass_impulse_response
from .rate_level import SigmoidRateLevel, analytic_signal, hilbert_envelope
from .spikes import BinomialSpikeGenerator

__all__ = [
    "BinomialSpikeGenerator",
    "Cochlea",
    "GammatoneFilterbank",
    "HairCellLowpass",
    "SigmoidRateLevel",
    "analytic_signal",
    "erb2freq",
    "erbspace",
    "freq2erb",
    "gammatone_biquads",
    "gammatone_impulse_responses",
    "hilbert_envelope",
    "ihc_lowpass_impulse_response",
]
