"""Stimulus sets: which examples a run covers, in what order, and reading them.

The examples of all ``--data`` arguments form one global sequence, numbered from 0:
sources in the order given, globs and folders expanded in sorted order, HDF5 rows in
file order. The number of an example in this sequence (the ``example`` column) is what
shards split, what seeds derive from and what resumed and merged outputs are sorted by,
so it must not depend on anything but the ``--data`` arguments and the files they name.

Source kinds:
- HDF5 files (.h5, .hdf5, .hdf) in the authors' layout: ``signal`` (n, time) or
  (n, time, 2) in pascals (time first for binaural sounds), ``sr`` (scalar or one per
  example), and for nervegram-input models ``nervegram_meanrates`` (n, freq, time,
  spont[, 2]) in spikes/s. Every other 1-D numeric dataset of length n becomes a
  metadata column.
- TFRecord files (.tfrecords, .tfrecord; GZIP or not) of the authors' ``tf.train.Example``
  records, one example each (``tfrecord_source``); scalar and string features are metadata.
- WAV/FLAC files, one example each: named directly, by glob, by a folder (searched
  recursively) or by a list file (.txt/.lst/.list, one path per line, relative paths
  taken from the list's folder, blank lines and lines starting with # skipped).
"""

from __future__ import annotations

import bisect
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
AUDIO_SUFFIXES = (".wav", ".flac")
LIST_SUFFIXES = (".txt", ".lst", ".list")
SIGNAL_KEY = "signal"
RATE_KEY = "sr"
NERVEGRAM_KEY = "nervegram_meanrates"
INPUT_KEYS = (SIGNAL_KEY, NERVEGRAM_KEY)
# Chunked, compressed HDF5 datasets are decompressed a chunk at a time; a larger
# cache than h5py's 1 MiB default keeps consecutive reads from decompressing a
# chunk once per example.
HDF5_CHUNK_CACHE_BYTES = 64 * 1024 * 1024


class DataError(ValueError):
    """A ``--data`` argument names nothing usable; raised before any work starts."""


@dataclass
class HDF5Source:
    path: str
    n: int
    signal_shape: tuple | None  # per example, e.g. (time,) or (time, 2)
    nervegram_shape: tuple | None  # per example, e.g. (freq, time, spont[, 2])
    rate: float | None  # scalar sr, or None when per example / absent
    rate_per_example: bool
    metadata: list[str] = field(default_factory=list)

    kind = "hdf5"

    @property
    def signal_channels(self) -> int | None:
        if self.signal_shape is None:
            return None
        return 1 if len(self.signal_shape) == 1 else int(self.signal_shape[1])


@dataclass
class AudioSource:
    """Consecutive WAV/FLAC files; each is one example."""

    paths: list[str]

    kind = "audio"

    @property
    def n(self) -> int:
        return len(self.paths)

    metadata: tuple = ()


Source = HDF5Source | AudioSource


@dataclass
class Catalog:
    """All examples of a run in their global order."""

    sources: list[Source]
    arguments: list[str]

    def __post_init__(self):
        self.offsets = np.cumsum([0] + [s.n for s in self.sources]).tolist()
        columns: list[str] = []
        for source in self.sources:
            columns += [name for name in source.metadata if name not in columns]
        self.metadata_columns = columns

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, example: int) -> tuple[int, int]:
        """(source number, index within that source) of a global example number."""
        if not 0 <= example < len(self):
            raise IndexError(f"example {example} outside 0..{len(self) - 1}")
        k = bisect.bisect_right(self.offsets, example) - 1
        return k, example - self.offsets[k]

    def describe(self) -> list[dict]:
        described = []
        for source in self.sources:
            if hasattr(source, "describe"):
                described.append(source.describe())
            elif isinstance(source, HDF5Source):
                described.append({"kind": "hdf5", "path": source.path, "examples": source.n})
            else:
                described.append({"kind": "audio", "first": source.paths[0], "examples": source.n})
        return described


# ------------------------------------------------------------------ discovery
def discover(arguments: list[str]) -> Catalog:
    """Expand ``--data`` arguments into a catalog; every problem is a DataError now."""
    if not arguments:
        raise DataError("no --data given")
    sources: list[Source] = []
    for argument in arguments:
        for kind, path in _expand(argument):
            if kind == "audio":
                if sources and isinstance(sources[-1], AudioSource):
                    sources[-1].paths.append(path)
                else:
                    sources.append(AudioSource([path]))
            elif kind == "tfrecord":
                from .tfrecord_source import inspect_tfrecord

                sources.append(inspect_tfrecord(path, DataError))
            else:
                sources.append(inspect_hdf5(path))
    catalog = Catalog([s for s in sources if s.n > 0], list(arguments))
    if len(catalog) == 0:
        raise DataError(f"--data {' '.join(arguments)} holds no examples")
    return catalog


