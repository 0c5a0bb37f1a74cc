"""The ``phaselocknet-convert`` command (also ``python -m phaselocknet_convert``).

    phaselocknet-convert MODEL_DIR [MODEL_DIR ...] --out OUT_DIR [--root ROOT]
                         [--word-labels CSV] [--force] [--strict] [--manifest PATH]
    phaselocknet-convert manifest MODELS_ROOT [-o weights_manifest.json]
"""

from __future__ import annotations

import argparse
import glob
import sys
import warnings
from pathlib import Path

from . import CONVERTER_VERSION
from .convert import CONVERTED, FAILED, UP_TO_DATE, ConversionResult, ManifestMismatchWarning, convert_model_dir
from .errors import ConversionError
from .manifest import (
    ManifestError,
    build_manifest,
    dumps,
    find_model_dirs,
    manifest_entry,
    read_manifest,
    update_manifest,
    write_manifest,
)

from phaselocknet.constants import CONVERTED_MANIFEST_NAME as OUT_MANIFEST_NAME, MANIFEST_NAME  # noqa: E402
_GLOB_CHARS = set("*?[")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "manifest":
        return manifest_main(argv[1:])
    return convert_main(argv)


# ------------------------------------------------------------------ convert
def convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phaselocknet-convert",
        description=(
            "Convert the authors' checkpoints (model directories holding config.json, arch.json and either "
            "ckpt_BEST.index + ckpt_BEST.data-00000-of-00001 (TensorFlow) or ckpt_BEST.pt (PyTorch, from "
            "phaselocknet_torch)) to phaselocknet bundles. A directory of model "
            "directories, or a glob, converts every model in it. "
            "Also: 'phaselocknet-convert manifest MODELS_ROOT' writes weights_manifest.json."
        ),
    )
    parser.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR",
                        help="model directory, directory containing model directories, or glob")
    parser.add_argument("--out", default=None, type=Path, metavar="OUT_DIR",
                        help="bundles go to OUT_DIR/<model id>.safetensors; OUT_DIR/manifest.json lists their sha256 "
                             "(default: the model store, $PHASELOCKNET_HOME or the user cache folder, where "
                             "phaselocknet.load finds models by id)")
    parser.add_argument("--root", type=Path, default=None,
                        help="model ids are paths relative to ROOT (e.g. sound_localization/IHC3000/arch01); "
                             "default: the directory's last three path parts when they are a published model id, "
                             "else the directory name")
    parser.add_argument("--word-labels", type=Path, default=None, metavar="CSV",
                        help="the authors' word_int_encoding.csv: embed word class names in word-head bundles")
    parser.add_argument("--force", action="store_true", help="convert even when the bundle is up to date")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a model whose config.json/arch.json differ from (or are absent in) the manifest")
    parser.add_argument("--manifest", type=Path, default=None,
                        help=f"published manifest to check config/arch against (default: ./{MANIFEST_NAME}, "
                             "else the one in the phaselocknet source tree, if any)")
    parser.add_argument("--source", choices=("auto", "tf", "torch"), default="auto",
                        help="checkpoint to convert: tf (ckpt_BEST.index + .data, needs TensorFlow), torch (the "
                             "authors' ckpt_BEST.pt, torch alone), auto (the one present; default)")
    parser.add_argument("--version", action="version", version=f"phaselocknet-convert {CONVERTER_VERSION}")
    return parser


def default_manifest_path() -> Path | None:
    from phaselocknet.store import published_manifest_path

    for candidate in (Path.cwd() / MANIFEST_NAME, published_manifest_path()):
        if candidate.is_file():
            return candidate
    return None


def expand_model_dirs(arguments: list[str]) -> tuple[list[Path], list[ConversionResult]]:
    """Model directories named by the arguments, and a failure for each argument that names none."""
    found: dict[Path, None] = {}
    failures = []
    for argument in arguments:
        paths = sorted(Path(p) for p in glob.glob(argument)) if _GLOB_CHARS & set(argument) else [Path(argument)]
        dirs = [d for path in paths if path.is_dir() for d in find_model_dirs(path, require_checkpoint=True)]
        if not dirs:
            why = "does not exist" if not paths or not any(p.exists() for p in paths) else (
                "holds no model directory (config.json + arch.json + ckpt_BEST.index or ckpt_BEST.pt)")
            failures.append(ConversionResult(model_id=argument, status=FAILED, reason=f"{argument} {why}"))
        for d in dirs:
            found[d.resolve()] = None
    return list(found), failures


def model_id_for(model_dir: Path, root: Path | None) -> str:
    if root is None:
        from phaselocknet.store import published_models

        tail = "/".join(model_dir.resolve().parts[-3:])
        return tail if tail in published_models() else model_dir.name
    try:
        return model_dir.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ConversionError(f"{model_dir} is not under --root {root}") from None


