"""``phaselocknet verify BUNDLE_DIR [--manifest M]``: are these the bundles they should be?

Every ``*.safetensors`` under the directory is re-hashed and compared with a
manifest (the directory's own ``manifest.json`` written by ``phaselocknet-convert``,
or e.g. the repository's ``weights_manifest.json``), and each bundle's internal
content checksum is checked. The manifest format is shared with the converter:

    {"format": "phaselocknet-weights-manifest", "format_version": 1,
     "models": [{"id": "task/variant/arch01", "bundle_sha256": "ab12..." | null, ...}, ...]}

An entry whose ``bundle_sha256`` is null (the published manifest before the real
checkpoints were converted) is only checked for presence and integrity.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


MANIFEST_FORMAT = "phaselocknet-weights-manifest"
MANIFEST_FORMAT_VERSION = 1
from .constants import BUNDLE_SUFFIX, CONVERTED_MANIFEST_NAME as DEFAULT_MANIFEST_NAME  # noqa: E402


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or not ours."""


@dataclass
class VerifyReport:
    bundle_dir: Path
    manifest: Path | None
    checked: list[str] = field(default_factory=list)  # ids whose file hash matched the manifest
    unpinned: list[str] = field(default_factory=list)  # present, intact, but the manifest has no hash for them
    missing: list[str] = field(default_factory=list)  # in the manifest, no file
    extra: list[str] = field(default_factory=list)  # file, not in the manifest
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)  # (id, expected sha256, actual)
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (id, why the bundle itself is bad)
    problems: list[str] = field(default_factory=list)  # anything else (no manifest, ...)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.corrupt or self.problems)

    def to_dict(self) -> dict:
        return {
            "bundle_dir": str(self.bundle_dir),
            "manifest": str(self.manifest) if self.manifest else None,
            "ok": self.ok,
            "checked": self.checked,
            "unpinned": self.unpinned,
            "missing": self.missing,
            "extra": self.extra,
            "mismatched": [{"id": i, "expected": e, "actual": a} for i, e, a in self.mismatched],
            "corrupt": [{"id": i, "reason": r} for i, r in self.corrupt],
            "problems": self.problems,
        }


def read_manifest(path: str | os.PathLike) -> dict[str, dict]:
    """Manifest entries by model id."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ManifestError(f"{path}: not readable JSON ({type(error).__name__}: {error})") from error
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a phaselocknet manifest (expected \"format\": \"{MANIFEST_FORMAT}\")")
    if document.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ManifestError(
            f"{path}: manifest format version {document.get('format_version')!r}; this phaselocknet reads "
            f"version {MANIFEST_FORMAT_VERSION}"
        )
    entries: dict[str, dict] = {}
    if not isinstance(document.get("models", []), list):
        raise ManifestError(f"{path}: \"models\" must be a list of entries, got {document.get('models')!r:.80}")
    for entry in document.get("models", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ManifestError(f"{path}: every entry of \"models\" needs a string \"id\", got {entry!r:.200}")
        if entry["id"] in entries:
            raise ManifestError(f"{path}: model id {entry['id']!r} is listed twice")
        entries[entry["id"]] = entry
    return entries


def bundle_files(bundle_dir: str | os.PathLike) -> dict[str, Path]:
    """Bundles under ``bundle_dir`` by model id (path relative to the directory, without the suffix)."""
    root = Path(bundle_dir)
    found = {}
    for path in sorted(root.rglob(f"*{BUNDLE_SUFFIX}")):
        if path.is_file():
            found[path.relative_to(root).as_posix()[: -len(BUNDLE_SUFFIX)]] = path
    return found


def verify_bundles(bundle_dir: str | os.PathLike, manifest_path: str | os.PathLike | None = None) -> VerifyReport:
    """Re-hash and check every bundle under ``bundle_dir`` against a manifest.

    Without ``manifest_path`` the directory's own ``manifest.json`` is used. Reports
    missing, extra and mismatched files, bundles whose content checksum fails or
    whose recorded model id is not their path, and entries without a recorded hash.
    """
    from .bundle import BundleError, file_sha256, read_bundle  # imports torch: only when there is work

    bundle_dir = Path(bundle_dir)
    manifest = Path(manifest_path) if manifest_path is not None else bundle_dir / DEFAULT_MANIFEST_NAME
    report = VerifyReport(bundle_dir=bundle_dir, manifest=manifest)
    if not bundle_dir.is_dir():
        report.problems.append(f"{bundle_dir} is not a directory")
        return report
    try:
        entries = read_manifest(manifest)
    except ManifestError as error:
        report.problems.append(
            f"{error}; pass --manifest (e.g. weights_manifest.json) or convert into this directory with "
            "phaselocknet-convert, which writes manifest.json"
        )
        entries = None
    files = bundle_files(bundle_dir)

    for model_id, path in files.items():
        try:
            bundle = read_bundle(path)
        except BundleError as error:
            report.corrupt.append((model_id, str(error)))
            continue
        if bundle.model_id != model_id:
            report.corrupt.append(
                (model_id, f"{path} holds model {bundle.model_id!r}: renamed or misplaced bundle")
            )
            continue
        if entries is None:
            continue
        if model_id not in entries:
            report.extra.append(model_id)
            continue
        expected = entries[model_id].get("bundle_sha256")
        actual = file_sha256(path)
        if expected is None:
            report.unpinned.append(model_id)
        elif actual != expected:
            report.mismatched.append((model_id, expected, actual))
        else:
            report.checked.append(model_id)
    if entries is not None:
        report.missing = sorted(set(entries) - set(files))
    return report


def format_report(report: VerifyReport) -> str:
    lines = []
    for model_id, expected, actual in report.mismatched:
        lines.append(f"MISMATCH  {model_id}: sha256 {actual} but the manifest says {expected}")
    for model_id, reason in report.corrupt:
        lines.append(f"CORRUPT   {model_id}: {reason}")
    for model_id in report.missing:
        lines.append(f"MISSING   {model_id}: in the manifest, no {model_id}{BUNDLE_SUFFIX}")
    for model_id in report.extra:
        lines.append(f"EXTRA     {model_id}: not in the manifest")
    for problem in report.problems:
        lines.append(f"ERROR     {problem}")
    counts = (
        f"{len(report.checked)} verified, {len(report.unpinned)} intact without a recorded hash, "
        f"{len(report.mismatched)} mismatched, {len(report.corrupt)} corrupt, {len(report.missing)} missing, "
        f"{len(report.extra)} extra"
    )
    lines.append(("OK: " if report.ok else "FAILED: ") + counts + (f" (manifest {report.manifest})" if report.manifest else ""))
    return "\n".join(lines)


def handler(args) -> int:
    from .store import store_home

    report = verify_bundles(args.bundle_dir or store_home(), args.manifest)
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def add_parser(subparsers):
    """Register ``verify`` on the ``phaselocknet`` command's subparsers."""
    parser = subparsers.add_parser(
        "verify",
        help="re-hash the bundles of a directory and compare them with a manifest",
        description=(
            "Re-hash every *.safetensors under BUNDLE_DIR, check each bundle's content checksum, and compare "
            "with the manifest: reports missing, extra, mismatched and corrupt bundles. Exit status 1 if "
            "anything is wrong."
        ),
    )
    parser.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR", nargs="?", default=None,
                        help="default: the model store ($PHASELOCKNET_HOME or the user cache folder)")
    parser.add_argument(
        "--manifest", type=Path, default=None,
        help=f"manifest to compare with (default: BUNDLE_DIR/{DEFAULT_MANIFEST_NAME}, written by phaselocknet-convert)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=handler)
    return parser
