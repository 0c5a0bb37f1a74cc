"""Promises about the repository itself: CI runs the README's test command; no TF in the runtime."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO


def _readme_command(marker: str) -> str:
    lines = (REPO / "README.md").read_text().splitlines()
    return next(line for line in lines if line.startswith("python3 -m venv") and marker in line)


def test_ci_runs_the_readme_test_commands():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    lines = (REPO / "README.md").read_text().splitlines()
    commands = [line for line in lines if line.startswith("python3 -m venv") and "pytest" in line]
    assert len(commands) == 2 and all(command in ci for command in commands)
    # The second environment: the runtime without the convert extra, on NumPy 2.
    assert '".[test]" "numpy>=2"' in commands[1] and "convert" not in commands[1]


def test_readme_demo_command_installs_cpu_torch_first():
    command = _readme_command("phaselocknet demo")
    assert command.index("torch==2.13.0") < command.index('pip install -e')


BLOCK_TENSORFLOW = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow.") or name in ("keras", "tf_keras"):
                raise ImportError(f"the runtime imported {name}")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    """
)


def test_runtime_never_imports_tensorflow(tmp_path, tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    script = BLOCK_TENSORFLOW + textwrap.dedent(
        f"""
        import pkgutil, importlib, sys, torch
        import phaselocknet
        for module in pkgutil.walk_packages(phaselocknet.__path__, "phaselocknet."):
            importlib.import_module(module.name)
        model = phaselocknet.from_config({config!r}, {arch!r}, spikes="mean")
        path = phaselocknet.save(model, r"{tmp_path / 'm.safetensors'}", model_id="t")
        loaded = phaselocknet.load(path, spikes="mean")
        x = torch.rand(1, 3, 50, 200) * 100
        assert torch.equal(model(x)["label_word_int"], loaded(x)["label_word_int"])
        from phaselocknet.cli import main
        assert main(["info", str(path)]) == 0
        assert not any(name.split(".")[0] in ("tensorflow", "keras", "tf_keras") for name in sys.modules)
        print("runtime ok without tensorflow")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "runtime ok without tensorflow" in result.stdout
