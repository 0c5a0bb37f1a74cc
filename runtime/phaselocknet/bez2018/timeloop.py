"""The sample-by-sample loop of the BEZ2018 periphery (IHCAN), vectorised over ears x CFs.

Every stage is a recurrence, and the control path feeds back into the C1 filter and into its
own gain, so time is sequential; ears and CFs are independent. ``advance`` runs K samples; it is
pure elementwise arithmetic on (ears, n_cf) tensors except for a static slice of the gain
schedule, so ``torch.compile`` fuses a block of K samples into one kernel. The eager function is
the same code (``PHASELOCKNET_BEZ2018_COMPILE=0`` forces it).

Control-path gain schedule (the C model's ``tmpgain``): at sample n the new wideband gain is
written ``grd`` samples ahead (its group delay) and the gain for sample n + 1 is read at n, a
slot never written keeping the previous gain. ``gain_buf`` is a ring of such slots; writes made
inside a block are resolved in the block (last write winning) and stored after it, so the block
itself stays elementwise.
"""
from __future__ import annotations

import math

import torch

from .cochlea import CochleaParameterError, CochleaParams, c1_step, c2_step, cochlea_params, control_path_step
from .cochlea import lowpass_coefficients
from .hair_cell import delay_samples, ihc_lowpass_step, ihc_transduction
from .middle_ear import middle_ear_initial_state, middle_ear_sos, middle_ear_step, sos_as_floats
from . import compile_cache

BLOCK = 16          # samples per (compiled) block
CHUNK = 1 << 14     # samples per call of the block loop: bounds the output buffers of long sounds
_PARALLEL_MIN_ELEMENTS = 1 << 16


def advance(p: CochleaParams, consts: tuple, state: dict, gain_buf: torch.Tensor, pin: torch.Tensor, offset: int):
    """Run ``pin.shape[-1]`` samples; returns (state, gain_buf (updated in place), ihcouttmp (ears, n_cf, K))."""
    tdres, me_sos, lp_c1, lp_c2, cihc = consts
    size = gain_buf.shape[-1]
    s = dict(state)
    me = s["me"]
    writes, outs = [], []
    for k in range(pin.shape[-1]):
        me, meout = middle_ear_step(me_sos, me, pin[:, k])
        x = meout[:, None]
        rsigma, new_gain, grd = control_path_step(p, tdres, s, x)
        pos = grd + k
        writes.append((pos, new_gain))
        slot = gain_buf[..., (offset + k) % size]
        for pj, gj in writes:
            slot = torch.where(pj == k, gj, slot)
        s["wb_gain"] = torch.where(slot == 0, s["wb_gain"], slot)
        s["c1"], c1_out = c1_step(p, s["c1"], x, rsigma)
        s["c2"], c2_out = c2_step(p, s["c2"], x)
        s["ihc"], vihc = ihc_lowpass_step(s["ihc"], ihc_transduction(c1_out, c2_out, p.cf, cihc), lp_c1, lp_c2)
        outs.append(vihc)
    s["me"] = me
    _apply_gain_writes(gain_buf, writes, offset)
    return s, gain_buf, torch.stack(outs, dim=-1)


def _apply_gain_writes(gain_buf: torch.Tensor, writes: list, offset: int) -> None:
    """Store a block's scheduled gains in time order (last write wins), then free its consumed slots."""
    size = gain_buf.shape[-1]
    for pos, gain in writes:
        gain_buf.scatter_(-1, ((pos.long() + offset) % size).unsqueeze(-1), gain.unsqueeze(-1))
    end = offset + len(writes)
    gain_buf[..., offset:min(end, size)] = 0
    if end > size:
        gain_buf[..., : end - size] = 0