def _expand(argument: str) -> list[tuple[str, str]]:
    path = Path(argument)
    if path.is_dir():
        found = sorted(
            (p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not found:
            raise DataError(f"--data {argument}: folder has no {'/'.join(AUDIO_SUFFIXES)} files")
        return [("audio", str(p)) for p in found]
    if not path.exists() and glob.has_magic(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not matches:
            raise DataError(f"--data {argument}: the pattern matches no files")
        expanded = []
        for match in matches:
            if Path(match).is_dir():
                continue
            expanded.append(_classify(match, argument))
        if not expanded:
            raise DataError(f"--data {argument}: the pattern matches only folders")
        return expanded
    if not path.exists():
        raise DataError(f"--data {argument}: no such file or folder")
    if path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path)
    return [_classify(argument, argument)]


def _classify(path: str, argument: str) -> tuple[str, str]:
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5", path
    if suffix in AUDIO_SUFFIXES:
        return "audio", path
    if suffix in (".tfrecords", ".tfrecord"):
        return "tfrecord", path
    raise DataError(
        f"--data {argument}: {path} is neither HDF5 ({', '.join(HDF5_SUFFIXES)}) nor TFRecord (.tfrecords) nor audio "
        f"({', '.join(AUDIO_SUFFIXES)}) nor a list of sounds ({', '.join(LIST_SUFFIXES)})"
    )


def _read_list(list_path: Path) -> list[tuple[str, str]]:
    entries = []
    missing = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line)
        if not entry.is_absolute():
            entry = list_path.parent / entry
        if entry.suffix.lower() not in AUDIO_SUFFIXES:
            raise DataError(f"--data {list_path} line {number}: {line} is not a {'/'.join(AUDIO_SUFFIXES)} file")
        if not entry.exists():
            missing.append(f"line {number}: {entry}")
        entries.append(("audio", str(entry)))
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"--data {list_path} lists {len(missing)} missing file(s): {shown}")
    if not entries:
        raise DataError(f"--data {list_path}: the list names no sounds")
    return entries


def open_hdf5(path: str):
    try:
        import h5py
    except ImportError as error:
        raise DataError(f"reading {path} needs h5py: pip install 'phaselocknet[eval]'") from error
    try:
        return h5py.File(path, "r", rdcc_nbytes=HDF5_CHUNK_CACHE_BYTES)
    except OSError as error:
        raise DataError(f"--data {path}: not a readable HDF5 file ({error})") from error


def inspect_hdf5(path: str) -> HDF5Source:
    """Shapes, rate and metadata columns of an authors'-layout HDF5 stimulus file."""
    import h5py

    with open_hdf5(path) as handle:
        present = [key for key in INPUT_KEYS if isinstance(handle.get(key), h5py.Dataset)]
        if not present:
            raise DataError(f"--data {path}: no '{SIGNAL_KEY}' (waveforms) or '{NERVEGRAM_KEY}' dataset")
        n = int(handle[present[0]].shape[0])
        for key in present:
            if handle[key].shape[0] != n:
                raise DataError(f"--data {path}: '{present[0]}' has {n} examples but '{key}' has {handle[key].shape[0]}")
        signal_shape = tuple(handle[SIGNAL_KEY].shape[1:]) if SIGNAL_KEY in present else None
        if signal_shape is not None and not (len(signal_shape) == 1 or (len(signal_shape) == 2 and signal_shape[1] in (1, 2))):
            raise DataError(
                f"--data {path}: '{SIGNAL_KEY}' has shape {handle[SIGNAL_KEY].shape}; expected (n, time) "
                "or (n, time, 2) (time first, as the authors' binaural files)"
            )
        nervegram_shape = tuple(handle[NERVEGRAM_KEY].shape[1:]) if NERVEGRAM_KEY in present else None
        if nervegram_shape is not None and len(nervegram_shape) not in (3, 4):
            raise DataError(
                f"--data {path}: '{NERVEGRAM_KEY}' has shape {handle[NERVEGRAM_KEY].shape}; expected "
                "(n, freq, time, spont) or (n, freq, time, spont, 2)"
            )
        rate, per_example = None, False
        if isinstance(handle.get(RATE_KEY), h5py.Dataset):
            rates = handle[RATE_KEY]
            if rates.shape in ((), (1,)):
                rate = float(np.asarray(rates[()]).reshape(-1)[0])
            elif rates.shape == (n,):
                per_example = True
            else:
                raise DataError(f"--data {path}: '{RATE_KEY}' has shape {rates.shape}; expected a scalar or ({n},)")
        metadata: list[str] = []

        def collect(name, item):
            if (
                isinstance(item, h5py.Dataset)
                and name not in INPUT_KEYS
                and item.shape == (n,)
                and item.dtype.kind in "biufSO"  # strings too (h5py: fixed 'S' or variable-length 'O')
            ):
                metadata.append(name)

        handle.visititems(collect)
    return HDF5Source(path, n, signal_shape, nervegram_shape, rate, per_example, sorted(metadata))


