"""Pure-PyTorch runtime for the phaselocknet auditory models (Saddler & McDermott, 2024).

    import phaselocknet
    model = phaselocknet.load("arch01.safetensors", spikes="mean", excerpt=1000)
    logits = model(x)   # dict: head -> (batch, n_classes)

The public names are imported on first use, so that `import phaselocknet` (and the command
line's `--help`) does not pay for importing torch until a model is needed.
"""

from __future__ import annotations

import importlib

from .version import __version__

# public name -> module that defines it
_PUBLIC = {
    "BundleError": ".bundle",
    "PhaselocknetModel": ".model",
    "from_config": ".model",
    "load": ".hub",
    "save": ".hub",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phaselocknet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
