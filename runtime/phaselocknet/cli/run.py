"""``phaselocknet run`` (predict the labels of one sound) and ``phaselocknet info``."""

from __future__ import annotations

import json
from pathlib import Path


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="predict the labels of one sound")
    run.add_argument("bundle", type=Path)
    run.add_argument("sound", type=Path, help="WAV (or FLAC with soundfile installed)")
    run.add_argument("--top", type=int, default=5, help="classes to print per head (default 5)")
    run.add_argument("--dbspl", type=float, default=None, help="set the sound level (dB SPL) before running; default: samples are pascals")
    run.add_argument("--diotic", action="store_true", help="play a mono sound to both ears of a binaural model")
    run.add_argument("--spikes", choices=("sample", "mean"), default="sample")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run.add_argument("--front-end", choices=("auto", "bez2018", "none"), default="auto",
                     help="nervegram-input models: make the nervegram with BEZ2018 (auto, the default, does)")
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="describe a bundle")
    info.add_argument("bundle", type=Path)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

def cmd_run(args) -> int:
    import torch

    import phaselocknet
    from ..audio import prepare_waveform, read_audio
    from ..bez2018.front_end import resolve_front_end
    from ..labels import format_label

    model = phaselocknet.load(args.bundle, spikes=args.spikes, seed=args.seed)
    model = resolve_front_end(model, args.front_end, sounds=True)
    if model.input_kind != "waveform":
        raise ValueError(f"{args.bundle} takes nervegrams: drop --front-end none to hear the sound through BEZ2018, "
                         "or use `phaselocknet eval` with an HDF5 nervegram_meanrates dataset")
    waveform, rate = read_audio(args.sound)
    x = prepare_waveform(
        waveform, rate, sample_rate=model.sample_rate, length=model.input_length,
        binaural=model.binaural, level_db=args.dbspl, diotic=args.diotic,
    )
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])
    result = {}
    for head, values in logits.items():
        probs = torch.softmax(values[0].double(), dim=0)
        top = torch.topk(probs, min(args.top, probs.numel()))
        labels = model.labels(head)
        result[head] = [
            {"class": int(k), "label": format_label(labels[int(k)]), "probability": float(p)}
            for p, k in zip(top.values, top.indices)
        ]
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "sound": str(args.sound), "predictions": result}, indent=2))
        return 0
    for head, rows in result.items():
        print(f"{head}:")
        for row in rows:
            print(f"  {row['probability']:8.4f}  {row['class']:5d}  {row['label']}")
    return 0


def cmd_info(args) -> int:
    import phaselocknet
    from ..bundle import read_metadata

    metadata = read_metadata(args.bundle)
    model = phaselocknet.load(args.bundle)
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
