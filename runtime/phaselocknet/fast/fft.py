"""FFT sizes and precision shared by the fast kernels."""

from __future__ import annotations

import torch

# The front end's long linear filters (gammatone, IHC lowpass) are applied by FFT in float64.
# A float32 FFT's rounding error is spread evenly over the whole signal, so in the quiet dips
# of a subband it is large relative to the signal, and the steep rate-level sigmoid (20 dB
# dynamic range) magnifies it: measured 1.1e-5 (localization) and 1.7e-5 (word) relative
# difference in the rates against 4e-6 / 8e-6 for the float32 direct reference's own error
# (both against float64). In float64 the fast path is within 2e-6 / 4e-6 of exact.
FRONT_END_FFT_DTYPE = torch.float64


def good_fft_size(n: int, multiple_of: int = 1) -> int:
    """A fast FFT length >= n that is a multiple of `multiple_of`: multiple_of * 2^a 3^b 5^c,
    minimising length * (1 + 0.06 (b + c)). The penalty is measured (MKL, float64, one
    core): 62500 = 2^2 5^6 costs 11.1 ns/sample, 64000 = 2^9 5^3 8.9, 65536 7.4."""
    n, unit = max(int(n), 1), int(multiple_of)
    target = -(-n // unit)
    best, best_cost = None, None
    p5, c = 1, 0
    while p5 < 2 * target:
        p35, b = p5, 0
        while p35 < 2 * target:
            p = p35
            while p < target:
                p *= 2
            cost = p * (1 + 0.06 * (b + c))
            if best_cost is None or cost < best_cost:
                best, best_cost = p, cost
            p35, b = p35 * 3, b + 1
        p5, c = p5 * 5, c + 1
    return unit * best
