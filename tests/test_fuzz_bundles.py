"""Fuzz: hundreds of damaged and crafted bundles, each refused by name or loaded exactly.

One tiny waveform model is saved once; every case is a file derived from it: random byte
flips and truncations (caught by the checksum or the safetensors reader), and crafted
files re-signed with a recomputed content_sha256 (the checksum is not a signature, so
everything after it must still refuse them): absurd config/arch values, deep JSON, wrong
dtypes and shapes, NaN weights, foreign metadata. Each case must end, within 5 s and
200 MB of extra memory, in either a phaselocknet error (PhaselocknetError subclass) or a
model whose weights are exactly the file's tensors; a model with non-finite weights must
refuse to give logits (NonFiniteOutputError). Any other exception is a failure.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import resource
import signal
import struct
import time
import tracemalloc

import numpy as np
import pytest
import torch
from safetensors import safe_open

import phaselocknet
from phaselocknet.errors import NonFiniteOutputError, PhaselocknetError

from conftest import config_with, simplified_cochlea, tiny_word_arch

SEED = 20261201
N_CASES = 480
MAX_SECONDS = 5.0
MAX_EXTRA_BYTES = 200 * 2**20

# safetensors dtype codes -> (numpy dtype, bytes per value)
CODES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64, "I64": np.int64,
         "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
ABSURD = [0, -1, -1e9, 1e12, 10**12, 10**9, 10**6, 40000, float("nan"), float("inf"), float("-inf"),
          1e-300, "x", None, [], {}, True, [1, 2, 3, 4], 0.5, 2**63]


# ------------------------------------------------------------------ crafting (per the spec)
def digest(metadata: dict, tensors: dict) -> str:
    """content_sha256 as docs/bundle_format.md defines it, over raw (code, shape, bytes)."""
    h = hashlib.sha256()
    for key in ("model_id", "config_json", "arch_json", "labels_json"):
        h.update(f"{key}\0{metadata.get(key, '')}\0".encode())
    for name in sorted(tensors):
        code, shape, data = tensors[name]
        h.update(f"{name}\0{code}\0{list(shape)}\0".encode())
        h.update(data)
    return h.hexdigest()


def craft(tensors: dict, metadata: dict, *, resign: bool = True) -> bytes:
    """A safetensors file; with ``resign`` its content_sha256 is recomputed (a crafted file)."""
    metadata = dict(metadata)
    if resign:
        metadata["content_sha256"] = digest(metadata, tensors)
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name in sorted(tensors):
        code, shape, data = tensors[name]
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    config = config_with(simplified_cochlea(20000.0), {"label_word_int": 11})
    torch.manual_seed(0)
    model = phaselocknet.from_config(config, tiny_word_arch(400), spikes="mean")
    path = phaselocknet.save(model, tmp_path_factory.mktemp("fuzz") / "tiny.safetensors", model_id="fuzz/tiny")
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    raw = {name: ("F32", a.shape, a.astype(np.float32).tobytes()) for name, a in tensors.items()}
    return path.read_bytes(), metadata, raw


# ------------------------------------------------------------------ mutations
def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(obj, list) and obj and not all(isinstance(v, (int, float)) for v in obj):
        for i, value in enumerate(obj):
            yield from _leaves(value, path + (i,))
    else:
        yield path


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def mutate_json(rng, metadata, raw):
    """A config or arch value replaced by an absurd one, re-signed."""
    key = rng.choice(["config_json", "arch_json"])
    doc = json.loads(metadata[key])
    paths = [p for p in _leaves(doc) if p]
    path = rng.choice(paths)
    _set(doc, path, copy.deepcopy(rng.choice(ABSURD)))
    return craft(raw, {**metadata, key: json.dumps(doc)}), f"{key} {path} absurd"


def mutate_dtype(rng, metadata, raw):
    name = rng.choice(sorted(raw))
    code = rng.choice([c for c in CODES if c != "F32"])
    _, shape, _ = raw[name]
    n = math.prod(shape)
    values = np.zeros(n, dtype=CODES[code]) if code != "BOOL" else np.ones(n, dtype=np.bool_)
    return craft({**raw, name: (code, shape, values.tobytes())}, metadata), f"{name} as {code}"


def mutate_shape(rng, metadata, raw):
    name = rng.choice(sorted(raw))
    _, shape, data = raw[name]
    shape = list(shape)
    choice = rng.randrange(3)
    if choice == 0 and len(shape) > 1:
        shape = [math.prod(shape)]  # same bytes, other shape
        return craft({**raw, name: ("F32", shape, data)}, metadata), f"{name} flattened"
    if choice == 1:
        new = dict(raw)
        del new[name]
        return craft(new, metadata), f"{name} missing"
    return craft({**raw, f"extra_{rng.randrange(99)}.weight": ("F32", [2], b"\0" * 8)}, metadata), "extra tensor"


def mutate_nonfinite(rng, metadata, raw):
    name = rng.choice(sorted(raw))
    _, shape, data = raw[name]
    values = np.frombuffer(data, dtype=np.float32).copy()
    values[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38])
    return craft({**raw, name: ("F32", shape, values.tobytes())}, metadata), f"{name} non-finite/huge weight"


def mutate_metadata(rng, metadata, raw):
    choice = rng.randrange(8)
    meta = dict(metadata)
    if choice == 0:
        meta["format"] = "something-else"
    elif choice == 1:
        meta["format_version"] = rng.choice(["0", "2", "", "1.0"])
    elif choice == 2:
        del meta[rng.choice(["model_id", "config_json", "arch_json", "source_sha256", "converter_version"])]
    elif choice == 3:
        meta[rng.choice(["config_json", "arch_json"])] = "{not json"
    elif choice == 4:
        depth = rng.choice([10**4, 10**5])
        meta[rng.choice(["config_json", "arch_json", "labels_json"])] = "[" * depth + "]" * depth
    elif choice == 5:
        meta["arch_json"] = rng.choice(["{}", "null", "3", '"x"', "[]", "[null]", "[1]"])
    elif choice == 6:
        meta["config_json"] = rng.choice(["[]", "null", "{}", '{"n_classes_dict": null, "kwargs_cochlea": {}}'])
    else:
        meta["labels_json"] = rng.choice(["[]", "null", '{"label_word_int": 3}'])
    return craft(raw, meta), f"metadata fault {choice}"


def flip_bytes(rng, data: bytes):
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(buffer))
        buffer[i] ^= 1 << rng.randrange(8)
    return bytes(buffer), "byte flips"


def truncate(rng, data: bytes):
    return data[: rng.randrange(len(data))], "truncated"


def named_cases(metadata, raw):
    """The issue's own examples, crafted and re-signed."""
    config, arch = json.loads(metadata["config_json"]), json.loads(metadata["arch_json"])
    fb = ("kwargs_cochlea", "config_filterbank")
    lp = ("kwargs_cochlea", "kwargs_fir_lowpass_filter_output")
    rl = ("kwargs_cochlea", "kwargs_sigmoid_rate_level_function")
    edits = {
        "units 10**12": ("arch_json", (7, "args", "units"), 10**12),
        "dense of 40000 units": ("arch_json", (7, "args", "units"), 40000),
        "filters 10**9": ("arch_json", (2, "args", "filters"), 10**9),
        "num_cf 10**6": ("config_json", fb + ("num_cf",), 10**6),
        "sr_input 1e12": ("config_json", ("kwargs_cochlea", "sr_input"), 1e12),
        "IHC order 10**6": ("config_json", lp + ("order",), 10**6),
        "negative IHC cutoff": ("config_json", lp + ("cutoff",), -3000.0),
        "dynamic_range 0": ("config_json", rl + ("dynamic_range",), [0.0, 40.0, 80.0]),
        "NaN cfs": ("config_json", fb + ("cfs",), [float("nan")] * 50),
        "NaN epsilon": ("arch_json", (5, "args", "epsilon"), float("nan")),
        "hpool 10**6": ("arch_json", (4, "args", "pool_size"), [10**6, 10**6]),
    }
    for label, (key, path, value) in edits.items():
        doc = copy.deepcopy(config if key == "config_json" else arch)
        _set(doc, path, value)
        yield craft(raw, {**metadata, key: json.dumps(doc)}), label
    for code in ("U8", "BOOL", "I8", "I16", "F16", "BF16", "I32", "I64", "F64"):
        name = "block0_conv.weight"
        _, shape, _ = raw[name]
        yield craft({**raw, name: (code, shape, np.zeros(math.prod(shape), CODES[code]).tobytes())}, metadata), f"{code} tensor"
    values = np.frombuffer(raw["block0_conv.weight"][2], np.float32).copy()
    values[:] = np.nan
    yield craft({**raw, "block0_conv.weight": ("F32", raw["block0_conv.weight"][1], values.tobytes())}, metadata), "NaN weights"


