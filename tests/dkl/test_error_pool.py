"""Errors computed from each spectrum's own counts, pooled with the neighbours' before the GP weights by them."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.error_pool import ErrorPool


def counting_ratios(seed: int = 0, n: int = 600) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """A constant ratio of 0.5 measured along a wedge (60 to 400 reference counts): positions, ratios, their own errors, the true errors."""
    rng = numpy.random.default_rng(seed)
    positions = numpy.stack([numpy.zeros(n), numpy.arange(n, dtype=float)], axis=1)
    reference_counts = numpy.linspace(60.0, 400.0, n)
    reference = numpy.maximum(rng.poisson(reference_counts), 1).astype(float)
    signal = numpy.maximum(rng.poisson(0.5 * reference_counts), 1).astype(float)
    ratio = signal / reference
    own = ratio * numpy.sqrt(1.0 / signal + 1.0 / reference)
    true = 0.5 * numpy.sqrt(1.0 / (0.5 * reference_counts) + 1.0 / reference_counts)
    return positions, ratio, own, true


def test_pooled_errors_keep_the_trend_across_the_survey_and_lose_the_bias_of_each_spectrum() -> None:
    positions, ratio, own, true = counting_ratios()
    order = numpy.random.default_rng(1).permutation(ratio.size)  # measured in the order an agent might choose
    pooled = numpy.empty_like(own)
    pooled[order] = ErrorPool(positions, neighbours=9).pool(order, own[order])
    # One spectrum's own error is smallest where its counts fell low: weighting by it pulls the estimate down.
    assert numpy.corrcoef(ratio, own / true)[0, 1] > 0.9
    assert numpy.corrcoef(ratio, pooled / true)[0, 1] < 0.45
    weighted = {name: float(numpy.sum(ratio / e**2) / numpy.sum(1.0 / e**2)) for name, e in (("own", own), ("pooled", pooled), ("true", true))}
    assert weighted["own"] < weighted["true"] - 0.005
    assert abs(weighted["pooled"] - weighted["true"]) < 0.3 * abs(weighted["own"] - weighted["true"])
    # The wedge's error trend survives (about 2.6-fold from end to end): the pooled errors follow the true ones.
    assert numpy.median(numpy.abs(pooled / true - 1.0)) < 0.1
    assert numpy.median(pooled[:100]) > 1.6 * numpy.median(pooled[-100:])


def test_a_pool_of_one_keeps_each_error_and_an_error_of_zero_means_none() -> None:
    positions = numpy.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [5.0, 5.0]])
    numpy.testing.assert_allclose(ErrorPool(positions, neighbours=1).pool([0, 1, 2], [0.1, 0.3, 0.2]), [0.1, 0.3, 0.2])
    pool = ErrorPool(positions, neighbours=3)
    numpy.testing.assert_allclose(pool.pool([0, 3], [0.2, 0.0]), [0.2, 0.0])
    # the zero was not pooled: the next error's pool holds only itself and the first
    numpy.testing.assert_allclose(pool.pool([1], [0.4]), [numpy.sqrt(numpy.median([0.04, 0.16]))])
    with pytest.raises(ValueError, match="neighbours"):
        ErrorPool(positions, neighbours=0)


def test_the_agent_keeps_the_errors_as_given_and_weights_by_the_pooled_ones() -> None:
    positions, ratio, own, _ = counting_ratios(seed=2, n=120)
    latent = numpy.stack([positions[:, 1] / 120.0, numpy.zeros(120)], axis=1)
    agent = DKLAgent(numpy.zeros((120, 4, 4)), positions, AgentConfig(n_initial=5, error_neighbours=5), latent=latent)
    for _ in range(20):
        chosen = agent.suggest(1)
        agent.observe(chosen, ratio[chosen], own[chosen])
    measured = agent.measured_indices
    numpy.testing.assert_allclose(agent.measured_errors, own[measured])
    assert not numpy.allclose(agent.pooled_errors, own[measured])
    expected = ErrorPool(positions, neighbours=5).pool(measured, own[measured])
    numpy.testing.assert_allclose(agent.pooled_errors, expected)
    with pytest.raises(ValueError, match="error_neighbours"):
        AgentConfig(error_neighbours=0)
