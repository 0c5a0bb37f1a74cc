"""Which models may share one nerve representation of an input.

A variant's 10 architectures have the same front end: their nerve representation of a
sound is the same function of (sound, example seeds) — see
``PhaselocknetModel.front_end_key``. It is computed once and fed to each CNN when the
random draws are the same too: always for deterministic models (``spikes="mean"`` and a
fixed excerpt), and for stochastic ones when the caller gives every model the same
example seeds. Models drawing from their own streams never share: each keeps the
independent draws it would have had alone.
"""

from __future__ import annotations


def share_key(model, same_seeds: bool) -> str | None:
    """The key under which ``model`` may share its nerve representation, or None."""
    if model.deterministic or same_seeds:
        return model.front_end_key()
    return None


def front_end_groups(models: list, same_seeds: bool) -> list[list[int]]:
    """Indices of ``models`` grouped by shared front end, in first-appearance order."""
    groups: dict[object, list[int]] = {}
    for index, model in enumerate(models):
        key = share_key(model, same_seeds)
        groups.setdefault(key if key is not None else ("alone", index), []).append(index)
    return list(groups.values())
