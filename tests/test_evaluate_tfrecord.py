"""The authors' TFRecord stimulus sets, read without TensorFlow, and their EVAL_<name>.json output.

Records are written here with TensorFlow exactly as the authors' ``util_tfrecords`` does
(``serialize_example``: arrays and strings as one raw-bytes value, scalars as one-element int64
or float lists; ``tf.io.TFRecordWriter`` with GZIP; ``config_bytes_description.pkl`` beside them
holding ``{key: {"dtype", "shape"}}``), at the authors' localization layout, float16 nervegrams of
(50, 13000, 3, 2). They are read back in a subprocess where importing TensorFlow raises.
Expected values come from the arrays written (exact: float16 -> float32 is exact) and from the
runtime model run directly on the excerpt the options fix (probabilities within 1e-5: batch vs
one-example float32 rounding).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import NERVEGRAM_COCHLEA, REPO, config_with, tiny_localization_arch
from test_repository import BLOCK_TENSORFLOW

tf = pytest.importorskip("tensorflow")

import phaselocknet  # noqa: E402
from phaselocknet.cli import main as cli_main  # noqa: E402
from phaselocknet.evaluate.sources import DataError, discover  # noqa: E402

pytestmark = pytest.mark.tensorflow

EXCERPT = 1234
AZIMUTHS = [35, 355, 0]
ELEVATIONS = [0, 20, 60]


def serialize_example(example: dict) -> bytes:
    """util_tfrecords.serialize_example, in TF 2.15."""
    feature = {}
    for key, value in example.items():
        value = np.array(value)
        if value.ndim > 0 or value.dtype.type is np.bytes_:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.tobytes()]))
        elif np.issubdtype(value.dtype, np.integer):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def authors_examples(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "nervegram_meanrates": rng.uniform(0, 300, (50, 13000, 3, 2)).astype(np.float16),
            "foreground_azimuth": np.int64(AZIMUTHS[k]),
            "foreground_elevation": np.int64(ELEVATIONS[k]),
            "snr": np.float32(k + 0.5),
            "filename": np.bytes_(f"stim_{seed}_{k}.wav".encode()),
        }
        for k in range(3)
    ]


def write_set(folder, examples, *, compression: str, description: bool):
    folder.mkdir(parents=True)
    path = folder / "stim_000000-000003.tfrecords"
    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for example in examples:
            writer.write(serialize_example(dict(example)))
    if description:  # util_tfrecords.get_description_from_example
        bytes_description = {
            k: {"dtype": np.array(v).dtype, "shape": np.array(v).shape}
            for k, v in examples[0].items() if np.array(v).ndim > 0 or np.array(v).dtype.type is np.bytes_
        }
        (folder / "config_bytes_description.pckl").write_bytes(pickle.dumps(bytes_description))
    return path


def ours(nervegram: np.ndarray) -> np.ndarray:
    return np.transpose(nervegram, (3, 2, 0, 1)).astype(np.float32)  # (ear, spont, freq, time)


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfrecords")
    sets = {"gzip_described": authors_examples(1), "plain_bare": authors_examples(2)}
    write_set(root / "gzip_described", sets["gzip_described"], compression="GZIP", description=True)
    write_set(root / "plain_bare", sets["plain_bare"], compression="", description=False)
    config, arch = config_with(NERVEGRAM_COCHLEA, {"label_loc_int": 504}), tiny_localization_arch()
    torch.manual_seed(0)
    bundle = phaselocknet.save(phaselocknet.from_config(config, arch, spikes="mean"), root / "loc.safetensors", model_id="t/loc")
    return root, sets, bundle


def test_read_and_evaluated_without_tensorflow(stimuli, tmp_path):
    root, sets, bundle = stimuli
    expected = [ours(e["nervegram_meanrates"]) for name in sets for e in sets[name]]
    np.save(tmp_path / "expected.npy", np.stack(expected))
    data = [str(root / name / "*.tfrecords") for name in sets]
    script = BLOCK_TENSORFLOW + textwrap.dedent(
        f"""
        import sys, numpy as np
        from phaselocknet.evaluate.sources import Reader, discover
        catalog = discover({data!r})
        assert len(catalog) == 6, len(catalog)
        raws = Reader(catalog, nervegram=True).read(list(range(6)))
        expected = np.load(r"{tmp_path / 'expected.npy'}")
        from phaselocknet.evaluate.preprocess import InputSpec, prepare, Preprocessing
        spec = InputSpec("nervegram", 10000.0, 10000, True, (2, 3, 50, 10000), (0, 3))
        for raw, want in zip(raws, expected):
            assert raw.error is None, raw.error
            got = prepare(raw, spec, Preprocessing())
            assert got.shape == want.shape and np.array_equal(got, want), (got.shape, want.shape)
        assert raws[0].metadata["filename"] == "stim_1_0.wav", raws[0].metadata
        assert raws[4].metadata["filename"] == "stim_2_1.wav", raws[4].metadata
        from phaselocknet.cli import main
        status = main(["eval", r"{bundle}", "--data", *{data!r}, "--out", r"{tmp_path / 'out'}", "--format", "authors",
                       "--eval-name", "test", "--spikes", "mean", "--excerpt", "{EXCERPT}", "--workers", "0",
                       "--no-progress", "--seed", "1"])
        assert status == 0, status
        assert not any(n.split(".")[0] in ("tensorflow", "keras", "tf_keras") for n in sys.modules)
        print("read without tensorflow")
        """
    )
    env = {"PYTHONPATH": f"{REPO / 'runtime'}:{REPO / 'convert'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read without tensorflow" in result.stdout

    # EVAL_test.json as util_evaluate.write_output_dict_to_file writes it.
    eval_json = tmp_path / "out" / "t" / "loc" / "EVAL_test.json"
    document = json.loads(eval_json.read_text())
    assert list(document) == sorted(document)
    examples = [e for name in sets for e in sets[name]]
    assert document["filename"] == [e["filename"].decode() for e in examples]
    assert document["foreground_azimuth"] == AZIMUTHS * 2
    assert document["snr"] == [float(e["snr"]) for e in examples]
    # prepare_localization_example: int64(elevation / 10 * 72 + azimuth / 5)
    assert document["label_loc_int:labels_true"] == [int(e / 10 * 72 + a / 5) for e, a in zip(ELEVATIONS, AZIMUTHS)] * 2
    assert "label_loc_int" not in document
    assert document["label_loc_int:probs_out"] == "EVAL_test_label_loc_int_probs_out.npy"
    probs = np.load(eval_json.parent / document["label_loc_int:probs_out"])
    model = phaselocknet.load(bundle, spikes="mean", excerpt=EXCERPT)
    with torch.no_grad():
        direct = torch.softmax(model(torch.from_numpy(np.stack(expected)))["label_loc_int"], -1).numpy()
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-7)
    assert document["label_loc_int:labels_pred"] == direct.argmax(1).tolist()
    # Not vacuous: the excerpt matters (another start gives other probabilities).
    other = phaselocknet.load(bundle, spikes="mean", excerpt=0)
    with torch.no_grad():
        shifted = torch.softmax(other(torch.from_numpy(np.stack(expected)))["label_loc_int"], -1).numpy()
    assert np.abs(shifted - direct).max() > 1e-4


def test_damaged_record_is_a_flagged_row(stimuli, tmp_path):
    root, _, bundle = stimuli
    source = root / "plain_bare" / "stim_000000-000003.tfrecords"
    data = bytearray(source.read_bytes())
    length = int.from_bytes(data[:8], "little")
    second = 8 + 4 + length + 4  # start of record 1
    data[second + 12 + 1000] ^= 0xFF  # inside record 1's data
    damaged = tmp_path / "set" / "damaged.tfrecords"
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    out = tmp_path / "results.csv"
    status = cli_main(["eval", str(bundle), "--data", str(damaged), "--out", str(out), "--spikes", "mean",
                       "--excerpt", "0", "--workers", "0", "--no-progress"])
    assert status != 0
    rows = [line.split(",") for line in out.read_text().splitlines()]
    errors = [row[-1] for row in rows[1:]]
    assert errors[0] == "" and errors[2] == ""
    assert "record 1" in errors[1] and "checksum" in errors[1]


def test_truncated_file_is_a_clear_error(stimuli, tmp_path):
    root, _, _ = stimuli
    source = root / "gzip_described" / "stim_000000-000003.tfrecords"
    import gzip

    raw = gzip.decompress(source.read_bytes())
    truncated = tmp_path / "truncated.tfrecords"
    truncated.write_bytes(gzip.compress(raw[: len(raw) - 5000]))
    with pytest.raises(DataError, match="truncated.tfrecords: record 2 is truncated"):
        discover([str(truncated)])


def test_description_pickle_that_runs_code_is_refused(stimuli, tmp_path):
    root, _, _ = stimuli
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "a.tfrecords").write_bytes((root / "plain_bare" / "stim_000000-000003.tfrecords").read_bytes())
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "config_bytes_description.pkl").write_bytes(pickle.dumps({"nervegram_meanrates": Payload()}))
    with pytest.raises(DataError, match=r"refused: the bytes description pickle asks for (io|builtins).open"):
        discover([str(folder / "a.tfrecords")])
    assert not marker.exists()
