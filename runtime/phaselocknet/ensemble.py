"""Ensembles as in the paper: a variant's architectures, averaged.

Saddler & McDermott report every result as the mean over a variant's 10 network
architectures; ``load_ensemble`` builds that ensemble from the store.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch
from torch import nn

from .sharing import share_key
from .store import ModelNotFoundError, is_model_id, model_path, not_installed_message, resolve_bundle, variant_members


class Ensemble(nn.Module):
    """Several models on the same input; output per head = the members' mean softmax probability.

    The mean is taken over the probabilities (softmax of each member's logits), not the
    logits: the paper's convention for its ensembles. A head is averaged over the members
    that have it. Members run one after another, so activation memory stays one model's.
    By default every member's weights stay loaded (a variant's 10 localization
    architectures hold several GB); ``load_ensemble(..., lazy=True)`` keeps only the
    bundle paths and loads each member for its turn in every call, so memory stays one
    model's (each call then pays the members' loading time, and a member loaded with
    ``seed=`` restarts its random stream on every call).
    Members with the same front end and the same random draws (``spikes="mean"`` with a
    fixed excerpt, or ``example_seeds`` given) share one nerve representation per call;
    the outputs are the same as running each member alone.

    ``ensemble(x, example_seeds=None)`` -> {head: (batch, n_classes) probabilities};
    ``ensemble.member_logits(x, example_seeds)`` -> one {head: logits} dict per member
    (``ensemble.member_ids`` in the same order).
    """

    def __init__(self, members: Sequence[nn.Module], name: str | None = None, loaders: Sequence | None = None):
        """``members``: the loaded models; with ``loaders`` (one callable per member returning
        it), ``members`` only supply the facts and are not kept (see ``lazy``)."""
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
        self._loaders = None if loaders is None else list(loaders)
        self.members = nn.ModuleList(members if loaders is None else [])
        self.lazy = loaders is not None
        self.name = name
        self.heads = dict(sorted(heads.items()))
        self.member_ids = [m.model_id for m in members]
        self.input_kind, self.binaural = first.input_kind, first.binaural
        self.sample_rate, self.input_length = first.sample_rate, first.input_length
        self._expected_input_shape = first.expected_input_shape()
        self._labels = {}
        for member in members:
            for head in member.heads:
                self._labels.setdefault(head, member.labels(head))

    def expected_input_shape(self) -> tuple:
        return self._expected_input_shape

    def labels(self, head: str) -> list:
        if head not in self._labels:
            raise KeyError(f"no head {head!r}; this ensemble has {sorted(self.heads)}")
        return self._labels[head]

    def each_member(self):
        """The members in order, each loaded for its turn when the ensemble is lazy."""
        if self._loaders is None:
            yield from self.members
            return
        for load in self._loaders:
            member = load()
            yield member
            del member

    def member_logits(self, x, example_seeds: Sequence[int] | None = None) -> list[dict[str, torch.Tensor]]:
        """Each member's logits per head, in member order. Members with the same front end and
        the same draws (`sharing.share_key`) reuse the first one's nerve representation."""
        outputs, shared = [], {}
        for member in self.each_member():
            key = share_key(member, same_seeds=example_seeds is not None)
            nerve = shared.get(key) if key is not None else None
            if nerve is None:
                nerve = member.nerve_representation(x, example_seeds)
                if key is not None:
                    shared[key] = nerve
            outputs.append(member.cnn(nerve))
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


def load_ensemble(models: str | os.PathLike | Sequence[str | os.PathLike], *, lazy: bool = False,
                  **load_options) -> Ensemble:
    """The ensemble of a variant (``"sound_localization/simplified_IHC3000"``: its architectures
    in the store) or of a list of model ids / bundle paths; ``load_options`` go to
    ``phaselocknet.load`` for every member (e.g. ``spikes="mean", excerpt=1000``).
    ``lazy=True``: members are loaded one at a time for each call, so memory stays one
    model's (see `Ensemble`).
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
    if not lazy:
        return Ensemble([load(path, **load_options) for path in paths], name=name)
    loaders = [functools.partial(load, path, **load_options) for path in paths]
    # Each member is loaded once here for its facts (input, heads, labels), one at a time.
    return Ensemble(_one_at_a_time(loaders), name=name, loaders=loaders)


def _one_at_a_time(loaders):
    """Lightweight stand-ins with a member's facts, each member freed before the next loads."""
    facts = []
    for load in loaders:
        member = load()
        facts.append(_MemberFacts(member))
        del member
    return facts


class _MemberFacts:
    """What `Ensemble` checks and keeps of a member: its input, heads, labels and id."""

    def __init__(self, member):
        for name in ("input_kind", "binaural", "sample_rate", "input_length", "heads", "model_id"):
            setattr(self, name, getattr(member, name))
        self._shape = member.expected_input_shape()
        self._labels = {head: member.labels(head) for head in member.heads}

    def expected_input_shape(self) -> tuple:
        return self._shape

    def labels(self, head: str) -> list:
        return self._labels[head]
