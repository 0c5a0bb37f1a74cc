"""Reading the model variables of a Keras-2 TensorFlow checkpoint (``ckpt_BEST``).

``model.save_weights(prefix)`` in TensorFlow format writes ``prefix.index`` and
``prefix.data-00000-of-00001``. Variables are keyed by their path in the object graph
(``layer_with_weights-3/kernel/.ATTRIBUTES/VARIABLE_VALUE``), which says where a
variable sits but not which layer it belongs to; the serialized object graph
(``_CHECKPOINTABLE_OBJECT_GRAPH``) records each variable's ``full_name``
(``conv_0/kernel``), which does. We keep both so the caller can cross-check them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConversionError

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
DATA_SUFFIX = ".data-00000-of-00001"
INDEX_SUFFIX = ".index"
# Root children of a Keras functional model: every layer is "layer-N"; the ones that
# own variables are also "layer_with_weights-N", numbered in model.layers order.
_LAYER_WITH_WEIGHTS = re.compile(r"^layer_with_weights-(\d+)$")
_LAYER = re.compile(r"^layer-(\d+)$")


@dataclass(frozen=True)
class CheckpointVariable:
    """One model variable of the checkpoint."""

    key: str  # checkpoint key, e.g. "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    full_name: str  # as recorded in the object graph, e.g. "conv_0/kernel" ("" if absent)
    layer: str | None  # Keras layer named by full_name, e.g. "conv_0"; None without full_name
    name: str  # variable within its layer, e.g. "kernel"
    position: int | None  # N of the layer_with_weights-N that holds it
    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"{self.full_name or self.name} ({self.key})"


@dataclass
class Checkpoint:
    """Model variables (with their values) of one checkpoint; everything else is dropped."""

    prefix: Path
    variables: list[CheckpointVariable]
    arrays: dict[str, np.ndarray]  # checkpoint key -> value, model variables only
    dropped: list[str] = field(default_factory=list)  # optimizer slots/iterations, loss scale, counters


def import_tensorflow():
    """TensorFlow, quietly, or a ConversionError saying how to get it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ConversionError(
            "reading TensorFlow checkpoints needs TensorFlow: pip install 'phaselocknet[convert]' "
            f"({error})"
        ) from error
    return tf


def checkpoint_files(prefix: str | os.PathLike) -> tuple[Path, Path]:
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + INDEX_SUFFIX), prefix.with_name(prefix.name + DATA_SUFFIX)


def read_checkpoint(prefix: str | os.PathLike) -> Checkpoint:
    """Read the model variables of the checkpoint at ``prefix`` (e.g. ``.../ckpt_BEST``).

    Every tensor of the checkpoint is read, not only the model's: TensorFlow verifies
    each tensor's CRC32C as it reads it, so a truncated or damaged ``.data`` file is an
    error here even where the damage lies in optimizer state.
    """
    prefix = Path(prefix)
    index, data = checkpoint_files(prefix)
    for path in (index, data):
        if not path.is_file():
            raise ConversionError(f"{path} not found: a checkpoint is the pair {index.name} + {data.name}")
    tf = import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except Exception as error:  # TensorFlow raises a zoo of OpError subclasses
        raise ConversionError(
            f"{index}: not a readable TensorFlow checkpoint ({_first_line(error)}); re-download it"
        ) from error
    if OBJECT_GRAPH_KEY not in shapes:
        raise ConversionError(
            f"{index}: the checkpoint has no object graph ({OBJECT_GRAPH_KEY}); expected one written by "
            "Keras model.save_weights() in TensorFlow format, as the published ckpt_BEST files are"
        )
    graph = _object_graph(reader, data)
    variables = _model_variables(graph, shapes, dtypes, index)
    by_key = {variable.key: variable for variable in variables}

    arrays: dict[str, np.ndarray] = {}
    for key in sorted(shapes):
        what = f"model variable {by_key[key].describe()}" if key in by_key else f"tensor {key}"
        try:
            value = reader.get_tensor(key)
        except Exception as error:
            raise ConversionError(
                f"{data}: {what} cannot be read ({_first_line(error)}); the checkpoint is truncated or "
                "damaged: re-download it"
            ) from error
        if key in by_key:
            arrays[key] = np.asarray(value)
    dropped = sorted(set(shapes) - set(by_key) - {OBJECT_GRAPH_KEY})
    return Checkpoint(prefix=prefix, variables=variables, arrays=arrays, dropped=dropped)


def _object_graph(reader, data: Path):
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        # Stored as a string tensor in the .data file, like the variables.
        graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    except Exception as error:
        raise ConversionError(
            f"{data}: the checkpoint's object graph ({OBJECT_GRAPH_KEY}) cannot be read ({_first_line(error)}); "
            "the checkpoint is truncated or damaged: re-download it"
        ) from error
    if not graph.nodes:
        raise ConversionError(f"{data}: the checkpoint's object graph is empty")
    return graph


def _model_variables(graph, shapes: dict, dtypes: dict, index: Path) -> list[CheckpointVariable]:
    """Variables reachable from the root through its layer children.

    Optimizer state hangs off the root's "optimizer" child (new Keras optimizers) or
    off variable nodes as slot variables (legacy ones); neither is reached this way.
    """
    root = graph.nodes[0]
    found: dict[str, CheckpointVariable] = {}
    positions: dict[int, int] = {}  # layer node id -> N of layer_with_weights-N
    layer_nodes: list[int] = []
    for child in root.children:
        match = _LAYER_WITH_WEIGHTS.match(child.local_name)
        if match:
            positions[child.node_id] = int(match.group(1))
        if match or _LAYER.match(child.local_name):
            layer_nodes.append(child.node_id)
    for node_id in dict.fromkeys(layer_nodes):
        for local_path, var_id in _walk(graph, node_id):
            for attribute in graph.nodes[var_id].attributes:
                if attribute.name != "VARIABLE_VALUE" or attribute.checkpoint_key in found:
                    continue
                key = attribute.checkpoint_key
                if key not in shapes:
                    raise ConversionError(
                        f"{index}: the object graph names variable {attribute.full_name or local_path} "
                        f"at key {key}, which the checkpoint does not hold; the checkpoint is damaged"
                    )
                full_name = attribute.full_name
                prefix, _, name = full_name.rpartition("/")
                layer = prefix.rpartition("/")[2] if prefix else None
                found[key] = CheckpointVariable(
                    key=key,
                    full_name=full_name,
                    layer=layer,
                    name=name if prefix else local_path.rpartition("/")[2],
                    position=positions.get(node_id),
                    shape=tuple(int(n) for n in shapes[key]),
                    dtype=dtypes[key].name,
                )
    return sorted(found.values(), key=lambda v: ((v.position if v.position is not None else 1 << 30), v.key))


def _walk(graph, start: int):
    """(path below the start node, node id) of every node reachable from ``start``."""
    seen = {start}
    stack = [("", start)]
    while stack:
        path, node_id = stack.pop()
        for child in graph.nodes[node_id].children:
            if child.node_id in seen:
                continue
            seen.add(child.node_id)
            child_path = f"{path}/{child.local_name}" if path else child.local_name
            yield child_path, child.node_id
            stack.append((child_path, child.node_id))


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
