"""``nervegram()``: BEZ2018 mean-rate nervegrams as the authors' wrapper makes them.

Pipeline per ear (``bez2018model.nervegram`` with ``run_ANmodel``): resample to pin_fs
(100 kHz), IHC potential per CF (`hair_cell.ihc_potential`), synapse per fibre
(`synapse.SynapseBank`), the spike generator's redocking state and the analytic mean rate
(`spike_generator`), decimation to nervegram_fs (10 kHz) with ``resample_poly``, negatives
clipped; optionally a clip of ``nervegram_dur`` at a uniformly drawn start. float64 inside,
float32 out.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch

from . import presets, random_streams as rs
from .dispatch import use_compiled
from .hair_cell import ihc_potential
from .resample import decimation_taps, resample_poly
from .spike_generator import analytic_mean_rate, elapsed_tables, redocking_times
from .synapse import SynapseBank, sequential_loop_threads

# Fibre x 100 kHz-sample elements per spike-generator chunk (a few float64 arrays of this size).
_FIBRE_CHUNK_ELEMENTS = 3 * 10**7
# Ear x CF x 100 kHz-sample elements of IHC potential per example chunk.
_EAR_CHUNK_ELEMENTS = 2 * 10**8
MAX_PEAK_PA = 2e4  # 180 dB SPL peak: far past the model's range; larger means the units are wrong


class NervegramError(ValueError):
    """Bad input to nervegram()."""


def _as_batch(signal, device) -> tuple[torch.Tensor, int]:
    """(batch, ears, time) float64 and the input's rank."""
    if isinstance(signal, np.ndarray) or isinstance(signal, (list, tuple)):
        signal = torch.as_tensor(np.asarray(signal, dtype=np.float64))
    if not isinstance(signal, torch.Tensor):
        raise NervegramError(f"signal must be a torch.Tensor or numpy array in pascals, got {type(signal).__name__}")
    if signal.is_complex() or not (signal.is_floating_point() or signal.dtype in (torch.int16, torch.int32, torch.int64)):
        raise NervegramError(f"signal must be real-valued pascals, got dtype {signal.dtype}")
    x = signal.to(device=device, dtype=torch.float64)
    rank = x.ndim
    if rank == 1:
        x = x[None, None]
    elif rank == 2:
        x = x[:, None]
    elif rank == 3:
        if x.shape[1] != 2:
            raise NervegramError(f"a 3-D signal must be (batch, 2, time) binaural, got shape {tuple(x.shape)}")
    else:
        raise NervegramError(f"signal must be (time,), (batch, time) or (batch, 2, time); got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[-1] == 0:
        raise NervegramError(f"signal is empty (shape {tuple(signal.shape)}): give at least one sample per example")
    if not bool(torch.isfinite(x).all()):
        raise NervegramError("signal contains NaN or Inf: clean or drop those samples first")
    peak = float(x.abs().max())
    if peak > MAX_PEAK_PA:
        raise NervegramError(
            f"signal peak {peak:.3g} Pa is {20 * math.log10(peak / 2e-5):.0f} dB SPL: give the sound in pascals "
            f"(peak <= {MAX_PEAK_PA:g} Pa), e.g. scale a [-1, 1] waveform to the level you want")
    return x, rank


def _check_rates(sample_rate, kw, n_time):
    if not (isinstance(sample_rate, (int, float, np.integer, np.floating)) and np.isfinite(sample_rate)
            and sample_rate > 0 and float(sample_rate) == int(sample_rate)):
        raise NervegramError(f"sample_rate={sample_rate!r} must be a positive whole number of Hz (the wrapper resamples with int(rate))")
    dur = n_time / float(sample_rate)
    if dur * kw["nervegram_fs"] < 1:
        raise NervegramError(f"the sound lasts {dur:.2g} s: shorter than one nervegram sample; give a longer sound")
    clip = kw["nervegram_dur"]
    if clip is not None and clip != dur:
        latest = dur - clip - kw["buffer_end_dur"]
        if clip <= 0 or latest < kw["buffer_start_dur"]:
            raise NervegramError(
                f"a {clip} s clip after {kw['buffer_start_dur']} s and before the last {kw['buffer_end_dur']} s does not fit "
                f"in a {dur:.4g} s sound: give at least {clip + kw['buffer_start_dur'] + kw['buffer_end_dur']:.4g} s, "
                "or nervegram_dur=None for the whole sound")
    return dur


def _level(pin: torch.Tensor, kw) -> torch.Tensor:
    if not kw["pin_dBSPL_flag"]:
        return pin
    if kw["pin_dBSPL"] is None:
        raise NervegramError("pin_dBSPL_flag=1 needs pin_dBSPL= (the level in dB SPL)")
    pin = pin - pin.mean(dim=(1, 2), keepdim=True)
    rms = pin.square().mean(dim=(1, 2), keepdim=True).sqrt()
    want = 2e-5 * 10 ** (kw["pin_dBSPL"] / 20)
    return torch.where(rms > 0, want * pin / torch.where(rms > 0, rms, 1.0), pin)


def _resample_input(x: torch.Tensor, up: int, down: int) -> torch.Tensor:
    """The sound at pin_fs. On the CPU scipy's resample_poly itself, the wrapper's own call: the
    port's (~1e-15 relative off it) is enough, on a loud tone, to flip one CF's control-path
    group delay (a floor) and so its IHC potential by ~5e-4 (measured at CF 6558 Hz, 80 dB)."""
    if use_compiled(x):
        return torch.from_numpy(scipy.signal.resample_poly(x.detach().numpy(), up, down, axis=-1))
    return resample_poly(x, up, down)


def _fibre_rates(bank, adapted, uniforms, lengths, kw, strict: bool) -> torch.Tensor:
    """Mean rate at nervegram_fs (rows, T) of every row from its 10 kHz synapse output."""
    if use_compiled(adapted):
        rates, over = _fibre_rates_compiled(bank, adapted, uniforms, lengths, kw)
    else:
        rates, over = _fibre_rates_tensor_ops(bank, adapted, uniforms, lengths, kw)
    if bool(over.any()):
        detail = ("the wrapper's run_anf fails here too (insufficient max_spikes_per_train or random buffer)"
                  if strict else "raise max_spikes_per_train")
        raise rs.RandomStreamError(f"{int(over.sum())} fibre(s) fired more than the spike buffers allow: {detail}")
    return rates


def _fibre_rates_compiled(bank, adapted, uniforms, lengths, kw):
    """All rows through ``compiled_synapse.mean_rate_rows`` (synout, redocking, mean rate and its
    decimation fused per fibre: no (rows, 100 kHz) arrays)."""
    from . import compiled_synapse  # noqa: PLC0415

    if int(kw["pin_fs"]) % int(kw["nervegram_fs"]):  # not a whole decimation factor: not fused
        return _fibre_rates_tensor_ops(bank, adapted, uniforms, lengths, kw)
    down = int(kw["pin_fs"]) // int(kw["nervegram_fs"])
    taps, half_len = decimation_taps(down)
    geoms = [bank.geoms[c] for c in bank.cf_of_row]
    n_out = -(-bank.n // down)
    out = np.empty((bank.n_rows, n_out))
    draws = np.empty(bank.n_rows, dtype=np.int64)
    spikes = np.empty(bank.n_rows, dtype=np.int64)
    _, elapsed_steps = elapsed_tables(max(2 * bank.n, 1 << 18) + 4, bank.tdres)
    compiled_synapse.mean_rate_rows(
        adapted.contiguous().numpy(), np.array([g.n_pla for g in geoms]), np.array([g.delaypoint for g in geoms]),
        bank.q, bank.n, uniforms.contiguous().numpy(), np.asarray(lengths, dtype=np.int64),
        bank.spont_of_row.numpy(), bank.tdres, float(kw["tabs"]), float(kw["trel"]), int(kw["max_spikes_per_train"]),
        elapsed_steps, taps, half_len, down, out, draws, spikes)
    return torch.from_numpy(out), torch.from_numpy(draws == compiled_synapse.OVERFLOW)


def _fibre_rates_tensor_ops(bank, adapted, uniforms, lengths, kw):
    """In fibre chunks, as tensor ops on the rows' device."""
    chunk = max(1, _FIBRE_CHUNK_ELEMENTS // bank.n)
    out, overs = [], []
    for r0 in range(0, bank.n_rows, chunk):
        rows = slice(r0, min(bank.n_rows, r0 + chunk))
        synout = bank.synout(rows, adapted[rows])
        res = redocking_times(synout, uniforms[rows], bank.spont_of_row[rows], tdres=bank.tdres,
                              tabs=kw["tabs"], trel=kw["trel"])
        overs.append((res.draws + 1 > torch.as_tensor(lengths[rows], device=res.draws.device)) |
                     (res.spikes >= kw["max_spikes_per_train"]))
        rate = analytic_mean_rate(synout, res.trd, tabs=kw["tabs"], trel=kw["trel"])
        out.append(torch.clamp_min(resample_poly(rate, int(kw["nervegram_fs"]), int(kw["pin_fs"])), 0.0))
    return torch.cat(out), torch.cat(overs)


# One intra-op thread for the whole synapse side: its ops are small or per-CF, and with a second
# thread each op pays a hand-off and OpenMP spin-waits (on a loaded 2-core machine: 6.7x the
# CPU time at batch 1, see the commit message).
@sequential_loop_threads()
def _numpy_example(vihc, cf, seed, kw):
    bank = SynapseBank(vihc, cf, kw["spont"], 1.0 / kw["pin_fs"])
    draws = rs.NumpyFibreDraws(bank, seed, kw["noiseType"], int(kw["max_spikes_per_train"]))
    noise, uniforms, lengths = draws.run()
    adapted = bank.adapted(slice(0, bank.n_rows), noise)
    rates = _fibre_rates(bank, adapted, uniforms, np.asarray(lengths), kw, strict=True)
    return rates, draws.clip_start


@sequential_loop_threads()
def _torch_examples(vihc, cf, seeds, kw):
    bank = SynapseBank(vihc, cf, kw["spont"], 1.0 / kw["pin_fs"])
    dev, per_example = vihc.device, bank.n_rows // len(seeds)
    gens = rs.torch_generators(seeds, dev)
    noise = None
    if kw["noiseType"] == 1:
        normals = torch.cat([rs.torch_normals(g, per_example, max(bank.nfft), dev) for g in gens])
        noise = bank.noise(normals)
    adapted = bank.adapted(slice(0, bank.n_rows), noise)
    # twice the wrapper's own buffer (a 3-sigma bound), so running out is not a practical concern
    lengths = 2 * np.asarray(rs.buffer_lengths(bank, int(kw["max_spikes_per_train"])))
    width = int(lengths.max())
    uniforms = torch.cat([rs.torch_uniforms(g, per_example, width, dev) for g in gens])
    rates = _fibre_rates(bank, adapted, uniforms, lengths, kw, strict=False)
    clips = [lambda lo, hi, g=g: rs.torch_clip_start(g, lo, hi, dev) for g in gens]
    return rates, clips


def _clip(arrays, t0_list, kw, dur):
    fs = kw["nervegram_fs"]
    n_out = {int((t0 + kw["nervegram_dur"]) * fs) - int(t0 * fs) for t0 in t0_list}
    length = n_out.pop() if len(n_out) == 1 else int(round(kw["nervegram_dur"] * fs))
    return [torch.stack([a[i, ..., int(t0 * fs): int(t0 * fs) + length] for i, t0 in enumerate(t0_list)])
            for a in arrays]


def _run_chunks(pin, cf, seeds, kw, rng, return_ihc, n_ears):
    """Mean rates (rows, T), IHC potentials and clip-draw callables, in chunks of examples."""
    batch, device = pin.shape[0], pin.device
    per_chunk = max(1, _EAR_CHUNK_ELEMENTS // (n_ears * len(cf) * pin.shape[-1]))
    rates, ihcs, clip_draws = [], [], []
    for b0 in range(0, batch, per_chunk):
        b1 = min(batch, b0 + per_chunk)
        vihc = ihc_potential(pin[b0:b1].reshape(-1, pin.shape[-1]), torch.as_tensor(cf, device=device),
                             pin_fs=kw["pin_fs"], species=kw["species"],
                             bandwidth_scale_factor=kw["bandwidth_scale_factor"], cohc=kw["cohc"],
                             cihc=kw["cihc"], ihc_lowpass_cutoff=kw["IhcLowPass_cutoff"],
                             ihc_lowpass_order=kw["IhcLowPass_order"])
        if return_ihc:
            ihcs.append(resample_poly(vihc, int(kw["nervegram_fs"]), int(kw["pin_fs"])).reshape(b1 - b0, n_ears, len(cf), -1))
        if rng == "numpy":
            per_ex = vihc.shape[0] // (b1 - b0)
            for i in range(b1 - b0):
                r, clip = _numpy_example(vihc[i * per_ex:(i + 1) * per_ex], cf, seeds[b0 + i], kw)
                rates.append(r)
                clip_draws.append(clip)
        else:
            r, clips = _torch_examples(vihc, cf, seeds[b0:b1], kw)
            rates.append(r)
            clip_draws.extend(clips)
        del vihc
    return rates, ihcs, clip_draws


def nervegram(signal, sample_rate, ihc_cutoff: float = 3000.0, preset: str = "speech", seed=0,
              rng: str = "torch", return_ihc: bool = False, device=None, **overrides) -> dict:
    """BEZ2018 nervegram of ``signal`` (pascals) sampled at ``sample_rate`` Hz.

    signal: (time,), (batch, time) or (batch, 2, time) (binaural), tensor or numpy array.
    Returns {"meanrates": float32 tensor, spikes/s at nervegram_fs (10 kHz), (batch, spont, CF,
    time), or (batch, 2, spont, CF, time) for binaural input, without the batch dim for 1-D
    input; with return_ihc: "ihc", the IHC potential (V) at nervegram_fs, (batch, [2,] CF, time);
    "cf" (Hz) and "spont"}.
    preset "speech" / "localization": the authors' settings (`presets`); overrides take the
    wrapper's keyword names. seed: int (every example; as the wrapper's random_seed), one per
    example, or None. rng "numpy" reproduces the wrapper's draws from numpy's legacy stream;
    "torch" (default) draws on ``device`` with the same distributions.
    """
    if rng not in ("torch", "numpy"):
        raise NervegramError(f"rng={rng!r}: use 'torch' or 'numpy'")
    kw = presets.resolve(preset, ihc_cutoff, overrides)
    cf = presets.cf_list_of(kw)
    if device is None:
        device = signal.device if isinstance(signal, torch.Tensor) else torch.device("cpu")
    x, rank = _as_batch(signal, device)
    dur = _check_rates(sample_rate, kw, x.shape[-1])
    seeds = rs.example_seeds(seed, x.shape[0], rng)
    batch, n_ears = x.shape[:2]
    pin = _level(_resample_input(x, int(kw["pin_fs"]), int(sample_rate)), kw)
    rates, ihcs, clip_draws = _run_chunks(pin, cf, seeds, kw, rng, return_ihc, n_ears)
    n_sp = len(np.asarray(kw["spont"]).reshape(-1))
    meanrates = torch.cat(rates).reshape(batch, n_ears, len(cf), n_sp, -1).transpose(2, 3)
    outs = [meanrates] + ([torch.cat(ihcs)] if return_ihc else [])
    if kw["nervegram_dur"] is not None and kw["nervegram_dur"] != dur:
        low, high = kw["buffer_start_dur"], dur - kw["nervegram_dur"] - kw["buffer_end_dur"]
        outs = _clip(outs, [draw(low, high) for draw in clip_draws], kw, dur)
    outs = [o.to(torch.float32) for o in outs]
    if rank != 3:
        outs = [o[:, 0] for o in outs]
    if rank == 1:
        outs = [o[0] for o in outs]
    result = {"meanrates": outs[0], "cf": torch.as_tensor(cf), "spont": torch.as_tensor(np.asarray(kw["spont"], dtype=np.float64).reshape(-1))}
    if return_ihc:
        result["ihc"] = outs[1]
    return result
