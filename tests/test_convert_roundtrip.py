"""convert_model_dir on small hand-written models: round trip, determinism, skipping, labels,
and every refusal (with no bundle left behind).

Checkpoints come from tf_reference.make_checkpoint (Keras 2, mixed_float16, Adam step,
randomized weights, save_weights) at small input sizes, so each takes a second or two.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import NERVEGRAM_COCHLEA, WORD_LABELS_CSV, config_with, tiny_localization_arch, tiny_word_arch

tf = pytest.importorskip("tensorflow")

import tf_reference as ref  # noqa: E402

import phaselocknet  # noqa: E402
from phaselocknet.bundle import read_bundle, read_metadata  # noqa: E402
from phaselocknet_convert import CONVERTER_VERSION, ConversionError, convert_model_dir  # noqa: E402
from phaselocknet_convert.convert import CONVERTED, UP_TO_DATE, ManifestMismatchWarning  # noqa: E402

pytestmark = pytest.mark.tensorflow

WORD_INPUT = (50, 200, 3)  # TF layout [freq, time, spont] of the tiny word model
MODEL_ID = "spkr_word_recognition/tiny/arch_t"


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _word_config(n_word: int = 11) -> tuple[dict, list]:
    return config_with(NERVEGRAM_COCHLEA, {"label_word_int": n_word, "label_speaker_int": 7}), tiny_word_arch(200)


@pytest.fixture(scope="module")
def word_source(tmp_path_factory):
    config, arch = _word_config()
    return ref.make_checkpoint(config, arch, tmp_path_factory.mktemp("src") / "arch_t", seed=11, input_shape=WORD_INPUT)


@pytest.fixture
def word_dir(word_source, tmp_path):
    """A private copy of the tiny word model directory, free to damage."""
    return shutil.copytree(word_source, tmp_path / "arch_t")


def _no_bundle_written(out_dir) -> bool:
    return not out_dir.exists() or not any(p.is_file() for p in out_dir.rglob("*"))


# ------------------------------------------------------------------ round trip
def test_tensors_are_the_checkpoints_in_torch_layout(word_dir, tmp_path):
    result = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert result.status == CONVERTED
    assert result.bundle == tmp_path / "out" / f"{MODEL_ID}.safetensors"
    bundle = read_bundle(result.bundle)
    reader = tf.train.load_checkpoint(str(word_dir / "ckpt_BEST"))
    by_name = {full: key for key, full in ref.checkpoint_full_names(word_dir / "ckpt_BEST").items()}
    ckpt = lambda name: reader.get_tensor(by_name[name])  # noqa: E731
    t = {name: tensor.numpy() for name, tensor in bundle.tensors.items()}
    np.testing.assert_array_equal(t["block0_conv.weight"], np.transpose(ckpt("block0_conv/kernel"), (3, 2, 0, 1)))
    np.testing.assert_array_equal(t["block0_conv.bias"], ckpt("block0_conv/bias"))
    np.testing.assert_array_equal(t["block0_norm.weight"], ckpt("block0_norm/gamma"))
    np.testing.assert_array_equal(t["block0_norm.bias"], ckpt("block0_norm/beta"))
    np.testing.assert_array_equal(t["fc_intermediate_dense.weight"], ckpt("fc_intermediate_dense/kernel").T)
    for head in ("label_word_int", "label_speaker_int"):
        np.testing.assert_array_equal(t[f"fc_top.{head}.weight"], ckpt(f"fc_top_{head}/kernel").T)
        np.testing.assert_array_equal(t[f"fc_top.{head}.bias"], ckpt(f"fc_top_{head}/bias"))
    assert bundle.model_id == MODEL_ID and bundle.converter_version == CONVERTER_VERSION
    assert bundle.source_sha256 == result.source_sha256
    assert bundle.source_sha256 == {name: _sha256(word_dir / name) for name in (
        "config.json", "arch.json", "ckpt_BEST.index", "ckpt_BEST.data-00000-of-00001")}
    assert result.bundle_sha256 == _sha256(result.bundle)
    # The optimizer state is left out: the bundle holds exactly the network's tensors.
    assert sorted(bundle.tensors) == sorted(phaselocknet.load(result.bundle).network.state_dict())


def test_converted_tiny_models_match_tensorflow(word_dir, tmp_path):
    """Parity in miniature (the full-size families are in test_convert_parity.py)."""
    config, arch = _word_config()
    result = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    x = ref.example_input(config, arch, batch=2, seed=3, input_shape=WORD_INPUT)
    want = ref.tf_logits(word_dir, x, excerpt_offset=None)
    model = phaselocknet.load(result.bundle, spikes="mean")
    with torch.no_grad():
        got = model(torch.from_numpy(ref.tf_to_runtime(x, "nervegram")))
    for head, logits in want.items():
        scale = 1 + np.abs(logits).max()
        np.testing.assert_allclose(got[head].numpy(), logits, rtol=0, atol=1e-4 * scale)
        np.testing.assert_array_equal(got[head].numpy().argmax(-1), logits.argmax(-1))


def test_grouped_conv_batch_norm_single_head_localization_matches_tensorflow(tmp_path):
    config = config_with(NERVEGRAM_COCHLEA, {"label_loc_int": 504})
    arch = tiny_localization_arch()
    model_dir = ref.make_checkpoint(config, arch, tmp_path / "loc", seed=5)
    result = convert_model_dir(model_dir, tmp_path / "out", model_id="sound_localization/tiny/loc")
    x = ref.example_input(config, arch, batch=2, seed=4)
    want = ref.tf_logits(model_dir, x, excerpt_offset=None)["label_loc_int"]
    model = phaselocknet.load(result.bundle, spikes="mean")
    with torch.no_grad():
        got = model(torch.from_numpy(ref.tf_to_runtime(x, "nervegram")))["label_loc_int"].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))
    assert np.abs(want[0] - want[1]).max() > 1e-2  # the comparison is not vacuous


# ------------------------------------------------------- determinism and skipping
def test_converting_twice_gives_byte_identical_bundles(word_dir, tmp_path):
    first = convert_model_dir(word_dir, tmp_path / "a", model_id=MODEL_ID)
    second = convert_model_dir(word_dir, tmp_path / "b", model_id=MODEL_ID)
    assert first.bundle.read_bytes() == second.bundle.read_bytes()
    forced = convert_model_dir(word_dir, tmp_path / "a", model_id=MODEL_ID, force=True)
    assert forced.status == CONVERTED and forced.bundle_sha256 == first.bundle_sha256


def test_up_to_date_bundle_is_skipped_unless_forced_or_sources_change(word_dir, tmp_path):
    out = tmp_path / "out"
    first = convert_model_dir(word_dir, out, model_id=MODEL_ID)
    stamp = first.bundle.stat().st_mtime_ns
    again = convert_model_dir(word_dir, out, model_id=MODEL_ID)
    assert again.status == UP_TO_DATE and again.bundle_sha256 == first.bundle_sha256
    assert first.bundle.stat().st_mtime_ns == stamp  # not rewritten
    forced = convert_model_dir(word_dir, out, model_id=MODEL_ID, force=True)
    assert forced.status == CONVERTED
    # Same model, reformatted config.json: a different source, so converted again.
    config = json.loads((word_dir / "config.json").read_text())
    (word_dir / "config.json").write_text(json.dumps(config))
    changed = convert_model_dir(word_dir, out, model_id=MODEL_ID)
    assert changed.status == CONVERTED
    assert json.loads(read_metadata(changed.bundle)["source_sha256"])["config.json"] == _sha256(word_dir / "config.json")


def test_bundle_of_another_converter_version_is_not_up_to_date(word_dir, tmp_path, monkeypatch):
    first = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    monkeypatch.setattr("phaselocknet_convert.convert.CONVERTER_VERSION", CONVERTER_VERSION + ".next")
    again = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert again.status == CONVERTED and again.bundle_sha256 != first.bundle_sha256
    assert read_metadata(again.bundle)["converter_version"] == CONVERTER_VERSION + ".next"


def test_damaged_existing_bundle_is_not_taken_as_up_to_date(word_dir, tmp_path):
    first = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    first.bundle.write_bytes(first.bundle.read_bytes()[:100])
    again = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert again.status == CONVERTED and again.bundle_sha256 == first.bundle_sha256


# ------------------------------------------------------------------ labels
def _write_labels(path, words):
    path.write_text("word,wsn,cv\n" + "".join(f"{w},{k}.0,\n" for k, w in enumerate(words)) + "unused,,1.0\n")
    return path


def test_word_labels_are_embedded_and_change_up_to_date(word_dir, tmp_path):
    words = [""] + [f"word{k}" for k in range(1, 11)]
    csv = _write_labels(tmp_path / "words.csv", words)
    out = tmp_path / "out"
    plain = convert_model_dir(word_dir, out, model_id=MODEL_ID)
    labelled = convert_model_dir(word_dir, out, model_id=MODEL_ID, word_labels=csv)
    assert labelled.status == CONVERTED and labelled.bundle_sha256 != plain.bundle_sha256
    model = phaselocknet.load(labelled.bundle)
    assert model.labels("label_word_int") == words
    assert model.labels("label_speaker_int") == list(range(7))  # speakers stay indices
    assert convert_model_dir(word_dir, out, model_id=MODEL_ID, word_labels=csv).status == UP_TO_DATE


def test_word_labels_of_the_wrong_size_are_refused(word_dir, tmp_path):
    csv = _write_labels(tmp_path / "words.csv", ["", "a", "b"])
    with pytest.raises(ConversionError, match="--word-labels.*3 word classes.*11"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID, word_labels=csv)
    assert _no_bundle_written(tmp_path / "out")


@pytest.mark.skipif(not WORD_LABELS_CSV.is_file(), reason=f"{WORD_LABELS_CSV} not found (../shared)")
def test_authors_word_int_encoding_csv(tmp_path):
    config, arch = _word_config(n_word=794)
    model_dir = ref.make_checkpoint(config, arch, tmp_path / "w794", seed=2, input_shape=WORD_INPUT)
    result = convert_model_dir(model_dir, tmp_path / "out", model_id="w794", word_labels=WORD_LABELS_CSV)
    labels = phaselocknet.load(result.bundle).labels("label_word_int")
    assert len(labels) == 794 and labels[0] == "" and labels[1] == "ability"


# --------------------------------------------------------------- refusals
def _set_arch(model_dir, arch):
    (model_dir / "arch.json").write_text(json.dumps(arch))


def test_checkpoint_of_another_architecture(word_dir, tmp_path):
    arch = tiny_word_arch(200)
    conv = next(layer for layer in arch if layer["args"]["name"] == "block0_conv")
    conv["args"]["filters"] = 5
    _set_arch(word_dir, arch)
    with pytest.raises(ConversionError, match=r"block0_conv.*shape \[2, 8, 3, 4\].*expected \(5, 3, 2, 8\)"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert _no_bundle_written(tmp_path / "out")


def test_checkpoint_missing_a_layer(word_dir, tmp_path):
    arch = tiny_word_arch(200)
    at = next(i for i, layer in enumerate(arch) if layer["args"]["name"] == "block0_norm")
    arch.insert(at + 1, {"layer_type": "tf.keras.layers.LayerNormalization",
                         "args": {"axis": -1, "center": True, "scale": True, "name": "block0_norm_b"}})
    _set_arch(word_dir, arch)
    with pytest.raises(ConversionError, match="no variables for Keras layer 'block0_norm_b'"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert _no_bundle_written(tmp_path / "out")


def test_truncated_data_file(word_dir, tmp_path):
    data = word_dir / "ckpt_BEST.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size * 2 // 3])
    with pytest.raises(ConversionError, match="ckpt_BEST.data-00000-of-00001.*truncated or damaged"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert _no_bundle_written(tmp_path / "out")


def test_flipped_byte_in_data_file(word_dir, tmp_path):
    data = word_dir / "ckpt_BEST.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(ConversionError, match="truncated or damaged"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert _no_bundle_written(tmp_path / "out")


def test_missing_checkpoint_file(word_dir, tmp_path):
    (word_dir / "ckpt_BEST.index").unlink()
    with pytest.raises(ConversionError, match="missing ckpt_BEST.index"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert _no_bundle_written(tmp_path / "out")


def test_failed_forced_conversion_keeps_the_previous_bundle(word_dir, tmp_path):
    good = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    before = good.bundle.read_bytes()
    data = word_dir / "ckpt_BEST.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ConversionError):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID, force=True)
    assert good.bundle.read_bytes() == before
    assert [p.name for p in good.bundle.parent.iterdir()] == [good.bundle.name]  # no temporary left


def _manifest_for(word_dir, **overrides):
    entry = {"config_sha256": _sha256(word_dir / "config.json"), "arch_sha256": _sha256(word_dir / "arch.json")}
    entry.update(overrides)
    return {MODEL_ID: entry}


def test_config_not_matching_the_manifest_is_refused_with_strict(word_dir, tmp_path):
    manifest = _manifest_for(word_dir, config_sha256="0" * 64)
    with pytest.raises(ConversionError, match=r"config.json differs from the published one.*--strict"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID, manifest=manifest, strict=True)
    assert _no_bundle_written(tmp_path / "out")


def test_config_not_matching_the_manifest_warns_without_strict(word_dir, tmp_path):
    manifest = _manifest_for(word_dir, arch_sha256="f" * 64)
    with pytest.warns(ManifestMismatchWarning, match="arch.json differs"):
        result = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID, manifest=manifest)
    assert result.status == CONVERTED and "arch.json differs" in result.warnings[0]


def test_matching_manifest_passes_strict_and_unknown_id_does_not(word_dir, tmp_path):
    result = convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID, manifest=_manifest_for(word_dir), strict=True)
    assert result.status == CONVERTED and result.warnings == []
    with pytest.raises(ConversionError, match="not in the manifest"):
        convert_model_dir(word_dir, tmp_path / "out2", model_id="other/id", manifest=_manifest_for(word_dir), strict=True)


def test_arch_that_does_not_build_is_refused_before_reading_the_checkpoint(word_dir, tmp_path):
    arch = tiny_word_arch(200)
    arch[2]["args"]["dilation_rate"] = [2, 1]
    _set_arch(word_dir, arch)
    with pytest.raises(ConversionError, match=r"do not build a model.*block0_conv.*dilation_rate"):
        convert_model_dir(word_dir, tmp_path / "out", model_id=MODEL_ID)
    assert _no_bundle_written(tmp_path / "out")
