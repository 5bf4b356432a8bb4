"""The deep embedding (the default): shipped encoder verified on load, dihedral invariance, determinism, discovery."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy
import pytest
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_dkl import AgentConfig
from nion_autoem_dkl import CandidateGP
from nion_autoem_dkl import DKLAgent
from nion_autoem_dkl import extract_patches
from nion_autoem_dkl.agent import DEEP_HEAD_DIM
from nion_autoem_dkl.deep import DeepEmbedding
from nion_autoem_dkl.embedding import dihedral_transforms
from nion_autoem_dkl.encoder import DEFAULT_ENCODER
from nion_autoem_dkl.encoder import PACKAGED_MODELS
from nion_autoem_dkl.encoder import EncoderIntegrityError
from nion_autoem_dkl.encoder import load_encoder
from nion_autoem_dkl.synthetic import make_textured_sample


def _survey_patches(seed: int, size: int = 160, patch: int = 32) -> numpy.ndarray:
    return extract_patches(make_textured_sample(seed, (size, size)).image, patch, stride=8).patches


def test_the_default_agent_uses_the_deep_embedding_and_the_others_stay_available() -> None:
    assert AgentConfig().embedding == "deep"
    patches = numpy.random.default_rng(0).normal(size=(40, 16, 16))
    positions = numpy.random.default_rng(1).uniform(0, 100, (40, 2))
    agent = DKLAgent(patches, positions)
    assert agent.latent.shape == (40, 6) and agent.head_dim == DEEP_HEAD_DIM
    assert DKLAgent(patches, positions, AgentConfig(head_dim=None)).head_dim is None
    assert DKLAgent(patches, positions, latent=agent.latent).head_dim is None  # a latent from elsewhere gets no head unless asked
    for name in ("patch", "pretrained"):
        other = DKLAgent(patches, positions, AgentConfig(embedding=name))
        assert other.latent.shape[0] == 40 and other.head_dim is None


def test_small_patches_fall_back_on_the_hand_made_embedding() -> None:
    # 8-px patches hold one 4-px ring; on the 4D-STEM twin the deep embedding mapped worse there (com_r2_at_200 0.48 vs 0.61).
    rng = numpy.random.default_rng(4)
    small = DKLAgent(rng.normal(size=(40, 8, 8)), rng.uniform(0, 100, (40, 2)))
    assert small.embedding_used == "patch" and small.head_dim is None
    assert DKLAgent(rng.normal(size=(40, 12, 12)), rng.uniform(0, 100, (40, 2))).embedding_used == "deep"


def test_identity_head_starts_on_the_embedding_itself() -> None:
    latent = numpy.random.default_rng(3).normal(size=(30, 6))
    gp = CandidateGP(latent, head_dim=DEEP_HEAD_DIM)
    head = gp._fresh_head()
    assert head is not None
    with torch.no_grad():
        mapped = head(torch.as_tensor(latent)).numpy()
    numpy.testing.assert_array_equal(mapped[:, :6], latent)
    assert not mapped[:, 6:].any()


def test_shipped_encoder_matches_its_checksum_and_names_its_recipe() -> None:
    metadata = json.loads((PACKAGED_MODELS / f"{DEFAULT_ENCODER}.json").read_text())
    assert metadata["weights_sha256"] == sha256_of(PACKAGED_MODELS / metadata["weights_file"])
    assert metadata["version"] == "1" and metadata["script"] == "python scripts/train_dkl_encoder.py"
    assert (PACKAGED_MODELS / metadata["weights_file"]).stat().st_size < 2_000_000


def test_tampered_weights_are_refused(tmp_path: pathlib.Path) -> None:
    for suffix in (".json", ".pt"):
        shutil.copy(PACKAGED_MODELS / f"{DEFAULT_ENCODER}{suffix}", tmp_path / f"{DEFAULT_ENCODER}{suffix}")
    assert load_encoder(tmp_path / DEFAULT_ENCODER).channels == load_encoder().channels
    weights = tmp_path / f"{DEFAULT_ENCODER}.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(EncoderIntegrityError, match="checksum mismatch"):
        load_encoder(tmp_path / DEFAULT_ENCODER)


def test_missing_encoder_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="no encoder called"):
        load_encoder("no_such_encoder_v9")


def test_latent_is_invariant_to_the_eight_dihedral_transforms() -> None:
    patches = _survey_patches(3)
    embedding = DeepEmbedding(seed=0).fit(patches)
    reference = embedding.transform(patches)
    for transformed in dihedral_transforms(patches)[1:]:
        numpy.testing.assert_allclose(embedding.transform(transformed), reference, atol=1e-4)


def test_embedding_is_deterministic_for_a_seed() -> None:
    patches = _survey_patches(4)
    first = DeepEmbedding(seed=5).fit_transform(patches)
    second = DeepEmbedding(seed=5).fit_transform(patches)
    numpy.testing.assert_array_equal(first, second)
    assert first.shape == (patches.shape[0], 6)
    numpy.testing.assert_allclose(first.std(axis=0), 1.0, atol=1e-6)


def test_small_patches_are_enlarged_and_wrong_sizes_refused() -> None:
    rng = numpy.random.default_rng(2)
    assert DeepEmbedding(latent_dim=3).fit_transform(rng.normal(size=(30, 4, 4))).shape == (30, 3)
    embedding = DeepEmbedding().fit(rng.normal(size=(30, 16, 16)))
    with pytest.raises(ValueError, match="16 x 16"):
        embedding.transform(rng.normal(size=(3, 8, 8)))
    with pytest.raises(RuntimeError, match="before fit"):
        DeepEmbedding().transform(rng.normal(size=(3, 8, 8)))


def test_deep_agent_finds_dopant_pairs_in_a_small_survey() -> None:
    # 841 candidates; 40 measurements would find 2 % of a top-2 % set by chance.
    sample = make_textured_sample(22, (256, 256))
    candidates = extract_patches(sample.image, 32, stride=8)
    truth = sample.property_at(candidates.positions)
    top = numpy.argsort(-truth)[: truth.size // 50]
    agent = DKLAgent(candidates.patches, candidates.positions, AgentConfig(seed=0))
    rng = numpy.random.default_rng(0)
    for _ in range(40):
        chosen = agent.suggest(1)
        agent.observe(chosen, truth[chosen] + rng.normal(0.0, 0.03, chosen.size))
    assert numpy.isin(top, agent.measured_indices).mean() >= 0.4
