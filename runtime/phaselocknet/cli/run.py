"""``phaselocknet run`` (predict the labels of one sound) and ``phaselocknet info``."""

from __future__ import annotations

import json
from pathlib import Path

from .arguments import at_least_one, excerpt_start, sound_level


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="predict the labels of one sound")
    run.add_argument("bundle", metavar="MODEL",
                     help="bundle path, model id (task/variant/arch) or variant id (task/variant: the ensemble "
                          "of its architectures, mean probability)")
    run.add_argument("sound", type=Path, help="WAV (or FLAC with soundfile installed)")
    run.add_argument("--top", type=at_least_one, default=5, help="classes to print per head (default 5, at least 1)")
    run.add_argument("--dbspl", type=sound_level, default=None,
                     help="set the sound level (dB SPL, -30..150) before running; default: samples are pascals")
    run.add_argument("--diotic", action="store_true", help="play a mono sound to both ears of a binaural model")
    run.add_argument("--spikes", choices=("sample", "mean"), default="sample")
    run.add_argument("--seed", type=int, default=None, help="seed of the spike sampling and excerpt (printed when not given)")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    run.add_argument("--excerpt", type=excerpt_start, default="random",
                     help="localization models: 'random' (default) or the start of the 10000-sample nerve excerpt")
    run.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run.add_argument("--front-end", choices=("auto", "bez2018", "none"), default="auto",
                     help="nervegram-input models: make the nervegram with BEZ2018 (auto, the default, does)")
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="describe a bundle")
    info.add_argument("bundle", metavar="MODEL", help="bundle path or model id")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)


def _say(message: str) -> None:
    import sys

    print(f"phaselocknet run: {message}", file=sys.stderr)


def cmd_run(args) -> int:
    import secrets

    import torch

    import phaselocknet
    from ..audio import check_playable, prepare_waveform, read_audio
    from ..bez2018.front_end import resolve_front_end
    from ..labels import format_label

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    if args.seed is None and (args.spikes == "sample" or args.excerpt == "random"):
        _say(f"seed {seed} (pass --seed {seed} to repeat this result)")
    from ..store import is_model_id

    options = {"spikes": args.spikes, "seed": seed, "excerpt": args.excerpt, "map_location": args.device}
    if is_model_id(args.bundle) and args.bundle.count("/") == 1 and not Path(args.bundle).exists():
        model = phaselocknet.load_ensemble(args.bundle, lazy=True, **options)  # memory: one member at a time
        if model.input_kind == "nervegram" and args.front_end != "none":
            # each member hears the sound through its own BEZ2018 nervegram (its own draws)
            model = phaselocknet.load_ensemble(args.bundle, lazy=True, front_end="bez2018", **options)
    else:
        model = resolve_front_end(phaselocknet.load(args.bundle, **options), args.front_end, sounds=True)
    if model.input_kind != "waveform":
        raise ValueError(f"{args.bundle} takes nervegrams: drop --front-end none to hear the sound through BEZ2018, "
                         "or use `phaselocknet eval` with an HDF5 nervegram_meanrates dataset")
    waveform, rate = read_audio(args.sound)
    check_playable(waveform, rate, f"{args.sound}")
    if rate != model.sample_rate:
        _say(f"resampling {rate:g} Hz -> {model.sample_rate:g} Hz")
    n_model = round(waveform.shape[-1] * model.sample_rate / rate)
    if n_model != model.input_length:
        how = "trimming the centre" if n_model > model.input_length else "zero-padding both ends"
        _say(f"{n_model} samples -> {model.input_length} ({how}; the model hears {model.input_length / model.sample_rate:g} s)")
    x = prepare_waveform(
        waveform, rate, sample_rate=model.sample_rate, length=model.input_length,
        binaural=model.binaural, level_db=args.dbspl, diotic=args.diotic,
    )
    with torch.no_grad():
        outputs = model(torch.from_numpy(x)[None].to(args.device))
    result = {}
    for head, values in outputs.items():
        # An ensemble returns mean probabilities already; a model, logits.
        probs = values[0].double().cpu() if isinstance(model, phaselocknet.Ensemble) else torch.softmax(values[0].double().cpu(), dim=0)
        top = torch.topk(probs, min(args.top, probs.numel()))
        labels = model.labels(head)
        result[head] = [
            {"class": int(k), "label": format_label(labels[int(k)]), "probability": float(p)}
            for p, k in zip(top.values, top.indices)
        ]
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "members": getattr(model, "member_ids", None), "sound": str(args.sound), "predictions": result}, indent=2))
        return 0
    for head, rows in result.items():
        print(f"{head}:")
        for row in rows:
            print(f"  {row['probability']:8.4f}  {row['class']:5d}  {row['label']}")
    return 0


def cmd_info(args) -> int:
    import phaselocknet
    from ..bundle import read_metadata

    from ..store import resolve_bundle

    path = resolve_bundle(args.bundle)
    metadata = read_metadata(path)
    model = phaselocknet.load(path)
    facts = {
        "model_id": model.model_id,
        "input_kind": model.input_kind,
        "binaural": model.binaural,
        "sample_rate": model.sample_rate,
        "input_length": model.input_length,
        "input_shape": ["batch", *model.expected_input_shape()],
        "heads": model.heads,
        "labelled_heads": sorted(model.label_names or {}),
        "parameters": sum(p.numel() for p in model.parameters()),
        "ihc_cutoff_hz": model.config["kwargs_cochlea"].get("kwargs_fir_lowpass_filter_output", {}).get("cutoff"),
        "converter_version": metadata["converter_version"],
        "source_sha256": json.loads(metadata["source_sha256"]),
        "layers": model.network.layer_names,
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    for key, value in facts.items():
        if key == "layers":
            value = " -> ".join(value)
        print(f"{key:>18}: {value}")
    return 0
