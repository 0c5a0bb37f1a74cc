"""Nervegram-input models from sound: load(front_end="bez2018"), and the CLI around it.

The reference of the whole-model tests is the issue's definition: the wrapped model run on
a sound must equal `bez2018.nervegram(sound, ...)` (with the seed the example was given)
fed to the same bundle loaded plainly, with the same spike seed. Both sides run the same
float arithmetic on CPU, so equality is exact (torch.equal), not within a tolerance.

An eager BEZ2018 call costs about 12 s here even for 10 ms of sound, so CI runs it twice, on
a 10 ms word-model input (a tiny CNN on 100 nerve samples); the localization model's input
is fixed by the authors (1.4 s binaural), so its real run is marked long. The localization
plumbing (clip layout, excerpt, seeds, batches) and the commands (run, eval, nervegram) are
checked in CI with a stand-in nervegram (a seeded function of the sound, not BEZ2018)
swapped in for `bez2018.nervegram`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.io.wavfile
import torch

import phaselocknet
import phaselocknet.bez2018 as bez2018
from phaselocknet.bez2018.front_end import (
    LOCALIZATION_CLIP_LENGTH,
    LOCALIZATION_INPUT_LENGTH,
    FrontEndError,
    example_streams,
    ihc_cutoff_of,
    resolve_front_end,
    with_front_end,
)
from phaselocknet.cli import main

from conftest import NERVEGRAM_COCHLEA, PUBLISHED, config_with, needs_shared, read_model_dir, tiny_localization_arch, tiny_word_arch

os.environ.setdefault("PHASELOCKNET_BEZ2018_COMPILE", "0")

WORD_ID = "word_recognition/IHC0320/arch_test"
LOC_ID = "sound_localization/IHC3000_delayed_integration/arch_test"
NERVE_TIME = 100  # 10 ms at 10 kHz -> 200 sound samples at 20 kHz


def _bundle(tmp_path, config, arch, model_id, name):
    torch.manual_seed(0)
    model = phaselocknet.from_config(config, arch, model_id=model_id)
    # Random weights throughout (the default init leaves biases and norms trivial).
    with torch.no_grad():
        for p in model.network.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return phaselocknet.save(model, tmp_path / name)


@pytest.fixture
def word_bundle(tmp_path):
    config = config_with(NERVEGRAM_COCHLEA, {"label_word_int": 11, "label_speaker_int": 7})
    return _bundle(tmp_path, config, tiny_word_arch(NERVE_TIME), WORD_ID, "word.safetensors")


@pytest.fixture
def loc_bundle(tmp_path):
    config = config_with(NERVEGRAM_COCHLEA, {"label_loc_int": 504})
    return _bundle(tmp_path, config, tiny_localization_arch(), LOC_ID, "loc.safetensors")


def _tone(n, rate, db=65.0, seed=0):
    t = np.arange(n) / rate
    x = np.sin(2 * np.pi * 500.0 * t) + 0.5 * np.random.default_rng(seed).standard_normal(n)
    return x * (20e-6 * 10 ** (db / 20) / np.sqrt(np.mean(x**2)))


def _stand_in_nervegram(calls):
    """A seeded function of the sound shaped like bez2018.nervegram's output (not BEZ2018)."""

    def nervegram(signal, sample_rate, *, ihc_cutoff, preset, seed, rng, **overrides):
        calls.append(dict(batch=signal.shape[0], sample_rate=sample_rate, ihc_cutoff=ihc_cutoff,
                          preset=preset, seed=seed, rng=rng))
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * signal.shape[0]
        ears = signal.shape[1:-1]
        clipped = preset == "localization" and overrides.get("nervegram_dur", 1.3) is not None
        time = LOCALIZATION_CLIP_LENGTH if clipped else round(signal.shape[-1] * 10000 / sample_rate)
        noise = torch.stack([torch.rand(*ears, 3, 50, time, generator=torch.Generator().manual_seed(int(s)),
                                        dtype=torch.float64) for s in seeds]) * 300
        level = signal.double().abs().mean(dim=-1)[(...,) + (None,) * 3]
        return {"meanrates": (noise * (1 + level)).float(), "cf": torch.linspace(125.0, 8000.0, 50)}

    return nervegram


