"""Evaluating models at scale: ``phaselocknet eval`` and ``phaselocknet merge``.

Python use::

    from phaselocknet.evaluate import EvalOptions, evaluate, merge
    summary = evaluate(EvalOptions(bundles=[...], data=["stim.h5"], out=Path("results.csv"), seed=0))

Modules: ``sources`` (what the examples are, in a fixed global order), ``preprocess``
(making them fit a model), ``loader`` (background reading), ``plan`` (checks before
work), ``runner`` (the loop), ``writers``/``assemble`` (files), ``resume`` (the work
folder), ``shards`` (splits and seeds), ``merge`` and ``cli``.
"""

import importlib

# public name -> module; imported on first use, so `phaselocknet --help` (which reads only
# `cli`) does not import torch.
_PUBLIC = {
    "merge": ".merge", "EvalOptions": ".plan", "PlanError": ".plan",
    "EXIT_BAD_EXAMPLES": ".runner", "Summary": ".runner", "evaluate": ".runner",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phaselocknet.evaluate' has no attribute {name!r}")
