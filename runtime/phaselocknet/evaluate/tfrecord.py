"""TFRecord files of ``tf.train.Example`` protos, read without TensorFlow or protobuf.

A TFRecord file (optionally GZIP-compressed as a whole) is a sequence of records:
``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``,
little-endian. ``data`` is a serialized ``tf.train.Example``:

  Example  { Features features = 1; }
  Features { map<string, Feature> feature = 1; }      (entries: key = 1, value = 2)
  Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
  BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
  Int64List { repeated int64 value = 1 [packed]; }

The authors' ``util_tfrecords.serialize_example`` writes every array (and string) as one raw
``bytes`` value and every scalar as a one-element int64 or float list. Their reader takes
dtypes and shapes of the bytes features from ``config_bytes_description.pkl`` beside the
records; ``read_bytes_description`` reads that pickle with an unpickler that can build
nothing but dicts, tuples, numbers, strings and ``numpy.dtype``s, so it cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from dataclasses import dataclass

import numpy as np

from .crc32c import masked_crc32c

GZIP_MAGIC = b"\x1f\x8b"
BYTES_DESCRIPTION_NAMES = ("config_bytes_description.pkl", "config_bytes_description.pckl")
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


class TFRecordError(ValueError):
    """A TFRecord file or record is damaged or is not what the authors wrote."""


def is_gzip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_records(path: str):
    """A binary stream of the records' bytes (decompressed when the file is GZIP)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def scan_offsets(path: str) -> list[int]:
    """Byte offsets (in the decompressed stream) of every record; checks lengths and their CRCs.

    Reads the whole stream once (skipping over the data), so truncation anywhere is found now.
    """
    offsets = []
    with open_records(path) as stream:
        position = 0
        while True:
            try:
                length = _read_header(stream, path, len(offsets))
            except EOFError:
                return offsets
            offsets.append(position)
            skipped = _skip(stream, length + _CRC.size)
            if skipped != length + _CRC.size:
                raise TFRecordError(f"{path}: record {len(offsets) - 1} is truncated (file ends inside it)")
            position += _HEADER.size + length + _CRC.size


def _skip(stream, n: int) -> int:
    done = 0
    while done < n:
        chunk = stream.read(min(n - done, 1 << 24))
        if not chunk:
            break
        done += len(chunk)
    return done


def _read_header(stream, path: str, number: int) -> int:
    header = stream.read(_HEADER.size)
    if not header:
        raise EOFError
    if len(header) < _HEADER.size:
        raise TFRecordError(f"{path}: record {number} is truncated (file ends inside its header)")
    length, crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != crc:
        raise TFRecordError(f"{path}: record {number}: the length's checksum is wrong: the file is damaged")
    return length


def read_record(stream, path: str, number: int) -> bytes:
    """The data of the record at the stream's position, its CRC checked."""
    length = _read_header(stream, path, number)
    data = stream.read(length)
    footer = stream.read(_CRC.size)
    if len(data) != length or len(footer) != _CRC.size:
        raise TFRecordError(f"{path}: record {number} is truncated")
    if masked_crc32c(data) != _CRC.unpack(footer)[0]:
        raise TFRecordError(f"{path}: record {number}: data checksum mismatch (the record is damaged)")
    return data


# ------------------------------------------------------------ tf.train.Example
@dataclass(frozen=True)
class Feature:
    kind: str  # "bytes", "float" or "int64"
    values: list  # bytes objects, or a numpy array of float32 / int64


def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(buffer):
            raise TFRecordError("truncated varint in a tf.train.Example")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise TFRecordError("varint longer than 10 bytes in a tf.train.Example")


