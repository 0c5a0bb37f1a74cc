"""The BEZ2018 periphery (IHCAN) on a stream of chunks, vectorised over ears x CFs.

Only the control path and the C1 filter it retunes are nonlinear recurrences (the control path
feeds back into C1 and into its own gain), so only they run sample by sample (``advance``); ears
and CFs are independent. The fixed linear stages run over whole chunks (``iir``): the middle ear
before the loop, the C2 filter beside it, and, since the transduction is memoryless, the IHC
lowpass after it. ``advance`` runs K samples (``cochlea_step`` holds the per-sample arithmetic);
it runs as TorchScript (the same code; ``PHASELOCKNET_BEZ2018_SCRIPT=0``: plain eager), or,
with ``PHASELOCKNET_BEZ2018_COMPILE=1``, a K-sample block goes to ``torch.compile`` (compile_cache).

Control-path gain schedule (the C model's ``tmpgain``): at sample n the new wideband gain is
written ``grd`` samples ahead (its group delay; >= 0) and the gain for sample n + 1 is read at n,
a slot never written keeping the previous gain. ``gain_buf`` (slots, E, C) is a ring of such
slots: written by one scatter per sample, each slot cleared once read.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import Tensor

from .cochlea import CochleaParameterError, CochleaParams, c2_sos, cochlea_params
from .cochlea_step import c1_step, control_path_step, initial_state, loop_constants, wideband_carrier
from .hair_cell import MAX_IHC_ORDER, delay_samples, ihc_lowpass_sos, ihc_transduction
from .iir import sosfilt, sosfilt_per_channel, zero_state
from .middle_ear import middle_ear_sos
from . import compile_cache
from .dispatch import use_compiled

BLOCK = 16          # samples per (compiled) block
CHUNK = 1 << 12     # samples per stream call in ``run``: bounds the whole-chunk buffers of long sounds
_PARALLEL_MIN_ELEMENTS = 1 << 16
_CACHE_BLOCK_ELEMENTS = 1 << 15


def advance(k: Dict[str, Tensor], kf: Dict[str, float], state: Dict[str, Tensor], gain_buf: Tensor, meout: Tensor,
            offset: int) -> Tuple[Dict[str, Tensor], Tensor, Tensor]:
    """Run ``meout.shape[-1]`` samples of the middle-ear output through the control path and C1.

    Returns (state, gain_buf (updated in place), C1 output (ears, n_cf, K))."""
    size = gain_buf.shape[0]
    s = state.copy()
    outs: List[Tensor] = []
    carrier = wideband_carrier(k, s, meout.shape[-1])
    for i in range(meout.shape[-1]):
        x = meout[:, i, None]
        rsigma, new_gain, grd = control_path_step(k, kf, s, x, carrier[i])
        now = (offset + i) % size
        gain_buf.scatter_(0, torch.remainder(grd.long() + now, size)[None], new_gain[None])
        slot = gain_buf[now]
        s["wb_gain"] = torch.where(slot == 0, s["wb_gain"], slot)
        slot.zero_()
        outs.append(c1_step(k, s, x, rsigma))
    return s, gain_buf, torch.stack(outs, dim=-1)


class IHCStream:
    """IHC potential of a stream of sound chunks; carries every filter's state between calls."""

    def __init__(self, cf, batch_shape, *, pin_fs=100e3, species=2, bandwidth_scale_factor=1.0, cohc=1.0,
                 cihc=1.0, ihc_lowpass_cutoff=3000.0, ihc_lowpass_order=7, device=None, compile=None):
        if not 0 <= float(cihc) <= 1:
            raise CochleaParameterError(f"cihc must lie in [0, 1], got {cihc!r}")
        if int(ihc_lowpass_order) != ihc_lowpass_order or not 1 <= ihc_lowpass_order <= MAX_IHC_ORDER:
            raise CochleaParameterError(f"ihc_lowpass_order must be a whole number in 1..{MAX_IHC_ORDER} (the C model "
                                        f"holds {MAX_IHC_ORDER} stages), got {ihc_lowpass_order!r}")
        if not 0 < float(ihc_lowpass_cutoff) < pin_fs / 2:
            raise CochleaParameterError(f"ihc_lowpass_cutoff={ihc_lowpass_cutoff!r} Hz must lie in (0, pin_fs / 2)")
        self.params = cochlea_params(cf, pin_fs, species, bandwidth_scale_factor, cohc).to(device)
        self.batch_shape = tuple(batch_shape)
        self.n_ears = math.prod(self.batch_shape)
        self.tdres, self.cihc = 1.0 / pin_fs, float(cihc)
        self.delays = torch.tensor(delay_samples(self.params.cf, pin_fs), device=device)
        self.history = torch.zeros(self.n_ears, len(self.delays), int(self.delays.max()),
                                   dtype=torch.float64, device=device)
        self.compiled = None
        if use_compiled(self.delays):
            from .compiled_ihc import CompiledPeriphery  # noqa: PLC0415  (numba: imported when first needed)

            self.compiled = CompiledPeriphery(
                self.params.cf.cpu().numpy(), self.tdres, self.params.cohc.cpu().numpy(), bandwidth_scale_factor,
                self.n_ears, self.params.max_group_delay + 2, cihc, ihc_lowpass_cutoff, ihc_lowpass_order)
        else:
            self._init_tensor_ops(pin_fs, float(ihc_lowpass_cutoff), int(ihc_lowpass_order), compile)

    def _init_tensor_ops(self, pin_fs, ihc_lowpass_cutoff, ihc_lowpass_order, compile):
        """Filter coefficients and states of the tensor-op path."""
        self.sos = {"me": middle_ear_sos(pin_fs), "c2": c2_sos(self.params),
                    "ihc": ihc_lowpass_sos(ihc_lowpass_cutoff, pin_fs, ihc_lowpass_order)}
        n_cf = self.params.cf.shape[0]
        self.zi = {"me": zero_state(self.sos["me"], (self.n_ears,)),
                   "c2": np.stack([zero_state(sos, (self.n_ears,)) for sos in self.sos["c2"]]),
                   "ihc": zero_state(self.sos["ihc"], (self.n_ears, n_cf))}
        self.consts, self.scalars = loop_constants(self.params, self.tdres)
        self.state, self.gain_buf = _initial_state(self.params, self.scalars, self.n_ears)
        self.gain_offset = 0  # gain_buf is a ring: slot (gain_offset + j) % size is sample (now + j)
        self._tail = compile_cache.scripted(advance)  # any block length
        self._advance = compile_cache.compiled(advance) if compile_cache.use_compile(compile) else compile_cache.scripted(advance)

    def __call__(self, pin: torch.Tensor) -> torch.Tensor:
        """Next chunk (..., L) of the sound (Pa) -> the IHC potential (..., n_cf, L), delay applied."""
        if tuple(pin.shape[:-1]) != self.batch_shape:
            raise CochleaParameterError(f"chunk shape {tuple(pin.shape)} does not match the stream's batch {self.batch_shape}")
        if not torch.isfinite(pin).all():
            raise CochleaParameterError("the sound contains NaN or Inf samples; pass a finite waveform in pascals")
        flat = pin.reshape(self.n_ears, -1).to(torch.float64)
        if self.compiled is not None:
            raw = torch.from_numpy(self.compiled(flat.detach().contiguous().numpy()))
        else:
            raw = self._tensor_ops(flat)
        return self._delay(raw).reshape(*self.batch_shape, len(self.delays), flat.shape[-1])

    def _tensor_ops(self, flat: Tensor) -> Tensor:
        """(ears, L) -> IHC lowpass output (ears, n_cf, L) before the delay, as tensor ops."""
        threads = torch.get_num_threads()
        # Each op of the per-sample loop works on only ears x n_cf elements: intra-op threads cost
        # more in synchronisation than they save (measured 10x slower on a loaded 2-core machine),
        # and so do they for the whole-chunk stages (cat, transduction) there; run on one thread.
        if self.n_ears * len(self.delays) < _PARALLEL_MIN_ELEMENTS and flat.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            meout, self.zi["me"] = sosfilt(self.sos["me"], flat, self.zi["me"])
            c1_out = self._control_path_and_c1(meout)
            c2_out, self.zi["c2"] = sosfilt_per_channel(self.sos["c2"], meout, self.zi["c2"])
            vihc = self._transduce(c1_out, c2_out)
            raw, self.zi["ihc"] = sosfilt(self.sos["ihc"], vihc, self.zi["ihc"])
            return raw
        finally:
            torch.set_num_threads(threads)

    def _transduce(self, c1_out: Tensor, c2_out: Tensor) -> Tensor:
        """The memoryless IHC transduction in blocks of rows that stay in cache (measured 1.7x
        faster than whole-chunk passes through memory; a block's op overhead is negligible)."""
        length = c1_out.shape[-1]
        rows1, rows2 = c1_out.reshape(-1, length), c2_out.reshape(-1, length)
        cf_rows = self.params.cf.repeat(self.n_ears)[:, None]
        out = torch.empty_like(rows1)
        step = max(1, _CACHE_BLOCK_ELEMENTS // max(1, length))
        for r in range(0, rows1.shape[0], step):
            out[r:r + step] = ihc_transduction(rows1[r:r + step], rows2[r:r + step], cf_rows[r:r + step], self.cihc)
        return out.reshape(c1_out.shape)

    def _control_path_and_c1(self, meout: torch.Tensor) -> torch.Tensor:
        length = meout.shape[-1]
        pieces = []
        for start in range(0, length, BLOCK):
            step = min(BLOCK, length - start)
            fn = self._advance if step == BLOCK else self._tail
            self.state, self.gain_buf, y = fn(self.consts, self.scalars, self.state, self.gain_buf,
                                              meout[:, start:start + step], self.gain_offset)
            self.gain_offset = (self.gain_offset + step) % self.gain_buf.shape[0]
            pieces.append(y)
        return torch.cat(pieces, dim=-1)

    def _delay(self, raw: torch.Tensor) -> torch.Tensor:
        width = self.history.shape[-1]
        joined = torch.cat([self.history, raw], dim=-1)
        length = raw.shape[-1]
        idx = width - self.delays[:, None] + torch.arange(length, device=raw.device)[None, :]
        out = torch.gather(joined, -1, idx.expand(self.n_ears, -1, -1))
        self.history = joined[..., joined.shape[-1] - width:]
        return out

    def run(self, pin: torch.Tensor) -> torch.Tensor:
        """The whole sound (..., time) in chunks of CHUNK samples."""
        pieces = [self(pin[..., i:i + CHUNK]) for i in range(0, pin.shape[-1], CHUNK)]
        return torch.cat(pieces, dim=-1)


def _initial_state(p: CochleaParams, kf: dict, n_ears: int):
    state = initial_state(p, kf, n_ears)
    gain_buf = torch.zeros(p.max_group_delay + BLOCK + 1, *state["wb_gain"].shape, dtype=torch.float64, device=p.cf.device)
    gain_buf[0] = p.wb_gain0
    return state, gain_buf
