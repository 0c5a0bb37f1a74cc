"""Submitting a job plan from Python with submitit, the maintained SLURM launcher.

    from phaselocknet.evaluate.cluster import submit_plan
    jobs = submit_plan("plan/", slurm_partition="gpu", timeout_min=720, gpus_per_node=1)
    [job.result() for job in jobs]      # each task's Summary

One submitit array job per plan; array task k runs plan task k (`jobs.run_task`), so it
resumes from its committed chunks when SLURM requeues it (submitit requeues a
preempted or timed-out task because `PlanTask` is checkpointable) and does nothing once
its output is complete. ``cluster="local"`` runs the same code path as local processes,
without a cluster (that is how the tests run it). Needs ``pip install 'phaselocknet[cluster]'``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .jobs import read_job_plan, run_task
from .plan import PlanError


class PlanTask:
    """The callable submitit pickles for each array task: run one task of a plan."""

    def __call__(self, folder: str, index: int, device: str | None = None):
        return run_task(folder, index, device)

    def checkpoint(self, folder: str, index: int, device: str | None = None):
        # Called by submitit on preemption or timeout: resubmit the same task, which resumes
        # from its last committed chunk (nothing else needs saving).
        import submitit

        return submitit.helpers.DelayedSubmission(PlanTask(), folder, index, device)


def submit_plan(folder: str | os.PathLike, executor=None, *, cluster: str | None = None,
                log_folder: str | os.PathLike | None = None, device: str | None = None, **parameters) -> list:
    """Submit every task of the plan in ``folder``; returns the submitit jobs, in task order.

    ``executor``: a ready submitit executor; else a ``submitit.AutoExecutor`` on
    ``log_folder`` (default ``folder/submitit``) for ``cluster`` (None: SLURM if
    available, else local; "local"; "slurm"), configured with ``parameters``
    (``timeout_min``, ``slurm_partition``, ``gpus_per_node``, ``mem_gb``, ...).
    ``device`` overrides the plan's (e.g. "cuda": each task gets its own GPU).
    """
    try:
        import submitit
    except ImportError:
        raise PlanError("submit_plan needs submitit: pip install 'phaselocknet[cluster]'") from None
    plan = read_job_plan(folder)
    folder = str(Path(folder).absolute())
    if executor is None:
        executor = submitit.AutoExecutor(folder=log_folder or Path(folder) / "submitit", cluster=cluster)
        executor.update_parameters(name="phaselocknet", **parameters)
    elif parameters:
        executor.update_parameters(**parameters)
    n = len(plan.tasks)
    return executor.map_array(PlanTask(), [folder] * n, list(range(n)), [device] * n)
