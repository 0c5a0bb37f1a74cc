"""``phaselocknet eval ... --format authors --out DIR``: the authors' EVAL_<name>.json files.

Their analysis code (msaddler/phaselocknet) reads what ``util_evaluate.write_output_dict_to_file``
writes: one JSON object (keys sorted) per model and stimulus set whose 1-D entries are lists,
one value per example, and whose entries of more than one dimension are saved beside it as
``.npy`` files, the JSON holding the file name (``EVAL_<name>_<key with '/' and ':' as '_'>.npy``).
Keys, as their ``process_example`` builds them: every stimulus metadata field (strings too),
``<head>:labels_pred`` (argmax), ``<head>:probs_out`` (softmax, (n, classes): a side file) and
``<head>:labels_true`` where the stimulus carries the label (the field named ``<head>``, which
they pop). For localization heads the true label is computed from ``foreground_azimuth`` and
``foreground_elevation`` as their ``prepare_localization_example`` does:
``int(elevation / 10 * 72 + azimuth / 5)`` (truncated, as ``tf.cast`` to int64).

The run itself is an ordinary ``eval`` into ``DIR/phaselocknet_eval.csv`` (+ ``.probs.npz``,
so it resumes and shards as usual); the JSON files are written from it at the end, to
``DIR/<model name>/EVAL_<name>.json``. Examples that failed (the CSV's error column) have
``labels_pred`` -1 and NaN probabilities, which the authors' files never contain.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ..bundle import write_atomic
from ..labels import LOCALIZATION_HEAD

RUN_CSV = "phaselocknet_eval.csv"
FIXED_COLUMNS = ("example", "source", "index")
AZIMUTH, ELEVATION = "foreground_azimuth", "foreground_elevation"


def run_csv(out_dir: Path) -> Path:
    return Path(out_dir) / RUN_CSV


def default_name(data: list[str]) -> str:
    """The folder holding the first stimulus set (the authors keep one folder per experiment)."""
    first = Path(data[0].split("*")[0]) if data else Path("eval")
    folder = first if first.is_dir() else first.parent
    return folder.resolve().name or "eval"


def write_authors_outputs(out_dir: Path, name: str) -> list[Path]:
    """EVAL_<name>.json (+ .npy) per model from the finished run in ``out_dir``; their paths."""
    out_dir = Path(out_dir)
    header, rows = _read_csv(run_csv(out_dir))
    with np.load(run_csv(out_dir).with_suffix(".probs.npz")) as npz:
        probs = {key: npz[key] for key in npz.files}
    pred_columns = [h for h in header if h.endswith(".pred")]
    first_pred = header.index(pred_columns[0]) if pred_columns else header.index("error")
    metadata = {_field(h): _column([r[header.index(h)] for r in rows]) for h in header[len(FIXED_COLUMNS):first_pred]}
    written = []
    models: dict[str, list[str]] = {}
    for key in sorted(probs):
        model, _, head = key.rpartition("/")
        if model and model != "ensemble":  # other keys (the example numbers) are not model outputs
            models.setdefault(model, []).append(head)
    for model, heads in models.items():
        output = dict(metadata)
        for head in heads:
            p = probs[f"{model}/{head}"]
            output[f"{head}:probs_out"] = p
            ok = ~np.isnan(p).any(axis=1)
            pred = np.full(len(p), -1, dtype=np.int64)
            pred[ok] = p[ok].argmax(axis=1)
            output[f"{head}:labels_pred"] = pred
            truth = _true_labels(head, output)
            if truth is not None:
                output[f"{head}:labels_true"] = truth
        written.append(write_output_dict(output, out_dir / model / f"EVAL_{name}.json"))
    return written


def _true_labels(head: str, output: dict):
    if head == LOCALIZATION_HEAD and AZIMUTH in output and ELEVATION in output:
        azimuth, elevation = (np.asarray(output[k], dtype=np.float64) for k in (AZIMUTH, ELEVATION))
        output.pop(head, None)
        return np.trunc(elevation / 10 * 72 + azimuth / 5).astype(np.int64)
    if head in output:
        return np.asarray(output.pop(head))
    return None


def write_output_dict(output: dict, path: Path) -> Path:
    """As util_evaluate.write_output_dict_to_file: arrays of more than one axis to .npy beside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {}
    for key, value in output.items():
        array = np.asarray(value)
        if array.ndim > 1:
            side = path.stem + "_" + key.replace("/", "_").replace(":", "_") + ".npy"
            buffer = io.BytesIO()
            np.save(buffer, array)
            write_atomic(path.parent / side, buffer.getvalue())
            document[key] = side
        else:
            document[key] = [_plain(v) for v in array.tolist()] if array.ndim else _plain(array.item())
    write_atomic(path, json.dumps(document, sort_keys=True).encode())
    return path


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def _field(column: str) -> str:
    # The CSV prefixes metadata that clashes with its own columns with "data/".
    return column[len("data/"):] if column.startswith("data/") and column[len("data/"):] in FIXED_COLUMNS + ("error",) else column


def _column(cells: list[str]) -> list:
    """A metadata column as the values it was written from: ints, floats (NaN where empty) or strings."""
    present = [c for c in cells if c != ""]
    for kind in (int, float):
        try:
            [kind(c) for c in present]
        except ValueError:
            continue
        if kind is int and len(present) == len(cells):
            return [int(c) for c in cells]
        if kind is float or not present:
            return [float(c) if c != "" else math.nan for c in cells]
    return cells
