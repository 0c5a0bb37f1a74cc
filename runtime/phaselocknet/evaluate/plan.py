"""Everything a run needs, checked before any work starts.

``make_plan`` loads every bundle, expands every ``--data`` argument and checks that
each model can take each source (kind, channels, rate, shapes, layer names), so that a
bad bundle, a missing file or an impossible combination fails in seconds with a
message, not hours into a run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..bundle import BundleError, file_sha256, read_metadata
from ..sharing import share_key
from ..store import expand_model_argument
from .content import catalog_fingerprint
from .preprocess import InputSpec, Preprocessing
from .shards import model_key, shard_range
from .sources import AudioSource, Catalog, DataError, HDF5Source, discover

ENSEMBLE = "ensemble"
ACTIVATION_FORMATS = ("h5", "npz")


class PlanError(ValueError):
    """The command cannot run as given; nothing has been written."""


@dataclass
class EvalOptions:
    bundles: list[str]
    data: list[str]
    out: Path
    batch_size: int = 16
    workers: int = 2
    device: str = "auto"
    dbspl: float | None = None
    diotic: bool = False
    strict_length: bool = False
    probs: bool = False
    activations: list[str] = field(default_factory=list)
    activations_format: str = "h5"
    ensemble: bool = False
    # column prefix of the ensemble's outputs (job plans name it after the model group)
    ensemble_name: str = ENSEMBLE
    # compute the nerve representation once for models that share it (same results; off: benchmarks)
    share_front_end: bool = True
    shard: tuple[int, int] = (0, 1)
    seed: int | None = None
    spikes: str = "sample"
    excerpt: str | int = "random"
    front_end: str = "auto"  # nervegram-input models given sounds: "auto"/"bez2018" hear them through BEZ2018
    chunk_size: int = 1000
    overwrite: bool = False
    progress: bool = True
    command: list[str] | None = None

    def __post_init__(self):
        from .shards import parse_shard

        self.out = Path(self.out)
        self.bundles = [str(b) for b in self.bundles]
        self.data = [str(d) for d in self.data]
        self.activations = list(self.activations)
        if isinstance(self.shard, str):
            self.shard = parse_shard(self.shard)


@dataclass
class ModelEntry:
    name: str
    path: str
    model: torch.nn.Module
    sha256: str
    content_sha256: str
    key: int
    spec: InputSpec
    # head -> class labels as written to the CSV, or None when labels are just class numbers
    label_names: dict[str, list[str] | None]
    activation_shapes: dict[str, tuple] = field(default_factory=dict)
    # models with the same key get one nerve representation per batch (None: computed alone)
    share_key: str | None = None


@dataclass
class Plan:
    options: EvalOptions
    device: torch.device
    models: list[ModelEntry]
    specs: list[InputSpec]
    catalog: Catalog
    examples: range  # this shard's global example numbers
    ensemble_heads: dict[str, int]
    ensemble_labels: dict[str, list[str] | None]
    preprocessing: Preprocessing
    header: list[str]
    prob_keys: list[tuple[str, int]]  # (key, n_classes)
    activation_keys: list[tuple[str, tuple]]  # (key, per-example shape)
    fingerprint: dict

    @property
    def paths(self) -> "OutputPaths":
        return OutputPaths.of(self.options.out, self.options.activations_format if self.options.activations else None)


@dataclass(frozen=True)
class OutputPaths:
    csv: Path
    sidecar: Path
    probs: Path
    activations: Path | None

    @classmethod
    def of(cls, out: Path, activations_format: str | None) -> "OutputPaths":
        stem = out.with_suffix("")
        acts = stem.with_name(f"{stem.name}.activations.{activations_format}") if activations_format else None
        return cls(out, stem.with_name(f"{stem.name}.json"), stem.with_name(f"{stem.name}.probs.npz"), acts)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PlanError(f"--device {name}: no CUDA device is available to torch here (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise PlanError(f"--device {name}: {error}") from None


def expand_bundles(arguments: list[str]) -> list[str]:
    paths: list[str] = []
    for argument in arguments:
        matches = sorted(glob.glob(argument, recursive=True)) if glob.has_magic(argument) else []
        if os.path.exists(argument) or matches:
            paths += matches or [argument]
        else:  # a model id, variant id or id pattern, looked up in the model store
            paths += [str(p) for p in expand_model_argument(argument)]
    if not paths:
        raise PlanError("give at least one bundle")
    return paths


def check_options(options: EvalOptions) -> None:
    out = Path(options.out)
    if out.suffix.lower() != ".csv":
        raise PlanError(f"--out {out}: name the results file with a .csv suffix (probabilities, activations and "
                        "the JSON sidecar are written beside it)")
    if out.is_dir():
        raise PlanError(f"--out {out} is a folder; name a .csv file")
    for name, low in (("batch_size", 1), ("workers", 0), ("chunk_size", 1)):
        if getattr(options, name) < low:
            raise PlanError(f"--{name.replace('_', '-')} must be at least {low}")
    if options.seed is not None and options.seed < 0:
        raise PlanError("--seed must be a non-negative integer")
    if options.activations_format not in ACTIVATION_FORMATS:
        raise PlanError(f"--activations-format {options.activations_format}: use one of {ACTIVATION_FORMATS}")
    if options.activations and options.activations_format == "h5":
        try:
            import h5py  # noqa: F401
        except ImportError:
            raise PlanError("--activations in HDF5 needs h5py (pip install 'phaselocknet[eval]'), "
                            "or pass --activations-format npz") from None


def load_models(options: EvalOptions, device: torch.device, catalog: Catalog | None = None) -> list[ModelEntry]:
    import phaselocknet

    from ..bez2018.front_end import resolve_front_end

    from ..labels import format_label

    entries: list[ModelEntry] = []
    for path in expand_bundles(options.bundles):
        metadata = read_metadata(path)  # BundleError (a ValueError) names the path and the fix
        model = phaselocknet.load(path, spikes=options.spikes, excerpt=options.excerpt, map_location=device)
        model = resolve_front_end(model, options.front_end, sounds=catalog is not None and _has_sounds(catalog))
        label_names = {}
        for head in model.heads:
            labels = model.labels(head)
            known = any(not isinstance(label, int) or label != k for k, label in enumerate(labels))
            label_names[head] = [format_label(label) for label in labels] if known else None
        entries.append(ModelEntry(
            name=model.model_id or Path(path).stem,
            path=str(path),
            model=model,
            sha256=file_sha256(path),
            content_sha256=metadata["content_sha256"],
            key=model_key(metadata["content_sha256"]),
            spec=InputSpec.of(model),
            label_names=label_names,
            # Each model draws from its own example seeds, so only deterministic front ends are shared.
            share_key=share_key(model, same_seeds=False) if options.share_front_end else None,
        ))
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.content_sha256 in seen:
            raise PlanError(f"{entry.path} is the same model as {seen[entry.content_sha256]}; give each model once")
        seen[entry.content_sha256] = entry.path
    names = [e.name for e in entries]
    for entry in entries:
        if names.count(entry.name) > 1:
            entry.name = f"{entry.name}@{entry.content_sha256[:8]}"
    return entries


def _has_sounds(catalog: Catalog) -> bool:
    """Whether some source holds sounds only (no stored nervegrams to give a nervegram model).
    TFRecord nervegrams are raw bytes whose shape depends on the model: stored if they have a size."""
    return any(isinstance(s, AudioSource) or (s.nervegram_shape or getattr(s, "nervegram_bytes", None)) is None
               for s in catalog.sources)


def check_compatibility(models: list[ModelEntry], catalog: Catalog, options: EvalOptions) -> None:
    nervegram = [m for m in models if m.spec.kind == "nervegram"]
    waveform = [m for m in models if m.spec.kind == "waveform"]
    if nervegram and waveform:
        raise PlanError(f"{nervegram[0].name} takes nervegrams and {waveform[0].name} takes sounds: evaluate them in "
                        "separate runs")
    if nervegram and options.dbspl is not None:
        raise PlanError(f"--dbspl sets a sound level; {nervegram[0].name} takes nervegrams (spikes/s), which are used as stored")
    for source in catalog.sources:
        where = source.path if not isinstance(source, AudioSource) else f"{source.paths[0]} (and {source.n - 1} other sound files)"
        if isinstance(source, AudioSource):
            if nervegram:
                raise PlanError(f"{nervegram[0].name} takes nervegrams; {where} are sounds. Give HDF5 files with a "
                                "'nervegram_meanrates' dataset")
            continue
        for model in nervegram:
            # TFRecord nervegrams are raw bytes: their shape depends on the model's layout.
            shape = source.nervegram_shape_for(model.spec) if hasattr(source, "nervegram_shape_for") else source.nervegram_shape
            if shape is None:
                raise PlanError(f"{model.name} takes nervegrams; {source.path} has no 'nervegram_meanrates' dataset")
            stored_binaural = len(shape) == 4
            if stored_binaural != model.spec.binaural or (stored_binaural and shape[3] != 2):
                raise PlanError(f"{source.path}: nervegrams of shape {shape} (freq, time, spont[, ear]) do not fit "
                                f"{model.name} ({model.spec.describe()})")
            freq = model.spec.shape[-2]
            if shape[0] != freq:
                raise PlanError(f"{source.path}: nervegrams have {shape[0]} frequency channels; {model.name} takes {freq}")
        for model in waveform:
            if source.signal_shape is None:
                raise PlanError(f"{model.name} takes sounds; {source.path} has no 'signal' dataset")
            if source.rate is None and not source.rate_per_example:
                raise PlanError(f"{source.path} has no 'sr' dataset giving the sample rate of 'signal'")
            channels = source.signal_channels
            if model.spec.binaural and channels == 1 and not options.diotic:
                raise PlanError(f"{source.path} holds mono sounds and {model.name} is binaural: pass --diotic to play "
                                "each sound to both ears")
            if not model.spec.binaural and channels == 2:
                raise PlanError(f"{source.path} holds binaural sounds (n, time, 2) and {model.name} takes mono sounds")


def ensemble_heads(models: list[ModelEntry]) -> tuple[dict[str, int], dict[str, list[str] | None]]:
    heads: dict[str, int] = {}
    labels: dict[str, list[str] | None] = {}
    for model in models:
        for head, n in model.model.heads.items():
            if head in heads and heads[head] != n:
                raise PlanError(f"--ensemble: head {head} has {heads[head]} classes in one model and {n} in {model.name}")
            if head in labels and labels[head] is not None and model.label_names[head] not in (None, labels[head]):
                raise PlanError(f"--ensemble: models name the classes of {head} differently ({model.name})")
            heads[head] = n
            labels[head] = labels.get(head) or model.label_names[head]
    return dict(sorted(heads.items())), labels


def activation_shapes(models: list[ModelEntry], layers: list[str]) -> None:
    """Check the layer names and record each activation's per-example shape (known from the arch)."""
    for model in models:
        network = model.model.network
        shapes = {"nerve": tuple(network.input_shape)}
        shapes.update({name: network.output_shapes[name] for name in network.layer_names})
        unknown = [name for name in layers if name not in shapes]
        if unknown:
            raise PlanError(f"--activations {','.join(unknown)}: {model.name} has no such layer; its layers are "
                            f"{', '.join(shapes)}")
        heads = [name for name in layers if not isinstance(shapes[name], tuple)]
        if heads:
            raise PlanError(f"--activations {','.join(heads)}: that is the classification layer; use --probs")
        model.activation_shapes = {name: tuple(int(s) for s in shapes[name]) for name in layers}


