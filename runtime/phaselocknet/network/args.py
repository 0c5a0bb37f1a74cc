"""Reading arch.json: the args of one layer, and the interface every layer class has."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch.nn as nn

Shape = tuple[int, ...]  # one example's shape, channels first, no batch dim

_REQUIRED = object()


class ArchArgs:
    """The ``args`` of one arch.json layer, read so that every error names the layer,
    its type and the offending arg, and so that args nobody read are reported."""

    def __init__(self, name: str, layer_type: str, args: Mapping[str, Any]):
        self.name = name
        self.layer_type = layer_type
        self._args = dict(args)
        self._read: set[str] = set()

    def error(self, key: str | None, why: str) -> ValueError:
        where = f"layer {self.name!r} (type {self.layer_type!r})"
        if key is None:
            return ValueError(f"{where}: {why}")
        value = self._args.get(key, "<absent>")
        return ValueError(f"{where}: arg {key!r}={value!r}: {why}")

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        self._read.add(key)
        if key in self._args:
            return self._args[key]
        if default is _REQUIRED:
            raise self.error(key, "is required")
        return default

    def int(self, key: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}")
        return value

    def positive_number(self, key: str, default: Any = _REQUIRED) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.error(key, "must be a positive number")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def pair(self, key: str, default: Any = _REQUIRED) -> tuple[int, int]:
        """Keras accepts an int or a pair for kernel sizes and strides."""
        value = self.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        ):
            raise self.error(key, "must be a positive integer or a pair of them")
        return int(value[0]), int(value[1])

    def padding(self, key: str, default: str, allowed: Sequence[str]) -> str:
        value = self.get(key, default)
        # Keras lower-cases padding names and the authors' wrappers upper-case them.
        if not isinstance(value, str) or value.upper() not in allowed:
            raise self.error(key, f"must be one of {list(allowed)}")
        return value.upper()

    def no_activation(self) -> None:
        value = self.get("activation", None)
        if value not in (None, "linear"):
            raise self.error("activation", "only null (no activation) is supported")

    def finish(self) -> None:
        unread = sorted(set(self._args) - self._read - {"name"})
        if unread:
            key = unread[0]
            raise self.error(key, "is not supported by this port (no published model uses it)")


class ArchLayer(nn.Module):
    """Common interface of all arch.json layers: the layer types it implements, construction
    from an arch.json ``args`` dict (rejecting anything unsupported) and shape inference
    (`phaselocknet.network.shapes`)."""

    LAYER_TYPES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_arch(
        cls,
        args: ArchArgs,
        input_shape: Shape,
        n_classes_dict: Mapping[str, int],
        factory: dict[str, Any],
    ) -> "ArchLayer":
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Any:
        """Per-example output shape, without running data."""
        from .shapes import output_shape

        return output_shape(self, input_shape)
