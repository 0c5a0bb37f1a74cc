"""One model directory (config.json, arch.json, ckpt_BEST.*) -> one bundle."""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

import phaselocknet
from phaselocknet.atomic import atomic_path
from phaselocknet.bundle import BundleError, file_sha256, read_bundle
from phaselocknet.constants import ARCH_NAME, BUNDLE_SUFFIX, CONFIG_NAME
from phaselocknet.labels import WORD_HEAD, read_word_labels

from . import CONVERTER_VERSION
from .checkpoint import read_checkpoint
from .errors import ConversionError
from .mapping import checkpoint_state_dict
from .torch_checkpoint import PT_NAME, read_torch_checkpoint, torch_state_dict

CHECKPOINT_NAME = "ckpt_BEST"
SOURCE_FILES = (CONFIG_NAME, ARCH_NAME, CHECKPOINT_NAME + ".index", CHECKPOINT_NAME + ".data-00000-of-00001")
# The authors' PyTorch checkpoint (phaselocknet_torch): read with torch alone.
TORCH_SOURCE_FILES = (CONFIG_NAME, ARCH_NAME, PT_NAME)
SOURCE_KINDS = ("auto", "tf", "torch")

CONVERTED = "converted"
UP_TO_DATE = "up to date"
FAILED = "failed"


class ManifestMismatchWarning(UserWarning):
    """A model directory's config.json/arch.json differ from the published manifest."""


@dataclass
class ConversionResult:
    model_id: str
    status: str  # CONVERTED, UP_TO_DATE or FAILED
    bundle: Path | None = None
    bundle_sha256: str | None = None
    source_sha256: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why it failed
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def bundle_path(out_dir: str | os.PathLike, model_id: str) -> Path:
    return Path(out_dir) / f"{model_id}{BUNDLE_SUFFIX}"


def checkpoint_kind(model_dir: Path, source: str = "auto") -> str:
    """"tf" (ckpt_BEST.index + .data) or "torch" (ckpt_BEST.pt) for the directory's checkpoint."""
    if source not in SOURCE_KINDS:
        raise ConversionError(f"source={source!r}: use one of {', '.join(SOURCE_KINDS)}")
    if source != "auto":
        return source
    has_tf = (model_dir / SOURCE_FILES[2]).is_file()
    has_torch = (model_dir / PT_NAME).is_file()
    if has_tf and has_torch:
        # The .pt localization weights are the retrained ones, not the TF checkpoint's.
        raise ConversionError(
            f"{model_dir}: holds both a TensorFlow checkpoint ({SOURCE_FILES[2]}) and {PT_NAME}, which may be "
            "different trainings: choose one with --source tf or --source torch"
        )
    return "torch" if has_torch else "tf"


def source_checksums(model_dir: Path, kind: str = "tf") -> dict[str, str]:
    names = TORCH_SOURCE_FILES if kind == "torch" else SOURCE_FILES
    missing = [name for name in names if not (model_dir / name).is_file()]
    if missing:
        raise ConversionError(
            f"{model_dir}: missing {', '.join(missing)} (a model directory holds {', '.join(SOURCE_FILES)}, "
            f"or {', '.join(TORCH_SOURCE_FILES)})"
        )
    return {name: file_sha256(model_dir / name) for name in names}


