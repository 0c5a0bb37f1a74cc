"""Both of the authors' downloads give the same bundle: TF checkpoint -> the port's
``util.load_tf_model_checkpoint`` -> ckpt_BEST.pt -> bundle equals TF checkpoint -> our
converter -> bundle, tensor by tensor and bit for bit (tolerance 0: the same float32 values
moved between layouts, no arithmetic), for one model of each family of the port.

Checkpoints come from tf_reference.make_checkpoint (the authors' Keras-2 training format) for
the published config of each family with a small CNN of that family's layers, and with the
cheapest published arch.json of each task (port_reference); the port is the authors' own code
from ../shared.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import port_reference as pr
from conftest import needs_shared

tf = pytest.importorskip("tensorflow")

import tf_reference as ref  # noqa: E402

import phaselocknet  # noqa: E402
from phaselocknet_convert import convert_model_dir  # noqa: E402

pytestmark = [
    pytest.mark.tensorflow,
    needs_shared,
    pytest.mark.skipif(not pr.PORT.is_dir(), reason=f"the authors' port not found at {pr.PORT}"),
]


# Published archs for the nervegram families only: the waveform variants share those arch.json
# files (only the front end, which has no weights, differs), so they add time and no coverage.
CASES = [(family, False) for family in pr.FAMILIES] + [("localization_nervegram", True), ("speech_nervegram", True)]


@pytest.mark.parametrize("family, published", CASES, ids=[f"{f}-{'published' if p else 'small'}_arch" for f, p in CASES])
def test_pt_from_the_ports_tf_loader_gives_the_tf_bundle(family, published, tmp_path):
    tf_dir = pr.family_dir(tmp_path / "tf", family, published=published)
    config, arch = pr.write_model_files(tf_dir, family, published=published)
    ref.make_checkpoint(config, arch, tf_dir, seed=100 + list(pr.FAMILIES).index(family))

    pt_dir = pr.family_dir(tmp_path / "pt", family, published=published)
    pr.write_model_files(pt_dir, family, published=published)
    model = pr.port_model(pt_dir)
    _, util = pr.load_port()
    util.load_tf_model_checkpoint(model.perceptual_model, str(tf_dir / "ckpt_BEST"))
    util.save_model_checkpoint(model.perceptual_model, dir_model=str(pt_dir))
    assert not (pt_dir / "ckpt_BEST.index").exists()

    bundles = {
        kind: convert_model_dir(d, tmp_path / f"out_{kind}", model_id="m").bundle
        for kind, d in (("tf", tf_dir), ("pt", pt_dir))
    }
    from_tf, from_pt = (phaselocknet.load(bundles[k], spikes="mean").network.state_dict() for k in ("tf", "pt"))
    assert from_tf.keys() == from_pt.keys()
    largest = max(float((from_tf[k] - from_pt[k]).abs().max()) for k in from_tf)
    print(f"\n{pr.family_dir(tmp_path, family, published=published).relative_to(tmp_path)}: "
          f"{len(from_tf)} tensors compared, largest difference {largest}")
    assert all(torch.equal(from_tf[k], from_pt[k]) for k in from_tf)
    # Not vacuous: the weights are the checkpoint's random ones, not zeros or defaults.
    assert all(float(t.abs().max()) > 0 for k, t in from_tf.items() if k.endswith("weight"))
    shutil.rmtree(tmp_path, ignore_errors=True)
