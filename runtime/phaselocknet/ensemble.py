"""Ensembles as in the paper: a variant's architectures, averaged.

Saddler & McDermott report every result as the mean over a variant's 10 network
architectures; ``load_ensemble`` builds that ensemble from the store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from .sharing import front_end_groups
from .store import ModelNotFoundError, is_model_id, model_path, not_installed_message, resolve_bundle, variant_members


class Ensemble(nn.Module):
    """Several models on the same input; output per head = the members' mean softmax probability.

    The mean is taken over the probabilities (softmax of each member's logits), not the
    logits: the paper's convention for its ensembles. A head is averaged over the members
    that have it. Members run one after another, so activation memory stays one model's;
    every member's weights stay loaded (a variant's 10 localization architectures hold
    several GB; for more, evaluate groups in turn with ``phaselocknet plan``).
    Members with the same front end and the same random draws (``spikes="mean"`` with a
    fixed excerpt, or ``example_seeds`` given) share one nerve representation per call;
    the outputs are the same as running each member alone.

    ``ensemble(x, example_seeds=None)`` -> {head: (batch, n_classes) probabilities};
    ``ensemble.member_logits(x, example_seeds)`` -> one {head: logits} dict per member
    (``ensemble.member_ids`` in the same order).
    """

    def __init__(self, members: Sequence[nn.Module], name: str | None = None):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one model")
        first = members[0]
        for member in members[1:]:
            for fact in ("input_kind", "binaural", "sample_rate", "input_length"):
                if getattr(member, fact) != getattr(first, fact):
                    raise ValueError(f"ensemble members take different inputs: {member.model_id} has {fact}="
                                     f"{getattr(member, fact)!r}, {first.model_id} {getattr(first, fact)!r}")
        heads: dict[str, int] = {}
        for member in members:
            for head, n in member.heads.items():
                if heads.setdefault(head, n) != n:
                    raise ValueError(f"head {head} has {heads[head]} classes in one member and {n} in {member.model_id}")
        self.members = nn.ModuleList(members)
        self.name = name
        self.heads = dict(sorted(heads.items()))
        self.member_ids = [m.model_id for m in members]
        self.input_kind, self.binaural = first.input_kind, first.binaural
        self.sample_rate, self.input_length = first.sample_rate, first.input_length

    def expected_input_shape(self) -> tuple:
        return self.members[0].expected_input_shape()

    def labels(self, head: str) -> list:
        for member in self.members:
            if head in member.heads:
                return member.labels(head)
        raise KeyError(f"no head {head!r}; this ensemble has {sorted(self.heads)}")

    def member_logits(self, x, example_seeds: Sequence[int] | None = None) -> list[dict[str, torch.Tensor]]:
        """Each member's logits per head, in member order."""
        outputs: list = [None] * len(self.members)
        for group in front_end_groups(list(self.members), same_seeds=example_seeds is not None):
            nerve = self.members[group[0]].nerve_representation(x, example_seeds)
            for index in group:
                outputs[index] = self.members[index].cnn(nerve)
            del nerve
        return outputs

    def forward(self, x, example_seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        return mean_probabilities(self.member_logits(x, example_seeds))


def mean_probabilities(member_logits: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per head, the mean over members (that have the head) of softmax(logits), float32."""
    heads = sorted({head for logits in member_logits for head in logits})
    out = {}
    for head in heads:
        probs = [torch.softmax(logits[head].double(), dim=-1) for logits in member_logits if head in logits]
        out[head] = torch.stack(probs).mean(dim=0).float()
    return out


def load_ensemble(models: str | os.PathLike | Sequence[str | os.PathLike], **load_options) -> Ensemble:
    """The ensemble of a variant (``"sound_localization/simplified_IHC3000"``: its architectures
    in the store) or of a list of model ids / bundle paths; ``load_options`` go to
    ``phaselocknet.load`` for every member (e.g. ``spikes="mean", excerpt=1000``).
    """
    from .hub import load

    name = None
    if isinstance(models, (str, os.PathLike)):
        text = os.fspath(models)
        if is_model_id(text) and text.count("/") == 1 and not os.path.exists(text):
            name, models = text, variant_members(text)
            if not models:
                raise ValueError(f"{text}: no such variant among the published models nor in the store "
                                 "(see `phaselocknet list`)")
        else:
            models = [text]
    missing = [os.fspath(m) for m in models if is_model_id(os.fspath(m)) and not os.path.exists(m)
               and not model_path(os.fspath(m)).is_file()]
    if missing:  # every missing member is named before any is loaded
        raise ModelNotFoundError(not_installed_message(missing))
    paths = [resolve_bundle(m) for m in models]
    return Ensemble([load(path, **load_options) for path in paths], name=name)
