"""``phaselocknet eval`` / ``merge`` end to end on small random-weight models.

The reference for every prediction is the model itself, loaded from the same bundle and
called one example at a time on the input prepared by ``phaselocknet.audio`` with the
documented example seed. Probabilities are compared with rtol 1e-5 because the
evaluation batches examples and batched float32 kernels may sum in another order;
predicted classes must match exactly.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile
import torch

import phaselocknet
from evaluate_sets import (
    SEED,
    localization_waveform_model,
    nervegrams,
    save_bundle,
    sounds,
    word_nervegram_model,
    word_waveform_model,
    write_nervegram_hdf5,
    write_signal_hdf5,
    write_wavs,
)
from phaselocknet.audio import prepare_waveform, read_audio
from phaselocknet.bundle import read_metadata
from phaselocknet.cli import main
from phaselocknet.evaluate.shards import example_seed, model_key

N = 50


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models run many small ops; on a busy 2-core CI machine a second
    intra-op thread mostly waits for a core (10x slower here), so use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles")
    return {
        "word_nervegram": save_bundle(word_nervegram_model(), folder, "word_nervegram", seed=1),
        "word_nervegram_2": save_bundle(word_nervegram_model(), folder, "word_nervegram_2", seed=2),
        "word_waveform": save_bundle(word_waveform_model(), folder, "word_waveform", seed=3),
        "localization_waveform": save_bundle(localization_waveform_model(), folder, "localization_waveform", seed=4),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    word_sounds = sounds(N, 700, 16000, seed=10)
    word_nervegrams = nervegrams(N, (3, 50, 220), seed=11)
    binaural = sounds(6, 9000, 8000, seed=12, channels=2)
    rng = np.random.default_rng(13)
    wav_sounds = [sounds(1, int(n), 22050, seed=int(n))[0] for n in rng.integers(500, 1100, N)]
    return {
        "word_h5": write_signal_hdf5(folder / "word.h5", word_sounds, 16000,
                                     metadata={"f0": rng.uniform(100, 400, N).astype(np.float32), "snr": np.arange(N) % 4}),
        "nervegram_h5": write_nervegram_hdf5(folder / "nervegrams.h5", word_nervegrams, metadata={"word": np.arange(N) % 11}),
        "binaural_h5": write_signal_hdf5(folder / "binaural.h5", binaural, 8000, metadata={"azim": np.arange(6) * 5}),
        "wav_folder": write_wavs(folder / "wavs", wav_sounds, 22050)[0].parent,
    }


def run(*argv: str) -> int:
    return main(["eval", *map(str, argv), "--no-progress"])


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def direct_probs(bundle: Path, inputs: list[np.ndarray], examples: list[int], *, seed: int,
                 spikes: str = "sample", excerpt="random") -> dict[str, np.ndarray]:
    """The model on each example alone, with the documented per-example seed."""
    model = phaselocknet.load(bundle, spikes=spikes, excerpt=excerpt)
    key = model_key(read_metadata(bundle)["content_sha256"])
    out: dict[str, list] = {}
    with torch.no_grad():
        for x, example in zip(inputs, examples):
            logits = model(torch.from_numpy(np.asarray(x, dtype=np.float32))[None],
                           example_seeds=[example_seed(seed, example, key)])
            for head, values in logits.items():
                out.setdefault(head, []).append(torch.softmax(values[0], -1).numpy())
    return {head: np.stack(values) for head, values in out.items()}


def assert_matches_direct(out: Path, model_name: str, expected: dict[str, np.ndarray]):
    rows = read_rows(out)
    probs = np.load(out.with_suffix(".probs.npz"))
    for head, reference in expected.items():
        np.testing.assert_allclose(probs[f"{model_name}/{head}"], reference, rtol=1e-5, atol=1e-7)
        assert [int(r[f"{model_name}/{head}.pred"]) for r in rows] == reference.argmax(1).tolist()


# ------------------------------------------------------------- equality with direct calls
def test_hdf5_mono_sounds_at_another_rate_give_the_models_own_predictions(tmp_path, bundles, data):
    out = tmp_path / "word.csv"
    assert run(bundles["word_waveform"], "--data", data["word_h5"], "--out", out, "--seed", SEED,
               "--probs", "--batch-size", 7, "--workers", 0) == 0
    with h5py.File(data["word_h5"]) as handle:
        signals, rate = handle["signal"][:], float(handle["sr"][()])
        f0 = handle["f0"][:]
    inputs = [prepare_waveform(s, rate, sample_rate=20000.0, length=800, binaural=False) for s in signals]
    assert_matches_direct(out, "test/word_waveform", direct_probs(bundles["word_waveform"], inputs, list(range(N)), seed=SEED))
    rows = read_rows(out)
    assert [r["example"] for r in rows] == [str(i) for i in range(N)]
    assert {r["source"] for r in rows} == {str(data["word_h5"])}
    assert [int(r["index"]) for r in rows] == list(range(N))
    # Metadata copied through and readable back exactly.
    assert [np.float32(r["f0"]) for r in rows] == f0.tolist()
    assert [int(r["snr"]) for r in rows] == [i % 4 for i in range(N)]
    assert all(r["error"] == "" for r in rows)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["seed"] == SEED and sidecar["examples"] == {"evaluated": N, "errors": 0}
    assert sidecar["bundles"][0]["sha256"] == phaselocknet.bundle.file_sha256(bundles["word_waveform"])
    assert sidecar["versions"]["torch"] and sidecar["options"]["batch_size"] == 7
    assert "--seed 1234" in sidecar["command"]


def test_wav_folder_with_level_gives_the_models_own_predictions(tmp_path, bundles, data):
    out = tmp_path / "wavs.csv"
    assert run(bundles["word_waveform"], "--data", data["wav_folder"], "--out", out, "--seed", SEED,
               "--probs", "--dbspl", 55, "--workers", 2) == 0
    paths = sorted(data["wav_folder"].glob("*.wav"))
    inputs = []
    for path in paths:
        waveform, rate = read_audio(path)
        inputs.append(prepare_waveform(waveform, rate, sample_rate=20000.0, length=800, binaural=False, level_db=55.0))
    assert_matches_direct(out, "test/word_waveform", direct_probs(bundles["word_waveform"], inputs, list(range(N)), seed=SEED))
    assert [r["source"] for r in read_rows(out)] == [str(p) for p in paths]


def test_nervegram_hdf5_gives_the_models_own_predictions_and_labels(tmp_path, bundles, data):
    out = tmp_path / "nervegrams.csv"
    assert run(bundles["word_nervegram"], "--data", data["nervegram_h5"], "--out", out, "--seed", SEED, "--probs") == 0
    with h5py.File(data["nervegram_h5"]) as handle:
        stored = handle["nervegram_meanrates"][:]  # (n, freq, time, spont)
    inputs = [np.transpose(x, (2, 0, 1))[..., 10:210] for x in stored]  # ours, centre 200 of 220 bins
    expected = direct_probs(bundles["word_nervegram"], inputs, list(range(N)), seed=SEED)
    assert set(expected) == {"label_word_int", "label_speaker_int"}
    assert_matches_direct(out, "test/word_nervegram", expected)
    rows = read_rows(out)
    names = ["<no word>", *[f"word{k}" for k in range(1, 11)]]
    assert [r["test/word_nervegram/label_word_int.label"] for r in rows] == [names[k] for k in expected["label_word_int"].argmax(1)]
    assert "test/word_nervegram/label_speaker_int.label" not in rows[0]  # speaker classes have no names


def test_binaural_hdf5_gives_the_models_own_predictions(tmp_path, bundles, data):
    out = tmp_path / "binaural.csv"
    assert run(bundles["localization_waveform"], "--data", data["binaural_h5"], "--out", out, "--seed", SEED,
               "--probs", "--batch-size", 4, "--workers", 0) == 0
    with h5py.File(data["binaural_h5"]) as handle:
        signals = handle["signal"][:]  # (n, time, 2)
    inputs = [prepare_waveform(s.T, 8000.0, sample_rate=10000.0, length=12000, binaural=True) for s in signals]
    expected = direct_probs(bundles["localization_waveform"], inputs, list(range(6)), seed=SEED)
    assert_matches_direct(out, "test/localization_waveform", expected)
    rows = read_rows(out)
    azimuth = [(k % 72) * 5 for k in expected["label_loc_int"].argmax(1)]
    elevation = [(k // 72) * 10 for k in expected["label_loc_int"].argmax(1)]
    assert [r["test/localization_waveform/label_loc_int.label"] for r in rows] == [
        f"azimuth {a} deg, elevation {e} deg" for a, e in zip(azimuth, elevation)
    ]


# ------------------------------------------------------------- invariance, shards
def test_batch_size_and_workers_do_not_change_results(tmp_path, bundles, data):
    outs = {batch: tmp_path / f"b{batch}.csv" for batch in (1, 7)}
    for batch, workers in ((1, 0), (7, 2)):
        assert run(bundles["word_nervegram"], bundles["word_nervegram_2"], "--data", data["nervegram_h5"], "--out", outs[batch],
                   "--seed", 5, "--probs", "--batch-size", batch, "--workers", workers) == 0
    assert outs[1].read_text() == outs[7].read_text()
    one, seven = np.load(outs[1].with_suffix(".probs.npz")), np.load(outs[7].with_suffix(".probs.npz"))
    assert one.files == seven.files
    for key in one.files:
        np.testing.assert_allclose(one[key], seven[key], rtol=1e-5, atol=1e-7)


def test_merged_shards_equal_the_unsharded_run(tmp_path, bundles, data):
    common = [bundles["word_nervegram"], bundles["word_nervegram_2"], "--data", data["nervegram_h5"], "--seed", 9,
              "--probs", "--ensemble", "--activations", "block0_pool,nerve", "--batch-size", 3]
    assert run(*common, "--out", tmp_path / "all.csv") == 0
    shards = [tmp_path / f"shard{i}.csv" for i in range(4)]
    for i, shard in enumerate(shards):
        assert run(*common, "--out", shard, "--shard", f"{i}/4", "--workers", i % 2) == 0
    assert main(["merge", *map(str, reversed(shards)), "--out", str(tmp_path / "merged.csv")]) == 0
    # Batches of 3 start at other examples in shards; float32 results agree to rounding, classes exactly.
    all_rows, merged_rows = read_rows(tmp_path / "all.csv"), read_rows(tmp_path / "merged.csv")
    assert len(merged_rows) == N and [r["example"] for r in merged_rows] == [str(i) for i in range(N)]
    for a, m in zip(all_rows, merged_rows):
        for column in a:
            if column.endswith(".prob"):
                assert float(a[column]) == pytest.approx(float(m[column]), rel=1e-5)
            else:
                assert a[column] == m[column], column
    with np.load(tmp_path / "all.probs.npz") as a, np.load(tmp_path / "merged.probs.npz") as m:
        assert a.files == m.files and "ensemble/label_word_int" in a.files
        for key in a.files:
            np.testing.assert_allclose(a[key], m[key], rtol=1e-5, atol=1e-7)
    with h5py.File(tmp_path / "all.activations.h5") as a, h5py.File(tmp_path / "merged.activations.h5") as m:
        for key in ("example", "test/word_nervegram/nerve", "test/word_nervegram_2/block0_pool"):
            np.testing.assert_allclose(a[key][:], m[key][:], rtol=1e-5, atol=1e-6)
        assert a["test/word_nervegram/nerve"].shape == (N, 3, 50, 200)
    merged_sidecar = json.loads((tmp_path / "merged.json").read_text())
    assert len(merged_sidecar["shard"]["merged_from"]) == 4 and merged_sidecar["seed"] == 9
    # The ensemble is the mean of the members' probabilities.
    with np.load(tmp_path / "all.probs.npz") as a:
        mean = (a["test/word_nervegram/label_word_int"].astype(np.float64) + a["test/word_nervegram_2/label_word_int"]) / 2
        np.testing.assert_allclose(a["ensemble/label_word_int"], mean, rtol=1e-6)
        assert [int(r["ensemble/label_word_int.pred"]) for r in all_rows] == mean.argmax(1).tolist()


def test_merged_shards_at_batch_size_one_are_byte_identical(tmp_path, bundles, data):
    common = [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--seed", 3, "--probs", "--ensemble",
              "--batch-size", 1, "--workers", 0]
    assert run(*common, "--out", tmp_path / "all.csv") == 0
    shards = [tmp_path / f"s{i}.csv" for i in range(4)]
    for i, shard in enumerate(shards):
        assert run(*common, "--out", shard, "--shard", f"{i}/4") == 0
    assert main(["merge", str(tmp_path / "s*.csv"), "--out", str(tmp_path / "merged.csv")]) == 0
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "all.csv").read_bytes()
    with np.load(tmp_path / "all.probs.npz") as a, np.load(tmp_path / "merged.probs.npz") as m:
        for key in a.files:
            np.testing.assert_array_equal(a[key], m[key])


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path, bundles, data, capsys):
    common = [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--probs"]
    for i in range(3):
        assert run(*common, "--seed", 1, "--out", tmp_path / f"s{i}.csv", "--shard", f"{i}/3") == 0
    assert run(*common, "--seed", 2, "--out", tmp_path / "other.csv", "--shard", "2/3") == 0
    assert main(["merge", str(tmp_path / "s0.csv"), str(tmp_path / "s1.csv"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "shards 2/3 are missing" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "s0.csv"), str(tmp_path / "s1.csv"), str(tmp_path / "other.csv"),
                 "--out", str(tmp_path / "m.csv")]) == 2
    assert "different runs: seed: 1 then, 2 now" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


# ------------------------------------------------------------------ bad examples
def test_bad_examples_are_flagged_and_the_run_goes_on(tmp_path, bundles, capsys):
    good = write_wavs(tmp_path / "good", [x for x in sounds(4, 800, 20000, seed=20)], 20000)
    bad = tmp_path / "bad"
    bad.mkdir()
    soundfile.write(bad / "empty.wav", np.zeros(0, np.float32), 20000, subtype="FLOAT")
    nan = sounds(1, 800, 20000, seed=21)[0, 0].astype(np.float32)
    nan[100] = np.nan
    soundfile.write(bad / "nan.wav", nan, 20000, subtype="FLOAT")
    soundfile.write(bad / "three_channels.wav", np.zeros((800, 3), np.float32), 20000, subtype="FLOAT")
    soundfile.write(bad / "short.wav", sounds(1, 700, 20000, seed=22)[0, 0], 20000, subtype="FLOAT")
    (bad / "garbage.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk-not-audio")
    names = ["empty", "nan", "three_channels", "short", "garbage"]
    listing = [good[0], *[bad / f"{n}.wav" for n in names[:3]], good[1], good[2], bad / "short.wav", bad / "garbage.wav", good[3]]
    (tmp_path / "list.txt").write_text("\n".join(map(str, listing)) + "\n")
    out = tmp_path / "out.csv"
    status = run(bundles["word_waveform"], "--data", tmp_path / "list.txt", "--out", out, "--seed", 1,
                 "--strict-length", "--probs", "--batch-size", 3)
    assert status == 3  # finished, with flagged examples
    assert "5 could not be evaluated" in capsys.readouterr().err
    rows = read_rows(out)
    assert [r["source"] for r in rows] == [str(p) for p in listing]
    errors = {Path(r["source"]).stem: r["error"] for r in rows if r["error"]}
    assert set(errors) == set(names)
    assert "empty sound" in errors["empty"] and "NaN" in errors["nan"]
    assert "needs 1 channel" in errors["three_channels"] and "700 samples" in errors["short"]
    assert "garbage.wav" in errors["garbage"]
    for row in rows:
        assert (row["test/word_waveform/label_word_int.pred"] == "") == bool(row["error"])
    probs = np.load(out.with_suffix(".probs.npz"))["test/word_waveform/label_word_int"]
    assert np.isnan(probs[[1, 2, 3, 6, 7]]).all() and np.isfinite(probs[[0, 4, 5, 8]]).all()
    assert json.loads(out.with_suffix(".json").read_text())["examples"]["errors"] == 5


def test_nan_rows_in_hdf5_are_flagged(tmp_path, bundles):
    signals = sounds(5, 800, 20000, seed=30)
    signals[2, 0, 7] = np.inf
    path = write_signal_hdf5(tmp_path / "s.h5", signals, 20000, metadata={"index": np.arange(5) * 10})
    out = tmp_path / "out.csv"
    assert run(bundles["word_waveform"], "--data", path, "--out", out, "--seed", 1) == 3
    rows = read_rows(out)
    assert [bool(r["error"]) for r in rows] == [False, False, True, False, False]
    # A dataset named like one of our columns keeps its values under data/<name>.
    assert [r["index"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["data/index"] for r in rows] == ["0", "10", "20", "30", "40"]


def test_python_api(tmp_path, bundles, data):
    from phaselocknet.evaluate import EvalOptions, evaluate

    summary = evaluate(EvalOptions(bundles=[bundles["word_nervegram"]], data=[data["nervegram_h5"]],
                                   out=str(tmp_path / "half.csv"), shard="1/2", seed=0, workers=0, progress=False))
    assert (summary.examples, summary.errors, summary.exit_status) == (N // 2, 0, 0)
    assert [r["example"] for r in read_rows(tmp_path / "half.csv")] == [str(i) for i in range(N // 2, N)]


def test_activations_equal_the_models_own_and_flag_bad_rows(tmp_path, bundles):
    stored = nervegrams(6, (3, 50, 200), seed=40)
    stored[4, 1, 2, 3] = np.nan
    path = write_nervegram_hdf5(tmp_path / "n.h5", stored)
    out = tmp_path / "out.csv"
    layers = ["nerve", "block0_conv", "fc_intermediate_norm"]
    assert run(bundles["word_nervegram"], "--data", path, "--out", out, "--seed", 2, "--batch-size", 4,
               "--activations", ",".join(layers), "--activations-format", "npz") == 3
    model = phaselocknet.load(bundles["word_nervegram"])
    key = model_key(read_metadata(bundles["word_nervegram"])["content_sha256"])
    with np.load(tmp_path / "out.activations.npz") as saved:
        assert saved["example"].tolist() == list(range(6))
        for i in range(6):
            if i == 4:
                assert all(np.isnan(saved[f"test/word_nervegram/{layer}"][i]).all() for layer in layers)
                continue
            with torch.no_grad():
                expected = model.activations(torch.from_numpy(stored[i])[None], layers=layers,
                                             example_seeds=[example_seed(2, i, key)])
            for layer in layers:
                np.testing.assert_allclose(saved[f"test/word_nervegram/{layer}"][i], expected[layer][0].numpy(),
                                           rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ errors before work
@pytest.fixture
def broken(tmp_path, bundles):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bundles["word_nervegram"].read_bytes()[:5000])
    tampered = tmp_path / "tampered.safetensors"
    raw = bytearray(bundles["word_nervegram"].read_bytes())
    raw[-10] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    (tmp_path / "list.txt").write_text("gone.wav\n")
    return tmp_path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_bundle", "no bundle at"),
        ("truncated_bundle", "not a readable safetensors file"),
        ("tampered_bundle", "checksum mismatch"),
        ("missing_data", "no such file or folder"),
        ("missing_listed_file", "missing file"),
        ("sounds_for_nervegram_model", "takes nervegrams"),
        ("mono_for_binaural_model", "pass --diotic"),
        ("unknown_layer", "has no such layer"),
        ("not_csv", "with a .csv suffix"),
        ("dbspl_for_nervegrams", "--dbspl sets a sound level"),
        pytest.param("no_cuda", "no CUDA device", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")),
        ("same_model_twice", "give each model once"),
        ("mixed_inputs", "separate runs"),
    ],
)
def test_problems_are_reported_before_any_work(broken, bundles, data, capsys, case, message):
    out = broken / "results" / "out.csv"
    args = {
        "missing_bundle": [broken / "nope.safetensors", "--data", data["nervegram_h5"]],
        "truncated_bundle": [bundles["word_nervegram"], broken / "truncated.safetensors", "--data", data["nervegram_h5"]],
        "tampered_bundle": [broken / "tampered.safetensors", "--data", data["nervegram_h5"]],
        "missing_data": [bundles["word_nervegram"], "--data", data["nervegram_h5"], broken / "nope.h5"],
        "missing_listed_file": [bundles["word_waveform"], "--data", broken / "list.txt"],
        "sounds_for_nervegram_model": [bundles["word_nervegram"], "--data", data["wav_folder"]],
        "mono_for_binaural_model": [bundles["localization_waveform"], "--data", data["word_h5"]],
        "unknown_layer": [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--activations", "block0_pool,conv_9"],
        "not_csv": [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--out", broken / "results" / "out.tsv"],
        "dbspl_for_nervegrams": [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--dbspl", 60],
        "no_cuda": [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--device", "cuda"],
        "same_model_twice": [bundles["word_nervegram"], bundles["word_nervegram"], "--data", data["nervegram_h5"]],
        "mixed_inputs": [bundles["word_nervegram"], bundles["word_waveform"], "--data", data["nervegram_h5"]],
    }[case]
    if "--out" not in args:
        args += ["--out", out]
    # Bundle faults have their own exit status (docs/cli.md); every other problem here is 2.
    assert run(*args) == (5 if case.endswith("_bundle") else 2)
    assert message in capsys.readouterr().err
    assert not (broken / "results").exists()  # nothing written, not even the work folder


def test_finished_run_is_not_redone_and_other_settings_need_overwrite(tmp_path, bundles, data, capsys):
    out = tmp_path / "out.csv"
    common = [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--out", out]
    assert run(*common, "--seed", 1) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert run(*common, "--seed", 1, "--batch-size", 5) == 0  # same results: nothing to do
    assert "already complete" in capsys.readouterr().err and out.read_bytes() == first
    assert run(*common, "--seed", 2) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == first
    assert run(*common, "--seed", 2, "--overwrite") == 0
    assert out.read_bytes() != first


def test_interrupted_run_resumes_only_with_its_own_settings(tmp_path, bundles, data, monkeypatch, capsys):
    from phaselocknet.evaluate import runner

    out = tmp_path / "out.csv"
    common = [bundles["word_nervegram"], "--data", data["nervegram_h5"], "--out", out, "--probs",
              "--batch-size", 4, "--chunk-size", 8, "--workers", 0]
    flush = runner.ChunkWriter.flush
    calls = []

    def interrupted_flush(self):
        flush(self)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.ChunkWriter, "flush", interrupted_flush)
    assert run(*common) == 130  # no --seed: the drawn seed is kept for the resumed run
    monkeypatch.setattr(runner.ChunkWriter, "flush", flush)
    assert not out.exists() and len(list((tmp_path / ".out.csv.work").glob("chunk-*.csv"))) == 2
    assert run(*common, "--spikes", "mean") == 2
    assert "holds an unfinished run with other settings (spikes: 'sample' then, 'mean' now)" in capsys.readouterr().err
    assert run(*common) == 0
    assert "resuming" in capsys.readouterr().err
    seed = json.loads(out.with_suffix(".json").read_text())["seed"]
    shutil.move(out, tmp_path / "resumed.csv")
    shutil.move(out.with_suffix(".probs.npz"), tmp_path / "resumed.probs.npz")
    assert run(*common, "--seed", seed, "--overwrite") == 0
    assert (tmp_path / "resumed.csv").read_bytes() == out.read_bytes()
    with np.load(tmp_path / "resumed.probs.npz") as a, np.load(out.with_suffix(".probs.npz")) as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