def convert_main(argv: list[str]) -> int:
    args = convert_parser().parse_args(argv)
    if args.out is None:
        from phaselocknet.store import store_home

        args.out = store_home()
    manifest_path = args.manifest or default_manifest_path()
    manifest = None
    if manifest_path is not None:
        try:
            manifest = read_manifest(manifest_path)
        except ManifestError as error:
            print(f"phaselocknet-convert: error: --manifest: {error}", file=sys.stderr)
            return 2
    elif args.strict:
        print(f"phaselocknet-convert: error: --strict needs a manifest (--manifest {MANIFEST_NAME})", file=sys.stderr)
        return 2
    else:
        print("phaselocknet-convert: note: no manifest found; config.json/arch.json are not checked "
              "against the published ones (pass --manifest)", file=sys.stderr)
    if args.word_labels is not None and not args.word_labels.is_file():
        print(f"phaselocknet-convert: error: --word-labels {args.word_labels} not found", file=sys.stderr)
        return 2

    model_dirs, results = expand_model_dirs(args.model_dirs)
    converted_entries = []
    ids_seen: dict[str, Path] = {}
    with warnings.catch_warnings():
        # Shown in the summary instead, once per model.
        warnings.simplefilter("ignore", ManifestMismatchWarning)
        progress = _progress(model_dirs)
        for model_dir in progress:
            result = _convert_one(model_dir, args, manifest, ids_seen)
            progress.set_postfix_str(f"{result.model_id}: {result.status}", refresh=False)
            results.append(result)
            if result.status != FAILED:
                try:
                    converted_entries.append(manifest_entry(model_dir, result.model_id, bundle_sha256=result.bundle_sha256))
                except ConversionError as error:
                    result.status, result.reason = FAILED, str(error)
    if converted_entries:
        try:
            update_manifest(args.out / OUT_MANIFEST_NAME, converted_entries)
        except (ManifestError, OSError) as error:  # OSError: lock timeout, unwritable, disk full
            print(f"phaselocknet-convert: error: cannot update {args.out / OUT_MANIFEST_NAME}: {error}", file=sys.stderr)
            return 1
    print(summary_table(results, args.out))
    return 1 if any(r.status == FAILED for r in results) else 0


def _progress(model_dirs: list[Path]):
    """A tqdm bar where tqdm is installed (the convert extra); ckpt_BEST.pt conversion needs only torch."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar(model_dirs)
    return tqdm(model_dirs, desc="converting", unit="model", file=sys.stderr, dynamic_ncols=True)


class _NoBar(list):
    def set_postfix_str(self, *args, **kwargs) -> None:
        pass


def _convert_one(model_dir: Path, args, manifest, ids_seen: dict[str, Path]) -> ConversionResult:
    model_id = model_dir.name
    try:
        model_id = model_id_for(model_dir, args.root)
        if model_id in ids_seen:
            raise ConversionError(
                f"{model_dir} and {ids_seen[model_id]} both get model id {model_id!r}: pass --root so ids are "
                "their paths"
            )
        ids_seen[model_id] = model_dir
        return convert_model_dir(
            model_dir, args.out, model_id=model_id, word_labels=args.word_labels, force=args.force,
            manifest=manifest, strict=args.strict, source=args.source,
        )
    except ConversionError as error:
        return ConversionResult(model_id=model_id, status=FAILED, reason=str(error))
    except Exception as error:  # one broken model must not stop the others
        return ConversionResult(model_id=model_id, status=FAILED, reason=f"{type(error).__name__}: {error}")


def summary_table(results: list[ConversionResult], out_dir: Path) -> str:
    width = max([len("model")] + [len(r.model_id) for r in results])
    lines = [f"{'model':<{width}}  {'status':<10}  detail", f"{'-' * width}  {'-' * 10}  {'-' * 6}"]
    for r in sorted(results, key=lambda r: r.model_id):
        if r.status == FAILED:
            detail = r.reason
        else:
            detail = f"{r.bundle}  sha256 {r.bundle_sha256[:16]}..." if r.bundle_sha256 else str(r.bundle)
            if r.status == CONVERTED:
                detail += f"  ({r.seconds:.1f} s)"
        lines.append(f"{r.model_id:<{width}}  {r.status:<10}  {detail}")
        for warning in r.warnings:
            lines.append(f"{'':<{width}}  {'warning':<10}  {warning}")
    counts = {s: sum(r.status == s for r in results) for s in (CONVERTED, UP_TO_DATE, FAILED)}
    lines.append(
        f"{counts[CONVERTED]} converted, {counts[UP_TO_DATE]} up to date, {counts[FAILED]} failed "
        f"(bundles in {out_dir}, checksums in {out_dir / OUT_MANIFEST_NAME})"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------- manifest
def manifest_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phaselocknet-convert manifest",
        description="Write the manifest of a published model tree (<task>/<variant>/<arch>/{config.json,arch.json}).",
    )
    parser.add_argument("models_root", type=Path, metavar="MODELS_ROOT")
    parser.add_argument("-o", "--output", type=Path, default=Path(MANIFEST_NAME),
                        help=f"output file (default ./{MANIFEST_NAME}); '-' prints to stdout")
    args = parser.parse_args(argv)
    try:
        manifest = build_manifest(args.models_root, progress=sys.stderr.isatty())
    except ConversionError as error:
        print(f"phaselocknet-convert manifest: error: {error}", file=sys.stderr)
        return 1
    if str(args.output) == "-":
        sys.stdout.write(dumps(manifest))
    else:
        write_manifest(args.output, manifest)
        print(f"wrote {args.output}: {manifest['n_models']} models", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
