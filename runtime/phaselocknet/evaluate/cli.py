"""The ``phaselocknet eval`` and ``phaselocknet merge`` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli.arguments import excerpt_start, sound_level

EVAL_EPILOG = """\
outputs (beside --out RESULTS.csv):
  RESULTS.csv                one row per example: example, source, index, metadata columns,
                             <model>/<head>.pred (+ .label), ensemble/<head>.pred/.label/.prob, error
  RESULTS.json               sidecar: command, package versions, bundle sha256s, options, seed
  RESULTS.probs.npz          with --probs: softmax probabilities, one array per <model>/<head>
  RESULTS.activations.h5     with --activations (or .npz): one array per <model>/<layer>
  .RESULTS.csv.work/         while running; rerun the same command to resume after any interruption

randomness: --spikes sample and --excerpt random (the defaults) reproduce the paper's stochastic
models. Each example's draw is seeded from (--seed, example number, model), so results do not depend
on batch size, workers or shards. Without --seed a seed is drawn and recorded in the sidecar.

exit status: 0 all examples evaluated; 3 finished, but some examples could not be read or prepared
(counted in the summary, explained in the 'error' column); 2 nothing done (bad bundle, missing
file, bad option).
"""


def add_parsers(subparsers) -> None:
    add_eval_parser(subparsers)
    add_merge_parser(subparsers)


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="run models over stimulus sets (HDF5, WAV/FLAC), batched, resumable, sharded",
        description="Evaluate one or more model bundles on stimulus sets; one CSV row per example.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundles", nargs="+", metavar="MODEL",
                        help="model bundles (.safetensors; globs allowed), or model ids, variant ids "
                             "(task/variant: its architectures) and id patterns, looked up in the model store")
    parser.add_argument("--data", nargs="+", required=True, metavar="SOURCE",
                        help="HDF5 files (authors' layout), the authors' TFRecords (.tfrecords, GZIP or not), WAV/FLAC files, folders of them, lists (.txt) or globs")
    parser.add_argument("--out", type=Path, required=True, metavar="RESULTS.csv")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per batch (default 16)")
    parser.add_argument("--workers", type=int, default=2,
                        help="background processes reading and preparing examples (default 2; 0 = in the main process)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--spikes", choices=("sample", "mean"), default="sample",
                        help="sample binomial spike counts as in the paper (default) or use their expected value")
    parser.add_argument("--excerpt", type=excerpt_start, default="random",
                        help="localization models: 'random' excerpt start as in the paper (default) or a fixed offset")
    parser.add_argument("--front-end", choices=("auto", "bez2018", "none"), default="auto",
                        help="nervegram-input models given sounds: make their nervegrams with BEZ2018 "
                             "(auto, the default, does; none: read stored nervegram_meanrates)")
    parser.add_argument("--seed", type=int, default=None, help="run seed (non-negative); default: drawn and recorded")
    parser.add_argument("--dbspl", type=sound_level, default=None, help="set each sound's level (dB SPL); default: as stored (Pa)")
    parser.add_argument("--diotic", action="store_true", help="play mono sounds to both ears of binaural models")
    parser.add_argument("--strict-length", action="store_true",
                        help="flag examples whose length (after resampling) is not the model's, instead of centre pad/trim")
    parser.add_argument("--probs", action="store_true", help="also save softmax probabilities to RESULTS.probs.npz")
    parser.add_argument("--activations", type=_layers, default=[], metavar="LAYER[,LAYER]",
                        help="also save these layers' activations per example ('nerve' = CNN input)")
    parser.add_argument("--activations-format", choices=("h5", "npz"), default="h5")
    parser.add_argument("--ensemble", action="store_true", help="add the mean probability across models and its argmax")
    parser.add_argument("--shard", default=None, metavar="I/N|slurm",
                        help="evaluate shard I of N (contiguous blocks; I from 0); 'slurm': this SLURM job-array "
                             "task's shard (the default when SLURM_ARRAY_TASK_ID is set), else 0/1")
    parser.add_argument("--chunk-size", type=int, default=1000,
                        help="examples per committed chunk: the most a kill can lose (default 1000)")
    parser.add_argument("--format", choices=("csv", "authors"), default="csv",
                        help="csv (default): --out RESULTS.csv; authors: --out DIR gets DIR/<model>/EVAL_<name>.json "
                             "+ .npy side files as the authors' util_evaluate writes them")
    parser.add_argument("--eval-name", default=None, metavar="NAME",
                        help="with --format authors: the <name> of EVAL_<name>.json (default: the first --data folder's name)")
    parser.add_argument("--overwrite", action="store_true", help="discard existing outputs and unfinished work for --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run_eval)
    return parser


def add_merge_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "merge",
        help="combine the outputs of eval --shard I/N into one",
        description="Merge shard outputs (CSV + sidecar, and their probability/activation files) into the "
                    "output a single unsharded run would have written.",
    )
    parser.add_argument("shards", nargs="+", metavar="SHARD_OUTPUT", help="the shards' RESULTS.csv files; globs allowed")
    parser.add_argument("--out", type=Path, required=True, metavar="RESULTS.csv")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=run_merge)
    return parser


def run_eval(args) -> int:
    from .plan import EvalOptions
    from .shards import parse_shard

    args.shard = "{}/{}".format(*parse_shard(args.shard))  # recorded resolved, so the command reproduces
    from .runner import evaluate

    authors = args.format == "authors"
    if authors:
        from .authors_format import run_csv

        if args.out.suffix.lower() == ".csv" or args.out.is_file():
            print(f"phaselocknet eval: error: --format authors writes a folder: give --out DIR, not {args.out}", file=sys.stderr)
            return 2
    options = EvalOptions(
        bundles=[str(b) for b in args.bundles], data=list(args.data), out=run_csv(args.out) if authors else args.out,
        batch_size=args.batch_size, workers=args.workers, device=args.device, dbspl=args.dbspl,
        diotic=args.diotic, strict_length=args.strict_length, probs=args.probs or authors, activations=args.activations,
        activations_format=args.activations_format, ensemble=args.ensemble, shard=args.shard,
        seed=args.seed, spikes=args.spikes, excerpt=args.excerpt, front_end=args.front_end, chunk_size=args.chunk_size,
        overwrite=args.overwrite, progress=not args.no_progress, command=eval_command(args),
    )
    try:
        status = evaluate(options).exit_status
        if authors and options.out.is_file():
            from .authors_format import default_name, write_authors_outputs

            for path in write_authors_outputs(args.out, args.eval_name or default_name(args.data)):
                print(f"phaselocknet eval: wrote {path}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"phaselocknet eval: interrupted; rerun the same command to resume {args.out}", file=sys.stderr)
        return 130


def run_merge(args) -> int:
    from .merge import merge

    command = ["phaselocknet", "merge", *map(str, args.shards), "--out", str(args.out)]
    merge(args.shards, args.out, overwrite=args.overwrite, command=command + (["--overwrite"] if args.overwrite else []))
    return 0


def eval_command(args) -> list[str]:
    """The command line that reproduces ``args`` (recorded in the sidecar).

    Rebuilt from the parsed options rather than taken from ``sys.argv``, which is not
    this command when ``phaselocknet.cli.main`` is called from Python.
    """
    words = ["phaselocknet", "eval", *map(str, args.bundles), "--data", *map(str, args.data), "--out", str(args.out)]
    valued = [("--batch-size", args.batch_size, 16), ("--workers", args.workers, 2), ("--device", args.device, "auto"),
              ("--spikes", args.spikes, "sample"), ("--excerpt", args.excerpt, "random"),
              ("--front-end", args.front_end, "auto"), ("--seed", args.seed, None),
              ("--dbspl", args.dbspl, None), ("--activations", ",".join(args.activations), ""),
              ("--activations-format", args.activations_format, "h5"), ("--shard", args.shard, "0/1"),
              ("--chunk-size", args.chunk_size, 1000), ("--format", args.format, "csv"),
              ("--eval-name", args.eval_name, None)]
    for flag, value, default in valued:
        if value != default:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, on in (("--diotic", args.diotic), ("--strict-length", args.strict_length), ("--probs", args.probs),
                     ("--ensemble", args.ensemble), ("--overwrite", args.overwrite), ("--no-progress", args.no_progress)):
        if on:
            words.append(flag)
    return words


def _layers(text: str) -> list[str]:
    layers = [name.strip() for name in text.split(",") if name.strip()]
    if not layers:
        raise argparse.ArgumentTypeError("name at least one layer")
    return layers
