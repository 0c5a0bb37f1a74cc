"""Never a silent NaN: non-finite logits are refused, naming the layer where they began.

The normal path pays one ``isfinite`` over the logits (a few thousand values). Only when
that fails is the batch's bad rows run again with forward hooks on the front end and on
every CNN layer, to find the first output that went non-finite. Hooks make the network
run layer by layer (its fused plan is skipped while a layer is hooked), so the diagnosis
does not depend on how the forward pass is organised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import NonFiniteOutputError


def nonfinite_rows(logits: dict[str, torch.Tensor]) -> list[int]:
    """Batch rows with a NaN or Inf logit in any head (empty when all are finite)."""
    bad = None
    for values in logits.values():
        rows = ~torch.isfinite(values).reshape(values.shape[0], -1).all(dim=1)
        bad = rows if bad is None else bad | rows
    return [] if bad is None or not bool(bad.any()) else bad.nonzero().flatten().tolist()


def first_nonfinite_layer(model, x: torch.Tensor, example_seeds: Sequence[int] | None) -> str:
    """Name of the first stage whose output is non-finite for input ``x`` (already checked finite)."""
    found: list[str] = []

    def watch(name):
        def hook(module, inputs, output):
            values = output.values() if isinstance(output, dict) else [output]
            if not found and any(torch.is_tensor(v) and not torch.isfinite(v).all() for v in values):
                found.append(name)
        return hook

    stages = [("front_end", model.front_end)]
    stages += [(name, model.network.get_submodule(name)) for name in model.network.layer_names]
    handles = [module.register_forward_hook(watch(name)) for name, module in stages]
    try:
        with torch.no_grad():
            nerve = model.nerve_representation(x, example_seeds)
            if not found and not torch.isfinite(nerve).all():
                found.append("spike_generator")
            if not found:
                model.network(nerve)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else "unknown (not reproduced on a second run)"


def refuse_nonfinite(model, logits: dict[str, torch.Tensor], x, example_seeds) -> None:
    """Raise NonFiniteOutputError if any logit is NaN or Inf; else return at once."""
    rows = nonfinite_rows(logits)
    if not rows:
        return
    seeds = None if example_seeds is None else [example_seeds[i] for i in rows]
    layer = first_nonfinite_layer(model, model.check_input(x)[rows], seeds)
    raise NonFiniteOutputError(
        f"non-finite logits for batch examples {rows[:10]}: the output of {layer!r} is the first "
        "NaN/Inf (check the bundle's weights with `phaselocknet verify`, and the input's level: "
        "float32 overflows above ~3e38)",
        layer=layer,
        examples=rows,
    )
