"""``--data 'DIR/*.tfrecords'``: the authors' TFRecord stimulus sets as an evaluation source.

Each record is one example (``util_tfrecords.serialize_example``): ``nervegram_meanrates``
(or ``signal``) as raw bytes, ``sr`` and labels as scalars, other metadata as scalars or raw
strings. Discovery reads every file once to index its records (lengths and their CRCs
checked: a damaged file is an error before any work starts); reading checks each record's
data CRC, and a record that fails is a flagged row.

Raw bytes carry no shape. With the authors' ``config_bytes_description.pkl`` beside the
records (read so that it cannot run code, ``tfrecord.read_bytes_description``) dtypes and
shapes come from it; without it a nervegram is taken as the authors stored theirs, float16
(freq, time, 3 spont groups[, 2 ears]), its time length from the byte count and the model's
layout (``nervegram_shape_for``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tfrecord import BYTES_DESCRIPTION_NAMES, TFRecordError, is_gzip, open_records, parse_example, read_bytes_description, read_record, scan_offsets

TFRECORD_SUFFIXES = (".tfrecords", ".tfrecord")
NERVEGRAM_KEY = "nervegram_meanrates"
SIGNAL_KEY = "signal"
RATE_KEY = "sr"
AUTHORS_NERVEGRAM_DTYPE = np.dtype("<f2")
AUTHORS_SPONT_GROUPS = 3
MAX_TEXT_BYTES = 4096  # a raw-bytes feature this short that decodes as UTF-8 is string metadata


@dataclass
class TFRecordSource:
    path: str
    n: int
    offsets: list[int]
    compressed: bool
    description: dict | None
    nervegram_bytes: int | None  # size of the first record's nervegram feature
    signal_shape: tuple | None
    rate: float | None
    metadata: list[str] = field(default_factory=list)

    kind = "tfrecord"
    rate_per_example = True

    @property
    def nervegram_shape(self) -> tuple | None:
        if self.description and NERVEGRAM_KEY in self.description:
            return self.description[NERVEGRAM_KEY]["shape"]
        return None

    def nervegram_shape_for(self, spec) -> tuple | None:
        """The stored (freq, time, spont[, ear]) shape, read as a model of ``spec`` would."""
        if self.nervegram_shape is not None or self.nervegram_bytes is None:
            return self.nervegram_shape
        return infer_nervegram_shape(self.nervegram_bytes // AUTHORS_NERVEGRAM_DTYPE.itemsize, spec)

    @property
    def signal_channels(self) -> int | None:
        if self.signal_shape is None:
            return None
        return 1 if len(self.signal_shape) == 1 else int(self.signal_shape[1])

    def describe(self) -> dict:
        return {"kind": "tfrecord", "path": self.path, "examples": self.n, "gzip": self.compressed}


def infer_nervegram_shape(elements: int, spec) -> tuple:
    """(freq, time, 3[, 2]) holding ``elements`` values for a model of ``spec``, or a ValueError."""
    freq = int(spec.shape[-2])
    ears = 2 if spec.binaural else 1
    per_time = freq * AUTHORS_SPONT_GROUPS * ears
    if elements % per_time:
        raise ValueError(
            f"a nervegram of {elements} values is not (freq={freq}, time, {AUTHORS_SPONT_GROUPS} spont"
            f"{', 2 ears' if ears == 2 else ''}) float16 as the authors stored theirs; put their "
            f"{BYTES_DESCRIPTION_NAMES[0]} beside the records"
        )
    return (freq, elements // per_time, AUTHORS_SPONT_GROUPS) + ((2,) if ears == 2 else ())


def flat_nervegram(flat: np.ndarray, spec) -> np.ndarray:
    """A flat stored nervegram (authors' order) as ours, (ears?, spont, freq, time)."""
    from .sources import _authors_nervegram_to_ours

    shape = infer_nervegram_shape(flat.size, spec)
    return _authors_nervegram_to_ours(flat.reshape((1,) + shape))[0]


def _description_beside(path: str) -> dict | None:
    for name in BYTES_DESCRIPTION_NAMES:
        candidate = Path(path).parent / name
        if candidate.is_file():
            return read_bytes_description(str(candidate))
    return None


def inspect_tfrecord(path: str, error_type=ValueError) -> TFRecordSource:
    """Index a TFRecord file and read its first example's features; problems raise ``error_type``."""
    try:
        description = _description_beside(path)
        offsets = scan_offsets(path)
        first = {}
        if offsets:
            with open_records(path) as stream:
                first = parse_example(read_record(stream, path, 0))
    except (TFRecordError, OSError, EOFError) as error:
        raise error_type(f"--data {path}: {error}") from error
    if offsets and NERVEGRAM_KEY not in first and SIGNAL_KEY not in first:
        raise error_type(f"--data {path}: its examples have no '{SIGNAL_KEY}' or '{NERVEGRAM_KEY}' feature")
    nervegram = first.get(NERVEGRAM_KEY)
    signal_shape = None
    if SIGNAL_KEY in first and description and SIGNAL_KEY in description:
        signal_shape = description[SIGNAL_KEY]["shape"]
    rate = first.get(RATE_KEY)
    metadata = sorted(name for name, feature in first.items() if _is_metadata(name, feature, description))
    return TFRecordSource(
        path=path, n=len(offsets), offsets=offsets, compressed=is_gzip(path), description=description,
        nervegram_bytes=len(nervegram.values[0]) if nervegram is not None and nervegram.values else None,
        signal_shape=signal_shape, rate=float(rate.values[0]) if rate is not None and len(rate.values) else None,
        metadata=metadata,
    )


def _is_metadata(name: str, feature, description: dict | None) -> bool:
    if name in (NERVEGRAM_KEY, SIGNAL_KEY):
        return False
    if feature.kind != "bytes":
        return len(feature.values) == 1
    if description and name in description:
        return description[name]["dtype"].kind in "SU" or description[name]["shape"] == ()
    value = feature.values[0] if len(feature.values) == 1 else None
    if value is None or len(value) > MAX_TEXT_BYTES:
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class TFRecordReader:
    """Reads records by index; one open stream per file and process (moving forward is cheap)."""

    def __init__(self):
        self._streams: dict[str, list] = {}  # path -> [stream, position]
        self._pid = None

    def read(self, source: TFRecordSource, index: int, *, nervegram: bool):
        from .sources import RawExample

        try:
            data = self._record(source, index)
            features = parse_example(data)
            array = _input_array(source, features, nervegram)
            rate = features.get(RATE_KEY)
            metadata = {name: _metadata_value(source, name, features[name]) for name in source.metadata if name in features}
        except (TFRecordError, OSError, EOFError, ValueError) as error:
            return RawExample(None, None, {}, f"record {index} of {source.path}: {error}")
        return RawExample(array, float(rate.values[0]) if rate is not None and len(rate.values) else None, metadata)

    def _record(self, source: TFRecordSource, index: int) -> bytes:
        if self._pid != os.getpid():  # streams do not survive fork: a loader worker opens its own
            self._streams, self._pid = {}, os.getpid()
        entry = self._streams.get(source.path)
        if entry is None:
            entry = self._streams[source.path] = [open_records(source.path), 0]
        stream, position = entry
        offset = source.offsets[index]
        if offset != position:
            stream.seek(offset)  # gzip: forward decompresses and skips; backward restarts
        try:
            data = read_record(stream, source.path, index)
        except TFRecordError:
            entry[1] = -1  # position unknown after a damaged record
            raise
        entry[1] = stream.tell()
        return data


def _input_array(source: TFRecordSource, features: dict, nervegram: bool) -> np.ndarray:
    from .sources import _authors_nervegram_to_ours

    key = NERVEGRAM_KEY if nervegram else SIGNAL_KEY
    feature = features.get(key)
    if feature is None or feature.kind != "bytes" or len(feature.values) != 1:
        raise ValueError(f"the example has no raw-bytes '{key}' feature")
    described = (source.description or {}).get(key)
    if described is None:
        if not nervegram:
            raise ValueError(f"the shape of '{SIGNAL_KEY}' is unknown: put the authors' {BYTES_DESCRIPTION_NAMES[0]} beside the records")
        # Flat: shaped per model in preprocess (flat_nervegram).
        return np.frombuffer(feature.values[0], dtype=AUTHORS_NERVEGRAM_DTYPE)
    dtype, shape = described["dtype"], described["shape"]
    values = np.frombuffer(feature.values[0], dtype=dtype)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"'{key}' holds {values.size} values; the bytes description says shape {shape}")
    values = values.reshape(shape)
    if nervegram:
        return _authors_nervegram_to_ours(values[np.newaxis])[0]
    return values[np.newaxis, :] if values.ndim == 1 else np.swapaxes(values, 0, 1)


def _metadata_value(source: TFRecordSource, name: str, feature):
    if feature.kind != "bytes":
        return feature.values[0] if len(feature.values) else None
    raw = feature.values[0] if feature.values else b""
    described = (source.description or {}).get(name)
    if described is not None and described["dtype"].kind not in "SU":
        return np.frombuffer(raw, dtype=described["dtype"]).reshape(described["shape"])[()]
    return raw.rstrip(b"\0").decode("utf-8", "replace")
