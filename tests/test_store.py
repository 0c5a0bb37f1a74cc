"""The model store: where it is, ids vs paths, listing against the manifest, missing models.

Expected values come from the published manifest file read directly with json (not
through ``phaselocknet.store``), from the XDG base-directory specification and the
platform conventions ``platformdirs`` documents, and from the bundles the tests write.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import phaselocknet
from conftest import REPO
from evaluate_sets import word_nervegram_model
from phaselocknet.bundle import BundleError, file_sha256
from phaselocknet.cli import main
from phaselocknet.store import (
    ModelNotFoundError,
    list_models,
    model_path,
    resolve_bundle,
    store_home,
    user_cache_dir,
)

MANIFEST = REPO / "runtime" / "phaselocknet" / "weights_manifest.json"
MODEL_ID = "word_recognition/IHC3000/arch0_0000"


@pytest.fixture
def store(tmp_path, monkeypatch):
    home = tmp_path / "store"
    monkeypatch.setenv("PHASELOCKNET_HOME", str(home))
    return home


def install(home: Path, model_id: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)  # random initial weights, different per seed
    path = model_path(model_id, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    return phaselocknet.save(word_nervegram_model(), path, model_id=model_id)


def manifest_ids() -> list[str]:
    return [entry["id"] for entry in json.loads(MANIFEST.read_text())["models"]]


# ------------------------------------------------------------------ where
def test_cache_dir_follows_xdg_and_platform_rules(tmp_path):
    home = Path("/home/u")
    assert user_cache_dir("linux", {}, home) == home / ".cache" / "phaselocknet"
    assert user_cache_dir("linux", {"XDG_CACHE_HOME": "/scratch/c"}, home) == Path("/scratch/c/phaselocknet")
    # The XDG specification: a relative value is invalid and must be ignored.
    assert user_cache_dir("linux", {"XDG_CACHE_HOME": "rel/c"}, home) == home / ".cache" / "phaselocknet"
    assert user_cache_dir("darwin", {}, home) == home / "Library" / "Caches" / "phaselocknet"
    assert user_cache_dir("win32", {"LOCALAPPDATA": "C:/Users/u/AppData/Local"}, home) == \
        Path("C:/Users/u/AppData/Local") / "phaselocknet" / "Cache"


def test_phaselocknet_home_overrides_the_cache_dir(tmp_path):
    assert store_home({"PHASELOCKNET_HOME": str(tmp_path)}) == tmp_path
    assert store_home({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "phaselocknet"


def test_model_path_is_task_variant_arch(store):
    assert model_path(MODEL_ID) == store / "word_recognition" / "IHC3000" / "arch0_0000.safetensors"
    with pytest.raises(ValueError, match="not a model id"):
        model_path("../etc/passwd")


# ------------------------------------------------------------------ list
def test_list_models_are_the_manifest_ids():
    ids = manifest_ids()
    assert len(ids) == 260
    assert list_models() == ids
    assert list_models("sound_localization/*") == [i for i in ids if i.startswith("sound_localization/")]
    simplified = [e["id"] for e in json.loads(MANIFEST.read_text())["models"] if e["variant"] == "simplified_IHC3000"]
    assert list_models("*/simplified_IHC3000/*") == simplified and len(simplified) == 20
    assert list_models(["*arch01", "*arch02"]) == [i for i in ids if i.endswith(("arch01", "arch02"))]
    assert list_models("no_such_task/*") == []


def test_list_models_installed(store):
    install(store, MODEL_ID)
    assert list_models("word_recognition/*", installed=True) == [MODEL_ID]
    assert MODEL_ID not in list_models("word_recognition/*", installed=False)
    assert len(list_models("word_recognition/*", installed=False)) == 39


def test_list_command_shows_installed_and_verified(store, capsys):
    path = install(store, MODEL_ID)
    assert main(["list", "word_recognition/IHC3000/*", "--installed"]) == 0
    out = capsys.readouterr().out
    assert MODEL_ID in out and "unpinned" in out and "1 models, 1 installed" in out
    # With a converter record in the store, --verify hashes the file and compares.
    record = {"format": "phaselocknet-weights-manifest", "format_version": 1,
              "models": [{"id": MODEL_ID, "bundle_sha256": file_sha256(path)}]}
    (store / "manifest.json").write_text(json.dumps(record))
    assert main(["list", MODEL_ID, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["verified"] == "unchecked"
    assert main(["list", MODEL_ID, "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["verified"] == "yes"
    record["models"][0]["bundle_sha256"] = "0" * 64
    (store / "manifest.json").write_text(json.dumps(record))
    assert main(["list", MODEL_ID, "--json"]) == 0  # remembered digest, no rehash needed
    assert json.loads(capsys.readouterr().out)["models"][0]["verified"] == "MISMATCH"


# ------------------------------------------------------------------ load by id
def test_load_by_id_equals_load_by_path(store):
    path = install(store, MODEL_ID, seed=3)
    x = torch.rand(2, 3, 50, 200) * 200
    by_id = phaselocknet.load(MODEL_ID, spikes="mean")(x)
    by_path = phaselocknet.load(path, spikes="mean")(x)
    for head in by_path:
        assert torch.equal(by_id[head], by_path[head])
    assert resolve_bundle(str(path)) == path


def test_an_existing_path_wins_over_an_id(store, tmp_path, monkeypatch):
    local = tmp_path / "word_recognition" / "IHC3000"
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    # A relative path that exists is a path, even though it looks like a variant id.
    assert resolve_bundle("word_recognition/IHC3000") == Path("word_recognition/IHC3000")


def test_missing_model_names_the_store_and_the_convert_command(store):
    with pytest.raises(ModelNotFoundError) as caught:
        phaselocknet.load(MODEL_ID)
    message = str(caught.value)
    assert str(store) in message and "not installed" in message
    assert f"phaselocknet-convert --root MODELS MODELS/{MODEL_ID}" in message
    assert isinstance(caught.value, BundleError)
    assert main(["info", MODEL_ID]) == 5  # exit status of a missing or damaged bundle (docs/cli.md)


def test_a_variant_is_not_one_model(store):
    with pytest.raises(BundleError, match="load_ensemble"):
        phaselocknet.load("word_recognition/IHC3000")


def test_converter_defaults_to_the_store_and_to_published_ids(store, tmp_path):
    from phaselocknet_convert.cli import convert_parser, model_id_for

    model_dir = tmp_path / "download" / "word_recognition" / "IHC3000" / "arch0_0000"
    model_dir.mkdir(parents=True)
    assert model_id_for(model_dir, None) == MODEL_ID
    assert model_id_for(tmp_path / "elsewhere" / "mine", None) == "mine"
    assert convert_parser().parse_args([str(model_dir)]).out is None  # filled with store_home() by convert_main


def test_the_manifest_ships_in_the_wheel(tmp_path):
    """A non-editable install must find the manifest: build the wheel and look inside."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"cannot build a wheel here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("phaselocknet-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("phaselocknet/weights_manifest.json") == MANIFEST.read_bytes()


def test_verify_defaults_to_the_store(store, capsys):
    install(store, MODEL_ID)
    # No manifest.json in the store yet: verify says so, naming the store folder.
    assert main(["verify"]) == 1
    assert str(store) in capsys.readouterr().err
