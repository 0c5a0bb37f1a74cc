"""Converting the authors' PyTorch checkpoints (ckpt_BEST.pt of phaselocknet_torch), torch alone.

The reference is the authors' port itself (../shared/reference/phaselocknet_torch, imported,
never copied; see port_reference for the torchvision stand-in it needs): one model per family
of the port is built with its own ``get_model``, given random weights, and saved with its own
``util.save_model_checkpoint``. The bundle's tensors must equal the port's under the name table
below, written out here independently of the converter: bit-exact (tolerance 0), since both
sides are the same float32 values in the same torch layouts (OIHW convs, (out, in) dense
kernels, channels-last flatten order in both).
"""

from __future__ import annotations

import json
import pickle
import pickletools
import subprocess
import sys
import textwrap

import pytest
import torch

import port_reference as pr
from conftest import REPO, needs_shared
from test_repository import BLOCK_TENSORFLOW

import phaselocknet
from phaselocknet.bundle import file_sha256, read_metadata
from phaselocknet.verify import verify_bundles
from phaselocknet_convert import ConversionError, convert_model_dir
from phaselocknet_convert.cli import main as convert_cli

pytestmark = [
    needs_shared,
    pytest.mark.skipif(not pr.PORT.is_dir(), reason=f"the authors' port not found at {pr.PORT}"),
]


def port_name(ours: str) -> str:
    """The port's state-dict name of one of our bundle tensors (the issue's mapping)."""
    layer, _, rest = ours.partition(".")
    if layer == "fc_top":  # our heads module: fc_top.<head>.<param>
        head, _, param = rest.rpartition(".")
        return f"head.{head}.fc_output.{param}"
    return f"body.{ours}"


def write_port_checkpoint(model_dir, family: str, seed: int, *, whole: bool = False):
    pr.write_model_files(model_dir, family)
    model = pr.port_model(model_dir)
    pr.randomize(model, seed)
    _, util = pr.load_port()
    # As published: the perceptual model's state dict (their evaluation loads it into
    # model.perceptual_model); `whole` saves the whole Model, front-end buffers included.
    util.save_model_checkpoint(model if whole else model.perceptual_model, dir_model=str(model_dir))
    return model.perceptual_model.state_dict()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """All four families written by the port and converted in one CLI run, torch only."""
    root = tmp_path_factory.mktemp("port_models")
    out = tmp_path_factory.mktemp("bundles")
    states = {}
    for seed, family in enumerate(pr.FAMILIES):
        states[family] = write_port_checkpoint(pr.family_dir(root, family), family, seed)
    status = convert_cli([str(root), "--root", str(root), "--out", str(out)])
    return root, out, states, status


def test_cli_converts_every_family(converted):
    _, out, _, status = converted
    assert status == 0
    assert sorted(p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*.safetensors")) == sorted(
        pr.FAMILIES.values()
    )


@pytest.mark.parametrize("family", list(pr.FAMILIES))
def test_bundle_tensors_equal_the_ports_state_dict(converted, family):
    _, out, states, _ = converted
    model = phaselocknet.load(out / f"{pr.FAMILIES[family]}.safetensors", spikes="mean")
    ours = model.network.state_dict()
    port = states[family]
    used = set()
    for name, tensor in ours.items():
        reference = port[port_name(name)]
        used.add(port_name(name))
        assert reference.numel() == tensor.numel(), name
        assert torch.equal(tensor, reference.reshape(tensor.shape)), name
    # Everything else in the port's dict holds no learned value.
    assert all(name.endswith("num_batches_tracked") or "pool" in name for name in set(port) - used)
    assert len(ours) >= 10


def test_bundle_records_the_pt_source_and_verifies(converted):
    root, out, _, _ = converted
    family = "localization_nervegram"
    bundle = out / f"{pr.FAMILIES[family]}.safetensors"
    sources = json.loads(read_metadata(bundle)["source_sha256"])
    model_dir = pr.family_dir(root, family)
    assert sources == {name: file_sha256(model_dir / name) for name in ("config.json", "arch.json", "ckpt_BEST.pt")}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {entry["id"] for entry in manifest["models"]} == set(pr.FAMILIES.values())
    report = verify_bundles(out)
    assert report.ok, report


def test_whole_model_state_dict_converts_to_the_same_tensors(tmp_path):
    family = "localization_nervegram"
    a, b = tmp_path / "a" / pr.FAMILIES[family], tmp_path / "b" / pr.FAMILIES[family]
    write_port_checkpoint(a, family, seed=7)
    write_port_checkpoint(b, family, seed=7, whole=True)
    assert any(k.startswith("peripheral_model.") for k in torch.load(b / "ckpt_BEST.pt", weights_only=True))
    bundles = [convert_model_dir(d, tmp_path / f"out{i}", model_id="m").bundle for i, d in enumerate((a, b))]
    first, second = (phaselocknet.load(p, spikes="mean").network.state_dict() for p in bundles)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ------------------------------------------------------------------ refusals
