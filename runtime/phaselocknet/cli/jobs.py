"""``phaselocknet plan`` (write a job-array plan) and ``phaselocknet task`` (run one of its tasks)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub) -> None:
    from ..evaluate.cli import _layers
    from .arguments import excerpt_start, sound_level

    plan = sub.add_parser(
        "plan", help="write a job-array plan: model groups x example shards, and an sbatch script",
        description="Split an evaluation into tasks of one model group (default: a variant's architectures, which "
                    "share their front end) x one example shard. Writes OUT/plan.json, OUT/tasks.tsv and "
                    "OUT/submit.sbatch (a SLURM array, one task each); run a task with `phaselocknet task OUT`, "
                    "join the results with `phaselocknet merge OUT --out RESULTS.csv`.",
    )
    plan.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                      help="model ids, variant ids, id patterns or bundle paths")
    plan.add_argument("--data", nargs="+", required=True, metavar="SOURCE")
    plan.add_argument("--tasks", type=int, required=True, metavar="N",
                      help="array size wanted: each group gets max(1, N // groups) example shards")
    plan.add_argument("--out", type=Path, required=True, metavar="PLAN_DIR")
    plan.add_argument("--group-by", choices=("variant", "model", "none"), default="variant")
    plan.add_argument("--seed", type=int, default=None, help="run seed for every task (default: drawn once, recorded)")
    plan.add_argument("--device", default="auto", help="each task's device: auto, cpu, cuda (one GPU per task)")
    plan.add_argument("--batch-size", type=int, default=16)
    plan.add_argument("--workers", type=int, default=2)
    plan.add_argument("--spikes", choices=("sample", "mean"), default="sample")
    plan.add_argument("--excerpt", type=excerpt_start, default="random")
    plan.add_argument("--dbspl", type=sound_level, default=None)
    plan.add_argument("--diotic", action="store_true")
    plan.add_argument("--probs", action="store_true")
    plan.add_argument("--activations", type=_layers, default=[], metavar="LAYER[,LAYER]")
    plan.add_argument("--ensemble", action="store_true", help="per group: <group>/ensemble/<head> mean-probability columns")
    plan.add_argument("--mem-gb", type=int, default=None, help="sbatch --mem (default: from the largest group's bundles)")
    plan.add_argument("--time", default="24:00:00", help="sbatch --time (default 24:00:00)")
    plan.add_argument("--partition", default=None)
    plan.set_defaults(func=cmd_plan)

    task = sub.add_parser("task", help="run (or resume) one task of a plan",
                          description="Run task K of a plan written by `phaselocknet plan`; K defaults to this SLURM "
                                      "job-array task. A finished task does nothing; an interrupted one resumes.")
    task.add_argument("plan", type=Path, metavar="PLAN_DIR")
    task.add_argument("--index", type=int, default=None, metavar="K")
    task.add_argument("--device", default=None, help="override the plan's device (e.g. cuda:1: one process per GPU)")
    task.add_argument("--progress", action="store_true")
    task.set_defaults(func=cmd_task)


def cmd_plan(args: argparse.Namespace) -> int:
    import sys

    from ..evaluate.jobs import SCRIPT_FILE, write_job_plan

    plan = write_job_plan(
        args.models, args.data, args.out, tasks=args.tasks, group_by=args.group_by, seed=args.seed,
        sbatch={"memory_gb": args.mem_gb, "time": args.time, "partition": args.partition},
        batch_size=args.batch_size, workers=args.workers, device=args.device, spikes=args.spikes,
        excerpt=args.excerpt, dbspl=args.dbspl, diotic=args.diotic, probs=args.probs,
        activations=args.activations, ensemble=args.ensemble,
    )
    groups = len({t["group"] for t in plan.tasks})
    print(f"phaselocknet plan: {len(plan.tasks)} tasks ({groups} model groups x {plan.tasks[0]['shard'][1]} shards) "
          f"over {plan.document['examples']} examples; submit with: sbatch {args.out / SCRIPT_FILE}; then "
          f"phaselocknet merge {args.out} --out RESULTS.csv", file=sys.stderr)
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    from ..evaluate.jobs import run_task

    return run_task(args.plan, args.index, args.device, progress=args.progress).exit_status