class IHCStream:
    """IHC potential of a stream of sound chunks; carries every filter's state between calls."""

    def __init__(self, cf, batch_shape, *, pin_fs=100e3, species=2, bandwidth_scale_factor=1.0, cohc=1.0,
                 cihc=1.0, ihc_lowpass_cutoff=3000.0, ihc_lowpass_order=7, device=None, compile=None):
        if not 0 <= float(cihc) <= 1:
            raise CochleaParameterError(f"cihc must lie in [0, 1], got {cihc!r}")
        if int(ihc_lowpass_order) != ihc_lowpass_order or ihc_lowpass_order < 1:
            raise CochleaParameterError(f"ihc_lowpass_order must be a positive integer, got {ihc_lowpass_order!r}")
        if not 0 < float(ihc_lowpass_cutoff) < pin_fs / 2:
            raise CochleaParameterError(f"ihc_lowpass_cutoff={ihc_lowpass_cutoff!r} Hz must lie in (0, pin_fs / 2)")
        self.params = cochlea_params(cf, pin_fs, species, bandwidth_scale_factor, cohc).to(device)
        self.batch_shape = tuple(batch_shape)
        self.n_ears = math.prod(self.batch_shape)
        self.consts = (1.0 / pin_fs, sos_as_floats(middle_ear_sos(pin_fs)),
                       *lowpass_coefficients(float(ihc_lowpass_cutoff), 1.0 / pin_fs), float(cihc))
        self.state, self.gain_buf = _initial_state(self.params, self.n_ears, int(ihc_lowpass_order), device)
        self.gain_offset = 0  # gain_buf is a ring: column (gain_offset + j) % size is sample (now + j)
        self.delays = torch.tensor(delay_samples(self.params.cf, pin_fs), device=device)
        self.history = torch.zeros(self.n_ears, len(self.delays), int(self.delays.max()),
                                   dtype=torch.float64, device=device)
        self._advance = compile_cache.compiled(advance) if compile_cache.use_compile(compile) else advance

    def __call__(self, pin: torch.Tensor) -> torch.Tensor:
        """Next chunk (..., L) of the sound (Pa) -> the IHC potential (..., n_cf, L), delay applied."""
        if tuple(pin.shape[:-1]) != self.batch_shape:
            raise CochleaParameterError(f"chunk shape {tuple(pin.shape)} does not match the stream's batch {self.batch_shape}")
        if not torch.isfinite(pin).all():
            raise CochleaParameterError("the sound contains NaN or Inf samples; pass a finite waveform in pascals")
        flat = pin.reshape(self.n_ears, -1).to(torch.float64)
        length = flat.shape[-1]
        pieces = []
        threads = torch.get_num_threads()
        # Each op works on only ears x n_cf elements: intra-op threads cost more in synchronisation
        # than they save (measured 10x slower on a loaded 2-core machine), so run this loop on one.
        if self.n_ears * len(self.delays) < _PARALLEL_MIN_ELEMENTS and flat.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            for start in range(0, length, BLOCK):
                step = min(BLOCK, length - start)
                fn = self._advance if step == BLOCK else advance
                self.state, self.gain_buf, y = fn(self.params, self.consts, self.state, self.gain_buf,
                                                  flat[:, start:start + step], self.gain_offset)
                self.gain_offset = (self.gain_offset + step) % self.gain_buf.shape[-1]
                pieces.append(y)
        finally:
            torch.set_num_threads(threads)
        raw = torch.cat(pieces, dim=-1)
        return self._delay(raw).reshape(*self.batch_shape, len(self.delays), length)

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


def _initial_state(p: CochleaParams, n_ears: int, order: int, device):
    shape = (n_ears, p.cf.shape[0])
    zero = torch.zeros(shape, dtype=torch.float64, device=device)
    state = {
        "me": middle_ear_initial_state((n_ears,), device=device),
        "wb_phase": torch.zeros_like(p.cf),
        "wb": tuple(zero for _ in range(8)),
        "tau_wb": p.tau_wb0.expand(shape).clone(),
        "wb_gain": p.wb_gain0.expand(shape).clone(),
        "ohc": tuple(zero for _ in range(3)),
        "c1": tuple(zero for _ in range(12)),
        "c2": tuple(zero for _ in range(12)),
        "ihc": tuple(zero for _ in range(order + 1)),
    }
    gain_buf = torch.zeros(*shape, p.max_group_delay + BLOCK + 1, dtype=torch.float64, device=device)
    gain_buf[..., 0] = p.wb_gain0
    return state, gain_buf
