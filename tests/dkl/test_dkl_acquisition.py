from __future__ import annotations

import math

import numpy
import pytest
import scipy.stats

from nion_autoem_dkl import acquisition as acq
from nion_autoem_dkl.batch import condition_on
from nion_autoem_dkl.batch import select_batch
from nion_autoem_dkl.constraints import exclusion_mask
from nion_autoem_dkl.posterior import Posterior
from nion_autoem_dkl.stopping import StoppingRule
from nion_autoem_dkl.surrogate import CandidateGP


def naive_ei(mean: numpy.ndarray, std: numpy.ndarray, best: float) -> numpy.ndarray:
    z = (mean - best) / std
    return numpy.asarray(std * (scipy.stats.norm.pdf(z) + z * scipy.stats.norm.cdf(z)))


def test_log_ei_matches_textbook_formula_and_stays_finite() -> None:
    mean = numpy.linspace(-3.0, 3.0, 13)
    std = numpy.full(13, 0.7)
    numpy.testing.assert_allclose(acq.log_expected_improvement(mean, std, 0.5), numpy.log(naive_ei(mean, std, 0.5)), rtol=1e-9)
    far = acq.log_expected_improvement(numpy.array([-40.0, -1e3, -1e7]), numpy.ones(3), 0.0)
    assert numpy.all(numpy.isfinite(far))
    assert far[0] > far[1] > far[2]
    # Asymptotic expansion at z = -40: log phi(z) - 2 log|z| + log(1 - 3/z^2), next term ~1e-5.
    assert far[0] == pytest.approx(-0.5 * 1600 - 0.5 * math.log(2 * math.pi) - 2 * math.log(40.0) + math.log1p(-3 / 1600), abs=1e-4)


def test_log_ei_is_monotone_in_mean_and_prefers_uncertainty() -> None:
    mean = numpy.linspace(-5.0, 5.0, 101)
    scores = acq.log_expected_improvement(mean, numpy.ones_like(mean), 1.0)
    assert numpy.all(numpy.diff(scores) > 0)
    std = numpy.linspace(0.01, 5.0, 50)
    scores = acq.log_expected_improvement(numpy.zeros_like(std), std, 1.0)
    assert numpy.all(numpy.diff(scores) > 0)


def test_ucb_and_beta_schedule() -> None:
    numpy.testing.assert_allclose(acq.upper_confidence_bound(numpy.array([1.0]), numpy.array([2.0]), 9.0), [7.0])
    betas = [acq.gp_ucb_beta(t, 1000) for t in (1, 10, 100)]
    assert betas[0] < betas[1] < betas[2]
    with pytest.raises(ValueError, match="delta"):
        acq.gp_ucb_beta(1, 10, delta=1.5)


def test_noisy_incumbent_uses_posterior_mean_of_measured() -> None:
    p = Posterior.independent(numpy.array([5.0, 1.0, 2.0]), numpy.ones(3))
    assert acq.noisy_incumbent(p, numpy.array([1, 2])) == 2.0


def test_thompson_sample_is_joint_and_restricted_to_subset() -> None:
    rng = numpy.random.default_rng(0)
    mean = numpy.arange(20.0)
    p = Posterior.independent(mean, numpy.full(20, 1e-10))
    scores = acq.ThompsonSampling(rng, subset_size=5)(p)
    assert numpy.isfinite(scores).sum() == 5
    numpy.testing.assert_allclose(scores[15:], mean[15:], atol=1e-3)
    # Perfectly correlated candidates move together in a joint sample.
    covariance = numpy.ones((4, 4))

    def covariance_with(indices: numpy.ndarray, rows: numpy.ndarray | None = None) -> numpy.ndarray:
        return covariance[numpy.arange(4) if rows is None else rows][:, indices]

    correlated = Posterior(numpy.zeros(4), numpy.ones(4), 0.0, covariance_with)
    sample = acq.ThompsonSampling(rng, subset_size=4)(correlated)
    assert numpy.ptp(sample) < 1e-3


def test_batch_returns_distinct_allowed_indices_respecting_exclusion() -> None:
    positions = numpy.stack([numpy.arange(30.0), numpy.zeros(30)], axis=1)
    p = Posterior.independent(numpy.zeros(30), numpy.linspace(1.0, 2.0, 30))
    allowed = numpy.ones(30, dtype=bool)
    allowed[29] = False  # already measured: never revisited
    chosen = select_batch(p, acq.MaxUncertainty(), 4, allowed, positions=positions, exclusion_radius=3.0)
    assert len(set(chosen.tolist())) == 4
    assert 29 not in chosen
    assert chosen.tolist() == [28, 25, 22, 19]
    distances = numpy.abs(positions[chosen, 0][:, None] - positions[chosen, 0][None, :])
    assert distances[~numpy.eye(4, dtype=bool)].min() >= 3.0


def test_pending_points_are_excluded_and_conditioned_on() -> None:
    x = numpy.linspace(0.0, 1.0, 40)[:, None]
    gp = CandidateGP(x)
    gp.add([0, 39], [0.0, 0.0])
    gp.refit(full=True, iterations=5)
    posterior = gp.posterior()
    top = int(numpy.argmax(posterior.variance))
    chosen = select_batch(posterior, acq.MaxUncertainty(), 1, numpy.ones(40, dtype=bool), pending=[top])
    assert chosen[0] != top
    # A believed measurement at `top` reduces variance exactly as a real one would.
    conditioned = condition_on(posterior, [top])
    gp.add([top], [123.0])
    numpy.testing.assert_allclose(conditioned.variance, gp.posterior().variance, rtol=1e-6, atol=1e-10)


def test_dose_budget_limits_and_stops_the_batch() -> None:
    p = Posterior.independent(numpy.zeros(5), numpy.arange(1.0, 6.0))
    cost = numpy.array([1.0, 1.0, 1.0, 1.0, 3.0])
    chosen = select_batch(p, acq.MaxUncertainty(), 5, numpy.ones(5, dtype=bool), dose_cost=cost, dose_remaining=4.5)
    assert chosen.tolist() == [4, 3]  # 3 + 1 = 4 <= 4.5, nothing else fits
    empty = select_batch(p, acq.MaxUncertainty(), 2, numpy.ones(5, dtype=bool), dose_cost=cost, dose_remaining=0.5)
    assert empty.size == 0


def test_exclusion_mask_and_stopping_rule() -> None:
    grid = numpy.stack(numpy.meshgrid(numpy.arange(10.0), numpy.arange(10.0), indexing="ij"), -1).reshape(-1, 2)
    allowed = exclusion_mask(grid, numpy.array([[5.0, 5.0]]), 2.0)
    assert (~allowed).sum() == 9  # the 3x3 block; points at exactly 2 px are allowed (strict <)
    rule = StoppingRule(threshold=0.0, patience=2)
    assert not rule.update(-1.0)
    assert not rule.update(1.0)
    assert not rule.update(-1.0)
    assert rule.update(-1.0)
    assert StoppingRule().update(5.0, budget_exhausted=True)