# ---------------------------------------------------------------------------- facts


def test_ihc_cutoff_from_the_variant():
    assert ihc_cutoff_of("word_recognition/IHC0050/arch0_0000") == 50.0
    assert ihc_cutoff_of("spkr_recognition/IHC0320/arch0_0001") == 320.0
    assert ihc_cutoff_of("sound_localization/IHC1000/arch01") == 1000.0
    assert ihc_cutoff_of("sound_localization/IHC3000_delayed_integration/arch05") == 3000.0
    with pytest.raises(FrontEndError, match="ihc_cutoff="):
        ihc_cutoff_of("my_model")


@needs_shared
@pytest.mark.parametrize("task,variant,rate,length,nerve", [
    ("word_recognition", "IHC0320", 20000.0, 40000, 20000),
    ("sound_localization", "IHC3000_delayed_integration", 44100.0, 61600, 10000),
])
def test_published_models_take_the_authors_stimuli(task, variant, rate, length, nerve):
    model_dir = sorted((PUBLISHED / task / variant).iterdir())[0]
    config, arch = read_model_dir(model_dir)
    inner = phaselocknet.from_config(config, arch, model_id=f"{task}/{variant}/{model_dir.name}")
    model = with_front_end(inner, "bez2018")
    assert (model.input_kind, model.sample_rate, model.input_length) == ("waveform", rate, length)
    assert model.nervegram_model.input_length == nerve and model.heads == inner.heads
    assert model.preset == ("localization" if model.binaural else "speech")
    assert model.ihc_cutoff == float(variant[3:7])


def test_localization_length_is_the_authors_cut():
    # configure_bez2018model_nervegram_generation.ipynb: sample_start/end = int(0.28*44e3), int(1.68*44e3)
    assert LOCALIZATION_INPUT_LENGTH == int((0.28 + 1.40) * 44e3) - int(0.28 * 44e3)


def test_refusals(word_bundle, tmp_path):
    model = phaselocknet.load(word_bundle, front_end="bez2018")
    with pytest.raises(FrontEndError, match=r"\(batch, 200\).*prepare_waveform"):
        model(torch.zeros(1, 199))
    bad = torch.zeros(2, 200)
    bad[1, 3] = float("nan")
    with pytest.raises(FrontEndError, match=r"NaN or Inf values in batch examples \[1\]"):
        model(bad)
    from phaselocknet.errors import InputError

    for wrong in (torch.zeros(1, 200, dtype=torch.int16), torch.zeros(1, 200, dtype=torch.complex64)):
        with pytest.raises(InputError, match="real float pascals"):
            model(wrong)
    with pytest.raises(FrontEndError, match="2 entries for a batch of 1"):
        model(torch.zeros(1, 200), example_seeds=[1, 2])
    with pytest.raises(FrontEndError, match="the only front end is 'bez2018'"):
        phaselocknet.load(word_bundle, front_end="gammatone")
    with pytest.raises(FrontEndError, match="rng="):
        with_front_end(phaselocknet.load(word_bundle), rng="philox")


def test_waveform_models_refuse_a_second_front_end(tiny_word_waveform):
    config, arch = tiny_word_waveform
    model = phaselocknet.from_config(config, arch, model_id="word_recognition/simplified_IHC3000/arch01")
    with pytest.raises(FrontEndError, match="already takes sounds"):
        with_front_end(model)
    assert resolve_front_end(model, "auto", sounds=True) is model
    with pytest.raises(FrontEndError, match="already takes sounds"):
        resolve_front_end(model, "bez2018", sounds=True)


# ------------------------------------------------- plumbing, with a stand-in nervegram


