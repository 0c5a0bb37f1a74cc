"""`phaselocknet eval --format authors` from an HDF5 set (no TensorFlow): EVAL_<name>.json as the
authors' util_evaluate.write_output_dict_to_file writes it, string metadata in the CSV and the
JSON, the localization label computed as their prepare_localization_example does, and their
13000-sample localization nervegrams excerpted by the model (--excerpt fixes the start here, so
the expected probabilities are the model's on that slice; tolerance 1e-5 for batch vs
one-example float32 rounding).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

h5py = __import__("pytest").importorskip("h5py")

import phaselocknet  # noqa: E402
from phaselocknet.cli import main as cli_main  # noqa: E402

AZIMUTH = np.array([35.0, 355.0, 0.0, 90.0])
ELEVATION = np.array([0.0, 20.0, 60.0, 10.0])
NAMES = [b"a.wav", b"bb.wav", b"c c.wav", b"d.wav"]


def test_authors_format_from_hdf5(tmp_path, localization_nervegram):
    config, arch = localization_nervegram
    torch.manual_seed(0)
    bundle = phaselocknet.save(phaselocknet.from_config(config, arch, spikes="mean"), tmp_path / "m.safetensors",
                               model_id="loc/m")
    rng = np.random.default_rng(0)
    stored = rng.uniform(0, 300, (4, 50, 13000, 3, 2)).astype(np.float32)  # authors' (n, freq, time, spont, ear)
    folder = tmp_path / "experiment_x"
    folder.mkdir()
    with h5py.File(folder / "stim.h5", "w") as handle:
        handle["nervegram_meanrates"] = stored
        handle["foreground_azimuth"] = AZIMUTH
        handle["foreground_elevation"] = ELEVATION
        handle["filename"] = np.array(NAMES)
    out = tmp_path / "out"
    status = cli_main(["eval", str(bundle), "--data", str(folder / "stim.h5"), "--out", str(out), "--format", "authors",
                       "--spikes", "mean", "--excerpt", "2500", "--workers", "0", "--no-progress", "--seed", "3"])
    assert status == 0
    with open(out / "phaselocknet_eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["filename"] for r in rows] == [n.decode() for n in NAMES]

    document = json.loads((out / "loc" / "m" / "EVAL_experiment_x.json").read_text())
    assert sorted(document) == ["filename", "foreground_azimuth", "foreground_elevation", "label_loc_int:labels_pred",
                                "label_loc_int:labels_true", "label_loc_int:probs_out"]
    assert document["filename"] == [n.decode() for n in NAMES]
    assert document["foreground_azimuth"] == AZIMUTH.tolist()
    assert document["label_loc_int:labels_true"] == [0 * 72 + 7, 2 * 72 + 71, 6 * 72 + 0, 1 * 72 + 18]
    probs = np.load(out / "loc" / "m" / document["label_loc_int:probs_out"])
    model = phaselocknet.load(bundle, spikes="mean", excerpt=2500)
    ours = torch.from_numpy(np.transpose(stored, (0, 4, 3, 1, 2)).copy())
    with torch.no_grad():
        direct = torch.softmax(model(ours[..., 2500:12500])["label_loc_int"], -1).numpy()
        centre = torch.softmax(model(ours[..., 1500:11500])["label_loc_int"], -1).numpy()
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-7)
    assert np.abs(centre - direct).max() > 1e-4  # the old centre trim would have been detected
    assert document["label_loc_int:labels_pred"] == direct.argmax(1).tolist()
