from __future__ import annotations

import json
import pathlib
import shutil

import numpy
import pytest
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_elit import ensemble
from nion_autoem_elit import model
from nion_autoem_elit import storage


def test_packaged_mos2_model_loads_offline_with_verified_checksum() -> None:
    ens = storage.load_ensemble("mos2")
    metadata = json.loads((storage.PACKAGED_MODELS / "mos2_v1.json").read_text())
    assert metadata["weights_sha256"] == sha256_of(storage.PACKAGED_MODELS / "mos2_v1.pt")
    assert ens.class_names == ("background", "Mo", "S2", "S1", "W")
    assert ens.members == 5
    assert metadata["format_version"] == storage.FORMAT_VERSION
    for key in ("training", "imaging_ranges", "validation", "uncertainty_calibration", "created", "training_seconds"):
        assert key in metadata, key


def test_packaged_models_are_small() -> None:
    total = sum(p.stat().st_size for p in storage.PACKAGED_MODELS.iterdir() if p.is_file())
    assert total < 5 * 1024 * 1024


def test_corrupted_weights_raise_a_clear_error(tmp_path: pathlib.Path) -> None:
    for suffix in (".pt", ".json"):
        shutil.copy(storage.PACKAGED_MODELS / f"mos2_v1{suffix}", tmp_path / f"mos2_v1{suffix}")
    weights = tmp_path / "mos2_v1.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(storage.ModelIntegrityError, match="checksum mismatch"):
        storage.load_ensemble(tmp_path / "mos2_v1.json")


def test_missing_model_names_the_packaged_ones() -> None:
    with pytest.raises(FileNotFoundError, match="mos2_v1"):
        storage.load_ensemble("no_such_model")


def test_save_load_round_trip_keeps_predictions(tmp_path: pathlib.Path) -> None:
    torch.manual_seed(0)
    ens = ensemble.Ensemble(model.EnsembleUNet(2, 3, 4), ("background", "A", "B"), {"note": "test"})
    path = storage.save_ensemble(ens, tmp_path / "tiny")
    loaded = storage.load_ensemble(path)
    assert loaded.metadata["note"] == "test"
    image = numpy.random.default_rng(0).random((48, 48))
    # Weights are stored in half precision; predictions agree to that precision.
    numpy.testing.assert_allclose(loaded.member_probabilities(image), ens.member_probabilities(image), atol=2e-3)