def all_cases(data, metadata, raw):
    rng = random.Random(SEED)
    yield from named_cases(metadata, raw)
    makers = [mutate_json] * 6 + [mutate_dtype, mutate_shape, mutate_nonfinite, mutate_metadata, mutate_metadata]
    for i in range(N_CASES):
        kind = i % 4
        if kind == 0:
            yield flip_bytes(rng, data)
        elif kind == 1 and i % 8 == 1:
            yield truncate(rng, data)
        else:
            yield rng.choice(makers)(rng, metadata, raw)


# ------------------------------------------------------------------ the check
class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _outcome(path) -> str:
    """'refused', 'accepted' or 'nonfinite-refused'; raises AssertionError for a wrong load."""
    try:
        model = phaselocknet.load(path, spikes="mean")
    except PhaselocknetError:
        return "refused"
    with safe_open(str(path), framework="pt") as handle:
        stored = {name: handle.get_tensor(name) for name in handle.keys()}
    loaded = model.network.state_dict()
    assert set(loaded) == set(stored), "loaded with other tensors than the file's"
    for name, tensor in stored.items():
        assert loaded[name].dtype == torch.float32 == tensor.dtype
        assert torch.equal(loaded[name], tensor) or (torch.isnan(tensor).any() and torch.equal(
            torch.nan_to_num(loaded[name]), torch.nan_to_num(tensor))), f"{name}: weights differ from the file"
    x = torch.randn(1, model.input_length) * 0.02
    try:
        logits = model(x)
    except NonFiniteOutputError:
        return "nonfinite-refused"
    assert all(torch.isfinite(v).all() for v in logits.values()), "non-finite logits returned silently"
    return "accepted"