def test_localization_clip_excerpt_and_seeds(loc_bundle, monkeypatch):
    calls = []
    monkeypatch.setattr(bez2018, "nervegram", _stand_in_nervegram(calls))
    x = torch.from_numpy(np.stack([_tone(LOCALIZATION_INPUT_LENGTH, 44100.0, seed=s) for s in (1, 2)])).float()[None]
    x = torch.cat([x, 0.5 * x])
    seeds = [11, 12]
    wrapped = phaselocknet.load(loc_bundle, front_end="bez2018", spikes="sample")
    plain = phaselocknet.load(loc_bundle, spikes="sample")
    rates = wrapped.nervegram(x, example_seeds=seeds)
    assert calls == [dict(batch=2, sample_rate=44100.0, ihc_cutoff=3000.0, preset="localization",
                          seed=[example_streams(s).nervegram_seed for s in seeds], rng="torch")]
    full = torch.cat([bez2018.nervegram(x[i : i + 1], 44100.0, ihc_cutoff=3000.0, preset="localization",
                                        seed=example_streams(s).nervegram_seed, rng="torch")["meanrates"]
                      for i, s in enumerate(seeds)])
    starts = [min(int(example_streams(s).excerpt_u * 3001), 3000) for s in seeds]
    assert all(0 <= s <= 3000 for s in starts) and starts[0] != starts[1]
    expected = torch.stack([full[i, ..., s : s + 10000] for i, s in enumerate(starts)])
    assert torch.equal(rates, expected)
    spike_seeds = [example_streams(s).spike_seed for s in seeds]
    got = wrapped(x, example_seeds=seeds)
    want = plain(expected, example_seeds=spike_seeds)
    assert all(torch.equal(got[h], want[h]) for h in want)
    # An example gets the same spike counts alone as in a batch (the CNN's batched float32
    # arithmetic may round differently, so its logits are compared to rounding level).
    nerve = wrapped.nerve_representation(x, seeds)
    alone = wrapped.nerve_representation(x[1:], seeds[1:])
    assert torch.equal(alone[0], nerve[1]) and not torch.equal(nerve[0], nerve[1])
    torch.testing.assert_close(wrapped(x[1:], seeds[1:])["label_loc_int"][0], got["label_loc_int"][1], rtol=1e-5, atol=1e-5)


def test_fixed_excerpt_and_load_seed(loc_bundle, monkeypatch):
    monkeypatch.setattr(bez2018, "nervegram", _stand_in_nervegram([]))
    x = torch.from_numpy(_tone(LOCALIZATION_INPUT_LENGTH, 44100.0)).float().expand(1, 2, -1)
    model = phaselocknet.load(loc_bundle, front_end="bez2018", spikes="mean", excerpt=2999)
    seed = 5
    full = bez2018.nervegram(x, 44100.0, ihc_cutoff=3000.0, preset="localization",
                             seed=example_streams(seed).nervegram_seed, rng="torch")["meanrates"]
    assert torch.equal(model.nervegram(x, [seed]), full[..., 2999:12999])
    with pytest.raises(FrontEndError, match="0..3000"):
        phaselocknet.load(loc_bundle, front_end="bez2018", excerpt=3001)
    # load(seed=) makes a run reproducible; two runs of one seeded model draw afresh.
    a = phaselocknet.load(loc_bundle, front_end="bez2018", seed=3)
    b = phaselocknet.load(loc_bundle, front_end="bez2018", seed=3)
    first = a(x)["label_loc_int"]
    assert torch.equal(first, b(x)["label_loc_int"])
    assert not torch.equal(first, a(x)["label_loc_int"])


# -------------------------------------------------------------- real BEZ2018, short
# Each eager BEZ2018 call costs about 12 s here even for 10 ms (the synapse's power-law
# adaptation runs over its fixed-length padding), so the reference nervegram is made once.

SPEECH_SEED = 7


@pytest.fixture(scope="module")
def speech_sound():
    return _tone(2 * NERVE_TIME, 20000.0).astype(np.float32)