RESERVED_COLUMNS = ("example", "source", "index", "error")


def output_header(models: list[ModelEntry], metadata: list[str], heads: dict[str, int] | None,
                  labels: dict[str, list[str] | None], ensemble: str = ENSEMBLE) -> list[str]:
    # A stimulus file may well have a dataset called "index"; it keeps its values under "data/index".
    header = ["example", "source", "index", *(f"data/{m}" if m in RESERVED_COLUMNS else m for m in metadata)]
    for model in models:
        for head in model.model.heads:
            header.append(f"{model.name}/{head}.pred")
            if model.label_names[head] is not None:
                header.append(f"{model.name}/{head}.label")
    for head in heads or {}:
        header += [f"{ensemble}/{head}.pred"]
        if labels[head] is not None:
            header.append(f"{ensemble}/{head}.label")
        header.append(f"{ensemble}/{head}.prob")
    header.append("error")
    clash = sorted({h for h in header if header.count(h) > 1})
    if clash:
        raise PlanError(f"output columns {clash} appear twice (a metadata dataset shares a name with an output column)")
    return header


def make_plan(options: EvalOptions) -> Plan:
    check_options(options)
    device = resolve_device(options.device)
    try:
        catalog = discover(options.data)
    except DataError as error:
        raise PlanError(str(error)) from None
    try:
        models = load_models(options, device, catalog)
    except BundleError:
        raise
    except ValueError as error:
        raise PlanError(str(error)) from None
    check_compatibility(models, catalog, options)
    if options.activations:
        activation_shapes(models, options.activations)
    specs = list(dict.fromkeys(m.spec for m in models))
    heads, labels = ensemble_heads(models) if options.ensemble else ({}, {})
    header = output_header(models, catalog.metadata_columns, heads, labels, options.ensemble_name)
    prob_keys = [(f"{m.name}/{head}", n) for m in models for head, n in m.model.heads.items()]
    prob_keys += [(f"{options.ensemble_name}/{head}", n) for head, n in heads.items()]
    activation_keys = [(f"{m.name}/{layer}", m.activation_shapes[layer]) for m in models for layer in options.activations]
    index, count = options.shard
    fingerprint = _fingerprint(options, models, catalog, header)
    return Plan(
        options=options,
        device=device,
        models=models,
        specs=specs,
        catalog=catalog,
        examples=shard_range(len(catalog), index, count),
        ensemble_heads=heads,
        ensemble_labels=labels,
        preprocessing=Preprocessing(level_db=options.dbspl, diotic=options.diotic, strict_length=options.strict_length),
        header=header,
        prob_keys=prob_keys,
        activation_keys=activation_keys,
        fingerprint=fingerprint,
    )


