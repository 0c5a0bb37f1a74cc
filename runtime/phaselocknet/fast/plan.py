"""The fast executor's plan of a Network (eval mode): a list of steps, each a callable.

Built once per set of requested activations and device type, from the layer list:

* an eval-mode batch norm directly before a convolution is folded into that convolution
  (`conv.fold_batch_norm`: exact, padded border rows included);
* a relu after a convolution, possibly across max pools (max and relu commute) and
  dropouts (identities in eval mode), is applied as the convolution writes its output;
* on CPU, runs of layers that act locally along time (VALID convolutions and pools,
  per-position norms, relu) and move large tensors are streamed: run chunk by chunk along
  frequency rows (when every layer in the run has height-1 windows: no overlap) or along
  time (each chunk with the halo its receptive field needs), so no full-size intermediate
  tensor is ever allocated. On this machine a fresh 64 MB tensor costs ~40 ms of page
  faults before any arithmetic; the chunks are reused from the heap and stay in cache.

A requested activation ends any fusion or streamed run at its layer, so every requested
output is the reference layer's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..network.activation import Dropout, ReLU
from ..network.conv import Conv2d
from ..network.normalization import BatchNorm, LayerNorm
from ..network.pooling import HanningPool2d, MaxPool2d
from .conv import FastConv
from .layers import FastHanningPool, FastMaxPool

# A run of layers is streamed when some tensor it reads or writes has this many bytes per
# example; chunks are sized so that their largest tensor has about STREAM_CHUNK_BYTES.
STREAM_MIN_BYTES = 8 * 2**20
STREAM_CHUNK_BYTES = 16 * 2**20
# Time chunks are at least this many times their halo (receptive field beyond the stride),
# so recomputed overlap stays below 1/8 of the work.
MIN_CHUNK_PER_HALO = 8


@dataclass
class Step:
    run: Callable[[torch.Tensor], torch.Tensor]
    names: tuple[str, ...]  # layers whose (reference) output is this step's output
    out_shape: tuple  # per example
    # Streaming map along time: output t reads input [t * stride, t * stride + window), or
    # None when the step is not local along time; rows: True when frequency rows are independent.
    time_window: tuple[int, int] | None = None
    rows: bool = False


def _window_info(module) -> tuple[tuple[int, int] | None, bool]:
    """(time window, rows independent) of a layer that may be streamed."""
    if isinstance(module, (ReLU, Dropout, BatchNorm)):
        return (1, 1), True
    if isinstance(module, LayerNorm):
        return ((1, 1), True) if module.dims == (1,) else (None, False)
    if isinstance(module, (Conv2d, MaxPool2d, HanningPool2d)):
        if module.tf_padding == "SAME":
            return None, False
        (kf, kt), (sf, st) = module.window_size, module.window_strides
        return (kt, st), (kf, sf) == (1, 1)
    return None, False


def layer_kernel(module):
    """The fast callable of one layer on its own (unfused); the module itself where it has none."""
    if isinstance(module, Conv2d):
        return FastConv(module)
    if isinstance(module, MaxPool2d):
        return FastMaxPool(module)
    if isinstance(module, HanningPool2d):
        return FastHanningPool(module)
    return module


def build_plan(network, keep: frozenset, device_type: str) -> list:
    steps = _fuse(network, keep)
    if device_type == "cpu":
        steps = _stream(steps, network.input_shape, keep)
    return steps


def _fuse(network, keep: frozenset) -> list[Step]:
    names = network.layer_names
    modules = [network.get_submodule(name) for name in names]
    shapes = network.output_shapes
    steps: list[Step] = []
    pending_bn = None
    i = 0
    while i < len(names):
        name, module = names[i], modules[i]
        nxt = modules[i + 1] if i + 1 < len(names) else None
        foldable = isinstance(nxt, Conv2d) and nxt.tf_padding != "SAME" and len(shapes[name]) == 3
        if isinstance(module, BatchNorm) and name not in keep and foldable:
            pending_bn = module
            i += 1
            continue
        if isinstance(module, Conv2d):
            j = i + 1
            if name not in keep:
                while j < len(names) and isinstance(modules[j], (MaxPool2d, Dropout)) and names[j] not in keep:
                    j += 1
            relu = name not in keep and j < len(names) and isinstance(modules[j], ReLU)
            window, rows = _window_info(module)
            run = FastConv(module, pending_bn, relu)
            pending_bn = None
            if not relu:
                steps.append(Step(run, (name,), shapes[name], window, rows))
                i += 1
                continue
            between = list(range(i + 1, j))
            steps.append(Step(run, () if between else (names[j],), shapes[name], window, rows))
            for k in between:
                window, rows = _window_info(modules[k])
                steps.append(Step(layer_kernel(modules[k]), (names[j],) if k == between[-1] else (), shapes[names[k]], window, rows))
            i = j + 1
            continue
        window, rows = _window_info(module)
        steps.append(Step(layer_kernel(module), (name,), shapes[name], window, rows))
        i += 1
    for step in steps:  # only (channels, freq, time) activations are streamed
        if not (isinstance(step.out_shape, tuple) and len(step.out_shape) == 3):
            step.time_window, step.rows = None, False
    return steps


def _bytes(shape) -> int:
    return 4 * math.prod(shape) if isinstance(shape, tuple) else 0


def _stream(steps: list[Step], input_shape: tuple, keep: frozenset) -> list:
    """Replace runs of streamable steps that move large tensors by StreamedRun steps."""
    shapes_in = [input_shape] + [step.out_shape for step in steps[:-1]]

    def big(k: int) -> bool:
        return max(_bytes(shapes_in[k]), _bytes(steps[k].out_shape)) >= STREAM_MIN_BYTES

    out: list = []
    i = 0
    while i < len(steps):
        if steps[i].time_window is None or not big(i):
            out.append(steps[i])
            i += 1
            continue
        j = i
        while j < len(steps) and steps[j].time_window is not None:
            j += 1
            if any(name in keep for name in steps[j - 1].names):
                break
        while j - 1 > i and not big(j - 1):  # small trailing steps gain nothing
            j -= 1
        # A prefix whose steps all keep frequency rows independent streams by rows, with no
        # overlap between chunks; the rest of the run (if any) then starts a new run.
        rows_end = i
        while rows_end < j and steps[rows_end].rows:
            rows_end += 1
        if rows_end - i >= 2:
            j = rows_end
        run = steps[i:j]
        out.append(StreamedRun(run, shapes_in[i]) if len(run) > 1 else run[0])
        i = j
    return out


class StreamedRun:
    """Consecutive time-local steps run chunk by chunk; see the module docstring."""

    def __init__(self, steps: list[Step], in_shape: tuple):
        self.steps = steps
        self.names = steps[-1].names
        self.out_shape = steps[-1].out_shape
        self.rows = all(step.rows for step in steps)
        # Composite receptive field along time: output t reads input [t*stride, t*stride + window).
        window, stride = 1, 1
        for step in reversed(steps):
            k, s = step.time_window
            window, stride = (window - 1) * s + k, stride * s
        self.window, self.stride = window, stride
        self.largest = max(_bytes(in_shape), *(_bytes(step.out_shape) for step in steps))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        n_chunks = -(-batch * self.largest // STREAM_CHUNK_BYTES)
        if self.rows:
            return self._by_rows(x, min(n_chunks, x.shape[2]))
        t_out = self.out_shape[-1]
        halo = max(self.window - self.stride, 0)
        if halo:
            n_chunks = min(n_chunks, max(1, t_out * self.stride // (MIN_CHUNK_PER_HALO * halo)))
        return self._by_time(x, min(n_chunks, t_out), t_out)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def _run_steps(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step.run(x)
        return x

    def _by_rows(self, x: torch.Tensor, n_chunks: int) -> torch.Tensor:
        if n_chunks <= 1:
            return self._run_steps(x)
        height = x.shape[2]
        size = -(-height // n_chunks)
        out = None
        for r0 in range(0, height, size):
            y = self._run_steps(x[:, :, r0 : r0 + size])
            if out is None:
                out = y.new_empty((x.shape[0], *self.out_shape))
            out[:, :, r0 : r0 + size] = y
        return out

    def _by_time(self, x: torch.Tensor, n_chunks: int, t_out: int) -> torch.Tensor:
        if n_chunks <= 1:
            return self._run_steps(x)
        size = -(-t_out // n_chunks)
        out = None
        for a in range(0, t_out, size):
            b = min(t_out, a + size)
            y = self._run_steps(x[..., a * self.stride : (b - 1) * self.stride + self.window])
            if out is None:
                out = y.new_empty((x.shape[0], *self.out_shape))
            out[..., a:b] = y
        return out