@pytest.fixture(scope="module")
def speech_reference(speech_sound):
    rates = bez2018.nervegram(torch.from_numpy(speech_sound)[None], 20000.0, ihc_cutoff=320.0, preset="speech",
                              seed=example_streams(SPEECH_SEED).nervegram_seed, rng="torch")["meanrates"]
    assert rates.shape == (1, 3, 50, NERVE_TIME) and rates.dtype == torch.float32
    return rates


def test_word_model_from_sound_equals_nervegram_then_model(word_bundle, speech_sound, speech_reference):
    x = torch.from_numpy(speech_sound)[None]
    wrapped = phaselocknet.load(word_bundle, front_end="bez2018", spikes="sample")
    plain = phaselocknet.load(word_bundle, spikes="sample")
    assert (wrapped.sample_rate, wrapped.input_length, wrapped.ihc_cutoff) == (20000.0, 200, 320.0)
    streams, rates = example_streams(SPEECH_SEED), speech_reference
    with torch.no_grad():
        # One BEZ2018 run on the wrapped side: the CNN input and an activation from it.
        got = wrapped.activations(x, ["nerve", "fc_intermediate_dense"], example_seeds=[SPEECH_SEED])
        want = plain.activations(rates, ["nerve", "fc_intermediate_dense"], example_seeds=[streams.spike_seed])
    assert got["nerve"].sum() > 0
    assert all(torch.equal(got[name], want[name]) for name in want)


# ---------------------------------------------------------------------------- CLI


def _wav(path, x, rate):
    scipy.io.wavfile.write(path, int(rate), np.asarray(x, dtype=np.float32).T)
    return path


# The commands with the stand-in nervegram: what they add is plumbing (reading, levels,
# layouts, seeds, writing); BEZ2018 itself runs in the test above.


