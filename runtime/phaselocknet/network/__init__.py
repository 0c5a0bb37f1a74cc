"""The authors' CNNs (arch.json) as torch modules."""

from .build import Network, build_network
from .layers import (
    LAYER_CLASSES,
    LAYER_TYPES,
    ArchLayer,
    BatchNorm,
    ClassificationHeads,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    HanningPool2d,
    LayerNorm,
    MaxPool2d,
    ReLU,
    Reshape,
    hanning_window,
    tf_same_padding,
)

__all__ = [
    "Network",
    "build_network",
    "LAYER_CLASSES",
    "LAYER_TYPES",
    "ArchLayer",
    "BatchNorm",
    "ClassificationHeads",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "HanningPool2d",
    "LayerNorm",
    "MaxPool2d",
    "ReLU",
    "Reshape",
    "hanning_window",
    "tf_same_padding",
]
