"""Job arrays: SLURM shards, plans of model groups x shards, merge across groups, submitit.

The reference for a plan's merged output is one unsharded ``eval`` of all the models
with the plan's seed: the merged CSV must equal it byte for byte and every probability
array value for value (the same per-example seeds, so the same draws). The batch size (3)
divides the shards (6 examples), so every batch of the reference run is also a batch of
a task: batched float32 kernels may round differently for other batch compositions
(at the 1e-7 level; tests/test_evaluate_run.py covers that with rtol 1e-5).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import phaselocknet

from evaluate_sets import SEED, nervegrams, save_bundle, word_nervegram_model, write_nervegram_hdf5
from phaselocknet.cli import main
from phaselocknet.evaluate import EvalOptions, evaluate, merge
from phaselocknet.evaluate.jobs import read_job_plan, run_task, write_job_plan
from phaselocknet.evaluate.shards import parse_shard, slurm_array_task

GROUPS = ("test_task/variant_a", "test_task/variant_b")
N = 12
BATCH = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


@pytest.fixture
def store(tmp_path, monkeypatch):
    home = tmp_path / "store"
    monkeypatch.setenv("PHASELOCKNET_HOME", str(home))
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(var, raising=False)
    paths = []
    for g, group in enumerate(GROUPS):
        (home / group).mkdir(parents=True)
        for k in range(2):
            # Random weights from save_bundle, saved again under the model's own id.
            draft = save_bundle(word_nervegram_model(), tmp_path, "draft", seed=10 * g + k)
            path = home / group / f"arch0{k}.safetensors"
            paths.append(phaselocknet.save(phaselocknet.load(draft), path, model_id=f"{group}/arch0{k}"))
    data = write_nervegram_hdf5(tmp_path / "ng.h5", nervegrams(N, (3, 50, 200), seed=3), metadata={"w": np.arange(N)})
    return home, paths, data


def reference_run(paths, data, out):
    evaluate(EvalOptions(bundles=[str(p) for p in paths], data=[str(data)], out=out, seed=SEED, probs=True,
                         workers=0, batch_size=BATCH, progress=False))
    return out


def assert_same_outputs(a, b):
    assert a.read_text() == b.read_text()
    pa, pb = np.load(a.with_suffix(".probs.npz")), np.load(b.with_suffix(".probs.npz"))
    assert list(pa.files) == list(pb.files)
    for key in pa.files:
        assert np.array_equal(pa[key], pb[key], equal_nan=True), key


# ------------------------------------------------------------------ SLURM
def test_slurm_array_variables_map_to_shards():
    assert slurm_array_task({}) is None
    assert slurm_array_task({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    # --array=1-8 numbers tasks from 1.
    assert slurm_array_task({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}) == (7, 8)
    with pytest.raises(ValueError, match="contiguous"):
        slurm_array_task({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "8"})  # --array=0-15:2
    assert parse_shard(None, {}) == (0, 1)
    assert parse_shard(None, {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}) == (1, 2)
    assert parse_shard("2/5", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}) == (2, 5)
    with pytest.raises(ValueError, match="not a SLURM job-array task"):
        parse_shard("slurm", {})


def test_eval_takes_its_shard_from_slurm(store, tmp_path, monkeypatch):
    _, paths, data = store
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    out = tmp_path / "s.csv"
    assert main(["eval", str(paths[0]), "--data", str(data), "--out", str(out), "--seed", "1", "--workers", "0",
                 "--no-progress"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["shard"]["index"] == 1 and sidecar["shard"]["count"] == 3
    assert sidecar["shard"]["examples"] == [N // 3, 2 * N // 3]
    assert "--shard 1/3" in sidecar["command"]


# ------------------------------------------------------------------ plans
def test_plan_of_two_groups_merges_to_one_unsharded_run(store, tmp_path, capsys):
    home, paths, data = store
    folder = tmp_path / "plan"
    assert main(["plan", "--models", *GROUPS, "--data", str(data), "--tasks", "4", "--out", str(folder),
                 "--seed", str(SEED), "--probs", "--workers", "0", "--batch-size", str(BATCH)]) == 0
    plan = read_job_plan(folder)
    assert [(t["group"], t["shard"]) for t in plan.tasks] == [(g, [i, 2]) for g in GROUPS for i in range(2)]
    assert plan.tasks[0]["models"] == [f"{GROUPS[0]}/arch00", f"{GROUPS[0]}/arch01"]
    script = (folder / "submit.sbatch").read_text()
    assert "#SBATCH --array=0-3" in script and f"phaselocknet task {folder}" in script and "--mem=" in script
    assert len((folder / "tasks.tsv").read_text().splitlines()) == 5

    for index in (3, 0, 2, 1):  # any order, as array tasks run
        summary = run_task(folder, index)
        assert summary.evaluated_now == N // 2
    # A requeued or resubmitted task finds its output complete and evaluates nothing.
    again = run_task(folder, 2)
    assert again.already_complete and again.evaluated_now == 0

    merged = tmp_path / "merged.csv"
    assert main(["merge", str(folder), "--out", str(merged)]) == 0
    assert_same_outputs(merged, reference_run(paths, data, tmp_path / "reference.csv"))


def test_task_index_from_the_slurm_array(store, tmp_path, monkeypatch):
    _, _, data = store
    folder = tmp_path / "plan"
    write_job_plan(list(GROUPS), [str(data)], folder, tasks=2, seed=SEED, workers=0)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert main(["task", str(folder)]) == 0
    plan = read_job_plan(folder)
    assert plan.output(plan.tasks[1]).is_file() and not plan.output(plan.tasks[0]).exists()
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "5")
    with pytest.raises(ValueError, match="--array=0-1"):
        run_task(folder)


def test_plan_refuses_models_not_installed(store, tmp_path):
    _, _, data = store
    with pytest.raises(ValueError, match="not installed"):
        write_job_plan(["test_task/variant_a/arch09"], [str(data)], tmp_path / "p", tasks=1)


def test_merge_refuses_groups_of_different_data(store, tmp_path):
    _, paths, data = store
    other = write_nervegram_hdf5(tmp_path / "other.h5", nervegrams(N, (3, 50, 200), seed=4), metadata={"w": np.arange(N)})
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    reference_run(paths[:2], data, a)
    reference_run(paths[2:], other, b)
    with pytest.raises(ValueError, match="different data or options"):
        merge([str(a), str(b)], tmp_path / "m.csv")


def test_submitit_local_executor_runs_the_plan(store, tmp_path):
    submitit = pytest.importorskip("submitit", reason="submitit (the cluster extra) is not installed")
    from phaselocknet.evaluate.cluster import submit_plan

    _, paths, data = store
    folder = tmp_path / "plan"
    write_job_plan(list(GROUPS), [str(data)], folder, tasks=2, seed=SEED, probs=True, workers=0, batch_size=BATCH)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
    executor.update_parameters(timeout_min=10)
    jobs = submit_plan(folder, executor)
    summaries = [job.result() for job in jobs]  # each local job is a process
    assert [s.evaluated_now for s in summaries] == [N, N]
    merged = tmp_path / "merged.csv"
    merge([str(folder)], merged)
    assert_same_outputs(merged, reference_run(paths, data, tmp_path / "reference.csv"))