@pytest.fixture(scope="module")
def port_dir(tmp_path_factory):
    family = "localization_nervegram"
    model_dir = tmp_path_factory.mktemp("port") / pr.FAMILIES[family]
    write_port_checkpoint(model_dir, family, seed=3)
    return model_dir


def _refused(port_dir, tmp_path, payload, match: str, *, raw: bytes | None = None):
    import shutil

    model_dir = shutil.copytree(port_dir, tmp_path / "m")
    if raw is not None:
        (model_dir / "ckpt_BEST.pt").write_bytes(raw)
    else:
        torch.save(payload, model_dir / "ckpt_BEST.pt")
    with pytest.raises(ConversionError, match=match):
        convert_model_dir(model_dir, tmp_path / "out", model_id="m")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.safetensors"))


def _state(port_dir) -> dict:
    return torch.load(port_dir / "ckpt_BEST.pt", weights_only=True)


def test_missing_entry_is_named(port_dir, tmp_path):
    state = _state(port_dir)
    del state["body.conv_1.bias"]
    _refused(port_dir, tmp_path, state, r"missing \['body.conv_1.bias'\]")


def test_extra_entry_is_named(port_dir, tmp_path):
    state = _state(port_dir)
    state["body.conv_9.weight"] = torch.zeros(3)
    _refused(port_dir, tmp_path, state, r"unexpected \['body.conv_9.weight'\]")


def test_misshaped_entry_is_named(port_dir, tmp_path):
    state = _state(port_dir)
    state["body.conv_1.weight"] = torch.zeros(8, 4, 3, 5)
    _refused(port_dir, tmp_path, state, r"'body.conv_1.weight' of shape \[8, 4, 3, 5\]")


def test_integer_weights_are_refused(port_dir, tmp_path):
    state = _state(port_dir)
    state["body.conv_1.bias"] = torch.zeros(8, dtype=torch.int64)
    _refused(port_dir, tmp_path, state, r"'body.conv_1.bias' has dtype torch.int64")


def test_training_checkpoint_is_not_a_flat_state_dict(port_dir, tmp_path):
    state = _state(port_dir)
    _refused(port_dir, tmp_path, {"model": state, "epoch": 3}, r"not a flat state dict: entries 'model', 'epoch'")


def test_list_of_tensors_is_refused(port_dir, tmp_path):
    _refused(port_dir, tmp_path, [torch.zeros(2)], r"holds a list, not a state dict")


class _Payload:
    """Unpickling this runs code: what weights_only=True must refuse without executing."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_without_running_it(port_dir, tmp_path):
    marker = tmp_path / "executed"
    payload = {"body.conv_0.weight": _Payload(str(marker))}
    # torch.save's zip format, and a bare pickle as torch.save wrote before 1.6.
    for raw in (None, pickle.dumps(payload)):
        _refused(port_dir, tmp_path / str(raw is None), payload, r"refused: the file holds objects other than tensors", raw=raw)
        assert not marker.exists()
    # The payload is live, shown without ever unpickling it: its pickle names `open` as the
    # callable to run, and running that reduction creates the marker.
    names = [arg for op, arg, _ in pickletools.genops(pickle.dumps(payload)) if isinstance(arg, str)]
    assert "open" in names
    function, arguments = payload["body.conv_0.weight"].__reduce__()
    function(*arguments).close()
    assert marker.exists()


def test_both_checkpoints_present_needs_a_choice(port_dir, tmp_path):
    import shutil

    model_dir = shutil.copytree(port_dir, tmp_path / "m")
    (model_dir / "ckpt_BEST.index").write_bytes(b"")
    with pytest.raises(ConversionError, match="--source tf or --source torch"):
        convert_model_dir(model_dir, tmp_path / "out", model_id="m")
    result = convert_model_dir(model_dir, tmp_path / "out", model_id="m", source="torch")
    assert result.bundle.is_file()


def test_pt_conversion_needs_no_tensorflow(port_dir, tmp_path):
    script = BLOCK_TENSORFLOW + textwrap.dedent(
        f"""
        import sys
        from phaselocknet_convert.cli import main
        status = main([r"{port_dir}", "--out", r"{tmp_path / 'out'}"])
        assert status == 0, status
        assert not any(n.split(".")[0] in ("tensorflow", "keras", "tf_keras") for n in sys.modules)
        print("converted without tensorflow")
        """
    )
    env = {"PYTHONPATH": f"{REPO / 'runtime'}:{REPO / 'convert'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "converted without tensorflow" in result.stdout
    # A folder whose last three parts form a published id is converted under that id.
    assert [p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.safetensors")] == [
        f"{pr.FAMILIES['localization_nervegram']}.safetensors"]
