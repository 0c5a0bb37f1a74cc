"""Pure-PyTorch runtime for the phaselocknet auditory models (Saddler & McDermott, 2024).

    import phaselocknet
    model = phaselocknet.load("arch01.safetensors", spikes="mean", excerpt=1000)
    logits = model(x)   # dict: head -> (batch, n_classes)

The public names are imported on first use, so that `import phaselocknet` (and the command
line's `--help`) does not pay for importing torch until a model is needed.
"""

from __future__ import annotations

from .lazy import lazy_getattr
from .version import __version__

# public name -> module that defines it
_PUBLIC = {
    "BundleError": ".bundle",
    "ConfigError": ".errors",
    "InputError": ".errors",
    "NonFiniteOutputError": ".errors",
    "PhaselocknetError": ".errors",
    "PhaselocknetModel": ".model",
    "from_config": ".model",
    "list_models": ".store",
    "load": ".hub",
    "load_ensemble": ".ensemble",
    "Ensemble": ".ensemble",
    "save": ".hub",
}

__all__ = [*_PUBLIC, "__version__"]

__getattr__ = lazy_getattr(__name__, _PUBLIC)


def __dir__():
    return sorted(set(globals()) | set(__all__))
