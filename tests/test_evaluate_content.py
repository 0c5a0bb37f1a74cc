"""Resume and merge by content: a data file rewritten in place (same path, same example count)
is refused, with --overwrite as the fix; shards computed from different contents do not merge.
Also: eval flags examples whose outputs are non-finite instead of reporting class 0."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

pytest.importorskip("h5py")

import phaselocknet
from phaselocknet.cli import main

from evaluate_sets import nervegrams, save_bundle, word_nervegram_model, write_nervegram_hdf5


@pytest.fixture
def setup(tmp_path):
    bundle = save_bundle(word_nervegram_model(), tmp_path, "word_nervegram")
    data = write_nervegram_hdf5(tmp_path / "n.h5", nervegrams(6, (3, 50, 200), seed=1))
    return tmp_path, bundle, data


def test_a_rewritten_data_file_is_refused_on_rerun(setup, capsys):
    tmp_path, bundle, data = setup
    out = tmp_path / "out.csv"
    assert main(["eval", str(bundle), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    write_nervegram_hdf5(data, nervegrams(6, (3, 50, 200), seed=2))  # same path, same count, new content
    capsys.readouterr()
    assert main(["eval", str(bundle), "--data", str(data), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data_content" in err and "--overwrite" in err
    assert main(["eval", str(bundle), "--data", str(data), "--out", str(out), "--no-progress", "--overwrite"]) == 0


def test_shards_of_different_contents_do_not_merge(setup, capsys):
    tmp_path, bundle, data = setup
    common = [str(bundle), "--data", str(data), "--no-progress"]
    assert main(["eval", *common, "--shard", "0/2", "--out", str(tmp_path / "s0.csv")]) == 0
    write_nervegram_hdf5(data, nervegrams(6, (3, 50, 200), seed=3))
    assert main(["eval", *common, "--shard", "1/2", "--out", str(tmp_path / "s1.csv")]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "s0.csv"), str(tmp_path / "s1.csv"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "data_content" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_eval_flags_non_finite_outputs(tmp_path):
    model = phaselocknet.load(save_bundle(word_nervegram_model(), tmp_path, "model"), spikes="mean")
    with torch.no_grad():
        model.network.get_submodule("block0_conv").weight[0, 0, 0, 0] = float("nan")
    bundle = phaselocknet.save(model, tmp_path / "nan_model.safetensors", model_id="test/nan_model")
    data = write_nervegram_hdf5(tmp_path / "n.h5", nervegrams(3, (3, 50, 200), seed=1))
    out = tmp_path / "out.csv"
    assert main(["eval", str(bundle), "--data", str(data), "--out", str(out), "--no-progress"]) == 3
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row in rows:
        assert "non-finite output" in row["error"] and "block0_conv" in row["error"]
        predictions = [v for k, v in row.items() if "label_word_int" in k]
        assert predictions and all(v == "" for v in predictions)  # no "class 0"


def test_stale_partials_of_a_killed_assembly_are_removed(setup):
    tmp_path, bundle, data = setup
    out = tmp_path / "out.csv"
    stale = [tmp_path / ".out.csv.abc123.partial", tmp_path / ".out.json.def456.partial"]
    for path in stale:
        path.write_text("half-written")
    keep = tmp_path / ".other.csv.x.partial"  # another output's: not ours to remove
    keep.write_text("x")
    assert main(["eval", str(bundle), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    assert not any(path.exists() for path in stale) and keep.exists()
