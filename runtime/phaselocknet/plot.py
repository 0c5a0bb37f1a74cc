"""Figures: nervegrams (auditory-nerve representations) as images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_nervegrams(path: Path, panels: list[tuple[str, np.ndarray]], cfs: np.ndarray, duration_s: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ValueError("plotting needs matplotlib: pip install 'phaselocknet[plot]' (or write .npy)") from error
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels):
        # Sum the three spontaneous-rate groups: total expected spikes per bin per CF.
        image = counts.sum(axis=0)
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="none",
                  extent=(0, duration_s * 1e3, -0.5, len(cfs) - 0.5))
        ticks = np.linspace(0, len(cfs) - 1, 5).round().astype(int)
        ax.set_yticks(ticks, [f"{cfs[k]:.0f}" for k in ticks])
        ax.set_title(title)
        ax.set_xlabel("time (ms)")
    axes[0][0].set_ylabel("characteristic frequency (Hz)")
    fig.suptitle("Expected auditory-nerve spike counts (harmonic tone, then chirp)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