def _fields(buffer: memoryview):
    """(field number, wire type, value) of a message: value is an int or a memoryview."""
    position = 0
    while position < len(buffer):
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(buffer, position)
        elif wire == 2:
            size, position = _varint(buffer, position)
            if position + size > len(buffer):
                raise TFRecordError("a length-delimited field runs past the end of its tf.train.Example")
            value, position = buffer[position:position + size], position + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if position + size > len(buffer):
                raise TFRecordError("a fixed-size field runs past the end of its tf.train.Example")
            value, position = buffer[position:position + size], position + size
        else:
            raise TFRecordError(f"wire type {wire} is not used by tf.train.Example: not an Example record")
        yield number, wire, value


def _feature(buffer: memoryview) -> Feature:
    kind, values = "bytes", []
    for number, wire, value in _fields(buffer):
        if number not in (1, 2, 3) or wire != 2:
            raise TFRecordError("a Feature holds something other than a bytes, float or int64 list")
        kind = {1: "bytes", 2: "float", 3: "int64"}[number]
        values = _list_values(kind, value)
    return Feature(kind, values)


def _list_values(kind: str, buffer: memoryview):
    if kind == "bytes":
        return [bytes(value) for _, _, value in _fields(buffer)]
    if kind == "float":
        # Packed (one chunk of 4-byte floats) or not (one 4-byte chunk per value): same bytes.
        raw = b"".join(bytes(value) for _, _, value in _fields(buffer))
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    numbers = []
    for _, wire, value in _fields(buffer):
        if wire == 0:
            numbers.append(value)
        else:  # packed
            position = 0
            while position < len(value):
                number, position = _varint(value, position)
                numbers.append(number)
    # int64 varints are two's complement over 64 bits.
    return np.array(numbers, dtype=np.uint64).view(np.int64)


def parse_example(data: bytes) -> dict[str, Feature]:
    """Feature name -> Feature of one serialized tf.train.Example."""
    features: dict[str, Feature] = {}
    for number, wire, value in _fields(memoryview(data)):
        if number != 1 or wire != 2:
            raise TFRecordError("not a tf.train.Example (expected its features field only)")
        for entry_number, entry_wire, entry in _fields(value):
            if entry_number != 1 or entry_wire != 2:
                raise TFRecordError("not a tf.train.Example (malformed Features map)")
            key, feature = "", Feature("bytes", [])
            for part, part_wire, part_value in _fields(entry):
                if part == 1 and part_wire == 2:
                    key = bytes(part_value).decode("utf-8", "replace")
                elif part == 2 and part_wire == 2:
                    feature = _feature(part_value)
            features[key] = feature
    return features


# ----------------------------------------------------- config_bytes_description
class _DescriptionUnpickler(pickle.Unpickler):
    """Builds only plain containers and numpy dtypes: nothing in the file can run code."""

    def find_class(self, module, name):
        if name == "dtype" and module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
            return np.dtype
        raise TFRecordError(
            f"refused: the bytes description pickle asks for {module}.{name}; only numpy dtypes are allowed"
        )


def read_bytes_description(path: str) -> dict[str, dict]:
    """{feature: {"dtype": numpy dtype, "shape": tuple}} from the authors' description pickle."""
    try:
        with open(path, "rb") as handle:
            description = _DescriptionUnpickler(io.BytesIO(handle.read())).load()
    except TFRecordError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise TFRecordError(f"{path}: not a readable bytes description ({type(error).__name__}: {error})") from error
    if not isinstance(description, dict):
        raise TFRecordError(f"{path}: holds a {type(description).__name__}, expected a dict of feature descriptions")
    checked = {}
    for key, entry in description.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), np.dtype):
            raise TFRecordError(f"{path}: entry {key!r} has no numpy dtype")
        shape = entry.get("shape")
        if isinstance(shape, str):
            continue  # sparse features sized by another feature; not used by the published sets
        if not isinstance(shape, (tuple, list)) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise TFRecordError(f"{path}: entry {key!r} has shape {shape!r}, expected a tuple of sizes")
        checked[str(key)] = {"dtype": entry["dtype"], "shape": tuple(shape)}
    return checked
