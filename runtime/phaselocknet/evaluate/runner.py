"""Running a plan: batches through every model, results into chunks, chunks into outputs."""

from __future__ import annotations

import datetime as _dt
import secrets
import shlex
import socket
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..bundle import write_atomic
from ..finite import first_nonfinite_layer, nonfinite_rows
from .assemble import Part, assemble, read_sidecar, remove_outputs, remove_stale_partials
from .loader import Batch, BatchDataset, make_loader
from .plan import EvalOptions, Plan, PlanError, make_plan
from .resume import ResumeError, WorkDir, fingerprint_differences
from .shards import SEED_BITS, example_seed
from .sources import Reader
from .writers import NAN_FILL, csv_text, format_value, npz_bytes

# Exit status of a run that finished but flagged examples it could not evaluate.
EXIT_BAD_EXAMPLES = 3
# A chunk is also written once this much array data is buffered (large activations).
CHUNK_MAX_BYTES = 256 * 1024 * 1024


@dataclass
class Summary:
    examples: int
    errors: int
    evaluated_now: int
    seconds: float
    already_complete: bool = False

    @property
    def exit_status(self) -> int:
        return EXIT_BAD_EXAMPLES if self.errors else 0


def evaluate(options: EvalOptions) -> Summary:
    """Run ``phaselocknet eval``; resumes the run in ``options.out``'s work folder if any."""
    plan = make_plan(options)
    paths = plan.paths
    work = WorkDir(paths.csv)
    if paths.csv.exists() and not options.overwrite:
        previous = read_sidecar(paths.sidecar)
        if previous is not None and previous.get("fingerprint") == plan.fingerprint:
            _log(f"{paths.csv} is already complete ({previous['examples']['evaluated']} examples, "
                 f"{previous['examples']['errors']} flagged); nothing to do")
            work.remove()
            return Summary(previous["examples"]["evaluated"], previous["examples"]["errors"], 0, 0.0, True)
        why = "; ".join(fingerprint_differences(previous["fingerprint"], plan.fingerprint)) if previous else "no sidecar"
        raise PlanError(f"{paths.csv} exists from a different run ({why}); pass --overwrite to replace it or choose another --out")
    work.acquire()
    try:
        remove_stale_partials(paths)  # left by a kill during final assembly
        if options.overwrite:
            remove_outputs(paths)
            work.remove()
            work.acquire()
        state = _resume_state(work, plan)
        return _run(plan, work, state)
    finally:
        work.release()


def _resume_state(work: WorkDir, plan: Plan) -> dict:
    state = work.load_state()
    now = _now()
    session = {"started": now, "host": socket.gethostname(), "device": str(plan.device),
               "batch_size": plan.options.batch_size, "workers": plan.options.workers}
    if state is not None:
        if state.get("fingerprint") != plan.fingerprint:
            differences = "; ".join(fingerprint_differences(state.get("fingerprint") or {}, plan.fingerprint))
            raise ResumeError(
                f"{work.path} holds an unfinished run with other settings ({differences}); rerun the original "
                "command to resume it, or pass --overwrite to start over"
            )
        state["sessions"].append(session)
    else:
        seed = plan.options.seed if plan.options.seed is not None else secrets.randbits(SEED_BITS)
        state = {"fingerprint": plan.fingerprint, "seed": seed, "started": now, "sessions": [session]}
    work.save_state(state)
    return state


def _run(plan: Plan, work: WorkDir, state: dict) -> Summary:
    chunks = work.committed()
    done_until = plan.examples.start
    for chunk in chunks:
        if chunk.start != done_until:
            raise ResumeError(f"{work.path}: chunks do not follow on at example {done_until}; pass --overwrite to start over")
        done_until = chunk.stop
    pending = range(done_until, plan.examples.stop)
    if chunks:
        _log(f"resuming {plan.options.out}: {done_until - plan.examples.start} of {len(plan.examples)} examples done")
    started = time.perf_counter()
    if len(pending):
        _evaluate_pending(plan, work, state, pending)
    elapsed = time.perf_counter() - started
    errors = _finish(plan, work, state)
    summary = Summary(len(plan.examples), errors, len(pending), elapsed)
    rate = f", {summary.evaluated_now / elapsed:.2f} examples/s" if elapsed > 0 and len(pending) else ""
    flagged = f"; {errors} could not be evaluated (see the 'error' column)" if errors else ""
    _log(f"evaluated {len(plan.examples)} examples with {len(plan.models)} model(s) "
         f"({len(pending)} in this session, {elapsed:.1f} s{rate}){flagged}; wrote {plan.options.out}")
    return summary


