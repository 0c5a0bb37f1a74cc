"""weights_manifest.json: the facts and checksums of every published model.

``phaselocknet-convert manifest MODELS_ROOT`` walks the published tree
(``<task>/<variant>/<arch>/{config.json,arch.json}``) and writes one entry per model.
``bundle_sha256`` stays null there until a maintainer converts the real checkpoints;
the converter writes the same format, with the hashes, to ``OUT_DIR/manifest.json``.
The format is read by the runtime (``phaselocknet.verify``), which owns its definition.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

import phaselocknet
from phaselocknet.bundle import file_sha256, write_atomic
from phaselocknet.constants import ARCH_NAME, CONFIG_NAME
from phaselocknet.verify import MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, ManifestError, read_manifest

from .errors import ConversionError
from .lock import DEFAULT_TIMEOUT_S, locked

CHECKPOINT_INDEX = "ckpt_BEST.index"
CHECKPOINT_PT = "ckpt_BEST.pt"

__all__ = [
    "ManifestError",
    "build_manifest",
    "dumps",
    "find_model_dirs",
    "manifest_entry",
    "model_facts",
    "read_manifest",
    "update_manifest",
    "write_manifest",
]


def find_model_dirs(root: str | os.PathLike, *, require_checkpoint: bool) -> list[Path]:
    """Model directories under (or at) ``root``: config.json + arch.json (+ ckpt_BEST.index or ckpt_BEST.pt)."""
    root = Path(root)
    needed = (CONFIG_NAME, ARCH_NAME)
    # A TensorFlow checkpoint or the authors' PyTorch one (phaselocknet_torch).
    checkpoints = (CHECKPOINT_INDEX, CHECKPOINT_PT) if require_checkpoint else ()

    def is_model_dir(path: Path) -> bool:
        has_checkpoint = not checkpoints or any((path / name).is_file() for name in checkpoints)
        return has_checkpoint and all((path / name).is_file() for name in needed)

    if is_model_dir(root):
        return [root]
    return sorted({path.parent for path in root.rglob(CONFIG_NAME) if is_model_dir(path.parent)})


_FACTS_CACHE: dict[str, dict] = {}


def model_facts(config: dict, arch: list) -> dict:
    """What a caller needs to feed the model, from the runtime itself.

    Built on the meta device: the network's shapes are inferred (validating the
    arch) without allocating or initialising weights, which keeps 260 models fast.
    Cached by content, as the published tree repeats configurations.
    """
    key = hashlib.sha256(
        json.dumps([config.get("kwargs_cochlea"), config.get("n_classes_dict"), arch], sort_keys=True).encode()
    ).hexdigest()
    if key not in _FACTS_CACHE:
        with torch.device("meta"):
            model = phaselocknet.from_config(config, arch, spikes="mean")
        _FACTS_CACHE[key] = {
            "input_kind": model.input_kind,
            "sample_rate": float(model.sample_rate),
            "input_length": int(model.input_length),
            "input_shape": list(model.expected_input_shape()),
            "binaural": bool(model.binaural),
            "heads": {head: int(n) for head, n in sorted(model.heads.items())},
        }
    return json.loads(json.dumps(_FACTS_CACHE[key]))


def split_model_id(model_id: str) -> tuple[str | None, str | None, str]:
    """(task, variant, arch) of 'task/variant/arch' (variant may itself hold slashes)."""
    parts = model_id.split("/")
    if len(parts) < 3:
        return None, None, parts[-1]
    return parts[0], "/".join(parts[1:-1]), parts[-1]


def manifest_entry(model_dir: Path, model_id: str, *, bundle_sha256: str | None = None) -> dict:
    try:
        config = json.loads((model_dir / CONFIG_NAME).read_text())
        arch = json.loads((model_dir / ARCH_NAME).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConversionError(f"{model_dir}: cannot read config.json/arch.json ({error})") from error
    try:
        facts = model_facts(config, arch)
    except ValueError as error:
        raise ConversionError(f"{model_dir}: config.json/arch.json do not build a model: {error}") from error
    task, variant, arch_name = split_model_id(model_id)
    return {
        "id": model_id,
        "task": task,
        "variant": variant,
        "arch": arch_name,
        **facts,
        "config_sha256": file_sha256(model_dir / CONFIG_NAME),
        "arch_sha256": file_sha256(model_dir / ARCH_NAME),
        "bundle_sha256": bundle_sha256,
    }


def build_manifest(models_root: str | os.PathLike, *, progress: bool = False) -> dict:
    root = Path(models_root)
    if not root.is_dir():
        raise ConversionError(f"{root}: not a directory")
    dirs = find_model_dirs(root, require_checkpoint=False)
    if not dirs:
        raise ConversionError(f"{root}: no model directories (config.json + arch.json) found")
    iterator = dirs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(dirs, desc="manifest", unit="model")
    entries = [manifest_entry(d, d.relative_to(root).as_posix()) for d in iterator]
    return document(entries)


def document(entries: list[dict]) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        "n_models": len(entries),
        "models": sorted(entries, key=lambda entry: entry["id"]),
    }


def dumps(manifest: dict) -> str:
    """Deterministic JSON: sorted keys, entries sorted by id, fixed indentation, final newline."""
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def write_manifest(path: str | os.PathLike, manifest: dict) -> Path:
    path = Path(path)
    write_atomic(path, dumps(manifest).encode())
    return path


def update_manifest(path: str | os.PathLike, entries: list[dict], *, timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Add or replace ``entries`` (by id) in the manifest at ``path`` (created if absent).

    Read, update and write happen under the manifest's lock (``lock.py``), so
    converters running side by side keep each other's entries; the write is atomic,
    so a reader sees the old or the new manifest, never a mix.
    """
    path = Path(path)
    with locked(path, timeout=timeout):
        existing = read_manifest(path) if path.exists() else {}
        existing.update({entry["id"]: entry for entry in entries})
        return write_manifest(path, document(list(existing.values())))
