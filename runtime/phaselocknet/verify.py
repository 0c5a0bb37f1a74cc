"""``phaselocknet verify PATH [--manifest M] [--id PATTERN ... | --expect-all]``: are these the bundles they claim to be?

PATH is one bundle or a folder of them (searched recursively). Each bundle is judged by
its content, whatever its file name: its own content checksum, then the SHA-256 of the
whole file against the ``bundle_sha256`` the manifest pins for the model id the bundle
records. Statuses (docs/cli.md):

- ``intact``: the file's SHA-256 is the one the manifest pins for its id.
- ``unverified``: the bundle is self-consistent, but the manifest pins no hash for its
  id (null, or the id is not listed). ``content_sha256`` is not a signature: anyone can
  rewrite a bundle and recompute it, so only a pinned hash vouches for the weights.
- ``modified``: self-consistent, but the file's SHA-256 is not the pinned one (e.g. a
  crafted bundle whose content checksum was recomputed).
- ``corrupt``: not a readable bundle, or its content checksum fails.
- ``missing``: an id asked for (``--id``, or every manifest id with ``--expect-all``)
  that no bundle holds. Without either, only the bundles present are judged.

The manifest (default: PATH/manifest.json for a folder, the nearest manifest.json in the
file's folder or above for a file) has the format shared with the converter:

    {"format": "phaselocknet-weights-manifest", "format_version": 1,
     "models": [{"id": "task/variant/arch01", "bundle_sha256": "ab12..." | null, ...}, ...]}
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


MANIFEST_FORMAT = "phaselocknet-weights-manifest"
MANIFEST_FORMAT_VERSION = 1
from .constants import BUNDLE_SUFFIX, CONVERTED_MANIFEST_NAME as DEFAULT_MANIFEST_NAME  # noqa: E402

INTACT, UNVERIFIED, MODIFIED, CORRUPT, MISSING = "intact", "unverified", "modified", "corrupt", "missing"
STATUSES = (INTACT, UNVERIFIED, MODIFIED, CORRUPT, MISSING)
FAILING = (MODIFIED, CORRUPT, MISSING)
_GLOB_CHARS = set("*?[")


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or not ours."""


@dataclass
class Check:
    """The verdict on one bundle file (or, for ``missing``, on one id no file holds)."""

    model_id: str | None
    status: str
    path: Path | None = None
    reason: str = ""
    sha256: str | None = None  # of the whole file
    expected: str | None = None  # pinned in the manifest

    def to_dict(self) -> dict:
        return {"id": self.model_id, "status": self.status, "path": str(self.path) if self.path else None,
                "reason": self.reason, "sha256": self.sha256, "expected": self.expected}


