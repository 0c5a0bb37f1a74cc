"""Ensembles and the shared front end.

References: each member loaded on its own and called directly (``model(x)``), its softmax
taken in float64 here; the shared-front-end eval run is compared with the same run
computing every model's front end alone. Shared and unshared paths run the same float
operations on the same inputs, so equality is exact (no tolerance); the ensemble mean
is compared at 1e-6 relative (float32 output of a float64 mean).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import phaselocknet
from evaluate_sets import SEED, save_bundle, sounds, word_nervegram_model, word_waveform_model, write_signal_hdf5
from phaselocknet.evaluate import EvalOptions, evaluate
from phaselocknet.model import PhaselocknetModel
from phaselocknet.store import ModelNotFoundError

VARIANT = "test_task/test_variant"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


@pytest.fixture
def store(tmp_path, monkeypatch):
    home = tmp_path / "store"
    monkeypatch.setenv("PHASELOCKNET_HOME", str(home))
    folder = home / VARIANT
    folder.mkdir(parents=True)
    paths = [save_bundle(word_waveform_model(), folder, f"arch0{k}", seed=k) for k in range(3)]
    return home, paths


def test_ensemble_is_the_mean_of_member_softmax(store):
    _, paths = store
    ensemble = phaselocknet.load_ensemble(VARIANT, spikes="mean")
    assert ensemble.member_ids == [f"test/arch0{k}" for k in range(3)] and ensemble.name == VARIANT
    x = torch.from_numpy(sounds(4, 800, 20000, seed=5)[:, 0].astype(np.float32))
    with torch.no_grad():
        probs = ensemble(x)
        members = [phaselocknet.load(p, spikes="mean")(x) for p in paths]
    expected = np.mean([torch.softmax(m["label_word_int"].double(), -1).numpy() for m in members], axis=0)
    np.testing.assert_allclose(probs["label_word_int"].numpy(), expected, rtol=1e-6)
    # The members differ (else the mean would test nothing).
    assert not torch.equal(members[0]["label_word_int"], members[1]["label_word_int"])


def test_lazy_ensemble_equals_the_loaded_one_and_holds_no_member(store):
    # Reference: the ensemble with every member loaded (itself checked against the members
    # called directly above); the lazy one runs the same members, loaded per call.
    x = torch.from_numpy(sounds(3, 800, 20000, seed=7)[:, 0].astype(np.float32))
    loaded = phaselocknet.load_ensemble(VARIANT, spikes="mean")
    lazy = phaselocknet.load_ensemble(VARIANT, spikes="mean", lazy=True)
    assert lazy.lazy and len(lazy.members) == 0 and sum(1 for _ in lazy.parameters()) == 0
    assert (lazy.member_ids, lazy.heads, lazy.expected_input_shape()) == (
        loaded.member_ids, loaded.heads, loaded.expected_input_shape())
    assert lazy.labels("label_word_int") == loaded.labels("label_word_int")
    with torch.no_grad():
        assert torch.equal(lazy(x)["label_word_int"], loaded(x)["label_word_int"])
        for a, b in zip(lazy.member_logits(x), loaded.member_logits(x)):
            assert torch.equal(a["label_word_int"], b["label_word_int"])


def test_ensemble_member_logits_with_example_seeds_equal_each_member_alone(store, monkeypatch):
    _, paths = store
    ensemble = phaselocknet.load_ensemble(paths)  # spikes sampled
    x = torch.from_numpy(sounds(2, 800, 20000, seed=6)[:, 0].astype(np.float32))
    seeds = [11, 12]
    calls = []
    original = PhaselocknetModel.nerve_representation
    monkeypatch.setattr(PhaselocknetModel, "nerve_representation",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    with torch.no_grad():
        shared = ensemble.member_logits(x, example_seeds=seeds)
        assert len(calls) == 1  # one front end for the three members
        alone = [phaselocknet.load(p)(x, example_seeds=seeds) for p in paths]
    for s, a in zip(shared, alone):
        assert torch.equal(s["label_word_int"], a["label_word_int"])


def test_ensemble_without_seeds_gives_members_independent_draws(store):
    _, paths = store
    ensemble = phaselocknet.load_ensemble(paths)
    from phaselocknet.sharing import front_end_groups

    assert front_end_groups(list(ensemble.members), same_seeds=False) == [[0], [1], [2]]
    assert front_end_groups(list(ensemble.members), same_seeds=True) == [[0, 1, 2]]


def test_missing_members_are_named_before_loading(store):
    with pytest.raises(ModelNotFoundError, match="arch_a, test_task/other/arch_b"):
        phaselocknet.load_ensemble(["test_task/other/arch_a", "test_task/other/arch_b"])
    with pytest.raises(ValueError, match="no such variant"):
        phaselocknet.load_ensemble("test_task/nothing_here")


def test_members_must_take_the_same_input(tmp_path):
    a = save_bundle(word_waveform_model(), tmp_path, "a")
    b = save_bundle(word_nervegram_model(), tmp_path, "b")
    with pytest.raises(ValueError, match="different inputs"):
        phaselocknet.load_ensemble([a, b])


def test_run_command_takes_a_variant(store, tmp_path, capsys):
    import json

    import soundfile

    from phaselocknet.cli import main

    wav = tmp_path / "s.wav"
    soundfile.write(wav, sounds(1, 800, 20000, seed=7)[0, 0], 20000, subtype="FLOAT")
    assert main(["run", VARIANT, str(wav), "--spikes", "mean", "--json", "--top", "11"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["members"] == [f"test/arch0{k}" for k in range(3)]
    probs = [row["probability"] for row in result["predictions"]["label_word_int"]]
    assert abs(sum(probs) - 1) < 1e-5 and probs == sorted(probs, reverse=True)


# ---------------------------------------------------------------- eval
def test_eval_shared_front_end_is_bit_identical_to_unshared(store, tmp_path, monkeypatch):
    _, paths = store
    data = write_signal_hdf5(tmp_path / "d.h5", sounds(10, 700, 16000, seed=8), 16000)
    calls = []
    original = PhaselocknetModel.nerve_representation
    monkeypatch.setattr(PhaselocknetModel, "nerve_representation",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    outputs = {}
    for share in (True, False):
        calls.clear()
        out = tmp_path / f"share_{share}.csv"
        evaluate(EvalOptions(bundles=[VARIANT], data=[str(data)], out=out, spikes="mean", probs=True, ensemble=True,
                             batch_size=4, workers=0, seed=SEED, progress=False, share_front_end=share))
        outputs[share] = (out.read_text(), dict(np.load(out.with_suffix(".probs.npz"))), len(calls))
    assert outputs[True][0] == outputs[False][0]
    assert outputs[True][1].keys() == outputs[False][1].keys()
    for key in outputs[True][1]:
        assert np.array_equal(outputs[True][1][key], outputs[False][1][key], equal_nan=True), key
    assert outputs[True][2] == 3 and outputs[False][2] == 9  # 3 batches: once per batch vs once per model
