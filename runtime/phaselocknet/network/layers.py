"""The arch.json layer types and the classes implementing them.

One module per kind: `conv` (Conv2d), `pooling` (MaxPool2d, HanningPool2d), `normalization`
(BatchNorm, LayerNorm), `activation` (ReLU, Dropout), `reshape` (Flatten, Reshape), `dense`
(Dense, ClassificationHeads); `args` reads arch.json args, `padding` holds TF's padding rules
and `shapes` the shape inference. Activations are channels first, (batch, channels, freq,
time) or (batch, features); the authors' TensorFlow graph was channels last. How Keras names
and lays out each layer's variables is the converter's business (`phaselocknet_convert.keras_layout`).
"""

from __future__ import annotations

from .activation import Dropout, ReLU
from .args import ArchArgs, ArchLayer, Shape
from .conv import Conv2d
from .dense import ClassificationHeads, Dense
from .normalization import BatchNorm, LayerNorm, tf_axis_to_torch_dim
from .padding import WindowedPadding, tf_same_padding
from .pooling import HanningPool2d, MaxPool2d, hanning_window
from .reshape import Flatten, Reshape

LAYER_CLASSES: tuple[type[ArchLayer], ...] = (
    Conv2d, MaxPool2d, HanningPool2d, BatchNorm, LayerNorm, ReLU, Dropout, Flatten, Reshape, Dense,
    ClassificationHeads,
)

# arch.json layer_type (lower-cased, as the authors' builder compared it) -> class
LAYER_TYPES: dict[str, type[ArchLayer]] = {t: cls for cls in LAYER_CLASSES for t in cls.LAYER_TYPES}

__all__ = [
    "LAYER_CLASSES", "LAYER_TYPES", "ArchArgs", "ArchLayer", "BatchNorm", "ClassificationHeads", "Conv2d",
    "Dense", "Dropout", "Flatten", "HanningPool2d", "LayerNorm", "MaxPool2d", "ReLU", "Reshape", "Shape",
    "WindowedPadding", "hanning_window", "tf_axis_to_torch_dim", "tf_same_padding",
]
