"""BEZ2018 auditory-nerve model (Bruce, Erfani & Zilany 2018) in PyTorch, as the authors'
wrapper ``msaddler/bez2018model`` runs it for the phaselocknet models: `nervegram`."""
from .nervegram import NervegramError, nervegram
from .presets import PRESETS, PresetError, erb_cf_list
from .random_streams import RandomStreamError

__all__ = ["nervegram", "NervegramError", "PresetError", "RandomStreamError", "PRESETS", "erb_cf_list"]