def convert_model_dir(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model_id: str,
    word_labels: str | os.PathLike | None = None,
    force: bool = False,
    manifest: dict[str, dict] | None = None,
    strict: bool = False,
    source: str = "auto",
) -> ConversionResult:
    """Convert one model directory to ``out_dir/<model_id>.safetensors``.

    ``manifest``: published entries by model id (``phaselocknet_convert.manifest.read_manifest``);
    a config.json/arch.json that differs from its entry is a warning, or an error with
    ``strict`` (which also refuses ids the manifest lacks). ``word_labels``: the authors'
    word_int_encoding.csv, embedded as the word head's class names. An existing bundle
    made from the same source files, with the same labels, by this converter version
    is left alone unless ``force``. ``source``: "tf" (ckpt_BEST.index + .data, needs
    TensorFlow), "torch" (the authors' ckpt_BEST.pt, torch alone) or "auto" (the one present).

    Raises ConversionError (nothing is written then); returns a ConversionResult with
    status "converted" or "up to date".
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    _check_model_id(model_id)
    if not model_dir.is_dir():
        raise ConversionError(f"{model_dir}: not a directory")
    kind = checkpoint_kind(model_dir, source)
    sources = source_checksums(model_dir, kind)
    result = ConversionResult(model_id=model_id, status=CONVERTED, source_sha256=sources)
    result.warnings.extend(check_against_manifest(model_id, sources, manifest, strict))

    config, arch = _read_json(model_dir / CONFIG_NAME), _read_json(model_dir / ARCH_NAME)
    labels = _word_labels(config, word_labels)
    target = bundle_path(out_dir, model_id)
    if not force and _up_to_date(target, sources, labels):
        result.status, result.bundle = UP_TO_DATE, target
        result.bundle_sha256 = file_sha256(target)
        result.seconds = time.perf_counter() - started
        return result

    try:
        # On the meta device: only shapes are needed, and the checkpoint's tensors are
        # then assigned in place, so no time goes into random init of ~500M weights.
        with torch.device("meta"):
            model = phaselocknet.from_config(config, arch, spikes="mean", labels=labels, model_id=model_id)
    except ValueError as error:
        raise ConversionError(f"{model_dir}: config.json/arch.json do not build a model: {error}") from error
    state = _converted_state(model.network, model_dir, kind)
    model.network.load_state_dict(state, strict=True, assign=True)
    _write_checked(model, target, model_id, sources, state)
    result.bundle = target
    result.bundle_sha256 = file_sha256(target)
    result.seconds = time.perf_counter() - started
    return result


def _converted_state(network, model_dir: Path, kind: str) -> dict:
    if kind == "torch":
        return torch_state_dict(network, read_torch_checkpoint(model_dir / PT_NAME), model_dir / PT_NAME)
    return checkpoint_state_dict(network, read_checkpoint(model_dir / CHECKPOINT_NAME))


def check_against_manifest(
    model_id: str, sources: dict[str, str], manifest: dict[str, dict] | None, strict: bool
) -> list[str]:
    """Warnings (or, with ``strict``, a ConversionError) where the sources differ from the manifest."""
    if manifest is None:
        if strict:
            raise ConversionError(f"{model_id}: --strict needs a manifest to check config.json/arch.json against")
        return []
    entry = manifest.get(model_id)
    if entry is None:
        problem = f"{model_id}: not in the manifest, so its config.json/arch.json cannot be checked"
        if strict:
            raise ConversionError(problem + " (refused: --strict)")
        return [problem]
    problems = []
    for name, key in ((CONFIG_NAME, "config_sha256"), (ARCH_NAME, "arch_sha256")):
        expected = entry.get(key)
        if expected and expected != sources[name]:
            problems.append(
                f"{model_id}: {name} differs from the published one (sha256 {sources[name][:12]}... vs "
                f"manifest {expected[:12]}...)"
            )
    if problems and strict:
        raise ConversionError("; ".join(problems) + " (refused: --strict)")
    for problem in problems:
        warnings.warn(problem, ManifestMismatchWarning, stacklevel=3)
    return problems


def _check_model_id(model_id: str) -> None:
    parts = model_id.split("/")
    if not model_id or model_id.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in model_id:
        raise ConversionError(f"model id {model_id!r} must be a relative path like 'task/variant/arch01'")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"{path}: not readable JSON ({error})") from error


def _word_labels(config: dict, csv_path) -> dict[str, list] | None:
    if csv_path is None:
        return None
    n_classes = (config.get("n_classes_dict") or {}).get(WORD_HEAD)
    if n_classes is None:
        return None  # no word head: nothing to name
    try:
        return {WORD_HEAD: read_word_labels(csv_path, int(n_classes))}
    except (OSError, ValueError) as error:
        raise ConversionError(f"--word-labels {csv_path}: {error}") from error


def _up_to_date(target: Path, sources: dict[str, str], labels: dict | None) -> bool:
    if not target.is_file():
        return False
    try:
        # The whole file, checksum included: a bundle with a flipped weight byte is rewritten.
        metadata = read_bundle(target).metadata
        existing_sources = json.loads(metadata["source_sha256"])
    except (BundleError, ValueError):
        return False  # unreadable or foreign: convert again, replacing it
    if existing_sources != sources:
        return False
    # A converter that may map tensors differently has a different version.
    if metadata.get("converter_version") != CONVERTER_VERSION:
        return False
    # Adding (or changing) word labels changes the bundle, so it is not up to date.
    wanted = json.dumps(labels, sort_keys=True, separators=(",", ":")) if labels else None
    return metadata.get("labels_json") == wanted


def _write_checked(model, target: Path, model_id: str, sources: dict[str, str], state: dict) -> None:
    """Write the bundle beside ``target``, load it back with the runtime, then rename it into place.

    A bundle that does not load, or whose tensors are not bit-identical to the
    converted ones, never reaches ``target``.
    """
    with atomic_path(target) as tmp:
        phaselocknet.save(
            model, tmp, model_id=model_id, source_sha256=sources, converter_version=CONVERTER_VERSION
        )
        try:
            loaded = phaselocknet.load(tmp, spikes="mean")
        except BundleError as error:
            raise ConversionError(f"{model_id}: the written bundle does not load back: {error}") from error
        written = loaded.network.state_dict()
        different = [name for name, tensor in state.items() if not torch.equal(written[name], tensor)]
        if different:
            raise ConversionError(f"{model_id}: the written bundle loads back with different tensors {different[:5]}")

__all__ = [
    "CONVERTED",
    "ConversionResult",
    "FAILED",
    "ManifestMismatchWarning",
    "SOURCE_FILES",
    "TORCH_SOURCE_FILES",
    "checkpoint_kind",
    "UP_TO_DATE",
    "bundle_path",
    "check_against_manifest",
    "convert_model_dir",
    "source_checksums",
]
