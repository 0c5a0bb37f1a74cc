"""Reading and writing model bundles: one safetensors file per model.

A bundle is a standard safetensors file (see docs/bundle_format.md). We write the
file ourselves rather than through ``safetensors.torch.save_file`` because that
function serialises ``__metadata__`` in hash-map order, which differs between
processes; converting the same checkpoint twice must give byte-identical files.
Reading goes through ``safetensors.safe_open``, so any conforming reader can load
our files and we reject anything a conforming reader would.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

FORMAT_NAME = "phaselocknet-bundle"
FORMAT_VERSION = "1"
REQUIRED_METADATA = (
    "format",
    "format_version",
    "model_id",
    "config_json",
    "arch_json",
    "source_sha256",
    "converter_version",
    "content_sha256",
)

_DTYPE_CODES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
}


class BundleError(ValueError):
    """A bundle file is missing, damaged, foreign or inconsistent."""


@dataclass
class Bundle:
    """The parsed content of a bundle file."""

    path: Path | None
    model_id: str
    config: dict
    arch: list
    tensors: dict[str, torch.Tensor]
    labels: dict[str, list] | None = None
    source_sha256: dict[str, str] = field(default_factory=dict)
    converter_version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def _canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def content_digest(metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over everything that defines the model's behaviour.

    Covers the model id, configuration, architecture, labels and every tensor
    (name, dtype, shape, bytes), so a flipped byte anywhere that matters is caught
    on load even though safetensors itself has no checksum.
    """
    digest = hashlib.sha256()
    for key in ("model_id", "config_json", "arch_json", "labels_json"):
        digest.update(f"{key}\0{metadata.get(key, '')}\0".encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}\0{_DTYPE_CODES[tensor.dtype]}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        if tensor.dtype not in _DTYPE_CODES:
            raise BundleError(f"tensor {name!r} has dtype {tensor.dtype}, which bundles do not store")
        data = tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {
            "dtype": _DTYPE_CODES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    # safetensors readers expect the data section to start 8-byte aligned.
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(chunks)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bundle(
    path: str | os.PathLike,
    *,
    tensors: dict[str, torch.Tensor],
    model_id: str,
    config: dict,
    arch: list,
    labels: dict[str, list] | None = None,
    source_sha256: dict[str, str] | None = None,
    converter_version: str = "",
) -> Path:
    """Write a bundle atomically and deterministically; returns its path."""
    from .version import __version__

    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "config_json": _canonical_json(config),
        "arch_json": _canonical_json(arch),
        "source_sha256": _canonical_json(source_sha256 or {}),
        "converter_version": converter_version,
        "runtime_version": __version__,
    }
    if labels:
        metadata["labels_json"] = _canonical_json(labels)
    metadata["content_sha256"] = content_digest(metadata, tensors)
    path = Path(path)
    write_atomic(path, _serialize(tensors, metadata))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a bundle, validated as ours, without reading tensors."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise BundleError(
            f"{path} is not a readable safetensors file ({error}); it may be truncated or "
            "not a bundle: re-download or re-convert it"
        ) from error
    _check_metadata(path, metadata)
    return metadata


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Read and fully validate a bundle (format, version, checksums)."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            _check_metadata(path, metadata)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise BundleError(
            f"{path} is not a readable safetensors file ({error}); it may be truncated or "
            "not a bundle: re-download or re-convert it"
        ) from error
    if content_digest(metadata, tensors) != metadata["content_sha256"]:
        raise BundleError(
            f"{path}: content checksum mismatch: the file was modified or corrupted after it "
            "was written; re-download or re-convert it"
        )
    try:
        config = json.loads(metadata["config_json"])
        arch = json.loads(metadata["arch_json"])
        labels = json.loads(metadata["labels_json"]) if "labels_json" in metadata else None
        source_sha256 = json.loads(metadata["source_sha256"])
    except json.JSONDecodeError as error:
        raise BundleError(f"{path}: metadata holds invalid JSON ({error})") from error
    return Bundle(
        path=path,
        model_id=metadata["model_id"],
        config=config,
        arch=arch,
        tensors=tensors,
        labels=labels,
        source_sha256=source_sha256,
        converter_version=metadata["converter_version"],
        metadata=metadata,
    )


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"no bundle at {path}: check the path (bundles end in .safetensors)")
    return path


def _check_metadata(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != FORMAT_NAME:
        raise BundleError(
            f"{path} is a safetensors file but not a phaselocknet bundle (metadata 'format' is "
            f"{metadata.get('format')!r}, expected {FORMAT_NAME!r}); convert the model with "
            "phaselocknet-convert"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path} has bundle format version {metadata.get('format_version')!r}; this runtime "
            f"reads version {FORMAT_VERSION}: upgrade phaselocknet or re-convert the model"
        )
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise BundleError(f"{path}: bundle metadata lacks {', '.join(missing)}; re-convert the model")

