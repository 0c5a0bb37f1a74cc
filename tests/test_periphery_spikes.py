"""Binomial spike generator: exact expected counts, sampling statistics, per-example seeding."""
import numpy as np
import pytest
import scipy.stats
import torch

from phaselocknet.periphery import BinomialSpikeGenerator

N_PER_CHANNEL = [384, 160, 96]
SR = 10000.0
N_DRAWS = 200_000
RATES = (250.0, 20.0)  # spikes/s: a driven and a near-spontaneous fibre group


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_mean_is_n_times_rate_over_sr():
    rng = np.random.default_rng(0)
    rates = (rng.random((2, 6, 5, 7)) * 300).astype(np.float32)
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR)
    got = gen(torch.from_numpy(rates), spikes="mean").numpy()
    n = np.array(N_PER_CHANNEL * 2, dtype=np.float32)[None, :, None, None]
    # Same IEEE float32 products in the same order: bitwise equal.
    np.testing.assert_array_equal(got, n * (rates * np.float32(1 / SR)))


def test_mean_is_differentiable():
    rates = torch.full((1, 3, 2, 4), 100.0, requires_grad=True)
    BinomialSpikeGenerator(N_PER_CHANNEL, SR)(rates, spikes="mean").sum().backward()
    expected = torch.tensor(N_PER_CHANNEL, dtype=torch.float32).view(1, 3, 1, 1) / SR
    assert torch.allclose(rates.grad, expected.expand_as(rates), rtol=1e-6, atol=0)


def _approx_pmf(n, p, k):
    """P(round(relu(N(np, np(1-p)))) = k), from the normal CDF (rounding ties have measure 0)."""
    mu, sigma = n * p, np.sqrt(n * p * (1 - p))
    upper = scipy.stats.norm.cdf((k + 0.5 - mu) / sigma)
    lower = np.where(k == 0, 0.0, scipy.stats.norm.cdf((k - 0.5 - mu) / sigma))
    return upper - lower


@pytest.mark.parametrize("method", ["approx", "exact"])
def test_sample_statistics(method):
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR, method=method)
    rates = torch.tensor(RATES, dtype=torch.float32).view(1, 1, 2, 1).expand(1, 3, 2, N_DRAWS)
    counts = gen(rates, spikes="sample", generators=_generators([1234])).numpy()[0]
    assert counts.shape == (3, 2, N_DRAWS)
    assert np.all(counts == np.round(counts)) and counts.min() >= 0

    for c, n in enumerate(N_PER_CHANNEL):
        for f, rate in enumerate(RATES):
            p = np.float32(rate) * np.float32(1 / SR)
            k = np.arange(n + 1)
            pmf = scipy.stats.binom.pmf(k, n, p) if method == "exact" else _approx_pmf(n, p, k)
            assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
            mean = (k * pmf).sum()
            var = ((k - mean) ** 2 * pmf).sum()
            m4 = ((k - mean) ** 4 * pmf).sum()
            x = counts[c, f]
            # 5 standard errors: a correct sampler fails with probability ~1e-6 per check.
            assert abs(x.mean() - mean) < 5 * np.sqrt(var / N_DRAWS)
            assert abs(x.var() - var) < 5 * np.sqrt((m4 - var**2) / N_DRAWS)
            freq = np.bincount(x.astype(np.int64), minlength=n + 1)[: n + 1] / N_DRAWS
            assert np.all(np.abs(freq - pmf) < 5 * np.sqrt(pmf * (1 - pmf) / N_DRAWS) + 1e-4)


@pytest.mark.parametrize("method", ["approx", "exact"])
def test_probability_is_clamped(method):
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR, method=method)
    rates = torch.tensor([2 * SR, -5.0]).view(1, 1, 2, 1).expand(1, 3, 2, 10)
    counts = gen(rates, spikes="sample")
    n = torch.tensor(N_PER_CHANNEL, dtype=torch.float32).view(3, 1)
    assert torch.equal(counts[0, :, 0], n.expand(3, 10))  # p = 1: every fibre fires
    assert torch.equal(counts[0, :, 1], torch.zeros(3, 10))  # p = 0: none does


@pytest.mark.parametrize("method", ["approx", "exact"])
def test_per_example_generators_are_independent_of_batch(method):
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR, method=method)
    rates = torch.rand(3, 6, 4, 50) * 300
    batch = gen(rates, spikes="sample", generators=_generators([11, 12, 13]))
    assert batch.shape == rates.shape
    alone = gen(rates[1:2], spikes="sample", generators=_generators([12]))
    assert torch.equal(batch[1:2], alone)
    swapped = gen(rates[[2, 0]], spikes="sample", generators=_generators([13, 11]))
    assert torch.equal(swapped, batch[[2, 0]])
    again = gen(rates, spikes="sample", generators=_generators([11, 12, 13]))
    assert torch.equal(again, batch)
    other = gen(rates, spikes="sample", generators=_generators([21, 22, 23]))
    assert not torch.equal(other, batch)


def test_default_generator_follows_torch_seed():
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR)
    rates = torch.full((2, 3, 4, 50), 200.0)
    torch.manual_seed(5)
    first = gen(rates, spikes="sample")
    torch.manual_seed(5)
    assert torch.equal(gen(rates, spikes="sample"), first)


def test_binaural_channels_tile_counts():
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR)
    mean = gen(torch.full((1, 6, 1, 1), SR), spikes="mean")
    assert mean.flatten().tolist() == N_PER_CHANNEL * 2


def test_argument_errors():
    gen = BinomialSpikeGenerator(N_PER_CHANNEL, SR)
    with pytest.raises(ValueError, match="multiple"):
        gen(torch.zeros(1, 4, 2, 2), spikes="mean")
    with pytest.raises(ValueError, match="one per example"):
        gen(torch.zeros(2, 3, 2, 2), spikes="sample", generators=_generators([1]))
    with pytest.raises(ValueError, match="spikes"):
        gen(torch.zeros(1, 3, 2, 2), spikes="poisson")
    with pytest.raises(ValueError, match="method"):
        BinomialSpikeGenerator(N_PER_CHANNEL, SR, method="legacy")
