"""Long runs and noisy properties: the sparse posterior, background refits, per-measurement errors, no leaked graphs."""

from __future__ import annotations

import numpy
import pytest
import torch

from nion_autoem_dkl import incremental
from nion_autoem_dkl import surrogate
from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.surrogate import CandidateGP


def smooth_problem(n_candidates: int = 400, seed: int = 0) -> tuple[numpy.ndarray, numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n_candidates, 2))
    return x, numpy.sin(1.5 * x[:, 0]) + 0.5 * numpy.cos(x[:, 1])


def test_sparse_posterior_is_used_past_the_limit_and_matches_the_exact_one() -> None:
    x, f = smooth_problem()
    rng = numpy.random.default_rng(1)
    measured = rng.choice(x.shape[0], 150, replace=False)
    gp = CandidateGP(x, exact_limit=100, inducing_points=120)
    gp.add(measured, f[measured] + rng.normal(0.0, 0.05, measured.size))
    gp.refit(full=True, iterations=30)
    assert gp.sparse
    sparse = gp.posterior()
    # The exact posterior with the very same hyperparameters.
    model = gp.model
    assert model is not None
    with torch.no_grad():
        features = model.features(torch.as_tensor(x))
        exact = incremental.build_exact(model, features, gp._snapshot()).posterior()
    scale = float(numpy.std(f))
    assert numpy.max(numpy.abs(sparse.mean - exact.mean)) < 0.05 * scale
    numpy.testing.assert_allclose(numpy.sqrt(sparse.variance), numpy.sqrt(exact.variance), atol=0.05 * scale)
    # Covariances agree with the variances the posterior reports.
    chosen = numpy.array([3, 7, 11])
    numpy.testing.assert_allclose(numpy.diag(sparse.covariance_with(chosen, chosen)), sparse.variance[chosen], rtol=1e-8)
    # Below the limit the same data give the exact GP.
    small = CandidateGP(x, exact_limit=200)
    small.add(measured, f[measured])
    small.refit(full=True, iterations=5)
    assert not small.sparse


def test_sparse_updates_between_refits_track_a_rebuild() -> None:
    x, f = smooth_problem(seed=2)
    rng = numpy.random.default_rng(3)
    order = rng.permutation(x.shape[0])
    gp = CandidateGP(x, exact_limit=60, inducing_points=200)
    gp.add(order[:120], f[order[:120]])
    gp.refit(full=True, iterations=20)
    gp.add(order[120:160], f[order[120:160]])  # folded in one at a time (Kalman updates)
    updated = gp.posterior()
    cache = gp._cache
    assert isinstance(cache, incremental.SparseCache)
    rebuilt = incremental.build_sparse(cache.model, cache.features, gp._snapshot(), 200).posterior()
    scale = float(numpy.std(f))
    assert numpy.max(numpy.abs(updated.mean - rebuilt.mean)) < 0.05 * scale
    numpy.testing.assert_allclose(numpy.sqrt(updated.variance), numpy.sqrt(rebuilt.variance), atol=0.05 * scale)
    mean, variance = gp.leave_one_out()
    assert mean.shape == variance.shape == (160,) and numpy.all(variance > 0)


def test_agent_switches_to_the_sparse_model_and_keeps_learning() -> None:
    x, f = smooth_problem(n_candidates=300, seed=4)
    positions = numpy.random.default_rng(4).uniform(0.0, 100.0, (300, 2))
    config = AgentConfig(acquisition="max_uncertainty", exact_limit=40, inducing_points=32, background_refit=False, n_initial=5)
    agent = DKLAgent(numpy.zeros((300, 4, 4)), positions, config, latent=x)
    for _ in range(90):
        chosen = agent.suggest(1)
        agent.observe(chosen, f[chosen])
    assert agent.uses_sparse_model
    mean, std = agent.predict()
    assert 1 - ((mean - f) ** 2).sum() / ((f - f.mean()) ** 2).sum() > 0.9
    assert numpy.all(numpy.isfinite(std)) and numpy.all(std >= 0)


def test_background_refit_serves_the_old_posterior_then_swaps_in_the_same_result() -> None:
    x, f = smooth_problem(seed=5)
    rng = numpy.random.default_rng(6)
    order = rng.permutation(x.shape[0])
    blocking, background = (CandidateGP(x, exact_limit=80, inducing_points=64) for _ in range(2))
    for gp in (blocking, background):
        gp.add(order[:100], f[order[:100]])
        gp.refit(full=True, iterations=10)
    blocking.refit(iterations=10)
    assert background.refit(iterations=10, wait=False)
    for gp in (blocking, background):
        for index in order[100:130]:
            gp.add([index], [f[index]])
            gp.posterior()  # the previous posterior serves while the new one trains
    background.wait_for_refit()
    assert not background.refitting and background._cache is not None and background._cache.n == 130
    numpy.testing.assert_allclose(background.posterior().mean, blocking.posterior().mean, rtol=1e-6, atol=1e-8)
    numpy.testing.assert_allclose(background.posterior().variance, blocking.posterior().variance, rtol=1e-6, atol=1e-10)
    background.close()


