"""IHC lowpass: the published (aliased) recursion, and strided causal application vs numpy."""
import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.periphery import HairCellLowpass, ihc_lowpass_impulse_response

# (sr_in, cutoff) pairs of the published waveform models; sr_out is always 10 kHz.
PUBLISHED = [(50000, 50), (50000, 320), (50000, 1000), (50000, 3000), (20000, 50), (20000, 3000)]
ORDER = 7
FIR_DUR = 0.05


def _aliased_reference(sr, cutoff, order, numtaps):
    """The published recursion written as one state vector.

    At n = 0 the previous state is zero, so stage i+1 is c2 * stage i; from n = 1 on the
    "previous" array is the current one, so stage i+1 <- c1 * itself + 2 * c2 * (stage i,
    already updated this sample).
    """
    c1 = (sr - 2 * np.pi * cutoff) / (sr + 2 * np.pi * cutoff)
    c2 = (np.pi * cutoff) / (sr + 2 * np.pi * cutoff)
    s = c2 ** np.arange(order + 1)
    h = np.empty(numtaps)
    h[0] = s[order]
    for n in range(1, numtaps):
        s[0] = 0.0
        for i in range(order):
            s[i + 1] = c1 * s[i + 1] + 2 * c2 * s[i]
        h[n] = s[order]
    return h


def _textbook_reference(sr, cutoff, order, numtaps):
    """Cascade of `order` bilinear one-pole lowpass sections (each with its own past input)."""
    c1 = (sr - 2 * np.pi * cutoff) / (sr + 2 * np.pi * cutoff)
    c2 = (np.pi * cutoff) / (sr + 2 * np.pi * cutoff)
    h = np.zeros(numtaps)
    h[0] = 1.0
    for _ in range(order):
        h = scipy.signal.lfilter([c2, c2], [1.0, -c1], h)
    return h


def _finish(h):
    h = h * scipy.signal.windows.hann(h.size)
    return h / h.sum()


@pytest.mark.parametrize("sr_in,cutoff", PUBLISHED)
def test_impulse_response_is_the_aliased_recursion(sr_in, cutoff):
    filt, down = ihc_lowpass_impulse_response(sr_in, 10000, cutoff, ORDER, FIR_DUR)
    numtaps = int(2 * (FIR_DUR * sr_in // 2)) + 1
    assert filt.shape == (numtaps,) and filt.dtype == np.float64
    assert numtaps == {50000: 2501, 20000: 1001}[sr_in]
    assert down == sr_in // 10000
    # Same float64 operations up to reassociation (2*c2*s vs c2*(s+s)): 1e-12 relative.
    expected = _finish(_aliased_reference(sr_in, cutoff, ORDER, numtaps))
    np.testing.assert_allclose(filt, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    assert filt.sum() == pytest.approx(1.0, abs=1e-12)

    # The textbook cascade is a genuinely different filter: >= 0.5% of the peak apart at
    # 50 Hz (the closest case), ~50% at 3 kHz, i.e. 1e9x the tolerance above.
    textbook = _finish(_textbook_reference(sr_in, cutoff, ORDER, numtaps))
    assert np.abs(filt - textbook).max() > 5e-3 * np.abs(textbook).max()


def test_rejects_upsampling_and_high_cutoff():
    with pytest.raises(ValueError, match="upsampling"):
        ihc_lowpass_impulse_response(20000, 15000, 1000, ORDER, FIR_DUR)
    with pytest.raises(ValueError, match="Nyquist"):
        ihc_lowpass_impulse_response(50000, 10000, 5001, ORDER, FIR_DUR)


@pytest.mark.parametrize("n_time", [5000, 5003])
def test_strided_application_matches_numpy(n_time):
    sr_in, cutoff = 50000, 3000
    lowpass = HairCellLowpass(sr_in, 10000, cutoff, ORDER, FIR_DUR)
    assert lowpass.down == 5
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((2, 3, n_time)))
    y = lowpass(torch.tensor(x, dtype=torch.float32)).numpy()
    assert y.shape == (2, 3, -(-n_time // 5))

    filt, down = ihc_lowpass_impulse_response(sr_in, 10000, cutoff, ORDER, FIR_DUR)
    ref = np.stack([[np.convolve(row, filt)[:n_time][::down] for row in ex] for ex in x])
    # float32 kernel and input, 2501-term sums of a unit-sum filter: 1e-5 of the output peak.
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_output_length_and_buffer():
    lowpass = HairCellLowpass(20000, 10000, 320, ORDER, FIR_DUR)
    for n in (1, 2, 3, 999, 40000):
        assert lowpass(torch.zeros(1, 2, n)).shape == (1, 2, -(-n // 2)) == (1, 2, lowpass.output_length(n))
    assert "filt" not in lowpass.state_dict()
