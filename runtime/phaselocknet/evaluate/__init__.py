"""Evaluating models at scale: ``phaselocknet eval`` and ``phaselocknet merge``.

Python use::

    from phaselocknet.evaluate import EvalOptions, evaluate, merge
    summary = evaluate(EvalOptions(bundles=[...], data=["stim.h5"], out=Path("results.csv"), seed=0))

Modules: ``sources`` (what the examples are, in a fixed global order), ``preprocess``
(making them fit a model), ``loader`` (background reading), ``plan`` (checks before
work), ``runner`` (the loop), ``writers``/``assemble`` (files), ``resume`` (the work
folder), ``shards`` (splits and seeds), ``merge`` and ``cli``.
"""

from .merge import merge
from .plan import EvalOptions, PlanError
from .runner import EXIT_BAD_EXAMPLES, Summary, evaluate

__all__ = ["EXIT_BAD_EXAMPLES", "EvalOptions", "PlanError", "Summary", "evaluate", "merge"]