@dataclass
class VerifyReport:
    target: Path
    manifest: Path | None
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # no manifest, nothing to check, ...

    def ids(self, status: str) -> list[str]:
        return [check.model_id for check in self.checks if check.status == status]

    @property
    def failed(self) -> bool:
        """Something is wrong: a modified, corrupt or missing bundle, or the check could not run."""
        return bool(self.problems) or any(check.status in FAILING for check in self.checks)

    @property
    def ok(self) -> bool:
        """Every bundle judged is intact (pinned) and none asked for is missing."""
        return not self.failed and all(check.status == INTACT for check in self.checks)

    @property
    def exit_status(self) -> int:
        from .cli.errors import EXIT_CHECK_FAILED, EXIT_FLAGGED, EXIT_OK

        return EXIT_CHECK_FAILED if self.failed else EXIT_OK if self.ok else EXIT_FLAGGED

    def counts(self) -> dict[str, int]:
        return {status: len(self.ids(status)) for status in STATUSES}

    def to_dict(self) -> dict:
        return {
            "target": str(self.target),
            "manifest": str(self.manifest) if self.manifest else None,
            "ok": self.ok,
            "failed": self.failed,
            "counts": self.counts(),
            "bundles": [check.to_dict() for check in self.checks if check.status != MISSING],
            "missing": self.ids(MISSING),
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
    """Bundles under ``bundle_dir`` by path relative to it, without the suffix (not necessarily their ids)."""
    root = Path(bundle_dir)
    found = {}
    for path in sorted(root.rglob(f"*{BUNDLE_SUFFIX}")):
        if path.is_file():
            found[path.relative_to(root).as_posix()[: -len(BUNDLE_SUFFIX)]] = path
    return found


def default_manifest(target: Path) -> Path:
    """PATH/manifest.json for a folder; for a file, the nearest manifest.json in its folder or above."""
    if target.is_dir():
        return target / DEFAULT_MANIFEST_NAME
    for folder in target.resolve().parents:
        if (folder / DEFAULT_MANIFEST_NAME).is_file():
            return folder / DEFAULT_MANIFEST_NAME
    return target.parent / DEFAULT_MANIFEST_NAME


def verify_bundles(
    path: str | os.PathLike,
    manifest_path: str | os.PathLike | None = None,
    *,
    ids: list[str] | None = None,
    expect_all: bool = False,
) -> VerifyReport:
    """Judge the bundle at ``path``, or every bundle under the folder ``path``, by content.

    ``ids``: model ids or glob patterns (``word_recognition/*/arch01``); only bundles
    holding a matching id are judged, and a matching manifest id (or a literal id)
    that no bundle holds is ``missing``. ``expect_all``: every manifest id is asked for.
    """
    target = Path(path)
    manifest = Path(manifest_path) if manifest_path is not None else default_manifest(target)
    report = VerifyReport(target=target, manifest=manifest)
    if target.is_file():
        files = {target.name[: -len(BUNDLE_SUFFIX)] if target.name.endswith(BUNDLE_SUFFIX) else target.name: target}
    elif target.is_dir():
        files = bundle_files(target)
    else:
        report.problems.append(f"{target} is neither a bundle nor a folder: check the path")
        return report
    try:
        entries = read_manifest(manifest)
    except ManifestError as error:
        report.problems.append(
            f"{error}; pass --manifest (e.g. weights_manifest.json) or convert into this folder with "
            "phaselocknet-convert, which writes manifest.json"
        )
        entries = None
    patterns = list(entries or {}) if expect_all else list(ids or [])
    for relative, file in files.items():
        claimed = _claimed_id(file, relative)
        if patterns and not _matches(claimed, patterns):
            continue  # not asked about
        report.checks.append(_judge(file, claimed, entries))
    if patterns:
        _add_missing(report, patterns, entries)
    elif not files:
        report.problems.append(f"no *{BUNDLE_SUFFIX} file under {target}")
    return report


def _claimed_id(file: Path, relative: str) -> str:
    """The id the bundle records (header only, cheap), else the path's guess (for a bundle too damaged to say)."""
    from .bundle import BundleError, read_metadata  # imports torch: only when there is work

    try:
        return read_metadata(file)["model_id"]
    except (BundleError, KeyError):
        return relative


def _matches(model_id: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in patterns)


def _judge(file: Path, claimed: str, entries: dict[str, dict] | None) -> Check:
    from .bundle import BundleError, file_sha256, read_bundle

    try:
        bundle = read_bundle(file)
    except BundleError as error:
        return Check(claimed, CORRUPT, file, str(error))
    model_id, sha256 = bundle.model_id, file_sha256(file)
    check = Check(model_id, UNVERIFIED, file, sha256=sha256)
    entry = None if entries is None else entries.get(model_id)
    if entries is None:
        check.reason = "no manifest to compare with"
    elif entry is None:
        check.reason = "its id is not in the manifest"
    elif entry.get("bundle_sha256") is None:
        check.reason = ("the manifest pins no bundle_sha256 for it: its content checksum holds, but any writer "
                        "can recompute that, so nothing vouches for the weights")
    else:
        check.expected = entry["bundle_sha256"]
        if sha256 == check.expected:
            check.status, check.reason = INTACT, ""
        else:
            check.status, check.reason = MODIFIED, (
                f"sha256 {sha256} but the manifest pins {check.expected}: modified after it was published "
                "(re-download or re-convert it)")
    return check


def _add_missing(report: VerifyReport, patterns: list[str], entries: dict[str, dict] | None) -> None:
    found = {check.model_id for check in report.checks}
    known = set(entries or {}) | found
    wanted = {model_id for model_id in known if _matches(model_id, patterns)}
    for pattern in patterns:
        if not _GLOB_CHARS & set(pattern):
            wanted.add(pattern)  # a literal id asked for, even one the manifest lacks
        elif not any(fnmatch.fnmatchcase(model_id, pattern) for model_id in known):
            report.problems.append(f"--id {pattern!r} matches no model id in the manifest or the bundles")
    for model_id in sorted(wanted - found):
        report.checks.append(Check(model_id, MISSING, reason=f"asked for, but no bundle under {report.target} holds it"))


def format_report(report: VerifyReport) -> str:
    lines = []
    for check in report.checks:
        if check.status != INTACT:
            where = f" ({check.path})" if check.path is not None else ""
            lines.append(f"{check.status.upper():<10}  {check.model_id}{where}: {check.reason}")
    for problem in report.problems:
        lines.append(f"ERROR       {problem}")
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
    verdict = "FAILED" if report.failed else "OK" if report.ok else "UNVERIFIED"
    lines.append(f"{verdict}: {counts}" + (f" (manifest {report.manifest})" if report.manifest else ""))
    return "\n".join(lines)


def handler(args) -> int:
    from .store import store_home

    report = verify_bundles(args.bundle_dir or store_home(), args.manifest, ids=args.ids, expect_all=args.expect_all)
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report), file=sys.stderr if report.failed else sys.stdout)
    return report.exit_status


def add_parser(subparsers):
    """Register ``verify`` on the ``phaselocknet`` command's subparsers."""
    parser = subparsers.add_parser(
        "verify",
        help="check bundles by content against the sha256 a manifest pins",
        description=(
            "Judge a bundle, or every *.safetensors under a folder, by content (not file name): content "
            "checksum, then the file's sha256 against the bundle_sha256 the manifest pins for the id the bundle "
            "records. Each is intact, unverified (no pinned hash), modified or corrupt; ids asked for with --id "
            "or --expect-all and not found are missing. Exit status 0: all intact; 3: none failed, some "
            "unverified; 1: something modified, corrupt or missing, or no usable manifest."
        ),
    )
    parser.add_argument("bundle_dir", type=Path, metavar="PATH", nargs="?", default=None,
                        help="a bundle, or a folder of bundles (default: the model store, $PHASELOCKNET_HOME or the user cache folder)")
    parser.add_argument(
        "--manifest", type=Path, default=None,
        help=f"manifest to compare with (default: PATH/{DEFAULT_MANIFEST_NAME}, written by phaselocknet-convert; "
             f"for a file, the nearest {DEFAULT_MANIFEST_NAME} in its folder or above)",
    )
    asked = parser.add_mutually_exclusive_group()
    asked.add_argument("--id", dest="ids", action="append", default=None, metavar="ID_OR_PATTERN",
                       help="judge only bundles of this model id or glob (repeatable); report it missing if absent")
    asked.add_argument("--expect-all", action="store_true",
                       help="every model of the manifest must be present: report the absent ones missing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=handler)
    return parser
