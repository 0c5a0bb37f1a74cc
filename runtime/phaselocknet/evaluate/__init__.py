"""Evaluating models at scale: ``phaselocknet eval`` and ``phaselocknet merge``.

Python use::

    from phaselocknet.evaluate import EvalOptions, evaluate, merge
    summary = evaluate(EvalOptions(bundles=[...], data=["stim.h5"], out=Path("results.csv"), seed=0))

Modules: ``sources`` (what the examples are, in a fixed global order), ``preprocess``
(making them fit a model), ``loader`` (background reading), ``plan`` (checks before
work), ``runner`` (the loop), ``writers``/``assemble`` (files), ``resume`` (the work
folder), ``shards`` (splits and seeds), ``merge`` and ``cli``.
"""

from ..lazy import lazy_getattr

# public name -> module; imported on first use, so `phaselocknet --help` (which reads only
# `cli`) does not import torch.
_PUBLIC = {
    "merge": ".merge", "EvalOptions": ".plan", "PlanError": ".plan",
    "EXIT_BAD_EXAMPLES": ".runner", "Summary": ".runner", "evaluate": ".runner",
}

__all__ = sorted(_PUBLIC)

__getattr__ = lazy_getattr(__name__, _PUBLIC)
