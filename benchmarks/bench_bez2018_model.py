"""Whole models from sound: BEZ2018 front end vs CNN, for nervegram-input models.

For word_recognition/IHC3000/arch0_0000 (2 s at 20 kHz) and sound_localization/IHC3000/arch01
(1.397 s binaural at 44.1 kHz), published configs from ../shared with random weights, loaded
as `phaselocknet.load(..., front_end="bez2018")` would (`with_front_end`), spikes="mean":

* CPU seconds (process time, all threads) and wall seconds of the front end (sound -> the
  CNN's mean rates: `model.nervegram`) and of the rest (spike counts + CNN) on the same
  nervegram, measured in the same run;
* the front end's share of the whole model, and its CPU seconds per ear-second of sound,
  next to the C model's (the authors' wrapper, one thread) from
  ../shared/reference/bez2018/index.json (bench_bez2018.c_model_cpu_per_ear_second).

Usage:  python benchmarks/bench_bez2018_model.py [--batch 2] [--task speech localization]
Eager mode unless PHASELOCKNET_BEZ2018_COMPILE says otherwise (see docs/bez2018.md).
Also callable as `bench_model_from_sound(batch, tasks)` from benchmarks/bench_bez2018.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import phaselocknet
from bench_bez2018 import c_model_cpu_per_ear_second  # the C model's cost, as the stage benchmarks report it
from phaselocknet.bez2018.front_end import with_front_end

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[0].parent / "shared"
MODELS = {"speech": "word_recognition/IHC3000/arch0_0000", "localization": "sound_localization/IHC3000/arch01"}


def build(model_id: str):
    directory = SHARED / "phaselocknet_models" / model_id
    config = json.loads((directory / "config.json").read_text())
    arch = json.loads((directory / "arch.json").read_text())
    torch.manual_seed(0)
    inner = phaselocknet.from_config(config, arch, spikes="mean", model_id=model_id)
    return with_front_end(inner, "bez2018")


def sounds(model, batch: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    shape = (batch, *model.expected_input_shape())
    x = rng.standard_normal(shape) * 20e-6 * 10 ** (60 / 20)  # 60 dB SPL noise
    return torch.from_numpy(x.astype(np.float32))


def timed(function):
    cpu, wall = time.process_time(), time.perf_counter()
    value = function()
    return value, time.process_time() - cpu, time.perf_counter() - wall


def bench_model_from_sound(batch: int = 2, tasks=("speech", "localization")) -> list[dict]:
    rows = []
    reference = c_model_cpu_per_ear_second()
    for task in tasks:
        model = build(MODELS[task])
        x = sounds(model, batch)
        seeds = list(range(batch))
        with torch.no_grad():
            rates, front_cpu, front_wall = timed(lambda: model.nervegram(x, seeds))
            _, cnn_cpu, cnn_wall = timed(lambda: model.nervegram_model(rates))
        ear_seconds = batch * (2 if model.binaural else 1) * model.input_length / model.sample_rate
        row = {
            "model": model.model_id, "batch": batch, "ear_seconds": round(ear_seconds, 3),
            "front_end_cpu_s": round(front_cpu, 2), "front_end_wall_s": round(front_wall, 2),
            "cnn_cpu_s": round(cnn_cpu, 2), "cnn_wall_s": round(cnn_wall, 2),
            "front_end_share": round(front_cpu / (front_cpu + cnn_cpu), 3),
            "front_end_cpu_s_per_ear_second": round(front_cpu / ear_seconds, 2),
        }
        if reference is not None:
            row["c_model_cpu_s_per_ear_second"] = round(reference, 2)
            row["speedup_vs_c_model"] = round(reference / row["front_end_cpu_s_per_ear_second"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--task", nargs="+", choices=sorted(MODELS), default=["speech", "localization"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_model_from_sound(args.batch, args.task)


if __name__ == "__main__":
    main()
