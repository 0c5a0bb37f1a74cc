"""The fast executor of a model, and the one rule for when it must be rebuilt.

A `FastExecutor` is built from a model's reference modules (front end and CNN) and holds
everything derived from them: filter spectra, folded batch norms, weight spectra, plans. It
is valid only for the tensors it was built from, so `PhaselocknetModel` keeps one together
with the `weights_stamp` it was built at and builds a new one whenever the stamp changes:
any parameter or buffer replaced (load_state_dict with assign=True), moved or cast (.to),
or modified in place (load_state_dict, optimizer steps). Nothing else is cached anywhere.
"""

from __future__ import annotations

import itertools
import weakref

from torch import nn

from .front_end import FastFrontEnd
from .network import FastNetwork


def weights_stamp(model: nn.Module) -> tuple:
    """Identity, storage and version counter of every parameter and buffer of `model`."""
    return tuple(
        (weakref.ref(t), t.data_ptr(), t._version)
        for t in itertools.chain(model.parameters(), model.buffers())
    )


def stamps_equal(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        x[0]() is not None and x[0]() is y[0]() and x[1:] == y[1:] for x, y in zip(a, b)
    )


class FastExecutor:
    """Fast front end + fast CNN of one model, for the weights of `stamp`."""

    def __init__(self, front_end, network, stamp: tuple):
        self.front_end = FastFrontEnd(front_end)
        self.network = FastNetwork(network)
        self.stamp = stamp

    # A copied or pickled model starts without an executor: its tensors are new objects.
    def __deepcopy__(self, memo):
        return _Stale()

    def __reduce__(self):
        return (_Stale, ())


class _Stale:
    """Stands in for an executor that must be rebuilt (it matches no stamp)."""

    stamp = ()
