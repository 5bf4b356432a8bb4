from __future__ import annotations

import math
import typing

import gpytorch
import numpy
import pytest
import torch

from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.embedding import PatchEmbedding
from nion_autoem_dkl.embedding import dihedral_transforms
from nion_autoem_dkl.reference import RandomAgent
from nion_autoem_dkl.reference import ReferenceRecipeAgent
from nion_autoem_dkl.reference import pca_gp_agent
from nion_autoem_dkl.surrogate import CandidateGP
from nion_autoem_dkl.synthetic import make_textured_sample


def blob_patches(n: int, seed: int = 0) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Noisy patches with a centred bright blob; the property is the blob's brightness."""
    rng = numpy.random.default_rng(seed)
    size = 12
    rr, cc = numpy.mgrid[0:size, 0:size]
    blob = numpy.exp(-((rr - 6) ** 2 + (cc - 6) ** 2) / 6.0)
    amplitude = rng.uniform(0.0, 2.0, n)
    patches = amplitude[:, None, None] * blob + rng.normal(0.0, 0.05, (n, size, size))
    positions = rng.uniform(0.0, 500.0, (n, 2))
    return patches, positions, amplitude**2


def r_squared(prediction: numpy.ndarray, truth: numpy.ndarray) -> float:
    return float(1 - ((prediction - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def test_embedding_is_rotation_invariant() -> None:
    patches = numpy.random.default_rng(0).normal(size=(50, 16, 16))
    embedding = PatchEmbedding().fit(patches)
    for transformed in dihedral_transforms(patches)[1:]:
        numpy.testing.assert_allclose(embedding.transform(transformed), embedding.transform(patches), atol=1e-8)
    with pytest.raises(RuntimeError, match="before fit"):
        PatchEmbedding().transform(patches)


def test_gp_is_float64_and_cache_matches_gpytorch() -> None:
    rng = numpy.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = numpy.sin(x[:, 0]) + 0.5 * x[:, 1]
    gp = CandidateGP(x)
    gp.add(numpy.arange(15), y[:15])
    gp.refit(full=True, iterations=20)
    gp.add(numpy.arange(15, 25), y[15:25])  # folded in at fixed hyperparameters
    model = gp.model
    assert model is not None
    assert all(p.dtype == torch.float64 for p in model.parameters())
    posterior = gp.posterior()
    # Same hyperparameters, all 25 points, computed by GPyTorch directly.
    offset, scale = gp._y_offset, gp._y_scale
    model.set_train_data(torch.as_tensor(x[:25]), torch.as_tensor((y[:25] - offset) / scale), strict=False)
    model.eval()
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10000):
        reference = model(torch.as_tensor(x))
    numpy.testing.assert_allclose(posterior.mean, reference.mean.numpy() * scale + offset, rtol=1e-6, atol=1e-8)
    numpy.testing.assert_allclose(posterior.variance, reference.variance.numpy() * scale**2, rtol=1e-5, atol=1e-9)


def test_leave_one_out_matches_refitting_without_the_point() -> None:
    rng = numpy.random.default_rng(2)
    x = rng.normal(size=(30, 2))
    y = x[:, 0] ** 2 + rng.normal(0, 0.1, 30)
    gp = CandidateGP(x)
    gp.add(numpy.arange(30), y)
    gp.refit(full=True, iterations=20)
    loo_mean, loo_variance = gp.leave_one_out()
    model = gp.model
    assert model is not None
    offset, scale = gp._y_offset, gp._y_scale
    keep = numpy.arange(1, 30)
    model.set_train_data(torch.as_tensor(x[keep]), torch.as_tensor((y[keep] - offset) / scale), strict=False)
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10000):
        predictive = model.likelihood(model(torch.as_tensor(x[:1])))
    assert loo_mean[0] == pytest.approx(float(predictive.mean[0]) * scale + offset, rel=1e-6)
    assert loo_variance[0] == pytest.approx(float(predictive.variance[0]) * scale**2, rel=1e-6)


def test_agent_learns_a_simple_property_and_tracks_coverage() -> None:
    patches, positions, truth = blob_patches(300)
    agent = DKLAgent(patches, positions, AgentConfig(acquisition="max_uncertainty", n_initial=8, seed=0))
    rng = numpy.random.default_rng(0)
    assert math.isnan(agent.coverage95)
    for _ in range(40):
        chosen = agent.suggest(1)
        assert chosen.size == 1 and chosen[0] not in agent.measured_indices
        agent.observe(chosen, truth[chosen] + rng.normal(0.0, 0.02, 1))
    mean, std = agent.predict()
    assert r_squared(mean, truth) > 0.9
    assert 0.7 <= agent.coverage95 <= 1.0
    assert len(agent.step_timings) == 40 and all(t >= 0 for t in agent.step_timings)
    assert std.shape == (300,) and numpy.all(std > 0)


def test_agent_finds_the_maximum_with_log_ei() -> None:
    # Four surveys rather than one: with the deep embedding (the default) seed 3
    # ends at the 97.3rd percentile, with the hand-made one seed 0 at the 67th.
    for seed in range(4):
        patches, positions, truth = blob_patches(300, seed=seed)
        agent = DKLAgent(patches, positions, AgentConfig(acquisition="log_ei", n_initial=6, seed=1))
        for _ in range(20):
            chosen = agent.suggest(1)
            agent.observe(chosen, truth[chosen])
        assert truth[agent.measured_indices].max() >= numpy.quantile(truth, 0.97), f"blob survey {seed}"


def test_agent_batches_respect_exclusion_pending_and_dose() -> None:
    patches, _, truth = blob_patches(100, seed=4)
    positions = numpy.stack(numpy.meshgrid(numpy.arange(10.0), numpy.arange(10.0), indexing="ij"), -1).reshape(-1, 2) * 4
    config = AgentConfig(acquisition="ucb", n_initial=5, exclusion_radius=6.0, dose_budget=14.0)
    agent = DKLAgent(patches, positions, config)
    first = agent.suggest(q=5)
    assert len(set(first.tolist())) == 5
    agent.observe(first, truth[first])
    batch = agent.suggest(q=3, pending=[0])
    assert 0 not in batch and len(set(batch.tolist())) == 3
    measured_positions = positions[numpy.concatenate([first, [0], batch])]
    distances = numpy.hypot(*(measured_positions[:, None, :] - measured_positions[None, :, :]).transpose(2, 0, 1))
    assert distances[~numpy.eye(len(measured_positions), dtype=bool)].min() >= 6.0
    agent.observe(batch, truth[batch])
    assert agent.dose_spent == 8.0
    rest = agent.suggest(q=10)
    assert rest.size == 6  # 14 - 8 dose left
    agent.observe(rest, truth[rest])
    assert agent.should_stop
    assert agent.suggest(q=1).size == 0


def test_thompson_agent_and_baselines_run() -> None:
    sample = make_textured_sample(3, (96, 96), n_grains=2)
    from nion_autoem_dkl.candidates import extract_patches

    candidates = extract_patches(sample.image, 16, stride=8)
    truth = sample.property_at(candidates.positions)
    learners: list[typing.Any] = [
        DKLAgent(candidates.patches, candidates.positions, AgentConfig(acquisition="thompson", n_initial=4)),
        pca_gp_agent(candidates.patches, candidates.positions, AgentConfig(n_initial=4), n_components=4),
        RandomAgent(len(candidates), seed=0),
        ReferenceRecipeAgent(candidates.patches, n_initial=4, train_iterations=3),
    ]
    for learner in learners:
        for _ in range(8):
            chosen = learner.suggest(1)
            learner.observe(chosen, truth[chosen])
        assert len(set(learner.measured_indices.tolist())) == 8
        mean, std = learner.predict()
        assert mean.shape == (len(candidates),)


def test_synthetic_sample_is_seeded_and_property_is_local() -> None:
    a = make_textured_sample(5, (128, 128), n_grains=2)
    b = make_textured_sample(5, (128, 128), n_grains=2)
    numpy.testing.assert_array_equal(a.image, b.image)
    if a.motif_sites.shape[0]:
        site = a.motif_sites[:1]
        far = site + 40.0
        assert a.property_at(site)[0] >= a.motif_weights[0] * 0.99
        assert a.property_at(site)[0] > a.property_at(far)[0]


def test_trainable_head_projects_the_embedding() -> None:
    rng = numpy.random.default_rng(6)
    x = rng.normal(size=(80, 6))
    y = x[:, 0] - x[:, 1]
    gp = CandidateGP(x, head_dim=2, seed=0)
    gp.add(numpy.arange(40), y[:40])
    gp.refit(full=True, iterations=60)
    model = gp.model
    assert model is not None and model.head is not None
    head = model.head
    assert isinstance(head, torch.nn.Linear)  # typed as any torch Module; a Linear projection here
    assert head.weight.shape == (2, 6) and head.weight.dtype == torch.float64
    before = head.weight.detach().clone()
    gp.add(numpy.arange(40, 50), y[40:50])
    gp.refit(iterations=5)  # warm start keeps training the same head
    assert not torch.equal(before, head.weight.detach())
    assert r_squared(gp.posterior().mean[50:], y[50:]) > 0.8


def test_observe_rejects_bad_input() -> None:
    patches, positions, _ = blob_patches(20)
    agent = DKLAgent(patches, positions, AgentConfig(n_initial=3))
    with pytest.raises(ValueError, match="one value per"):
        agent.observe([0, 1], [1.0])
    with pytest.raises(ValueError, match=r"\[0, 19\]"):
        agent.observe([25], [1.0])
    with pytest.raises(ValueError, match="finite"):
        agent.observe([0], [float("nan")])
