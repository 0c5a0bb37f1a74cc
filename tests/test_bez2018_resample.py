"""phaselocknet.bez2018.resample_poly against scipy.signal.resample_poly (the wrapper's resampler)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.bez2018.resample import ResampleError, resample_poly

# The wrapper's uses (44.1 / 48 / 20 kHz -> 100 kHz, 100 kHz -> 10 kHz) plus odd sizes and factors.
CASES = [(100000, 44100, 13230), (100000, 48000, 9601), (100000, 20000, 2000), (10000, 100000, 30000),
         (10000, 100000, 30007), (3, 7, 50), (7, 3, 5), (1, 10, 3), (100000, 44100, 1)]


@pytest.mark.parametrize("up,down,n", CASES)
def test_equals_scipy(up, down, n):
    x = np.random.default_rng(n).standard_normal((2, 3, n))
    ref = scipy.signal.resample_poly(x, up, down, axis=-1)
    out = resample_poly(torch.from_numpy(x), up, down)
    assert out.dtype == torch.float64 and out.shape == ref.shape
    # Same filter, same sums in another order: float64 rounding only (~1e-16), 1e-12 leaves margin.
    assert np.abs(out.numpy() - ref).max() <= 1e-12 * np.abs(ref).max()


def test_identity_and_common_factor():
    x = torch.randn(5, dtype=torch.float64)
    assert torch.equal(resample_poly(x, 3, 3), x)
    ref = scipy.signal.resample_poly(x.numpy(), 20, 8)  # reduced to 5 / 2 by both
    np.testing.assert_allclose(resample_poly(x, 20, 8).numpy(), ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("args,match", [((torch.zeros(0), 2, 1), "non-empty"), ((torch.zeros(4), 0, 1), "positive"),
                                        ((torch.zeros(4), 1.5, 1), "integers"), ((np.zeros(4), 2, 1), "torch.Tensor")])
def test_bad_input(args, match):
    with pytest.raises(ResampleError, match=match):
        resample_poly(*args)
