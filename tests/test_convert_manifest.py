"""weights_manifest.json: one entry per published model, regenerated identically from ../shared.

No TensorFlow needed: the manifest is built from config.json/arch.json with the runtime.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import PUBLISHED, REPO, needs_shared
from phaselocknet.verify import read_manifest
from phaselocknet_convert.cli import main
from phaselocknet_convert.manifest import build_manifest, dumps

pytestmark = needs_shared
COMMITTED = REPO / "runtime" / "phaselocknet" / "weights_manifest.json"


@pytest.fixture(scope="module")
def manifest():
    return build_manifest(PUBLISHED)


def test_committed_manifest_is_current(manifest):
    assert COMMITTED.read_text() == dumps(manifest), (
        "weights_manifest.json is stale: phaselocknet-convert manifest ../shared/phaselocknet_models "
        "-o runtime/phaselocknet/weights_manifest.json"
    )


def test_one_entry_per_published_model(manifest):
    ids = [entry["id"] for entry in manifest["models"]]
    published = sorted(p.parent.relative_to(PUBLISHED).as_posix() for p in PUBLISHED.glob("*/*/*/config.json"))
    assert ids == published and len(ids) == 260 == manifest["n_models"]
    assert all(entry["bundle_sha256"] is None for entry in manifest["models"])
    for entry in manifest["models"][::37]:
        model_dir = PUBLISHED / entry["id"]
        assert entry["config_sha256"] == hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()
        assert entry["arch_sha256"] == hashlib.sha256((model_dir / "arch.json").read_bytes()).hexdigest()
        assert (entry["task"], entry["variant"], entry["arch"]) == tuple(entry["id"].split("/"))


# Facts per family from the paper's methods (input formats of the four model kinds), not the runtime.
FAMILIES = {
    "sound_localization/simplified_IHC3000/arch01": ("waveform", 50000.0, 60000, True, {"label_loc_int": 504}),
    "sound_localization/IHC0050/arch07": ("nervegram", 10000.0, 10000, True, {"label_loc_int": 504}),
    "word_recognition/IHC1000/arch0_0004": ("nervegram", 10000.0, 20000, False, {"label_word_int": 794}),
    "spkr_recognition/IHC0320/arch0_0016": ("nervegram", 10000.0, 20000, False, {"label_speaker_int": 433}),
    "spkr_word_recognition/simplified_IHC0050/arch0_0000": (
        "waveform", 20000.0, 40000, False, {"label_speaker_int": 433, "label_word_int": 794}),
}


@pytest.mark.parametrize("model_id", sorted(FAMILIES))
def test_model_facts(manifest, model_id):
    entry = next(e for e in manifest["models"] if e["id"] == model_id)
    kind, rate, length, binaural, heads = FAMILIES[model_id]
    assert (entry["input_kind"], entry["sample_rate"], entry["input_length"], entry["binaural"], entry["heads"]) == (
        kind, rate, length, binaural, heads)


def test_command_writes_the_same_bytes_and_verify_reads_it(tmp_path, capsys):
    out = tmp_path / "weights_manifest.json"
    assert main(["manifest", str(PUBLISHED), "-o", str(out)]) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()
    assert "260 models" in capsys.readouterr().err
    assert len(read_manifest(out)) == 260
    json.loads(out.read_text())  # plain JSON