# ---------------------------------------------------------------- the loop
def _evaluate_pending(plan: Plan, work: WorkDir, state: dict, pending: range) -> None:
    options = plan.options
    batches = [list(pending[k : k + options.batch_size]) for k in range(0, len(pending), options.batch_size)]
    reader = Reader(plan.catalog, nervegram=plan.specs[0].kind == "nervegram")
    dataset = BatchDataset(reader, batches, plan.specs, plan.preprocessing)
    loader = make_loader(dataset, workers=options.workers, pin_memory=plan.device.type == "cuda")
    writer = ChunkWriter(plan, work)
    progress = _progress(plan, total=len(plan.examples), initial=pending.start - plan.examples.start)
    try:
        with torch.inference_mode():
            for batch in loader:
                rows, probs, acts = run_batch(plan, batch, state["seed"])
                writer.add(batch.examples, rows, probs, acts)
                progress.update(len(batch.examples))
        writer.flush()
    finally:
        progress.close()


def run_batch(plan: Plan, batch: Batch, seed: int) -> tuple[list[list[str]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """CSV rows and per-key probability/activation arrays (NaN rows where there is no result)."""
    n = len(batch.examples)
    probs = {key: np.full((n, k), NAN_FILL, dtype=np.float32) for key, k in plan.prob_keys}
    acts = {key: np.full((n, *shape), NAN_FILL, dtype=np.float32) for key, shape in plan.activation_keys}
    preds: dict[str, np.ndarray] = {}
    layers = plan.options.activations
    for spec, (rows, x) in batch.inputs.items():
        x = x.to(plan.device, non_blocking=True)
        shared: dict[str, torch.Tensor] = {}  # share_key -> nerve representation of this batch
        for entry in (m for m in plan.models if m.spec == spec):
            seeds = [example_seed(seed, batch.examples[r], entry.key) for r in rows]
            if entry.share_key is None:
                nerve = front_end(entry, x, seeds)
            elif entry.share_key in shared:
                nerve = shared[entry.share_key]
            else:
                nerve = shared[entry.share_key] = front_end(entry, x, seeds)
            logits, found = forward(entry, nerve, layers)
            bad = _flag_nonfinite(entry, logits, x, seeds, rows, batch)
            for layer in layers:
                acts[f"{entry.name}/{layer}"][rows] = found[layer].float().cpu().numpy()
            for head, values in logits.items():
                p = torch.softmax(values.float(), dim=-1).cpu().numpy()
                p[bad] = NAN_FILL
                probs[f"{entry.name}/{head}"][rows] = p
                column = np.full(n, -1, dtype=np.int64)
                column[rows] = values.argmax(dim=-1).cpu().numpy()
                column[np.asarray(rows)[bad]] = -1
                preds[f"{entry.name}/{head}"] = column
    ensemble = plan.options.ensemble_name
    for head in plan.ensemble_heads:
        members = [probs[f"{m.name}/{head}"] for m in plan.models if head in m.model.heads]
        mean = np.mean(np.stack(members).astype(np.float64), axis=0)
        probs[f"{ensemble}/{head}"] = mean.astype(np.float32)
        ok = ~np.isnan(mean).any(axis=1)
        column = np.full(n, -1, dtype=np.int64)
        column[ok] = mean[ok].argmax(axis=1)
        preds[f"{ensemble}/{head}"] = column
    rows_out = []
    metadata_columns = plan.catalog.metadata_columns
    for i, example in enumerate(batch.examples):
        row = [str(example), batch.sources[i], str(batch.indices[i])]
        row += [format_value(batch.metadata[i].get(name)) for name in metadata_columns]
        for entry in plan.models:
            for head in entry.model.heads:
                row += _pred_cells(preds.get(f"{entry.name}/{head}"), i, entry.label_names[head])
        for head in plan.ensemble_heads:
            pred = preds[f"{ensemble}/{head}"][i]
            row += _pred_cells(preds[f"{ensemble}/{head}"], i, plan.ensemble_labels[head])
            row.append(format_value(probs[f"{ensemble}/{head}"][i, pred]) if pred >= 0 else "")
        row.append(batch.errors[i] or "")
        rows_out.append(row)
    return rows_out, probs, acts


def _flag_nonfinite(entry, logits, x, seeds, rows, batch) -> list[int]:
    """Rows (of this input group) whose logits are NaN/Inf, flagged in the error column."""
    bad = nonfinite_rows(logits)
    if bad:
        layer = first_nonfinite_layer(entry.model, x[bad], [seeds[i] for i in bad])
        message = f"{entry.name}: non-finite output (first at layer {layer})"
        for i in bad:
            r = rows[i]
            batch.errors[r] = message if batch.errors[r] is None else f"{batch.errors[r]}; {message}"
    return bad


def _pred_cells(column: np.ndarray | None, i: int, labels: list[str] | None) -> list[str]:
    pred = -1 if column is None else int(column[i])
    cells = [str(pred) if pred >= 0 else ""]
    if labels is not None:
        cells.append(labels[pred] if pred >= 0 else "")
    return cells


def front_end(entry, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """The nerve representation of a batch for one model (or for the models sharing its front end).

    Sampled spike counts are rounded, so a rounding-level difference in the rates can
    change a count and, through it, the logits far above rounding level. Batched float32
    convolution does not promise the same rounding for every batch size (the filterbank's
    does differ), so for waveform models with sampled spikes the front end runs one
    example at a time: an example's spikes are then the same in any batch, shard or run
    on the same hardware. The CNN, whose batch differences stay at rounding level, runs
    on the whole batch.
    """
    model = entry.model
    if entry.spec.kind == "waveform" and model.spikes == "sample" and len(x) > 1:
        return torch.cat([model.nerve_representation(x[i : i + 1], seeds[i : i + 1]) for i in range(len(x))])
    return model.nerve_representation(x, seeds)


def forward(entry, nerve: torch.Tensor, layers: list[str]):
    """Logits and the named activations of one model's CNN, in one pass."""
    model = entry.model
    wanted = [name for name in layers if name != "nerve"]
    if not wanted:
        logits, found = model.cnn(nerve), {}
    else:
        logits, found = model.cnn_with_activations(nerve, wanted)
    if "nerve" in layers:
        found["nerve"] = nerve
    return logits, found


class ChunkWriter:
    """Buffers results and commits them as chunks (arrays first, CSV last; see ``resume``)."""

    def __init__(self, plan: Plan, work: WorkDir):
        self.plan = plan
        self.work = work
        self._reset()

    def _reset(self):
        self.examples: list[int] = []
        self.rows: list[list[str]] = []
        self.probs: dict[str, list[np.ndarray]] = {}
        self.acts: dict[str, list[np.ndarray]] = {}
        self.bytes = 0

    def add(self, examples, rows, probs, acts) -> None:
        self.examples += examples
        self.rows += rows
        for store, arrays in ((self.probs, probs), (self.acts, acts)):
            for key, value in arrays.items():
                store.setdefault(key, []).append(value)
                self.bytes += value.nbytes
        if len(self.examples) >= self.plan.options.chunk_size or self.bytes >= CHUNK_MAX_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.examples:
            return
        start, stop = self.examples[0], self.examples[-1] + 1
        if self.examples != list(range(start, stop)):
            raise RuntimeError("internal error: a chunk's examples are not consecutive")
        chunk = self.work.chunk(start, stop)
        if self.plan.options.probs:
            write_atomic(chunk.probs, npz_bytes({k: np.concatenate(v) for k, v in self.probs.items()}))
        if self.plan.options.activations:
            write_atomic(chunk.acts, npz_bytes({k: np.concatenate(v) for k, v in self.acts.items()}))
        write_atomic(chunk.csv, csv_text(self.plan.header, self.rows).encode())
        self._reset()


# ---------------------------------------------------------------- finishing
def _finish(plan: Plan, work: WorkDir, state: dict) -> int:
    chunks = work.committed()
    parts = [Part(csv=c.csv, start=c.start, stop=c.stop,
                  probs=c.probs if plan.options.probs else None,
                  acts=c.acts if plan.options.activations else None) for c in chunks]
    sidecar = sidecar_payload(plan, state)
    errors = assemble(parts, plan.paths, plan.header, plan.examples,
                      prob_keys=plan.prob_keys if plan.options.probs else [],
                      activation_keys=plan.activation_keys,
                      sidecar=sidecar)
    work.remove()
    return errors


def sidecar_payload(plan: Plan, state: dict) -> dict:
    options = plan.options
    paths = plan.paths
    return {
        "tool": "phaselocknet eval",
        "command": shlex.join(options.command) if options.command else None,
        "started": state["started"],
        "finished": None,  # set by assemble
        "sessions": state["sessions"],
        "versions": _versions(),
        "bundles": [
            {"name": m.name, "path": m.path, "model_id": m.model.model_id, "sha256": m.sha256,
             "content_sha256": m.content_sha256, "input": m.spec.describe()}
            for m in plan.models
        ],
        "data": {"arguments": plan.catalog.arguments, "sources": plan.catalog.describe(), "examples": len(plan.catalog)},
        "options": {
            "spikes": options.spikes, "excerpt": options.excerpt, "dbspl": options.dbspl, "diotic": options.diotic,
            "strict_length": options.strict_length, "probs": options.probs, "activations": options.activations,
            "activations_format": options.activations_format if options.activations else None,
            "ensemble": options.ensemble, "batch_size": options.batch_size, "workers": options.workers,
            "device": options.device, "chunk_size": options.chunk_size,
        },
        "seed": state["seed"],
        "seed_given": options.seed is not None,
        "shard": {"index": options.shard[0], "count": options.shard[1],
                  "examples": [plan.examples.start, plan.examples.stop]},
        "examples": {"evaluated": len(plan.examples), "errors": None},  # errors set by assemble
        "outputs": {"csv": paths.csv.name,
                    "probs": paths.probs.name if options.probs else None,
                    "activations": paths.activations.name if paths.activations else None},
        "fingerprint": plan.fingerprint,
    }


def _versions() -> dict:
    from .writers import package_versions

    return package_versions()


def _progress(plan: Plan, total: int, initial: int):
    if not plan.options.progress:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit="ex", desc="eval", file=sys.stderr, dynamic_ncols=True,
                smoothing=0.05, mininterval=0.5 if interactive else 30.0)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _log(message: str) -> None:
    print(f"phaselocknet eval: {message}", file=sys.stderr, flush=True)
