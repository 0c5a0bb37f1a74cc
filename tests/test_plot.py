"""Figures (phaselocknet.plot) and the ``nervegram`` / ``demo`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io.wavfile
import torch

pytest.importorskip("matplotlib")

from conftest import PUBLISHED, needs_shared  # noqa: E402
from phaselocknet.cli import main  # noqa: E402
from phaselocknet.periphery import erbspace  # noqa: E402
from phaselocknet.plot import bin_time, nervegram_figure, octave_ticks, plot_nervegrams  # noqa: E402


def test_octave_ticks_fall_on_octaves():
    cfs = erbspace(60.0, 16000.0, 50)
    positions, labels = octave_ticks(cfs)
    assert labels == ["62.5", "125", "250", "500", "1k", "2k", "4k", "8k", "16k"]
    # Each tick sits where the ERB-spaced CF axis reaches that frequency (interpolated in log f).
    for position, label in zip(positions, labels):
        freq = float(label.rstrip("k")) * (1000 if label.endswith("k") else 1)
        lo = int(np.floor(position))
        hi = min(lo + 1, cfs.size - 1)
        assert cfs[lo] <= freq * (1 + 1e-9) and freq <= cfs[hi] * (1 + 1e-9)


def test_time_binning_keeps_units_and_removes_fine_structure():
    # A 2500 Hz square-ish pattern at 10 kHz (period 4 samples) binned 8x: the mean rate, flat.
    image = np.tile(np.array([200.0, 200.0, 0.0, 0.0]), (3, 2500))
    binned, factor = bin_time(image, 1250)
    assert factor == 8 and binned.shape == (3, 1250)
    np.testing.assert_allclose(binned, 100.0)
    same, factor = bin_time(image, 20000)
    assert factor == 1 and same is image


def test_panels_share_one_colour_scale_and_colour_bar():
    cfs = erbspace(125.0, 8000.0, 50)
    quiet = np.full((50, 3000), 10.0)
    loud = np.full((50, 3000), 240.0)
    fig = nervegram_figure([("quiet", quiet), ("loud", loud)], cfs, sample_rate=10000.0)
    panels = [ax for ax in fig.axes if ax.images]
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "firing rate (spikes/s)"]
    assert len(panels) == 2 and len(colour_bars) == 1
    assert [image.get_clim() for ax in panels for image in ax.images] == [(0.0, 240.0), (0.0, 240.0)]
    # No panel holds more time columns than it has pixels (nothing to alias).
    for ax in panels:
        width_px = ax.get_window_extent().width
        assert ax.images[0].get_array().shape[1] <= width_px
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["125", "250", "500", "1k", "2k", "4k", "8k"]


def test_plot_refuses_mismatched_panels(tmp_path):
    with pytest.raises(ValueError, match="50 CFs"):
        plot_nervegrams(tmp_path / "x.png", [("a", np.zeros((40, 10)))], erbspace(125, 8000, 50), 10000.0)
    assert not list(tmp_path.iterdir())


def _write_tone(path, rate=20000, seconds=0.2, freq=500.0):
    t = np.arange(int(rate * seconds)) / rate
    scipy.io.wavfile.write(path, rate, (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32))


@needs_shared
def test_nervegram_uses_the_front_end_of_the_task(tmp_path, capsys):
    # Independent of the command's own code path: the published speech model's front end,
    # built from its config.json, gives the same rates (spikes/s) for the same sound.
    from phaselocknet.periphery import Cochlea

    wav = tmp_path / "tone.wav"
    _write_tone(wav)
    out = tmp_path / "tone.npy"
    assert main(["nervegram", str(wav), "--task", "speech", "--variant", "IHC1000", "--dbspl", "60", "-o", str(out)]) == 0
    rates = np.load(out)
    assert rates.shape == (3, 50, 2000)  # 0.2 s at 10 kHz
    assert "spikes/s" in capsys.readouterr().err  # the INFO message
    assert main(["-q", "nervegram", str(wav), "--task", "speech", "--variant", "IHC1000", "--dbspl", "60", "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""  # -q: warnings and errors only
    model_dir = PUBLISHED / "word_recognition" / "simplified_IHC1000" / "arch0_0000"
    if not model_dir.is_dir():
        model_dir = next(PUBLISHED.glob("*word*/simplified_IHC1000/*"))
    config = json.loads((model_dir / "config.json").read_text())
    cochlea = Cochlea(config["kwargs_cochlea"])
    from phaselocknet.audio import read_audio, set_dbspl

    x, _ = read_audio(wav)
    with torch.no_grad():
        expected = cochlea(torch.as_tensor(set_dbspl(x[0], 60.0), dtype=torch.float32)[None])[0].numpy()
    np.testing.assert_allclose(rates, expected, rtol=0, atol=1e-4 * expected.max())
    # The localization front end differs: 50 kHz input, CFs up to 16 kHz.
    main(["nervegram", str(wav), "--task", "localization", "--dbspl", "60", "-o", str(out)])
    assert not np.allclose(np.load(out), rates)


def test_nervegram_and_demo_figures(tmp_path):
    wav = tmp_path / "tone.wav"
    _write_tone(wav)
    assert main(["nervegram", str(wav), "-o", str(tmp_path / "tone.png")]) == 0
    assert main(["demo", "-o", str(tmp_path / "demo.png")]) == 0
    for name in ("tone.png", "demo.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["nervegram", str(wav), "-o", str(tmp_path / "tone.txt")]) == 2
