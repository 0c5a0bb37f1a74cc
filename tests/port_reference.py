"""The authors' PyTorch port (../shared/reference/phaselocknet_torch) as a test reference.

The port imports ``torchvision`` only for ``torchvision.transforms.RandomCrop``, and no
torchvision release installs beside this project's torch, so ``load_port`` puts a stand-in
module in ``sys.modules`` first: ``RandomCrop(size)`` cropping the last two axes at a uniform
random offset, which is all the port uses of it (peripheral_model.RandomSlice). Nothing here
copies the port: its modules are imported from ../shared.

``port_model_dir`` writes a model directory the way the port's users hold one (config.json,
arch.json and ckpt_BEST.pt written by the port's own ``util.save_model_checkpoint``).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch

from conftest import PUBLISHED, SHARED, tiny_localization_arch, tiny_word_arch

PORT = SHARED / "reference" / "phaselocknet_torch"

# One published configuration per family of the port (front end as published), with a small
# CNN of that family's layer types at the real input size, so a model builds in seconds.
FAMILIES = {
    "localization_waveform": "sound_localization/simplified_IHC3000/arch01",
    "localization_nervegram": "sound_localization/IHC3000/arch01",
    "speech_waveform": "spkr_word_recognition/simplified_IHC3000/arch0_0000",
    "speech_nervegram": "spkr_word_recognition/IHC3000/arch0_0000",
}
# The cheapest published architecture of each family (tf_reference.PARITY_MODELS), whole.
PUBLISHED_MODELS = {
    "localization_waveform": "sound_localization/simplified_IHC3000/arch03",
    "localization_nervegram": "sound_localization/IHC1000/arch03",
    "speech_waveform": "spkr_word_recognition/simplified_IHC0050/arch0_0016",
    "speech_nervegram": "spkr_word_recognition/IHC3000/arch0_0016",
}
SPEECH_NERVE_SAMPLES = 20000


def small_arch(family: str) -> list:
    if family.startswith("localization"):
        return tiny_localization_arch()
    arch = tiny_word_arch(SPEECH_NERVE_SAMPLES)
    for layer in arch:
        if layer["layer_type"] == "hpool":  # a coarser pool keeps the dense layer small
            layer["args"].update(pool_size=[8, 64], strides=[2, 32])
    return arch


class _RandomCrop:
    def __init__(self, size, **kwargs):
        if kwargs:
            raise NotImplementedError(f"stand-in RandomCrop supports only size, got {sorted(kwargs)}")
        self.size = tuple(size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (H, W) = self.size, x.shape[-2:]
        i = int(torch.randint(0, H - h + 1, (1,)))
        j = int(torch.randint(0, W - w + 1, (1,)))
        return x[..., i : i + h, j : j + w]


def load_port():
    """(phaselocknet_model, util) of the port, or None when ../shared lacks it."""
    if not (PORT / "phaselocknet_model.py").is_file():
        return None
    if "torchvision" not in sys.modules:
        torchvision = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        transforms.RandomCrop = _RandomCrop
        torchvision.transforms = transforms
        sys.modules["torchvision"] = torchvision
        sys.modules["torchvision.transforms"] = transforms
    if str(PORT) not in sys.path:
        sys.path.insert(0, str(PORT))
    import phaselocknet_model
    import util

    return phaselocknet_model, util


def write_model_files(model_dir: Path, family: str, *, published: bool = False) -> tuple[dict, list]:
    """config.json (published) and the small arch.json of `family` in `model_dir`; with
    `published`, config.json and arch.json of the family's PUBLISHED_MODELS entry."""
    source = PUBLISHED / (PUBLISHED_MODELS if published else FAMILIES)[family]
    config = json.loads((source / "config.json").read_text())
    arch = json.loads((source / "arch.json").read_text()) if published else small_arch(family)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=4))
    (model_dir / "arch.json").write_text(json.dumps(arch, indent=4))
    return config, arch


def family_dir(root: Path, family: str, *, published: bool = False) -> Path:
    """<root>/<task>/<variant>/<arch>: the port picks its input from 'sound_localization' in the path."""
    return root / (PUBLISHED_MODELS if published else FAMILIES)[family]


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Every float parameter and batch-norm statistic random, so no two tensors coincide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        for name, tensor in module.named_buffers():
            if name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)


def port_model(model_dir: Path):
    phaselocknet_model, _ = load_port()
    model, _config = phaselocknet_model.get_model(str(model_dir))
    return model