def test_per_measurement_errors_widen_the_intervals_where_they_are_large() -> None:
    x = numpy.linspace(0.0, 1.0, 201)[:, None]
    f = numpy.sin(6.0 * x[:, 0])
    rng = numpy.random.default_rng(7)
    measured = numpy.arange(0, 201, 2)
    errors = numpy.where(x[measured, 0] < 0.5, 0.01, 0.4)
    values = f[measured] + rng.normal(0.0, 1.0, measured.size) * errors
    gp = CandidateGP(x)
    gp.add(measured, values, errors)
    gp.refit(full=True, iterations=60)
    posterior = gp.posterior()
    left, right = x[:, 0] < 0.45, x[:, 0] > 0.55
    assert numpy.median(posterior.std[right]) > 3.0 * numpy.median(posterior.std[left])
    # The learned extra noise stays below the small errors: it does not soak up the large ones.
    assert posterior.noise_variance < 0.1**2
    # Honest where the errors are large: the noise-free truth inside the 95% band.
    inside = numpy.abs(posterior.mean - f) <= 1.96 * posterior.std
    assert inside[right].mean() > 0.85
    # Without the errors one noise level must serve both halves.
    plain = CandidateGP(x)
    plain.add(measured, values)
    plain.refit(full=True, iterations=60)
    assert numpy.median(plain.posterior().std[left]) > 2.0 * numpy.median(posterior.std[left])
    with pytest.raises(ValueError, match="errors must be finite standard errors >= 0"):
        gp.add([1], [0.0], [-1.0])


def test_agent_passes_errors_through_and_records_them_in_the_prospective_coverage() -> None:
    x, f = smooth_problem(n_candidates=150, seed=8)
    rng = numpy.random.default_rng(8)
    positions = rng.uniform(0.0, 100.0, (150, 2))
    agent = DKLAgent(numpy.zeros((150, 4, 4)), positions, AgentConfig(n_initial=5), latent=x)
    for _ in range(40):
        chosen = agent.suggest(1)
        error = numpy.full(chosen.size, 0.2)
        agent.observe(chosen, f[chosen] + rng.normal(0.0, 0.2, chosen.size), error)
    numpy.testing.assert_allclose(agent.measured_errors, 0.2)
    assert 0.8 <= agent.prospective_coverage95 <= 1.0


def test_no_autograd_state_outlives_a_step() -> None:
    x, f = smooth_problem(n_candidates=200, seed=9)
    positions = numpy.random.default_rng(9).uniform(0.0, 100.0, (200, 2))
    agent = DKLAgent(numpy.zeros((200, 4, 4)), positions, AgentConfig(n_initial=5, exact_limit=30, inducing_points=16,
                                                                       background_refit=False), latent=x)
    for step in range(60):
        chosen = agent.suggest(1)
        agent.observe(chosen, f[chosen])
        if step in (20, 59):  # exact, then sparse
            cache = agent._gp._cache
            assert cache is not None
            tensors = [value for value in vars(cache).values() if isinstance(value, torch.Tensor)]
            assert tensors and all(not t.requires_grad and t.grad_fn is None for t in tensors)
            assert all(parameter.grad is None for parameter in cache.model.parameters())
    assert agent.uses_sparse_model
    cache = agent._gp._cache
    assert isinstance(cache, incremental.SparseCache) and cache.phi.shape == (200, 16)


def test_a_failed_background_refit_keeps_the_previous_posterior(monkeypatch: pytest.MonkeyPatch) -> None:
    x, f = smooth_problem(n_candidates=100, seed=10)
    gp = CandidateGP(x)
    gp.add(numpy.arange(20), f[:20])
    gp.refit(full=True, iterations=5)
    before = gp.posterior().mean

    def broken(self: surrogate._FitJob) -> incremental.ExactCache:
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(surrogate._FitJob, "_fit_and_build", broken)
    assert gp.refit(wait=False)
    with pytest.warns(RuntimeWarning, match="background GP refit failed"):
        gp.wait_for_refit()
    numpy.testing.assert_array_equal(gp.posterior().mean, before)
    gp.add([30], [f[30]])  # still updating the old posterior
    assert gp._cache is not None and gp._cache.n == 21
    gp.close()
