"""Figures: nervegrams (auditory-nerve firing rates over time and characteristic frequency).

    from phaselocknet.plot import plot_nervegrams
    plot_nervegrams("out.png", [("IHC 50 Hz", rates_a), ("IHC 3000 Hz", rates_b)], cfs, sample_rate=10000)

Each panel is a (freq, time) array in spikes/s. Panels share one colour scale and one colour
bar (so brightness compares across panels), CF ticks fall at octaves (125 Hz, 250 Hz, ...),
and the time axis is averaged into at most one column per pixel, so fine structure cannot
alias into stripes that look like phase locking. Needs matplotlib (the `plot` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_path

PANEL_WIDTH_IN = 3.6
PANEL_HEIGHT_IN = 3.2
DPI = 120
OCTAVE_BASE_HZ = 125.0


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ValueError("plotting needs matplotlib: pip install 'phaselocknet[plot]' (or write .npy)") from error
    return plt


def octave_ticks(cfs: Sequence[float]) -> tuple[np.ndarray, list[str]]:
    """(positions on the CF-index axis, labels) of the octaves 125 * 2^k Hz within the CFs; the
    position interpolates log CF between channels (CFs are ERB-spaced, not log-spaced)."""
    cfs = np.asarray(cfs, dtype=np.float64)
    k = np.arange(np.ceil(np.log2(cfs.min() / OCTAVE_BASE_HZ)), np.floor(np.log2(cfs.max() / OCTAVE_BASE_HZ)) + 1)
    octaves = OCTAVE_BASE_HZ * 2.0**k
    positions = np.interp(np.log2(octaves), np.log2(cfs), np.arange(cfs.size))
    labels = [f"{f / 1000:g}k" if f >= 1000 else f"{f:g}" for f in octaves]
    return positions, labels


def bin_time(image: np.ndarray, max_columns: int) -> tuple[np.ndarray, int]:
    """(image averaged over blocks of `factor` time samples, factor), with at most
    `max_columns` columns: a mean keeps the unit (spikes/s) and cannot alias."""
    factor = max(1, -(-image.shape[-1] // max_columns))
    n = image.shape[-1] // factor * factor
    if factor == 1:
        return image, 1
    return image[..., :n].reshape(*image.shape[:-1], n // factor, factor).mean(-1), factor


def nervegram_figure(panels: Sequence[tuple[str, np.ndarray]], cfs: Sequence[float], sample_rate: float,
                     title: str | None = None):
    """A matplotlib Figure with one panel per (title, rates (freq, time) in spikes/s)."""
    plt = _pyplot()
    images = [np.asarray(rates, dtype=np.float64) for _, rates in panels]
    if not images or any(image.ndim != 2 or image.shape[0] != len(cfs) for image in images):
        raise ValueError(f"each panel must be a (freq, time) array with {len(cfs)} CFs")
    vmax = max(float(image.max()) for image in images) or 1.0
    fig, axes = plt.subplots(1, len(images), figsize=(PANEL_WIDTH_IN * len(images) + 1.0, PANEL_HEIGHT_IN),
                             sharey=True, squeeze=False, dpi=DPI, layout="constrained")
    positions, labels = octave_ticks(cfs)
    for ax, (panel_title, _), image in zip(axes[0], panels, images):
        duration_ms = image.shape[-1] / sample_rate * 1e3
        mappable = ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="antialiased",
                             vmin=0.0, vmax=vmax, extent=(0, duration_ms, -0.5, len(cfs) - 0.5))
        ax.set_yticks(positions, labels)
        ax.set_title(panel_title)
        ax.set_xlabel("time (ms)")
    axes[0][0].set_ylabel("characteristic frequency (Hz)")
    fig.colorbar(mappable, ax=axes[0].tolist(), label="firing rate (spikes/s)")
    if title:
        fig.suptitle(title)
    fig.canvas.draw()  # lays the panels out, so their widths in pixels are known
    for ax, image in zip(axes[0], images):
        # At most one column per pixel; matplotlib's antialiasing filter handles the rest.
        ax.images[0].set_data(bin_time(image, max(int(ax.get_window_extent().width), 1))[0])
    return fig


def plot_nervegrams(path: str | Path, panels: Sequence[tuple[str, np.ndarray]], cfs: Sequence[float],
                    sample_rate: float, title: str | None = None) -> Path:
    """Write `nervegram_figure(...)` to `path` (.png, .pdf, .svg) atomically."""
    path = Path(path)
    fig = nervegram_figure(panels, cfs, sample_rate, title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        _pyplot().close(fig)
    return path
