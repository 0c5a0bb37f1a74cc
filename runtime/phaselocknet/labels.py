"""Class index -> label for each task head."""

from __future__ import annotations

import csv
from pathlib import Path

LOCALIZATION_HEAD = "label_loc_int"
WORD_HEAD = "label_word_int"
SPEAKER_HEAD = "label_speaker_int"

# The localization classes tile azimuth in 5 degree steps (72 per circle) and
# elevation in 10 degree steps: class = (elevation / 10) * 72 + azimuth / 5.
AZIMUTH_STEP_DEG = 5
ELEVATION_STEP_DEG = 10
AZIMUTHS_PER_ELEVATION = 72


def localization_label(index: int) -> tuple[int, int]:
    """(azimuth, elevation) in degrees of localization class ``index``."""
    return (
        (index % AZIMUTHS_PER_ELEVATION) * AZIMUTH_STEP_DEG,
        (index // AZIMUTHS_PER_ELEVATION) * ELEVATION_STEP_DEG,
    )


def head_labels(head: str, n_classes: int, names: dict[str, list] | None = None) -> list:
    """Labels of every class of ``head``.

    Localization classes decode to (azimuth, elevation) tuples in degrees; word
    classes to their names when the bundle carries them; anything else (speakers,
    words without names) stays the integer class index.
    """
    if head == LOCALIZATION_HEAD:
        return [localization_label(k) for k in range(n_classes)]
    if names and head in names:
        if len(names[head]) != n_classes:
            raise ValueError(
                f"bundle carries {len(names[head])} label names for {head!r} but the head has "
                f"{n_classes} classes"
            )
        return list(names[head])
    return list(range(n_classes))


def format_label(label) -> str:
    """Human-readable form of one label, as printed by the CLI and written to CSVs."""
    if isinstance(label, tuple):
        azimuth, elevation = label
        return f"azimuth {azimuth} deg, elevation {elevation} deg"
    if label == "":
        return "<no word>"
    return str(label)


def read_word_labels(csv_path: str | Path, n_classes: int | None = None) -> list[str]:
    """Word names indexed by class from the authors' ``word_int_encoding.csv``.

    The file maps each word to its class in the ``wsn`` column; rows with an empty
    ``wsn`` belong to another vocabulary and are skipped. Class 0 is the empty
    string (no word).
    """
    names: dict[int, str] = {}
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "wsn" not in reader.fieldnames or "word" not in reader.fieldnames:
            raise ValueError(f"{csv_path}: expected columns 'word' and 'wsn' (the authors' word_int_encoding.csv)")
        for row in reader:
            if row["wsn"].strip():
                names[int(float(row["wsn"]))] = row["word"]
    count = max(names) + 1 if names else 0
    if n_classes is not None and count != n_classes:
        raise ValueError(f"{csv_path}: holds {count} word classes, the word head has {n_classes}")
    missing = [k for k in range(count) if k not in names]
    if missing:
        raise ValueError(f"{csv_path}: no word for classes {missing[:10]}")
    return [names[k] for k in range(count)]
