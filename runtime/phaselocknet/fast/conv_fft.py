"""Stride-1 convolutions with long time kernels by FFT along time (overlap-save).

The CNNs' convolutions are VALID along time and zero-padded along frequency. Along time,
out[t] = sum_j w[j] x[t + j] is a circular correlation that is exact for every t < To when
the transform length nb >= the input block; long inputs are cut into overlapping blocks of
nb samples that each give step = nb - kw + 1 outputs. Per frequency bin the channel (and
frequency-tap) contraction is a complex matrix product, so a 1x64 kernel costs
~4 complex multiply-adds per input channel per bin instead of 64 real ones.

Which layers go this way is decided by `fft_plan`, a cost model fitted to measurements on
the project's 2-core CPU (benchmarks/bench_models.py --layers times both algorithms on every
convolution of the benchmarked models): the FFT is used only where it predicts >= 1.3x.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .fft import good_fft_size

# Cost model, in units of one direct-convolution multiply-add (~65 GFLOP/s per core with
# oneDNN). Fitted to conv_1 (1x64, 32->32: FFT 3.1x faster) and conv_5 (3x32, 128->128: 5x),
# checked on the other 13 convolutions of the two benchmarked models (within ~40%: the
# per-layer table of benchmarks/bench_models.py --layers).
TRANSFORM_COST = 23.0  # per real sample per log2(nb), forward or inverse
CONTRACTION_COST = 2.0  # per real multiply-add of the complex per-bin products
# Reading the weight spectra once per call (batch 1): per byte. Deep layers with few output
# samples are bound by it (block6 of the word model: 528 MB of spectra, 3.6x slower than direct).
SPECTRA_BYTE_COST = 3.0
MAX_SPECTRA_BYTES = 32 * 2**20  # cached per layer: memory, and cache-resident GEMMs
MIN_SPEEDUP = 1.3
# Spectra of one row chunk stay around this size (cache-resident, below glibc's mmap threshold).
CHUNK_BYTES = 4 * 2**20


def _transform_lengths(kw: int, t_out: int) -> list[int]:
    longest = good_fft_size(t_out + kw - 1)
    sizes = {min(good_fft_size(m * kw), longest) for m in (2, 4, 8, 16)}
    return sorted(size for size in sizes if size >= kw)


def fft_plan(
    in_per_group: int, out_per_group: int, kh: int, kw: int, t_out: int, h_out: int = 1, groups: int = 1
) -> tuple[float, int]:
    """(predicted speedup over direct convolution at batch 1, best transform length); costs
    per output sample and output channel."""
    k = in_per_group * kh
    direct = k * kw * out_per_group
    best = None
    for nb in _transform_lengths(kw, t_out):
        step = nb - kw + 1
        waste = math.ceil(t_out / step) * nb / t_out  # transformed samples per output sample
        bins = nb // 2 + 1
        spectra_bytes = 8 * bins * k * out_per_group * groups
        if spectra_bytes > MAX_SPECTRA_BYTES:
            continue
        transforms = TRANSFORM_COST * math.log2(nb) * (in_per_group + out_per_group) * waste
        contraction = CONTRACTION_COST * 4 * k * out_per_group * waste * bins / nb
        reading = SPECTRA_BYTE_COST * spectra_bytes / (groups * h_out * t_out)
        cost = transforms + contraction + reading
        if best is None or cost < best[0]:
            best = (cost, nb)
    if best is None:
        return 0.0, 0
    return direct / best[0], best[1]


def weight_spectra(weight: torch.Tensor, groups: int, nb: int) -> torch.Tensor:
    """(bins, groups, out/groups, in/groups * kh) complex: conj(rfft) of the time taps, the
    contraction index ordered (input channel, frequency tap) like the im2col of `fft_conv2d`.
    Taken in float64, so they are exact to the working precision."""
    co, ci_g, kh, kw = weight.shape
    spectra = torch.fft.rfft(weight.double(), nb).conj()  # co, ci_g, kh, bins
    spectra = spectra.reshape(groups, co // groups, ci_g * kh, nb // 2 + 1).permute(3, 0, 1, 2)
    complex_dtype = torch.complex128 if weight.dtype == torch.float64 else torch.complex64
    return spectra.to(complex_dtype).contiguous()


def fft_conv2d(
    x: torch.Tensor,
    spectra: torch.Tensor,
    kh: int,
    kw: int,
    pad_top: int,
    pad_bottom: int,
    bias: torch.Tensor | None,
    relu: bool,
) -> torch.Tensor:
    """Conv2d of x (batch, in, freq, time) with the kernel whose `weight_spectra` are given:
    stride 1, VALID along time, `pad_top`/`pad_bottom` zero rows along frequency, then
    + bias ((out,) or (out, freq_out, 1)) and optional relu."""
    batch, c_in, height, t_in = x.shape
    bins, groups, co_g, k_g = spectra.shape
    nb = 2 * (bins - 1)
    c_out = groups * co_g
    h_out = height + pad_top + pad_bottom - kh + 1
    t_out = t_in - kw + 1
    step = nb - kw + 1
    n_blocks = -(-t_out // step)
    t_padded = (n_blocks - 1) * step + nb
    # Blocks write whole steps: `out` has n_blocks * step >= t_out samples, the caller gets a view.
    out = torch.empty(batch, c_out, h_out, n_blocks * step, dtype=x.dtype, device=x.device)
    if bias is not None:
        bias = bias.to(x.dtype).view(c_out, -1, 1, 1)
    row_bytes = batch * c_in * kh * n_blocks * bins * spectra.element_size()
    # Each chunk reads all the weight spectra: chunks are at least as large as they are.
    chunk_bytes = max(CHUNK_BYTES, spectra.numel() * spectra.element_size())
    rows_per_chunk = max(1, min(h_out, chunk_bytes // max(row_bytes, 1)))
    spectra = spectra.view(bins * groups, co_g, k_g)
    for r0 in range(0, h_out, rows_per_chunk):
        r1 = min(h_out, r0 + rows_per_chunk)
        rows = r1 - r0
        # Padded-input rows [r0, r1 + kh - 1) are input rows [r0 - pad_top, ...): zeros outside.
        first, last = r0 - pad_top, r1 + kh - 1 - pad_top
        chunk = x[:, :, max(first, 0) : min(last, height)].contiguous()  # time innermost
        chunk = F.pad(chunk, (0, t_padded - t_in, max(-first, 0), max(last - height, 0)))
        spectrum = torch.fft.rfft(chunk.unfold(-1, nb, step), dim=-1)  # b, ci, rows+kh-1, blocks, bins
        if kh > 1:
            spectrum = spectrum.unfold(2, kh, 1)  # b, ci, rows, blocks, bins, kh
            spectrum = spectrum.permute(4, 1, 5, 0, 2, 3)  # bins, ci, kh, b, rows, blocks
        else:
            spectrum = spectrum.permute(4, 1, 0, 2, 3)  # bins, ci, b, rows, blocks
        # One contiguous copy, then batched GEMMs (matmul on the strided view copies per bin).
        spectrum = spectrum.contiguous().view(bins * groups, k_g, batch * rows * n_blocks)
        product = torch.bmm(spectra, spectrum)  # bins*groups, co_g, b*rows*blocks
        product = product.view(bins, c_out, batch, rows, n_blocks).permute(2, 1, 3, 4, 0)
        y = torch.fft.irfft(product, nb)[..., :step]  # b, co, rows, blocks, step
        chunk_bias = None if bias is None else (bias[:, r0:r1] if bias.shape[1] > 1 else bias)
        _write(out[:, :, r0:r1].view(batch, c_out, rows, n_blocks, step), y, chunk_bias, relu)
    return out[..., :t_out]


def _write(target: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> None:
    """target = relu?(y + bias), written in place (no temporary of the chunk's size). In-place
    writes hide the chunk from autograd: the fast executor never records a graph."""
    if bias is not None:
        torch.add(y, bias, out=target)
    else:
        target.copy_(y)
    if relu:
        target.relu_()
