"""``phaselocknet verify``: a directory of bundles against a manifest (no TensorFlow needed)."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil

import pytest

import phaselocknet
from phaselocknet.verify import add_parser, verify_bundles

IDS = ("word_recognition/IHC3000/arch0_0001", "word_recognition/IHC3000/arch0_0002")


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(path, hashes: dict) -> None:
    # Written by hand (not by the converter) so the test pins the documented format.
    models = [{"id": model_id, "bundle_sha256": digest} for model_id, digest in sorted(hashes.items())]
    path.write_text(json.dumps({"format": "phaselocknet-weights-manifest", "format_version": 1, "models": models}))


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory, request):
    """Two bundles (different random weights) under their model-id paths, and manifest.json."""
    from conftest import NERVEGRAM_COCHLEA, config_with, tiny_word_arch

    config, arch = config_with(NERVEGRAM_COCHLEA, {"label_word_int": 11, "label_speaker_int": 7}), tiny_word_arch(200)
    root = tmp_path_factory.mktemp("bundles")
    hashes = {}
    for seed, model_id in enumerate(IDS):
        import torch

        torch.manual_seed(seed)
        model = phaselocknet.from_config(config, arch, spikes="mean")
        path = phaselocknet.save(model, root / f"{model_id}.safetensors", model_id=model_id, converter_version="test")
        hashes[model_id] = _sha256(path)
    _write_manifest(root / "manifest.json", hashes)
    return root


@pytest.fixture
def bundle_dir(good_dir, tmp_path):
    copy = tmp_path / "bundles"
    shutil.copytree(good_dir, copy)
    return copy


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _header_length(path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def test_intact_directory_verifies(bundle_dir):
    report = verify_bundles(bundle_dir)
    assert report.ok, report.to_dict()
    assert sorted(report.checked) == sorted(IDS)


def test_flipped_tensor_byte_is_caught(bundle_dir):
    path = bundle_dir / f"{IDS[0]}.safetensors"
    _flip(path, _header_length(path) + 100)  # inside the first tensor's data
    report = verify_bundles(bundle_dir)
    assert not report.ok
    assert [model_id for model_id, _ in report.corrupt] == [IDS[0]]
    assert "checksum" in report.corrupt[0][1]
    assert report.checked == [IDS[1]]


def test_flipped_metadata_byte_outside_the_content_checksum_is_caught_by_the_file_hash(bundle_dir):
    # converter_version is not part of content_sha256; only the manifest's file hash sees it.
    path = bundle_dir / f"{IDS[1]}.safetensors"
    offset = path.read_bytes().index(b'"converter_version":"test"') + len(b'"converter_version":"t')
    _flip(path, offset)
    phaselocknet.bundle.read_bundle(path)  # still a self-consistent bundle
    report = verify_bundles(bundle_dir)
    assert not report.ok
    assert [m[0] for m in report.mismatched] == [IDS[1]]
    assert report.mismatched[0][2] == _sha256(path)


def test_missing_and_extra_files_are_reported(bundle_dir):
    (bundle_dir / f"{IDS[0]}.safetensors").unlink()
    shutil.copy(bundle_dir / f"{IDS[1]}.safetensors", bundle_dir / "stray.safetensors")
    report = verify_bundles(bundle_dir)
    assert report.missing == [IDS[0]]
    # A copy under another name is both unlisted and holds another model's id.
    assert [m for m, _ in report.corrupt] == ["stray"] and "holds model" in report.corrupt[0][1]
    assert not report.ok


def test_extra_intact_bundle_is_reported(bundle_dir, good_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["id"] != IDS[1]]
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    report = verify_bundles(bundle_dir)
    assert report.extra == [IDS[1]] and not report.ok


def test_separate_manifest_and_null_hashes(bundle_dir, tmp_path):
    published = tmp_path / "weights_manifest.json"
    _write_manifest(published, {IDS[0]: None, IDS[1]: None})
    report = verify_bundles(bundle_dir, published)
    # Intact bundles the manifest has no hash for are listed, not failures.
    assert report.ok and sorted(report.unpinned) == sorted(IDS) and report.checked == []


def test_no_manifest_is_an_error(bundle_dir):
    (bundle_dir / "manifest.json").unlink()
    report = verify_bundles(bundle_dir)
    assert not report.ok and "no manifest" in report.problems[0]


def test_foreign_manifest_is_an_error(bundle_dir, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"models": []}))
    report = verify_bundles(bundle_dir, other)
    assert not report.ok and "not a phaselocknet manifest" in report.problems[0]


def _run(argv) -> int:
    parser = argparse.ArgumentParser(prog="phaselocknet")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_subcommand_exit_status(bundle_dir, capsys):
    assert _run(["verify", str(bundle_dir)]) == 0
    assert "OK: 2 verified" in capsys.readouterr().out
    path = bundle_dir / f"{IDS[0]}.safetensors"
    _flip(path, path.stat().st_size - 1)
    assert _run(["verify", str(bundle_dir)]) == 1
    err = capsys.readouterr().err
    assert "CORRUPT" in err and IDS[0] in err and "FAILED" in err


def test_subcommand_json_output(bundle_dir, capsys):
    (bundle_dir / f"{IDS[1]}.safetensors").unlink()
    assert _run(["verify", str(bundle_dir), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["missing"] == [IDS[1]]


def test_phaselocknet_command_has_verify(bundle_dir, capsys):
    from phaselocknet.cli import main

    assert main(["verify", str(bundle_dir), "--manifest", str(bundle_dir / "manifest.json")]) == 0
    (bundle_dir / f"{IDS[0]}.safetensors").unlink()
    assert main(["verify", str(bundle_dir)]) == 1
