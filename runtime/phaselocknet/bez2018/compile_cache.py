"""When and how the BEZ2018 time loop is compiled (``torch.compile``, persistent inductor cache).

``PHASELOCKNET_BEZ2018_COMPILE=1`` opts in to compilation; unset or ``0``: eager. Eager is the
default because, measured on the 2-core CPU (torch 2.13, gcc 12): compiling a 16-sample block took
120-170 s and gcc crashed on the fused kernel (internal compiler error in cunrolli); a 2-sample
block compiled in 170 s and then ran at 84 CPU-s per ear-second (batch 16) against eager's ~6. Compiled artefacts go to inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``,
default ``~/.cache/phaselocknet/inductor`` when the user has not chosen one), so a second process
reuses them instead of compiling again. If compilation fails the eager function is used.
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

ENV = "PHASELOCKNET_BEZ2018_COMPILE"
SCRIPT_ENV = "PHASELOCKNET_BEZ2018_SCRIPT"


def use_compile(requested=None) -> bool:
    if requested is not None:
        return bool(requested)
    value = os.environ.get(ENV, "0").strip().lower()
    if value not in {"0", "1", "false", "true", "no", "yes"}:
        raise ValueError(f"{ENV}={value!r}: use 0 (eager) or 1 (torch.compile)")
    return value in {"1", "true", "yes"}


@functools.lru_cache(maxsize=None)
def compiled(fn):
    """``fn`` compiled once per process; falls back to ``fn`` (with a warning) if compiling fails."""
    import torch  # noqa: PLC0415

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "phaselocknet" / "inductor"))
    import torch._inductor.config as inductor_config  # noqa: PLC0415

    # One K-sample block is a long chain of elementwise ops; let inductor fuse all of it.
    inductor_config.max_fusion_size = 100000
    inductor_config.realize_opcount_threshold = 100000
    compiled_fn = torch.compile(fn, dynamic=False, fullgraph=True)

    @functools.wraps(fn)
    def run(*args):
        nonlocal compiled_fn
        try:
            return compiled_fn(*args)
        except Exception as err:  # noqa: BLE001  (any backend failure: keep working, slower)
            if compiled_fn is fn:
                raise
            warnings.warn(f"torch.compile of {fn.__name__} failed ({type(err).__name__}: {err}); running eagerly "
                          f"(set {ENV}=0 to skip compiling)", RuntimeWarning, stacklevel=2)
            compiled_fn = fn
            return fn(*args)

    return run


@functools.lru_cache(maxsize=None)
def scripted(fn):
    """``fn`` as TorchScript (once per process): the same ops, run by the TorchScript interpreter,
    whose per-op overhead is below eager Python's; ``fn`` itself if ``PHASELOCKNET_BEZ2018_SCRIPT=0``
    or if scripting fails (with a warning)."""
    import torch  # noqa: PLC0415

    if os.environ.get(SCRIPT_ENV, "1").strip().lower() in {"0", "false", "no"}:
        return fn
    try:
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated; it is kept here because, measured, it is the
            # only one of eager / torch.compile / TorchScript that lowers this loop's cost here.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(fn)
    except Exception as err:  # noqa: BLE001  (any TorchScript limitation: keep working, slower)
        warnings.warn(f"torch.jit.script of {fn.__name__} failed ({type(err).__name__}: {err}); running eagerly",
                      RuntimeWarning, stacklevel=2)
        return fn