# --------------------------------------------------------------------- reading
@dataclass
class RawExample:
    """One example as stored: a waveform (channels, time) with its rate, or a nervegram
    (ears?, spont, freq, time); or the reason it could not be read."""

    array: np.ndarray | None
    rate: float | None
    metadata: dict
    error: str | None = None


class Reader:
    """Reads examples by global number; opens HDF5 files lazily, once per process."""

    def __init__(self, catalog: Catalog, *, nervegram: bool):
        self.catalog = catalog
        self.nervegram = nervegram  # read nervegram_meanrates rather than signal
        self._handles: dict[str, object] = {}
        self._pid = None

    def source_and_index(self, example: int) -> tuple[str, int]:
        k, index = self.catalog.locate(example)
        source = self.catalog.sources[k]
        if isinstance(source, AudioSource):
            return source.paths[index], 0
        return source.path, index

    def read(self, examples: list[int]) -> list[RawExample]:
        """Examples in the order given; consecutive rows of an HDF5 file are read in one slice."""
        out: list[RawExample | None] = [None] * len(examples)
        runs: list[tuple[int, int, int, list[int]]] = []  # (source, first index, last index, positions)
        for position, example in enumerate(examples):
            k, index = self.catalog.locate(example)
            source = self.catalog.sources[k]
            if isinstance(source, AudioSource):
                out[position] = _read_audio_file(source.paths[index])
            elif getattr(source, "kind", None) == "tfrecord":
                out[position] = self._tfrecords().read(source, index, nervegram=self.nervegram)
            elif runs and runs[-1][0] == k and runs[-1][2] == index - 1:
                runs[-1] = (k, runs[-1][1], index, runs[-1][3] + [position])
            else:
                runs.append((k, index, index, [position]))
        for k, first, last, positions in runs:
            for position, raw in zip(positions, self._read_hdf5_rows(self.catalog.sources[k], first, last + 1)):
                out[position] = raw
        return out  # type: ignore[return-value]

    def _tfrecords(self):
        if getattr(self, "_tfrecord_reader", None) is None:
            from .tfrecord_source import TFRecordReader

            self._tfrecord_reader = TFRecordReader()
        return self._tfrecord_reader

    def _handle(self, path: str):
        # h5py handles do not survive fork: a loader worker opens its own.
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = open_hdf5(path)
        return self._handles[path]

    def _read_hdf5_rows(self, source: HDF5Source, start: int, stop: int) -> list[RawExample]:
        handle = self._handle(source.path)
        count = stop - start
        try:
            columns = {name: handle[name][start:stop] for name in source.metadata}
            if self.nervegram:
                arrays = _authors_nervegram_to_ours(np.asarray(handle[NERVEGRAM_KEY][start:stop]))
                rates = [None] * count
            else:
                signals = np.asarray(handle[SIGNAL_KEY][start:stop], dtype=np.float64)
                # Authors' layout is time first: (n, time, 2) -> ours (n, 2, time).
                arrays = signals[:, np.newaxis, :] if signals.ndim == 2 else np.swapaxes(signals, 1, 2)
                if source.rate_per_example:
                    rates = [float(r) for r in handle[RATE_KEY][start:stop]]
                else:
                    rates = [source.rate] * count
        except (OSError, ValueError, KeyError) as error:
            if count > 1:
                # One damaged chunk should cost its own rows only.
                return [row for i in range(start, stop) for row in self._read_hdf5_rows(source, i, i + 1)]
            return [RawExample(None, None, {}, f"cannot read row {start} of {source.path}: {error}")]
        return [
            RawExample(np.asarray(arrays[i]), rates[i], {name: values[i] for name, values in columns.items()})
            for i in range(count)
        ]


def _authors_nervegram_to_ours(batch: np.ndarray) -> np.ndarray:
    """(n, freq, time, spont[, ear]) -> (n, [ear,] spont, freq, time)."""
    if batch.ndim == 4:
        return np.transpose(batch, (0, 3, 1, 2))
    return np.transpose(batch, (0, 4, 3, 1, 2))


def _read_audio_file(path: str) -> RawExample:
    from ..audio import read_audio

    try:
        waveform, rate = read_audio(path)
    except (ValueError, OSError) as error:
        return RawExample(None, None, {}, str(error))
    except Exception as error:  # noqa: BLE001 - decoders fail in many ways on damaged files; only this example suffers
        return RawExample(None, None, {}, f"{path}: cannot decode ({type(error).__name__}: {error})")
    return RawExample(waveform, rate, {})


def describe_error(error: BaseException) -> str:
    """An exception as one line for the error column; our ValueErrors already say what is wrong."""
    if isinstance(error, (ValueError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}"
