"""The pretrained-CNN embedding option of the DKL agent (``AgentConfig(embedding="pretrained")``)."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.candidates import extract_patches
from nion_autoem_dkl.embedding import dihedral_transforms
from nion_autoem_dkl.pretrained import MIN_PATCH_PX
from nion_autoem_dkl.pretrained import PretrainedEmbedding
from nion_autoem_dkl.pretrained import resample_patches
from nion_autoem_dkl.synthetic import make_textured_sample


def test_agent_runs_with_the_pretrained_embedding() -> None:
    sample = make_textured_sample(3, (96, 96), n_grains=2)
    candidates = extract_patches(sample.image, 16, stride=8)
    truth = sample.property_at(candidates.positions)
    agent = DKLAgent(candidates.patches, candidates.positions, AgentConfig(embedding="pretrained", latent_dim=6, n_initial=4, seed=0))
    assert agent.latent.shape == (len(candidates), 6)
    for _ in range(12):
        chosen = agent.suggest(1)
        agent.observe(chosen, truth[chosen])
    assert len(set(agent.measured_indices.tolist())) == 12
    mean, std = agent.predict()
    assert mean.shape == std.shape == (len(candidates),)
    assert numpy.all(numpy.isfinite(mean)) and numpy.all(std > 0)


def test_agent_with_pretrained_embedding_and_trainable_head() -> None:
    rng = numpy.random.default_rng(1)
    patches = rng.normal(size=(40, 16, 16))
    agent = DKLAgent(patches, rng.uniform(0, 100, (40, 2)), AgentConfig(embedding="pretrained", head_dim=2, n_initial=3))
    assert agent.latent.shape == (40, 16)  # latent_dim None means the embedding's default
    for _ in range(6):
        chosen = agent.suggest(1)
        agent.observe(chosen, patches[chosen].mean(axis=(1, 2)))
    assert numpy.all(numpy.isfinite(agent.predict()[0]))


def test_features_have_the_documented_shape_and_are_whitened() -> None:
    patches = numpy.random.default_rng(0).normal(size=(50, 16, 16))
    embedding = PretrainedEmbedding(latent_dim=5)
    assert embedding.features(patches).shape == (50, 130)
    assert PretrainedEmbedding(intensity=False).features(patches).shape == (50, 128)
    latent = embedding.fit_transform(patches)
    assert latent.shape == (50, 5)
    numpy.testing.assert_allclose(latent.std(axis=0), 1.0, atol=1e-9)
    numpy.testing.assert_allclose(embedding.transform(patches), latent, atol=1e-6)


def test_features_are_rotation_invariant_and_small_patches_are_resampled() -> None:
    patches = numpy.random.default_rng(2).normal(size=(6, 8, 8))
    embedding = PretrainedEmbedding(latent_dim=None)
    rotated = dihedral_transforms(patches)[1]
    numpy.testing.assert_allclose(embedding.features(rotated), embedding.features(patches), atol=1e-4)
    assert resample_patches(patches).shape == (6, 16, 16)


def test_bad_input_gives_clear_errors() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_PATCH_PX} px"):
        PretrainedEmbedding().fit(numpy.zeros((5, 3, 3)))
    with pytest.raises(ValueError, match="square patches"):
        PretrainedEmbedding().fit(numpy.zeros((5, 16, 12)))
    embedding = PretrainedEmbedding(latent_dim=2)
    with pytest.raises(RuntimeError, match="before fit"):
        embedding.transform(numpy.zeros((2, 16, 16)))
    embedding.fit(numpy.random.default_rng(0).normal(size=(10, 16, 16)))
    with pytest.raises(ValueError, match="16 x 16"):
        embedding.transform(numpy.zeros((2, 24, 24)))
    with pytest.raises(ValueError, match="embedding must be one of"):
        AgentConfig(embedding="resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latent_dim"):
        PretrainedEmbedding(latent_dim=0)