def _fingerprint(options: EvalOptions, models: list[ModelEntry], catalog: Catalog, header: list[str]) -> dict:
    """What makes two runs' rows interchangeable: resume and merge refuse any difference."""
    fingerprint = {
        "bundles": [m.content_sha256 for m in models],
        "names": [m.name for m in models],
        "data": _data_digest(catalog),
        # By content: a file changed between a kill and the rerun (or between shards) is refused.
        "data_content": catalog_fingerprint(catalog),
        "examples": len(catalog),
        "columns": header,
        "spikes": options.spikes,
        "excerpt": options.excerpt,
        "dbspl": options.dbspl,
        "diotic": options.diotic,
        "strict_length": options.strict_length,
        "probs": options.probs,
        "activations": list(options.activations),
        "activations_format": options.activations_format if options.activations else None,
        "ensemble": options.ensemble,
        "seed": options.seed,
        "shard": list(options.shard),
    }
    front_ends = ["bez2018" if hasattr(m.model, "nervegram_model") else None for m in models]
    if any(front_ends):  # recorded only when used, so fingerprints of runs without one stay as they were
        fingerprint["front_end"] = front_ends
    return fingerprint


def _data_digest(catalog: Catalog) -> str:
    """Identity of the example sequence: every file in order (as named, so shards run where the
    data is mounted elsewhere still merge), with its example count."""
    digest = hashlib.sha256()
    for source in catalog.sources:
        if isinstance(source, HDF5Source):
            digest.update(json.dumps(["hdf5", source.path, source.n]).encode())
        elif not isinstance(source, AudioSource):
            digest.update(json.dumps([source.kind, source.path, source.n]).encode())
        else:
            digest.update(json.dumps(["audio", source.paths]).encode())
    return digest.hexdigest()