def test_cli_run_hears_a_sound_through_bez2018(word_bundle, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(bez2018, "nervegram", _stand_in_nervegram(calls))
    sound = _wav(tmp_path / "s.wav", _tone(2 * NERVE_TIME, 20000.0), 20000)
    assert main(["run", str(word_bundle), str(sound), "--seed", "1", "--json", "--top", "7"]) == 0
    assert [(c["preset"], c["ihc_cutoff"], c["sample_rate"]) for c in calls] == [("speech", 320.0, 20000.0)]
    out = json.loads(capsys.readouterr().out)
    assert set(out["predictions"]) == {"label_word_int", "label_speaker_int"}
    assert abs(sum(r["probability"] for r in out["predictions"]["label_speaker_int"][:7]) - 1) < 1e-6
    assert main(["run", str(word_bundle), str(sound), "--front-end", "none"]) == 2
    assert "takes nervegrams" in capsys.readouterr().err


def test_cli_run_hears_a_sound_through_a_nervegram_variant(tmp_path, capsys, monkeypatch):
    # `run VARIANT` for a nervegram variant: every member gets the BEZ2018 front end (one
    # nervegram each, its own draws); --front-end none keeps the clear error.
    home = tmp_path / "store"
    monkeypatch.setenv("PHASELOCKNET_HOME", str(home))
    config = config_with(NERVEGRAM_COCHLEA, {"label_word_int": 11, "label_speaker_int": 7})
    for k in range(2):
        _bundle(home / "test_words" / "IHC0320", config, tiny_word_arch(NERVE_TIME),
                f"test_words/IHC0320/arch0{k}", f"arch0{k}.safetensors")
    calls = []
    monkeypatch.setattr(bez2018, "nervegram", _stand_in_nervegram(calls))
    sound = _wav(tmp_path / "s.wav", _tone(2 * NERVE_TIME, 20000.0), 20000)
    assert main(["run", "test_words/IHC0320", str(sound), "--seed", "1", "--json", "--top", "11"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["members"] == ["test_words/IHC0320/arch00", "test_words/IHC0320/arch01"]
    assert [(c["preset"], c["ihc_cutoff"]) for c in calls] == [("speech", 320.0)] * 2
    probs = [r["probability"] for r in out["predictions"]["label_word_int"]]
    assert abs(sum(probs) - 1) < 1e-5
    assert main(["run", "test_words/IHC0320", str(sound), "--front-end", "none"]) == 2
    assert "takes nervegrams" in capsys.readouterr().err


def test_cli_nervegram_bez2018_writes_spikes_per_second(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bez2018, "nervegram", _stand_in_nervegram(calls))
    x = _tone(2 * NERVE_TIME, 20000.0).astype(np.float32)
    sound = _wav(tmp_path / "s.wav", x, 20000)
    out = tmp_path / "n.npy"
    assert main(["nervegram", str(sound), "--model", "bez2018", "--variant", "IHC0320", "--task", "speech",
                 "--seed", "4", "-o", str(out)]) == 0
    assert [(c["batch"], c["preset"], c["ihc_cutoff"], c["seed"]) for c in calls] == [(1, "speech", 320.0, 4)]
    reference = bez2018.nervegram(torch.from_numpy(x)[None], 20000.0, ihc_cutoff=320.0, preset="speech", seed=4,
                                  rng="torch")["meanrates"]
    written = np.load(out)
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, reference[0].numpy())
    # Localization: both ears, the whole sound (no 1.3 s clip).
    stereo = _wav(tmp_path / "st.wav", np.stack([x, 0.5 * x]), 20000)
    assert main(["nervegram", str(stereo), "--model", "bez2018", "--variant", "IHC3000_delayed_integration",
                 "--task", "localization", "-o", str(out)]) == 0
    assert np.load(out).shape == (2, 3, 50, NERVE_TIME) and calls[-1]["preset"] == "localization"
    assert main(["nervegram", str(sound), "--model", "bez2018", "-o", str(tmp_path / "n.txt")]) == 2


def test_cli_eval_takes_sounds_for_nervegram_models(word_bundle, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bez2018, "nervegram", _stand_in_nervegram(calls))
    sound = _wav(tmp_path / "s.wav", _tone(2 * NERVE_TIME, 20000.0), 20000)
    out = tmp_path / "r.csv"
    assert main(["eval", str(word_bundle), "--data", str(sound), "--out", str(out), "--workers", "0",
                 "--seed", "2", "--no-progress"]) == 0
    header, row = out.read_text().splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(",")))
    assert cells[f"{WORD_ID}/label_word_int.pred"].isdigit() and cells["error"] == ""
    assert json.loads(out.with_suffix(".json").read_text())["fingerprint"]["front_end"] == ["bez2018"]
    assert [(c["batch"], c["preset"]) for c in calls] == [(1, "speech")]
    assert main(["eval", str(word_bundle), "--data", str(sound), "--out", str(tmp_path / "n.csv"),
                 "--front-end", "none", "--workers", "0", "--no-progress"]) == 2


# ----------------------------------------------------- real BEZ2018, whole length


def test_localization_model_from_sound_equals_nervegram_then_model(loc_bundle):
    x = torch.from_numpy(np.stack([_tone(LOCALIZATION_INPUT_LENGTH, 44100.0, seed=s) for s in (1, 2)])).float()[None]
    wrapped = phaselocknet.load(loc_bundle, front_end="bez2018", spikes="sample")
    plain = phaselocknet.load(loc_bundle, spikes="sample")
    streams = example_streams(9)
    rates = bez2018.nervegram(x, 44100.0, ihc_cutoff=3000.0, preset="localization", seed=streams.nervegram_seed,
                              rng="torch")["meanrates"]
    assert rates.shape == (1, 2, 3, 50, LOCALIZATION_CLIP_LENGTH)
    start = min(int(streams.excerpt_u * 3001), 3000)
    with torch.no_grad():
        got = wrapped(x, example_seeds=[9])
        want = plain(rates[..., start : start + 10000], example_seeds=[streams.spike_seed])
    assert torch.equal(got["label_loc_int"], want["label_loc_int"])
