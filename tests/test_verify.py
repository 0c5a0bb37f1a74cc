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


def _status(report) -> dict:
    return {check.model_id: check.status for check in report.checks}


def _resign(path, new_model_id=None) -> None:
    """Change a weight and recompute content_sha256, as an attacker would: a self-consistent bundle."""
    bundle = phaselocknet.bundle.read_bundle(path)
    tensors = dict(bundle.tensors)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    metadata = {k: v for k, v in bundle.metadata.items() if k != "content_sha256"}
    if new_model_id is not None:
        metadata["model_id"] = new_model_id
    metadata["content_sha256"] = phaselocknet.bundle.content_digest(metadata, tensors)
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    phaselocknet.bundle.read_bundle(path)  # passes every internal check


def test_intact_directory_verifies(bundle_dir):
    report = verify_bundles(bundle_dir)
    assert report.ok and report.exit_status == 0, report.to_dict()
    assert sorted(report.ids("intact")) == sorted(IDS)


def test_flipped_tensor_byte_is_caught(bundle_dir):
    path = bundle_dir / f"{IDS[0]}.safetensors"
    _flip(path, _header_length(path) + 100)  # inside the first tensor's data
    report = verify_bundles(bundle_dir)
    assert report.failed and report.exit_status == 1
    assert _status(report) == {IDS[0]: "corrupt", IDS[1]: "intact"}
    assert "checksum" in report.checks[0].reason or "checksum" in report.checks[1].reason


def test_flipped_metadata_byte_outside_the_content_checksum_is_caught_by_the_file_hash(bundle_dir):
    # converter_version is not part of content_sha256; only the manifest's file hash sees it.
    path = bundle_dir / f"{IDS[1]}.safetensors"
    offset = path.read_bytes().index(b'"converter_version":"test"') + len(b'"converter_version":"t')
    _flip(path, offset)
    phaselocknet.bundle.read_bundle(path)  # still a self-consistent bundle
    report = verify_bundles(bundle_dir)
    assert report.failed and _status(report) == {IDS[0]: "intact", IDS[1]: "modified"}
    modified = next(c for c in report.checks if c.status == "modified")
    assert modified.sha256 == _sha256(path) and modified.expected != modified.sha256


def test_a_renamed_intact_bundle_is_intact_and_known_by_its_recorded_id(bundle_dir):
    # Judged by content: the id comes from the bundle's metadata, not from its file name.
    renamed = bundle_dir / "downloads" / "model (1).safetensors"
    renamed.parent.mkdir()
    (bundle_dir / f"{IDS[0]}.safetensors").rename(renamed)
    for target in (bundle_dir, renamed):
        report = verify_bundles(target, bundle_dir / "manifest.json")
        assert report.ok, report.to_dict()
        assert any(c.model_id == IDS[0] and c.path == renamed and c.status == "intact" for c in report.checks)
    # A single file finds the manifest in a folder above it by default.
    assert verify_bundles(renamed).ok


def test_a_single_damaged_file(bundle_dir):
    path = bundle_dir / f"{IDS[0]}.safetensors"
    _flip(path, path.stat().st_size - 1)
    report = verify_bundles(path)
    assert _status(report) == {IDS[0]: "corrupt"} and report.exit_status == 1


def test_a_partial_collection_reports_only_what_it_has_unless_asked(bundle_dir):
    (bundle_dir / f"{IDS[0]}.safetensors").unlink()
    report = verify_bundles(bundle_dir)
    assert report.ok and _status(report) == {IDS[1]: "intact"}  # nothing asked about is missing
    report = verify_bundles(bundle_dir, expect_all=True)
    assert report.failed and _status(report) == {IDS[0]: "missing", IDS[1]: "intact"}
    report = verify_bundles(bundle_dir, ids=[IDS[0]])
    assert report.failed and _status(report) == {IDS[0]: "missing"}  # IDS[1] was not asked about
    report = verify_bundles(bundle_dir, ids=["word_recognition/*/arch0_000[12]"])
    assert _status(report) == {IDS[0]: "missing", IDS[1]: "intact"}
    report = verify_bundles(bundle_dir, ids=["speaker_recognition/*"])
    assert report.failed and "matches no model id" in report.problems[0]


def test_unpinned_hashes_are_unverified_not_intact(bundle_dir, tmp_path):
    published = tmp_path / "weights_manifest.json"
    _write_manifest(published, {IDS[0]: None, IDS[1]: None})
    report = verify_bundles(bundle_dir, published)
    assert not report.ok and not report.failed and report.exit_status == 3
    assert _status(report) == {IDS[0]: "unverified", IDS[1]: "unverified"}
    assert "pins no bundle_sha256" in report.checks[0].reason


