"""Pieces of ``phaselocknet eval`` that need no model: sources, preprocessing, shards, files."""

from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest
import scipy.signal

from evaluate_sets import nervegrams, sounds, write_nervegram_hdf5, write_signal_hdf5, write_wavs
from phaselocknet.evaluate.preprocess import InputSpec, Preprocessing, prepare
from phaselocknet.evaluate.shards import example_seed, parse_shard, shard_range
from phaselocknet.evaluate.sources import DataError, Reader, discover
from phaselocknet.evaluate.writers import format_value, write_npz_streaming


# ------------------------------------------------------------------ discovery
def test_global_order_follows_arguments_then_sorted_names(tmp_path):
    h5 = write_signal_hdf5(tmp_path / "b.h5", sounds(3, 50, 8000, seed=0), 8000)
    folder = tmp_path / "wavs"
    write_wavs(folder / "z", [np.zeros((1, 10))], 8000)  # z/sound_000.wav sorts after sound_00x.wav
    write_wavs(folder, [np.zeros((1, 10))] * 2, 8000)
    (tmp_path / "list.txt").write_text("# a comment\n\nwavs/sound_001.wav\n" + f"{folder / 'sound_000.wav'}\n")
    catalog = discover([str(folder), str(h5), str(tmp_path / "list.txt"), str(tmp_path / "*.h5")])
    reader = Reader(catalog, nervegram=False)
    located = [reader.source_and_index(e) for e in range(len(catalog))]
    assert located == [
        (str(folder / "sound_000.wav"), 0), (str(folder / "sound_001.wav"), 0), (str(folder / "z" / "sound_000.wav"), 0),
        (str(h5), 0), (str(h5), 1), (str(h5), 2),
        (str(tmp_path / "wavs" / "sound_001.wav"), 0), (str(folder / "sound_000.wav"), 0),
        (str(h5), 0), (str(h5), 1), (str(h5), 2),
    ]


@pytest.mark.parametrize(
    "argument, message",
    [
        ("missing.h5", "no such file or folder"),
        ("*.nothing", "matches no files"),
        ("list.txt", r"lists 1 missing file\(s\): line 2: .*gone.wav"),
        ("notes.csv", "neither HDF5"),
        ("empty_folder", "folder has no"),
    ],
)
def test_unusable_data_argument_is_named(tmp_path, monkeypatch, argument, message):
    monkeypatch.chdir(tmp_path)
    write_wavs(tmp_path, [np.zeros((1, 10))], 8000)
    (tmp_path / "list.txt").write_text("sound_000.wav\ngone.wav\n")
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DataError, match=message):
        discover([argument])


def test_hdf5_metadata_columns_are_the_numeric_and_string_per_example_datasets(tmp_path):
    path = write_signal_hdf5(
        tmp_path / "s.h5", sounds(4, 20, 8000, seed=0), np.full(4, 8000.0),
        metadata={"f0": np.arange(4) * 1.5, "snr": np.arange(4), "group/azim": np.arange(4) * 5,
                  "matrix": np.zeros((4, 2)), "names": np.array([b"a", b"b", b"c", b"d"]), "short": np.arange(3)},
    )
    source = discover([str(path)]).sources[0]
    # String datasets are metadata too (issue 9: they were dropped silently); 2-D and short ones are not.
    assert source.metadata == ["f0", "group/azim", "names", "snr", "sr"]
    assert source.rate_per_example and source.rate is None
    assert source.signal_channels == 1


def test_hdf5_without_signal_or_with_bad_shape_is_refused(tmp_path):
    with h5py.File(tmp_path / "none.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    with h5py.File(tmp_path / "wide.h5", "w") as handle:
        handle["signal"] = np.zeros((3, 2, 100))
    with pytest.raises(DataError, match="no 'signal'"):
        discover([str(tmp_path / "none.h5")])
    with pytest.raises(DataError, match=r"expected \(n, time\) or \(n, time, 2\)"):
        discover([str(tmp_path / "wide.h5")])


# --------------------------------------------------------------------- reading
def test_binaural_signals_are_read_time_first_and_transposed(tmp_path):
    signals = sounds(5, 30, 8000, seed=1, channels=2)  # ours: (n, 2, time)
    path = write_signal_hdf5(tmp_path / "b.h5", signals, 8000)
    with h5py.File(path) as handle:
        assert handle["signal"].shape == (5, 30, 2)  # the authors' time-first layout on disk
    reader = Reader(discover([str(path)]), nervegram=False)
    # Rows 1..3 are read as one slice, row 0 on its own; either way they equal the stored data.
    raws = reader.read([1, 2, 3, 0])
    for raw, i in zip(raws, [1, 2, 3, 0]):
        np.testing.assert_array_equal(raw.array, signals[i].astype(np.float32))
        assert raw.rate == 8000.0


def test_nervegrams_are_transposed_to_ours(tmp_path):
    mono = nervegrams(3, (3, 50, 40), seed=0)
    binaural = nervegrams(2, (2, 3, 50, 40), seed=1)
    for data in (mono, binaural):
        path = write_nervegram_hdf5(tmp_path / f"n{data.ndim}.h5", data)
        raws = Reader(discover([str(path)]), nervegram=True).read(list(range(len(data))))
        for raw, expected in zip(raws, data):
            np.testing.assert_array_equal(raw.array, expected)


# ---------------------------------------------------------------- preprocessing
def test_waveform_is_resampled_levelled_and_centred(tmp_path):
    from phaselocknet.evaluate.sources import RawExample

    x = sounds(1, 1000, 16000, seed=2)[0]
    spec = InputSpec("waveform", 20000.0, 1450, False, (1450,))
    out = prepare(RawExample(x, 16000.0, {}), spec, Preprocessing(level_db=50.0))
    # Independent reference: scipy's polyphase resampler (16 -> 20 kHz is up 5, down 4),
    # level by RMS of the mean-removed signal, centre padding (100 zeros each side).
    y = scipy.signal.resample_poly(x[0], 5, 4)
    y = y - y.mean()
    y *= 20e-6 * 10 ** (50 / 20) / np.sqrt(np.mean(y**2))
    expected = np.pad(y, (100, 100))
    assert out.dtype == np.float32 and out.shape == (1450,)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-9)  # float32 rounding of a float64 reference


