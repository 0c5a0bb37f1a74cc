"""The model store: bundles by model id, in the user's cache, as torch.hub / timm / Hugging Face keep theirs.

A model id is the published path of a model, ``<task>/<variant>/<arch>`` (for example
``sound_localization/simplified_IHC3000/arch01``); a variant id is ``<task>/<variant>``.
Its bundle lives at ``$PHASELOCKNET_HOME/<task>/<variant>/<arch>.safetensors``;
without ``PHASELOCKNET_HOME`` the store is the platform's user cache folder
(`user_cache_dir`). ``phaselocknet-convert`` writes there by default, so after
converting, every ``load``, ``run``, ``eval`` and ``plan`` takes the id instead of a path.

The 260 published ids come from ``weights_manifest.json``, shipped inside the package
so that an installed (non-editable) phaselocknet finds it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from .bundle import BundleError

ENV_HOME = "PHASELOCKNET_HOME"
APP_NAME = "phaselocknet"
BUNDLE_SUFFIX = ".safetensors"
MANIFEST_FILE = "weights_manifest.json"
# The converter's record of what it wrote into a bundle folder (see phaselocknet_convert).
STORE_MANIFEST_FILE = "manifest.json"
_PART = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
_ID = re.compile(rf"{_PART}/{_PART}(/{_PART})?")


class ModelNotFoundError(BundleError):
    """A model id names no bundle in the store."""


# ------------------------------------------------------------------ where
def user_cache_dir(platform: str | None = None, environ: dict | None = None, home: Path | None = None) -> Path:
    """The platform's per-user cache folder for phaselocknet (the rule of ``platformdirs``).

    Linux and other Unix: ``$XDG_CACHE_HOME/phaselocknet``, ``~/.cache/phaselocknet`` when
    the variable is unset or not absolute (the XDG base-directory specification says to
    ignore relative values); macOS: ``~/Library/Caches/phaselocknet``; Windows:
    ``%LOCALAPPDATA%\\phaselocknet\\Cache``.
    """
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else Path(home)
    if platform.startswith("win"):
        local = environ.get("LOCALAPPDATA")
        return (Path(local) if local else home / "AppData" / "Local") / APP_NAME / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / APP_NAME
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / APP_NAME


def store_home(environ: dict | None = None) -> Path:
    """The store folder: ``$PHASELOCKNET_HOME`` if set, else `user_cache_dir`."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_HOME, "")
    return Path(value).expanduser() if value else user_cache_dir(environ=environ)


def _home(home) -> Path:
    return store_home() if home is None else Path(home)


def model_path(model_id: str, home: str | os.PathLike | None = None) -> Path:
    """Where the bundle of ``model_id`` lives in the store (whether or not it is there)."""
    if not is_model_id(model_id) or model_id.count("/") != 2:
        raise ValueError(f"{model_id!r} is not a model id: use <task>/<variant>/<arch>, "
                         "e.g. sound_localization/simplified_IHC3000/arch01 (see `phaselocknet list`)")
    return _home(home) / f"{model_id}{BUNDLE_SUFFIX}"


def is_model_id(text: str) -> bool:
    """Whether ``text`` has the form of a model id (3 parts) or variant id (2 parts)."""
    return bool(_ID.fullmatch(text)) and not text.endswith(BUNDLE_SUFFIX)


# ------------------------------------------------------------------ what
def published_manifest_path() -> Path:
    return Path(__file__).with_name(MANIFEST_FILE)


@functools.lru_cache(maxsize=1)
def published_models() -> dict[str, dict]:
    """Manifest entries of the 260 published models, by id, in manifest order."""
    from .verify import read_manifest

    return read_manifest(published_manifest_path())