def test_a_bundle_the_manifest_does_not_list_is_unverified(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["id"] != IDS[1]]
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    report = verify_bundles(bundle_dir)
    assert _status(report) == {IDS[0]: "intact", IDS[1]: "unverified"} and report.exit_status == 3
    assert "not in the manifest" in next(c.reason for c in report.checks if c.status == "unverified")


def test_a_resigned_modified_bundle(bundle_dir, tmp_path):
    path = bundle_dir / f"{IDS[0]}.safetensors"
    _resign(path)
    # Pinned hash: the forgery is caught.
    report = verify_bundles(bundle_dir)
    assert _status(report) == {IDS[0]: "modified", IDS[1]: "intact"} and report.exit_status == 1
    # Unpinned: it cannot be told from the real one, and verify says so instead of "intact".
    published = tmp_path / "weights_manifest.json"
    _write_manifest(published, {IDS[0]: None, IDS[1]: _sha256(bundle_dir / f"{IDS[1]}.safetensors")})
    report = verify_bundles(bundle_dir, published)
    assert _status(report) == {IDS[0]: "unverified", IDS[1]: "intact"} and report.exit_status == 3


def test_a_resigned_bundle_claiming_another_id_is_judged_as_that_id(bundle_dir):
    # Renaming the id inside the file does not borrow the other model's pinned hash.
    _resign(bundle_dir / f"{IDS[0]}.safetensors", new_model_id=IDS[1])
    report = verify_bundles(bundle_dir)
    assert sorted(c.status for c in report.checks if c.model_id == IDS[1]) == ["intact", "modified"]


def test_no_manifest_is_an_error(bundle_dir):
    (bundle_dir / "manifest.json").unlink()
    report = verify_bundles(bundle_dir)
    assert report.failed and "no manifest" in report.problems[0]
    assert set(_status(report).values()) == {"unverified"}  # still judged: self-consistent, not vouched for


def test_foreign_manifest_is_an_error(bundle_dir, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"models": []}))
    report = verify_bundles(bundle_dir, other)
    assert report.failed and "not a phaselocknet manifest" in report.problems[0]


def test_nothing_to_check_is_an_error(tmp_path, bundle_dir):
    report = verify_bundles(tmp_path / "empty", bundle_dir / "manifest.json")
    assert report.failed and "neither a bundle nor a folder" in report.problems[0]
    (tmp_path / "empty").mkdir()
    report = verify_bundles(tmp_path / "empty", bundle_dir / "manifest.json")
    assert report.failed and "no *.safetensors" in report.problems[0]


def _run(argv) -> int:
    parser = argparse.ArgumentParser(prog="phaselocknet")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_subcommand_exit_status(bundle_dir, capsys, tmp_path):
    assert _run(["verify", str(bundle_dir)]) == 0
    assert "OK: 2 intact, 0 unverified, 0 modified, 0 corrupt, 0 missing" in capsys.readouterr().out
    published = tmp_path / "weights_manifest.json"
    _write_manifest(published, {IDS[0]: None, IDS[1]: None})
    assert _run(["verify", str(bundle_dir), "--manifest", str(published)]) == 3
    assert "UNVERIFIED: 0 intact, 2 unverified" in capsys.readouterr().out
    path = bundle_dir / f"{IDS[0]}.safetensors"
    _flip(path, path.stat().st_size - 1)
    assert _run(["verify", str(bundle_dir)]) == 1
    err = capsys.readouterr().err
    assert "CORRUPT" in err and IDS[0] in err and "FAILED" in err


def test_subcommand_ids_and_expect_all(bundle_dir, capsys):
    (bundle_dir / f"{IDS[1]}.safetensors").unlink()
    assert _run(["verify", str(bundle_dir)]) == 0
    assert _run(["verify", str(bundle_dir), "--id", IDS[0]]) == 0
    assert _run(["verify", str(bundle_dir), "--id", IDS[0], "--id", IDS[1]]) == 1
    assert f"MISSING     {IDS[1]}" in capsys.readouterr().err
    assert _run(["verify", str(bundle_dir), "--expect-all", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] is True and report["missing"] == [IDS[1]]
    assert [b["id"] for b in report["bundles"]] == [IDS[0]] and report["bundles"][0]["status"] == "intact"


def test_phaselocknet_command_has_verify(bundle_dir, capsys):
    from phaselocknet.cli import main

    assert main(["verify", str(bundle_dir), "--manifest", str(bundle_dir / "manifest.json")]) == 0
    assert main(["verify", str(bundle_dir / f"{IDS[0]}.safetensors")]) == 0
    (bundle_dir / f"{IDS[0]}.safetensors").unlink()
    assert main(["verify", str(bundle_dir), "--expect-all"]) == 1
