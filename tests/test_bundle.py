"""Bundles: round trip, determinism, and clear errors for damaged or foreign files."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import phaselocknet
from phaselocknet.bundle import FORMAT_NAME, read_metadata


@pytest.fixture
def saved(tmp_path, tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    torch.manual_seed(0)
    model = phaselocknet.from_config(config, arch, spikes="mean", labels={"label_word_int": [f"w{k}" for k in range(11)]})
    path = phaselocknet.save(model, tmp_path / "tiny.safetensors", model_id="tests/tiny")
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded = phaselocknet.load(path, spikes="mean")
    x = torch.rand(2, 3, 50, 200) * 200
    expected, got = model(x), loaded(x)
    assert expected.keys() == got.keys()
    for head in expected:
        assert torch.equal(expected[head], got[head])
    assert loaded.model_id == "tests/tiny"
    assert loaded.labels("label_word_int")[4] == "w4"
    assert loaded.config == model.config and loaded.arch == model.arch


def test_bundle_is_a_standard_safetensors_file(saved):
    model, path = saved
    with safe_open(str(path), framework="pt") as handle:
        names = set(handle.keys())
        metadata = handle.metadata()
    assert names == set(model.network.state_dict())
    assert metadata["format"] == FORMAT_NAME
    assert json.loads(metadata["config_json"]) == model.config
    # Filter coefficients and pooling windows are derived from the config, not stored.
    assert not any("window" in name or "fir" in name for name in names)


def test_saving_twice_is_byte_identical(saved, tmp_path):
    model, path = saved
    again = phaselocknet.save(model, tmp_path / "again.safetensors", model_id="tests/tiny")
    assert path.read_bytes() == again.read_bytes()


def test_truncated_bundle_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 1000])
    with pytest.raises(phaselocknet.BundleError, match="truncated"):
        phaselocknet.load(truncated)


def test_flipped_weight_byte_is_refused(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(phaselocknet.BundleError, match="checksum mismatch"):
        phaselocknet.load(tampered)


def test_edited_config_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    config = json.loads(header["__metadata__"]["config_json"])
    config["n_classes_dict"]["label_word_int"] = 11  # same value, re-serialised differently
    header["__metadata__"]["config_json"] = json.dumps(config, indent=1)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    edited = tmp_path / "edited.safetensors"
    edited.write_bytes(struct.pack("<Q", len(new_header)) + new_header + data[8 + header_len :])
    with pytest.raises(phaselocknet.BundleError, match="checksum mismatch"):
        phaselocknet.load(edited)


def test_foreign_safetensors_file_is_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(phaselocknet.BundleError, match="not a phaselocknet bundle"):
        phaselocknet.load(foreign)


def test_not_a_safetensors_file_is_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(phaselocknet.BundleError, match="not a readable safetensors file"):
        read_metadata(junk)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(phaselocknet.BundleError, match="no bundle at"):
        phaselocknet.load(tmp_path / "absent.safetensors")


def test_tensors_that_do_not_match_arch_are_refused(saved, tmp_path, tiny_word_nervegram):
    model, _ = saved
    config, arch = tiny_word_nervegram
    arch = json.loads(json.dumps(arch))
    arch[2]["args"]["filters"] = 5  # block0_conv now has 5 filters: stored tensors no longer fit
    other = phaselocknet.from_config(config, arch)
    state = {k: v for k, v in model.network.state_dict().items()}
    from phaselocknet.bundle import write_bundle

    path = write_bundle(tmp_path / "mismatch.safetensors", tensors=state, model_id="x", config=config, arch=other.arch)
    with pytest.raises(phaselocknet.BundleError, match="block0_conv.weight"):
        phaselocknet.load(path)


def test_save_needs_a_model_id(tiny_word_nervegram, tmp_path):
    model = phaselocknet.from_config(*tiny_word_nervegram)
    with pytest.raises(ValueError, match="model_id"):
        phaselocknet.save(model, tmp_path / "x.safetensors")
