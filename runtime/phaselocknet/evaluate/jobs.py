"""Evaluation plans for job arrays: one task = one model group x one example shard.

``write_job_plan`` (``phaselocknet plan``) groups the models (by default a variant's
architectures, which share a front end), splits the examples of each group into shards,
and writes to the plan folder:

    plan.json      the task table and everything a task needs (store, data, options, seed)
    tasks.tsv      the same table for people: task, group, shard, models, output
    submit.sbatch  a SLURM job-array script, one array task per plan task
    results/       each task's outputs, results/<group>/shard-<I>-of-<N>.csv

A task (``phaselocknet task PLAN_DIR``, or `run_task`) is an ordinary ``eval`` run with
its own output, so it resumes after a kill or a requeue from its last committed chunk
and, once finished, does nothing when run again; no row is ever evaluated twice. Every
task uses the plan's seed, and example seeds do not depend on the shard or on the other
models of a run, so ``phaselocknet merge PLAN_DIR/results/*/*.csv`` gives the table one
unsharded run of all the models would have written.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..bundle import write_atomic
from ..store import expand_model_argument, store_home
from .plan import EvalOptions, PlanError
from .shards import SEED_BITS, slurm_array_task
from .sources import DataError, discover

PLAN_FILE = "plan.json"
TABLE_FILE = "tasks.tsv"
SCRIPT_FILE = "submit.sbatch"
PLAN_FORMAT = "phaselocknet-job-plan"
GROUP_BY = ("variant", "model", "none")
# Options of a task's eval run that the plan fixes (EvalOptions field names).
EVAL_FIELDS = ("batch_size", "workers", "device", "dbspl", "diotic", "strict_length", "probs", "activations",
               "activations_format", "ensemble", "spikes", "excerpt", "chunk_size")


@dataclass
class JobPlan:
    folder: Path
    document: dict

    @property
    def tasks(self) -> list[dict]:
        return self.document["tasks"]

    def output(self, task: dict) -> Path:
        return self.folder / task["out"]


def model_groups(paths_by_id: dict[str, Path], group_by: str) -> dict[str, list[str]]:
    """Group name -> model ids (a variant's architectures by default)."""
    if group_by not in GROUP_BY:
        raise PlanError(f"--group-by {group_by}: use one of {', '.join(GROUP_BY)}")
    groups: dict[str, list[str]] = {}
    for model_id in paths_by_id:
        name = {"variant": model_id.rsplit("/", 1)[0] if model_id.count("/") == 2 else model_id,
                "model": model_id, "none": "all"}[group_by]
        groups.setdefault(name, []).append(model_id)
    return groups


def write_job_plan(models: list[str], data: list[str], out: str | os.PathLike, *, tasks: int,
                   group_by: str = "variant", seed: int | None = None, sbatch: dict | None = None,
                   **eval_options) -> JobPlan:
    """Write the plan folder ``out`` (see the module docstring) and return the plan."""
    folder = Path(out)
    if tasks < 1:
        raise PlanError("--tasks must be at least 1")
    if seed is not None and seed < 0:
        raise PlanError("--seed must be a non-negative integer")
    unknown = sorted(set(eval_options) - set(EVAL_FIELDS))
    if unknown:
        raise PlanError(f"not plan options: {unknown}")
    home = store_home()
    paths_by_id = _resolve_models(models, home)
    groups = model_groups(paths_by_id, group_by)
    data = [str(Path(d).absolute()) if os.path.exists(d) else d for d in data]
    try:
        n_examples = len(discover(data))
    except DataError as error:
        raise PlanError(str(error)) from None
    shards = max(1, min(tasks // len(groups), n_examples))
    table = []
    for group, ids in groups.items():
        for index in range(shards):
            table.append({"task": len(table), "group": group, "models": ids, "shard": [index, shards],
                          "out": f"results/{group.replace('/', '__')}/shard-{index}-of-{shards}.csv"})
    document = {
        "format": PLAN_FORMAT, "format_version": 1, "store": str(home), "data": data, "examples": n_examples,
        "seed": secrets.randbits(SEED_BITS) if seed is None else int(seed), "seed_given": seed is not None,
        "eval": {key: value for key, value in eval_options.items()},
        "bundles": {i: str(p) for i, p in paths_by_id.items()},
        "tasks": table,
    }
    (folder / "logs").mkdir(parents=True, exist_ok=True)  # sbatch --output needs it before the job starts
    write_atomic(folder / PLAN_FILE, (json.dumps(document, indent=1) + "\n").encode())
    plan = JobPlan(folder, document)
    write_atomic(folder / TABLE_FILE, task_table(plan).encode())
    write_atomic(folder / SCRIPT_FILE, sbatch_script(plan, paths_by_id, **(sbatch or {})).encode())
    return plan


def _resolve_models(arguments: list[str], home: Path) -> dict[str, Path]:
    """Model id (or bundle path, for bundles outside the store) -> bundle path, in argument order."""
    found: dict[str, Path] = {}
    for argument in arguments:
        for path in expand_model_argument(argument, home):
            path = Path(path).absolute()
            try:
                key = path.relative_to(home.absolute()).as_posix().removesuffix(".safetensors")
            except ValueError:
                key = str(path)
            found.setdefault(key, path)
    if not found:
        raise PlanError("give at least one model (--models ID, VARIANT, PATTERN or bundle path)")
    return found


def task_table(plan: JobPlan) -> str:
    lines = ["task\tgroup\tshard\tmodels\toutput"]
    for task in plan.tasks:
        lines.append(f"{task['task']}\t{task['group']}\t{task['shard'][0]}/{task['shard'][1]}\t"
                     f"{','.join(task['models'])}\t{task['out']}")
    return "\n".join(lines) + "\n"


def sbatch_script(plan: JobPlan, paths_by_id: dict[str, Path], *, memory_gb: int | None = None,
                  time: str = "24:00:00", cpus: int = 4, partition: str | None = None) -> str:
    """A job-array script: one array task per plan task, memory sized for the largest model group."""
    if memory_gb is None:
        # Weights are held once per model (float32, as stored) plus working memory for the
        # batch; 2x the group's bundles + 4 GB covers the published models at batch 16.
        largest = max(sum(paths_by_id[i].stat().st_size for i in t["models"]) for t in plan.tasks)
        memory_gb = 4 + math.ceil(2 * largest / 2**30)
    device = str(plan.document["eval"].get("device", "auto"))
    folder = shlex.quote(str(plan.folder.absolute()))
    lines = ["#!/bin/bash", "#SBATCH --job-name=phaselocknet", f"#SBATCH --array=0-{len(plan.tasks) - 1}",
             f"#SBATCH --cpus-per-task={cpus}", f"#SBATCH --mem={memory_gb}G", f"#SBATCH --time={time}",
             f"#SBATCH --output={plan.folder.absolute()}/logs/%A_%a.log", "#SBATCH --requeue"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if device.startswith("cuda"):
        lines.append("#SBATCH --gres=gpu:1")
    lines += [
        "# One task = one model group x one example shard (see tasks.tsv). A requeued or resubmitted",
        "# task resumes from its last committed chunk; a finished one does nothing.",
        f"# Submit: sbatch {shlex.quote(str(plan.folder.absolute() / SCRIPT_FILE))}",
        f"# Afterwards: phaselocknet merge {folder} --out RESULTS.csv",
        "set -euo pipefail",
        f"export PHASELOCKNET_HOME={shlex.quote(plan.document['store'])}",
        "# torch's threads for the models; the loader workers use one thread each.",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        f"phaselocknet task {folder} || [ $? -eq 3 ]   # 3: finished, some examples flagged in the error column",
    ]
    return "\n".join(lines) + "\n"


def read_job_plan(folder: str | os.PathLike) -> JobPlan:
    folder = Path(folder)
    try:
        document = json.loads((folder / PLAN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PlanError(f"{folder}: no readable {PLAN_FILE} ({error}); write one with phaselocknet plan") from None
    if document.get("format") != PLAN_FORMAT:
        raise PlanError(f"{folder / PLAN_FILE} is not a phaselocknet job plan")
    return JobPlan(folder, document)


def task_options(plan: JobPlan, index: int, device: str | None = None, progress: bool = False) -> EvalOptions:
    """The eval run of task ``index``."""
    if not 0 <= index < len(plan.tasks):
        raise PlanError(f"task {index}: the plan {plan.folder} has tasks 0..{len(plan.tasks) - 1}")
    task = plan.tasks[index]
    options = dict(plan.document["eval"])
    if device is not None:
        options["device"] = device
    group = task["group"]
    return EvalOptions(
        bundles=[plan.document["bundles"][i] for i in task["models"]], data=plan.document["data"],
        out=plan.output(task), shard=tuple(task["shard"]), seed=plan.document["seed"],
        ensemble_name=f"{group}/ensemble" if options.get("ensemble") else "ensemble", progress=progress,
        command=["phaselocknet", "task", str(plan.folder), "--index", str(index)], **options,
    )


def run_task(folder: str | os.PathLike, index: int | None = None, device: str | None = None, progress: bool = False):
    """Run (or resume, or skip when finished) task ``index`` of a plan; default: this SLURM array task.

    Returns the run's ``Summary``.
    """
    from .runner import evaluate

    plan = read_job_plan(folder)
    if index is None:
        task = slurm_array_task()
        if task is None:
            raise PlanError("no task index: pass --index K, or run inside a SLURM job array (SLURM_ARRAY_TASK_ID)")
        index, count = task
        if count != len(plan.tasks):
            raise PlanError(f"this job array has {count} tasks and the plan {plan.folder} {len(plan.tasks)}: "
                            f"submit it with --array=0-{len(plan.tasks) - 1}")
    options = task_options(plan, index, device, progress)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    return evaluate(options)


def task_outputs(folder: str | os.PathLike) -> list[Path]:
    plan = read_job_plan(folder)
    return [plan.output(task) for task in plan.tasks]