@pytest.mark.parametrize(
    "array, options, message",
    [
        (np.zeros((1, 0)), Preprocessing(), "empty sound"),
        (np.array([[0.0, np.nan, 1.0]]), Preprocessing(), "NaN or Inf"),
        (np.zeros((3, 100)), Preprocessing(), "mono model needs 1 channel"),
        (np.ones((1, 999)), Preprocessing(strict_length=True), "999 samples at 8000 Hz; the model takes 1000"),
    ],
)
def test_unusable_waveforms_raise_value_errors(array, options, message):
    from phaselocknet.evaluate.sources import RawExample

    spec = InputSpec("waveform", 8000.0, 1000, False, (1000,))
    with pytest.raises(ValueError, match=message):
        prepare(RawExample(array, 8000.0, {}), spec, options)


def test_mono_sound_goes_to_both_ears_only_when_diotic():
    from phaselocknet.evaluate.sources import RawExample

    spec = InputSpec("waveform", 8000.0, 100, True, (2, 100))
    raw = RawExample(sounds(1, 100, 8000, seed=3)[0], 8000.0, {})
    with pytest.raises(ValueError, match="diotic"):
        prepare(raw, spec, Preprocessing())
    out = prepare(raw, spec, Preprocessing(diotic=True))
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], raw.array[0].astype(np.float32))


def test_nervegram_spont_groups_are_sliced_and_time_centred():
    from phaselocknet.evaluate.sources import RawExample

    stored = nervegrams(1, (4, 50, 220), seed=4)[0]  # one more spont group than the model takes
    spec = InputSpec("nervegram", 10000.0, 200, False, (3, 50, 200), spont_slice=(0, 3))
    out = prepare(RawExample(stored, None, {}), spec, Preprocessing())
    np.testing.assert_array_equal(out, stored[:3, :, 10:210])


# ----------------------------------------------------------------- shards, seeds
def test_shards_tile_the_examples_in_contiguous_blocks():
    for n in (0, 1, 7, 50, 101):
        for count in (1, 3, 4, 8):
            covered = [e for i in range(count) for e in shard_range(n, i, count)]
            assert covered == list(range(n))
            sizes = [len(shard_range(n, i, count)) for i in range(count)]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("text", ["4/4", "1", "-1/3", "a/b", "0/0"])
def test_bad_shard_spec_is_refused(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_example_seeds_are_a_pure_function_of_seed_example_and_model():
    seeds = [example_seed(7, e, 12345) for e in range(1000)]
    assert seeds == [example_seed(7, e, 12345) for e in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert example_seed(7, 3, 12345) != example_seed(8, 3, 12345)
    assert example_seed(7, 3, 12345) != example_seed(7, 3, 12346)


# ------------------------------------------------------------------------ files
def test_streamed_npz_equals_numpy_savez(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 3)).astype(np.float32), rng.standard_normal((7, 2, 2)).astype(np.float32)
    write_npz_streaming(tmp_path / "s.npz", [
        ("a/x", a.shape, np.float32, [a[:3], a[3:]]),
        ("b", b.shape, np.float32, [b[:1], b[1:5], b[5:]]),
    ])
    with np.load(tmp_path / "s.npz") as loaded:
        assert loaded.files == ["a/x", "b"]
        np.testing.assert_array_equal(loaded["a/x"], a)
        np.testing.assert_array_equal(loaded["b"], b)
    assert zipfile.ZipFile(tmp_path / "s.npz").testzip() is None


@pytest.mark.parametrize("value", [np.float32(0.1), np.float64(1 / 3), np.float32(1e-30), np.int64(-5), 2.5, np.uint8(200)])
def test_csv_numbers_read_back_exactly(value):
    text = format_value(value)
    assert type(value)(np.float64(text) if isinstance(value, (float, np.floating)) else int(text)) == value
