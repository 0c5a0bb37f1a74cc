"""Small models and stimulus sets for the ``phaselocknet eval`` tests.

Models are the tiny configurations of conftest with random weights, saved as bundles.
Stimulus sets are written in the authors' HDF5 layout (time-first binaural signals,
``nervegram_meanrates`` as [n, freq, time, spont(, ear)]) and as WAV files, at sample
rates other than the models' so that resampling is exercised.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import soundfile
import torch

import phaselocknet
from conftest import NERVEGRAM_COCHLEA, config_with, simplified_cochlea, tiny_localization_arch, tiny_word_arch

SEED = 1234


def word_nervegram_model():
    """Word + speaker heads on (3, 50, 200) nervegrams: the fastest model."""
    return phaselocknet.from_config(
        config_with(NERVEGRAM_COCHLEA, {"label_word_int": 11, "label_speaker_int": 7}), tiny_word_arch(200),
        labels={"label_word_int": ["", *[f"word{k}" for k in range(1, 11)]]},
    )


def word_waveform_model():
    """Word head on 800 samples at 20 kHz (400 nerve samples)."""
    return phaselocknet.from_config(config_with(simplified_cochlea(20000.0), {"label_word_int": 11}), tiny_word_arch(400))


def localization_waveform_model():
    """Binaural: 1.2 s at 10 kHz (12000 samples), 10000-sample nerve excerpt."""
    return phaselocknet.from_config(
        config_with(simplified_cochlea(10000.0, max_cf=4000.0), {"label_loc_int": 504}), tiny_localization_arch()
    )


def localization_nervegram_model():
    return phaselocknet.from_config(config_with(NERVEGRAM_COCHLEA, {"label_loc_int": 504}), tiny_localization_arch())


def save_bundle(model, folder: Path, name: str, seed: int = 0) -> Path:
    """Bundle with random weights drawn from ``seed`` (batch-norm statistics included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.network.state_dict().items():
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return phaselocknet.save(model, folder / f"{name}.safetensors", model_id=f"test/{name}")


def sounds(n: int, length: int, rate: float, seed: int, channels: int = 1) -> np.ndarray:
    """(n, channels, length) harmonic sounds + noise at 40..70 dB SPL, in pascals."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    out = np.empty((n, channels, length))
    for i in range(n):
        f0 = rng.uniform(100, 400)
        tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) for h in range(1, 6))
        x = tone[None] + 0.5 * rng.standard_normal((channels, length))
        x *= 20e-6 * 10 ** (rng.uniform(40, 70) / 20) / np.sqrt(np.mean(x**2))
        out[i] = x
    return out


def write_signal_hdf5(path: Path, signals: np.ndarray, rate, metadata: dict | None = None) -> Path:
    """Authors' layout: (n, time) mono or (n, time, 2) binaural, ``sr``, metadata datasets."""
    with h5py.File(path, "w") as handle:
        stored = signals[:, 0] if signals.shape[1] == 1 else np.swapaxes(signals, 1, 2)
        handle.create_dataset("signal", data=stored.astype(np.float32), chunks=(min(4, len(stored)), *stored.shape[1:]), compression="gzip")
        handle["sr"] = rate
        for key, value in (metadata or {}).items():
            handle[key] = value
    return path


def write_nervegram_hdf5(path: Path, nervegrams: np.ndarray, metadata: dict | None = None) -> Path:
    """``nervegrams`` ours (n, [ear,] spont, freq, time) -> authors' (n, freq, time, spont[, ear])."""
    with h5py.File(path, "w") as handle:
        order = (0, 2, 3, 1) if nervegrams.ndim == 4 else (0, 3, 4, 2, 1)
        handle["nervegram_meanrates"] = np.transpose(nervegrams, order).astype(np.float32)
        handle["sr"] = 10000
        for key, value in (metadata or {}).items():
            handle[key] = value
    return path


def nervegrams(n: int, shape: tuple, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 250.0, (n, *shape)).astype(np.float32)


def write_wavs(folder: Path, waveforms: list[np.ndarray], rate: int) -> list[Path]:
    """One float WAV per (channels, time) waveform."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, waveform in enumerate(waveforms):
        path = folder / f"sound_{i:03d}.wav"
        soundfile.write(path, np.asarray(waveform).T, rate, subtype="FLOAT")
        paths.append(path)
    return paths
