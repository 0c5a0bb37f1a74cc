"""Two implementations of every costly stage: "reference" (direct, the numerical reference)
and "fast" (FFT / folded / streamed; the default). Both compute the same function; tests hold
them within 1e-5 of each other (max abs difference / max abs value, float32).

A module with both paths subclasses `TwoPath` and defines `_reference` and `_fast`; `forward`
is the single place that picks one. `set_backend` switches a whole model.
"""

from __future__ import annotations

import weakref
from typing import Callable, Iterable

import torch
from torch import nn

BACKENDS = ("fast", "reference")
DEFAULT_BACKEND = "fast"


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use 'fast' (default) or 'reference' (direct convolutions)")
    return backend


class TwoPath(nn.Module):
    """Mixin: `forward` runs `_fast` or `_reference` according to `self.backend`."""

    backend: str = DEFAULT_BACKEND

    def forward(self, *args, **kwargs):
        if self.backend == "fast":
            return self._fast(*args, **kwargs)
        return self._reference(*args, **kwargs)

    def _reference(self, *args, **kwargs):
        raise NotImplementedError

    def _fast(self, *args, **kwargs):
        raise NotImplementedError


def set_backend(module: nn.Module, backend: str) -> nn.Module:
    """Select `backend` for every TwoPath module inside `module` (and for `module` itself)."""
    check_backend(backend)
    for sub in module.modules():
        if isinstance(sub, TwoPath) or hasattr(sub, "_backend_aware"):
            sub.backend = backend
    return module


def good_fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: the lengths pocketfft/MKL transform fastest."""
    n = max(int(n), 1)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


class DerivedCache:
    """Tensors derived from parameters (FFT spectra, folded weights), recomputed when a source
    tensor is replaced, moved or modified in place.

    Sources are tracked by identity (weakref), storage and version counter, so
    `load_state_dict` (in place or assign=True), `.to()` and optimizer steps all invalidate.
    While autograd needs gradients for a source, the value is recomputed on every call, so
    the graph reaches the parameters.
    """

    def __init__(self):
        self._entries: dict = {}

    @staticmethod
    def _stamp(sources: Iterable[torch.Tensor | None]):
        return tuple(
            None if t is None else (weakref.ref(t), t.data_ptr(), t._version, t.device, t.dtype) for t in sources
        )

    @staticmethod
    def _valid(stamp, sources) -> bool:
        for entry, t in zip(stamp, sources):
            if entry is None or t is None:
                if entry is not t:
                    return False
                continue
            ref, ptr, version, device, dtype = entry
            if ref() is not t or t.data_ptr() != ptr or t._version != version or t.device != device or t.dtype != dtype:
                return False
        return True

    def get(self, key, sources: list[torch.Tensor | None], compute: Callable[[], object]):
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in sources):
            return compute()
        hit = self._entries.get(key)
        if hit is not None and len(hit[0]) == len(sources) and self._valid(hit[0], sources):
            return hit[1]
        with torch.no_grad():
            value = compute()
        self._entries[key] = (self._stamp(sources), value)
        return value

    def clear(self) -> None:
        self._entries.clear()

    # A copied or pickled module starts with an empty cache (its tensors are new objects).
    def __deepcopy__(self, memo):
        return DerivedCache()

    def __getstate__(self):
        return {"_entries": {}}