def list_models(pattern: str | Iterable[str] = "*", installed: bool | None = None,
                home: str | os.PathLike | None = None) -> list[str]:
    """Published model ids matching a glob ``pattern`` (or any of several), as timm's ``list_models``.

    ``installed=True``: only those whose bundle is in the store; ``False``: only those
    that are not; ``None`` (default): all. Patterns match the whole id, case-sensitively:
    ``"sound_localization/*"``, ``"*/simplified_IHC3000/*"``, ``"*arch01"``.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    ids = [i for i in published_models() if any(fnmatch.fnmatchcase(i, p) for p in patterns)]
    if installed is None:
        return ids
    root = _home(home)
    return [i for i in ids if (root / f"{i}{BUNDLE_SUFFIX}").is_file() == bool(installed)]


def variant_members(variant: str, home: str | os.PathLike | None = None) -> list[str]:
    """The model ids of a variant (``<task>/<variant>``): the published ones, else those in the store."""
    published = list_models(f"{variant}/*")
    if published:
        return published
    folder = _home(home) / variant
    return sorted(f"{variant}/{p.name[: -len(BUNDLE_SUFFIX)]}" for p in folder.glob(f"*{BUNDLE_SUFFIX}"))


def convert_command(model_id: str) -> str:
    return f"phaselocknet-convert --root MODELS MODELS/{model_id}"


def not_installed_message(model_ids: list[str], home: str | os.PathLike | None = None) -> str:
    root = _home(home)
    shown = ", ".join(model_ids[:5]) + (f" and {len(model_ids) - 5} more" if len(model_ids) > 5 else "")
    target = model_ids[0] if len(model_ids) == 1 else os.path.commonpath(model_ids) or "<task>"
    unknown = [i for i in model_ids if i not in published_models()]
    note = f" ({', '.join(unknown[:3])} is not a published id: see `phaselocknet list`)" if unknown else ""
    return (f"model {shown} is not installed in the store {root}{note}. Convert the authors' download "
            f"(MODELS: the folder holding <task>/<variant>/<arch>/ckpt_BEST.*) into it with: "
            f"{convert_command(target)}  (set {ENV_HOME} to use another store)")


# ------------------------------------------------------------------ resolving
def resolve_bundle(path_or_id: str | os.PathLike, home: str | os.PathLike | None = None) -> Path:
    """A bundle path for a path or a model id; an existing path always wins over an id."""
    text = os.fspath(path_or_id)
    path = Path(text)
    if path.exists() or not is_model_id(text.replace(os.sep, "/")):
        return path
    model_id = text.replace(os.sep, "/")
    if model_id.count("/") == 1:
        raise BundleError(f"{model_id} is a variant (<task>/<variant>), not one model: load its architectures "
                          f"together with phaselocknet.load_ensemble({model_id!r}), or name one, e.g. "
                          f"{(variant_members(model_id, home) or [model_id + '/arch01'])[0]}")
    stored = model_path(model_id, home)
    if stored.is_file():
        return stored
    raise ModelNotFoundError(not_installed_message([model_id], home))


def expand_model_argument(argument: str, home: str | os.PathLike | None = None) -> list[Path]:
    """Bundle paths for one command-line model argument: a path, a model id, a variant id or an id pattern.

    Every model an id argument names must be installed: evaluating 8 of a variant's 10
    architectures without a word would change its results.
    """
    if os.path.exists(argument):
        return [Path(argument)]
    text = argument.replace(os.sep, "/")
    magic = any(c in text for c in "*?[")
    if is_model_id(text) and not magic:
        ids = variant_members(text, home) if text.count("/") == 1 else [text]
        if not ids:
            raise ModelNotFoundError(not_installed_message([f"{text}/*"], home))
    elif magic and not text.endswith(BUNDLE_SUFFIX):
        ids = list_models(text) or list_models(f"{text}/*")
        if not ids:
            raise ModelNotFoundError(f"{argument} matches no file and no published model id (see `phaselocknet list`)")
    elif magic:
        raise ModelNotFoundError(f"bundle pattern {argument} matches no files")
    else:
        return [Path(argument)]
    missing = [i for i in ids if not model_path(i, home).is_file()]
    if missing:
        raise ModelNotFoundError(not_installed_message(missing, home))
    return [model_path(i, home) for i in ids]


def store_manifest(home: str | os.PathLike | None = None) -> dict[str, dict]:
    """The converter's records of the bundles it wrote into the store (empty if none)."""
    path = _home(home) / STORE_MANIFEST_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {e["id"]: e for e in document.get("models", []) if isinstance(e, dict) and "id" in e}


# ------------------------------------------------------------------ status
VERIFIED_CACHE_FILE = ".verified.json"


def model_status(model_ids: list[str], home: str | os.PathLike | None = None, check: bool = False) -> dict[str, dict]:
    """Per id: ``installed`` and ``verified`` ("yes", "MISMATCH", "unpinned", "unchecked" or "-").

    A bundle is verified when its file SHA-256 equals the published ``bundle_sha256``
    (or, while the published manifest has none, the converter's record in the store).
    Hashing a 366 MB bundle takes about a second, so digests are computed only with
    ``check=True`` and remembered in the store (keyed on file size and mtime, so a
    changed file is hashed again); ``phaselocknet list`` shows "unchecked" otherwise.
    """
    from .bundle import file_sha256, write_atomic

    root = _home(home)
    records = store_manifest(root)
    cache_path = root / VERIFIED_CACHE_FILE
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    changed = False
    status = {}
    for model_id in model_ids:
        path = root / f"{model_id}{BUNDLE_SUFFIX}"
        if not path.is_file():
            status[model_id] = {"installed": False, "verified": "-", "path": str(path)}
            continue
        stat = path.stat()
        stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        cached = cache.get(model_id)
        digest = cached["sha256"] if cached and {k: cached.get(k) for k in stamp} == stamp else None
        if digest is None and check:
            digest = file_sha256(path)
            cache[model_id] = {**stamp, "sha256": digest}
            changed = True
        expected = (published_models().get(model_id) or {}).get("bundle_sha256") or records.get(model_id, {}).get("bundle_sha256")
        verified = ("unpinned" if expected is None else "unchecked" if digest is None
                    else "yes" if digest == expected else "MISMATCH")
        status[model_id] = {"installed": True, "verified": verified, "path": str(path)}
    if changed:
        write_atomic(cache_path, (json.dumps(cache, indent=1, sort_keys=True) + "\n").encode())
    return status


def front_end_name(entry: dict) -> str:
    """A short description of a published model's front end, from its manifest entry."""
    variant = entry["variant"]
    kind = "simplified cochlea" if entry.get("input_kind") == "waveform" else "BEZ2018 nervegram"
    cutoff = re.search(r"IHC(\d+)", variant)
    text = f"{kind}, IHC {int(cutoff.group(1))} Hz" if cutoff else kind
    return text + (", delayed integration" if "delayed_integration" in variant else "")
