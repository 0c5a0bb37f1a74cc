"""The phaselocknet-convert command on a small tree of model directories."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from conftest import NERVEGRAM_COCHLEA, config_with, tiny_word_arch

tf = pytest.importorskip("tensorflow")

import tf_reference as ref  # noqa: E402

from phaselocknet.verify import verify_bundles  # noqa: E402
from phaselocknet_convert.cli import main  # noqa: E402

pytestmark = pytest.mark.tensorflow

GOOD = ("word_recognition/IHC3000/arch_a", "word_recognition/IHC0050/arch_b")
BROKEN = "word_recognition/IHC0050/arch_c"


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    config = config_with(NERVEGRAM_COCHLEA, {"label_word_int": 11, "label_speaker_int": 7})
    return ref.make_checkpoint(config, tiny_word_arch(200), tmp_path_factory.mktemp("cli") / "m", seed=21,
                               input_shape=(50, 200, 3))


@pytest.fixture
def tree(source, tmp_path):
    """models/<task>/<variant>/<arch>: two good models and one with a truncated .data file."""
    root = tmp_path / "models"
    for model_id in (*GOOD, BROKEN):
        shutil.copytree(source, root / model_id)
    data = root / BROKEN / "ckpt_BEST.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:500])
    return root


def _published_manifest(tree, path, **overrides) -> str:
    models = []
    for model_id in (*GOOD, BROKEN):
        models.append({"id": model_id, "config_sha256": _sha256(tree / model_id / "config.json"),
                       "arch_sha256": _sha256(tree / model_id / "arch.json"), "bundle_sha256": None,
                       **overrides.get(model_id, {})})
    path.write_text(json.dumps({"format": "phaselocknet-weights-manifest", "format_version": 1, "models": models}))
    return str(path)


def test_tree_conversion_summary_and_manifest(tree, tmp_path, capsys):
    out = tmp_path / "bundles"
    manifest = _published_manifest(tree, tmp_path / "weights_manifest.json")
    code = main([str(tree), "--root", str(tree), "--out", str(out), "--manifest", manifest])
    captured = capsys.readouterr()
    assert code == 1  # one model failed
    assert "2 converted, 0 up to date, 1 failed" in captured.out
    broken_line = next(line for line in captured.out.splitlines() if line.startswith(BROKEN))
    assert "failed" in broken_line and "truncated or damaged" in broken_line
    for model_id in GOOD:
        assert (out / f"{model_id}.safetensors").is_file()
    assert not (out / f"{BROKEN}.safetensors").exists()

    written = json.loads((out / "manifest.json").read_text())
    entries = {entry["id"]: entry for entry in written["models"]}
    assert sorted(entries) == sorted(GOOD)
    for model_id in GOOD:
        assert entries[model_id]["bundle_sha256"] == _sha256(out / f"{model_id}.safetensors")
        assert entries[model_id]["heads"] == {"label_speaker_int": 7, "label_word_int": 11}
    assert verify_bundles(out).ok

    # Again: the good ones are up to date, the broken one still fails.
    code = main([str(tree), "--root", str(tree), "--out", str(out), "--manifest", manifest])
    assert code == 1
    assert "0 converted, 2 up to date, 1 failed" in capsys.readouterr().out
    # --force converts again, to the same bytes.
    code = main([str(tree / GOOD[0]), "--root", str(tree), "--out", str(out), "--manifest", manifest, "--force"])
    assert code == 0
    assert "1 converted, 0 up to date, 0 failed" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text()) == written


def test_glob_and_ids_without_root(tree, tmp_path, capsys):
    out = tmp_path / "bundles"
    code = main([str(tree / "word_recognition" / "IHC3000" / "arch_*"), "--out", str(out), "--manifest",
                 _published_manifest(tree, tmp_path / "m.json")])
    assert code == 0
    assert (out / "arch_a.safetensors").is_file()  # id = directory name
    # Not in the manifest under that id: converted with a warning, shown in the summary.
    assert "warning" in capsys.readouterr().out


def test_strict_refuses_a_config_that_differs_from_the_manifest(tree, tmp_path, capsys):
    out = tmp_path / "bundles"
    manifest = _published_manifest(tree, tmp_path / "m.json", **{GOOD[1]: {"config_sha256": "0" * 64}})
    code = main([str(tree / GOOD[0]), str(tree / GOOD[1]), "--root", str(tree), "--out", str(out),
                 "--manifest", manifest, "--strict"])
    text = capsys.readouterr().out
    assert code == 1 and "1 converted, 0 up to date, 1 failed" in text
    assert "config.json differs from the published one" in text and "--strict" in text
    assert not (out / f"{GOOD[1]}.safetensors").exists()


def test_argument_naming_no_model_is_a_failure_not_a_crash(tree, tmp_path, capsys):
    out = tmp_path / "bundles"
    code = main([str(tmp_path / "nowhere"), str(tree / GOOD[0]), "--root", str(tree), "--out", str(out),
                 "--manifest", _published_manifest(tree, tmp_path / "m.json")])
    text = capsys.readouterr().out
    assert code == 1 and "does not exist" in text and "1 converted" in text


def test_module_entry_point_and_manifest_subcommand(tmp_path, capsys):
    help_text = subprocess.run([sys.executable, "-m", "phaselocknet_convert", "--help"], capture_output=True,
                               text=True, timeout=120)
    assert help_text.returncode == 0 and "--word-labels" in help_text.stdout and "--strict" in help_text.stdout
    assert main(["manifest", str(tmp_path / "none")]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_a_flipped_weight_byte_is_rewritten_and_the_manifest_pins_the_good_sha256(tree, tmp_path, capsys):
    out = tmp_path / "bundles"
    manifest = _published_manifest(tree, tmp_path / "m.json")
    argv = [str(tree / GOOD[0]), "--root", str(tree), "--out", str(out), "--manifest", manifest]
    assert main(argv) == 0
    target = out / f"{GOOD[0]}.safetensors"
    good_sha256 = _sha256(target)
    data = bytearray(target.read_bytes())
    data[8 + int.from_bytes(data[:8], "little") + 100] ^= 0x01  # a byte inside the first tensor
    target.write_bytes(bytes(data))
    assert _sha256(target) != good_sha256
    capsys.readouterr()
    # Its metadata (sources, converter version) still matches: only the checksum tells it is damaged.
    assert main(argv) == 0
    assert "1 converted, 0 up to date, 0 failed" in capsys.readouterr().out
    # Conversion is deterministic (see --force above), so the rewrite restores the original bytes.
    assert _sha256(target) == good_sha256
    pinned = {e["id"]: e["bundle_sha256"] for e in json.loads((out / "manifest.json").read_text())["models"]}
    assert pinned == {GOOD[0]: good_sha256}
    assert verify_bundles(out).ok