def test_fuzzed_bundles_are_refused_by_name_or_loaded_exactly(original, tmp_path):
    data, metadata, raw = original
    path = tmp_path / "case.safetensors"
    counts = {"refused": 0, "nonfinite-refused": 0, "accepted": 0}
    failures = []
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    previous = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    try:
        for index, (blob, label) in enumerate(all_cases(data, metadata, raw)):
            path.write_bytes(blob)
            tracemalloc.reset_peak()
            start_traced = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS * 2)  # a hang ends as a failure
            try:
                counts[_outcome(path)] += 1
            except Hang:
                failures.append(f"{index} {label}: hang")
            except AssertionError as error:
                failures.append(f"{index} {label}: {error}")
            except BaseException as error:  # noqa: BLE001 - any other exception is a traceback
                failures.append(f"{index} {label}: traceback {type(error).__name__}: {error}"[:300])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - started
            extra_traced = tracemalloc.get_traced_memory()[1] - start_traced
            extra_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline_rss
            if seconds > MAX_SECONDS:
                failures.append(f"{index} {label}: {seconds:.1f} s")
            if max(extra_traced, extra_rss) > MAX_EXTRA_BYTES:
                failures.append(f"{index} {label}: {max(extra_traced, extra_rss) / 2**20:.0f} MB extra")
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, previous)
    total = sum(counts.values()) + len(failures)
    print(f"\nfuzz: {total} cases: {counts['refused']} refused by name, {counts['nonfinite-refused']} loaded but "
          f"refused to give non-finite logits, {counts['accepted']} loaded with exactly the file's weights; "
          f"{len(failures)} failures")
    assert not failures, "\n".join(failures[:20])
    assert total >= 500
    assert counts["refused"] >= 400  # nearly every mutation is a fault; the rest are benign edits
