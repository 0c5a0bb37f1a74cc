"""Each failure listed in issue 11, driven through the command line (or the API where it is an
API fault): one line on stderr, the documented exit status (docs/cli.md), no traceback, and
nothing silent."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import torch

import phaselocknet
from phaselocknet.cli import main
from phaselocknet.cli.errors import EXIT_CODES
from phaselocknet.errors import DeviceError, InputError, NonFiniteOutputError

from conftest import REPO, config_with, simplified_cochlea, tiny_word_arch

SR = 20000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    config = config_with(simplified_cochlea(float(SR)), {"label_word_int": 11})
    torch.manual_seed(0)
    model = phaselocknet.from_config(config, tiny_word_arch(400), spikes="mean")
    return phaselocknet.save(model, tmp_path_factory.mktemp("cli") / "tiny.safetensors", model_id="cli/tiny")


def wav(path: Path, data, rate=SR) -> Path:
    scipy.io.wavfile.write(path, rate, np.asarray(data))
    return path


def sound(n=800):
    return (np.sin(np.arange(n) * 0.3) * 0.1).astype(np.float32)


def check(capsys, argv, status, words):
    assert main([str(a) for a in argv]) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(words, err), err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err  # one line
    return err


def test_exit_code_table_in_docs_matches_the_code():
    text = (REPO / "docs" / "cli.md").read_text()
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", text, flags=re.M)}
    assert documented == set(EXIT_CODES)


# ------------------------------------------------------------------ output paths
def test_output_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    check(capsys, ["nervegram", wav(tmp_path / "a.wav", sound(2000)), "-o", blocker / "out.npy"], 8, "a path component is a file")


def test_unwritable_output(tmp_path, capsys, monkeypatch):
    import phaselocknet.atomic as atomic_module

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr(atomic_module.tempfile, "mkstemp", refuse)  # as root, chmod does not stop writes
    check(capsys, ["nervegram", wav(tmp_path / "a.wav", sound(2000)), "-o", tmp_path / "ro" / "o.npy"], 8,
          "Permission denied; choose a folder you can write to")


def test_disk_full(tmp_path, capsys, monkeypatch):
    import phaselocknet.atomic as atomic_module

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_module.os, "fsync", full)
    out = tmp_path / "o.npy"
    check(capsys, ["nervegram", wav(tmp_path / "a.wav", sound(2000)), "-o", out], 8, "No space left.*free some disk space")
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


# ------------------------------------------------------------------ crafted files
def _recrafted(bundle, tmp_path, **metadata_changes) -> Path:
    from safetensors import safe_open

    from phaselocknet.bundle import _serialize, content_digest

    with safe_open(str(bundle), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    metadata.update(metadata_changes)
    metadata["content_sha256"] = content_digest(metadata, tensors)  # re-signed, as any writer can
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(_serialize(tensors, metadata))
    return path


def test_json_nested_very_deep(bundle, tmp_path, capsys):
    path = _recrafted(bundle, tmp_path, config_json="[" * 10**5 + "]" * 10**5)
    check(capsys, ["info", path], 5, "invalid JSON")


@pytest.mark.parametrize("arch_json", ["{}", "null"])
def test_arch_json_that_is_not_a_list(bundle, tmp_path, capsys, arch_json):
    check(capsys, ["info", _recrafted(bundle, tmp_path, arch_json=arch_json)], 5, "arch_json .*list")


def test_manifest_whose_models_is_null(bundle, tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    from phaselocknet.verify import MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION

    manifest.write_text(json.dumps({"format": MANIFEST_FORMAT, "format_version": MANIFEST_FORMAT_VERSION, "models": None}))
    # verify reports a bad manifest as a failed check (exit 1), not a TypeError traceback.
    assert main(["verify", str(tmp_path), "--manifest", str(manifest)]) == 1
    captured = capsys.readouterr()
    assert '"models" must be a list' in captured.out + captured.err and "Traceback" not in captured.err


def test_nan_weights_are_not_class_0(bundle, tmp_path, capsys):
    model = phaselocknet.load(bundle, spikes="mean")
    with torch.no_grad():
        model.network.get_submodule("block0_conv").weight[0, 0, 0, 0] = float("nan")
    nan_bundle = phaselocknet.save(model, tmp_path / "nan.safetensors")
    err = check(capsys, ["run", nan_bundle, wav(tmp_path / "a.wav", sound(800)), "--spikes", "mean"], 7, "non-finite")
    assert "block0_conv" in err  # the first layer whose output went non-finite


# ------------------------------------------------------------------ sounds
def test_wav_at_0_hz(bundle, tmp_path, capsys):
    check(capsys, ["run", bundle, wav(tmp_path / "z.wav", (sound() * 3e4).astype(np.int16), rate=0)], 2, "sample rate 0")


@pytest.mark.parametrize("n, words", [(0, "empty"), (1, "lasts"), (100, "lasts")])
def test_run_refuses_empty_and_too_short_sounds(bundle, tmp_path, capsys, n, words):
    check(capsys, ["run", bundle, wav(tmp_path / "s.wav", sound(n))], 2, words)


def test_run_refuses_a_truncated_wav(bundle, tmp_path, capsys):
    data = wav(tmp_path / "a.wav", (sound(4000) * 3e4).astype(np.int16)).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    check(capsys, ["run", bundle, cut], 2, "truncated WAV")


@pytest.mark.parametrize("argv, words", [(["--top", "-1"], "at least 1"), (["--top", "0"], "at least 1"),
                                         (["--dbspl", "400"], "within"), (["--dbspl", "nan"], "within")])
def test_run_bounds_top_and_dbspl(bundle, tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(bundle), str(wav(tmp_path / "a.wav", sound())), *argv])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_run_prints_its_seed_and_repeats_with_it(bundle, tmp_path, capsys):
    path = wav(tmp_path / "a.wav", sound(800))
    assert main(["run", str(bundle), str(path), "--json"]) == 0
    captured = capsys.readouterr()
    seed = re.search(r"--seed (\d+)", captured.err).group(1)
    assert main(["run", str(bundle), str(path), "--json", "--seed", seed]) == 0
    again = capsys.readouterr()
    assert json.loads(again.out)["predictions"] == json.loads(captured.out)["predictions"]
    assert main(["run", str(bundle), str(wav(tmp_path / "short.wav", sound(500))), "--seed", "1"]) == 0
    assert "zero-padding" in capsys.readouterr().err  # says so when it pads (500 -> 800 samples)


def test_nervegram_on_an_empty_wav(tmp_path, capsys):
    check(capsys, ["nervegram", wav(tmp_path / "e.wav", np.zeros(0, np.int16)), "-o", tmp_path / "o.npy"], 2, "empty")


def test_nervegram_on_a_nan_wav_writes_nothing(tmp_path, capsys):
    data = sound(2000)
    data[100] = np.nan
    out = tmp_path / "o.npy"
    check(capsys, ["nervegram", wav(tmp_path / "n.wav", data), "-o", out], 2, "NaN")
    assert not out.exists()


def test_a_3e38_wav_is_not_a_silent_result(bundle, tmp_path, capsys):
    data = np.full(800, 3e38, np.float32)
    data[::2] = -3e38
    check(capsys, ["run", bundle, wav(tmp_path / "loud.wav", data), "--spikes", "mean"], 7, "non-finite")


# ------------------------------------------------------------------ API faults
def test_integer_complex_and_overflowing_arrays_are_refused(bundle):
    model = phaselocknet.load(bundle, spikes="mean")
    n = model.input_length
    with pytest.raises(InputError, match="convert to float pascals|Convert to float pascals"):
        model(np.zeros((1, n), np.int16))
    with pytest.raises(InputError, match="complex"):
        model(torch.zeros(1, n, dtype=torch.complex64))
    with pytest.raises(InputError, match="NaN or Inf"):
        model(np.full((1, n), 1e300))  # finite in float64, inf in float32


def test_int16_is_scaled_like_a_wav_file(tmp_path):
    from phaselocknet.audio import pcm_to_float, read_audio

    pcm = (sound(500) * 3e4).astype(np.int16)
    from_file, _ = read_audio(wav(tmp_path / "i.wav", pcm))
    assert np.array_equal(pcm_to_float(pcm), from_file[0])
    assert pcm_to_float(np.array([32767], np.int16))[0] < 1.0  # full scale is 1 Pa, not 32767 Pa


def test_cuda_on_a_cpu_only_torch(bundle):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DeviceError, match="no CUDA"):
        phaselocknet.load(bundle, map_location="cuda")


def test_nan_output_names_the_layer_in_the_api(bundle):
    model = phaselocknet.load(bundle, spikes="mean")
    with torch.no_grad():
        model.network.get_submodule("fc_intermediate_dense").bias[3] = float("inf")
    with pytest.raises(NonFiniteOutputError) as info:
        model(torch.randn(2, model.input_length) * 0.02)
    # inf bias: the dense output is inf, the layer norm after it makes it NaN.
    assert info.value.layer == "fc_intermediate_dense" and info.value.examples == [0, 1]


def test_no_traceback_in_a_real_process(bundle, tmp_path):
    # The installed entry point as a user runs it: one line, exit 5, for a damaged bundle.
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(bundle.read_bytes())
    data[-5] ^= 0xFF
    damaged.write_bytes(bytes(data))
    env = {"PYTHONPATH": f"{REPO / 'runtime'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "phaselocknet", "info", str(damaged)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 5 and "Traceback" not in result.stderr and "checksum" in result.stderr


def test_sampled_spikes_refuse_an_input_that_requires_grad(bundle):
    # Binomial draws have no gradient: the input's grad would silently stay None.
    model = phaselocknet.load(bundle, spikes="sample", seed=1)
    x = (torch.randn(1, model.input_length) * 0.02).requires_grad_(True)
    with pytest.raises(InputError, match="spikes='mean'"):
        model(x)
    with torch.no_grad():
        assert torch.isfinite(model(x)["label_word_int"]).all()  # inference is unaffected
    mean_model = phaselocknet.load(bundle, spikes="mean")
    mean_model(x)["label_word_int"].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
