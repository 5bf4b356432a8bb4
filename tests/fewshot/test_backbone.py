"""The shipped backbone: loaded offline with its checksum checked, fast, and refusing tiles it cannot read."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy
import pytest
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_fewshot import BackboneIntegrityError
from nion_autoem_fewshot import load_backbone
from nion_autoem_fewshot.backbone import MIN_TILE_PX
from nion_autoem_fewshot.backbone import PACKAGED_MODELS
from nion_autoem_fewshot.pretrain import RECIPE
from nion_autoem_fewshot.pretrain import main as pretrain_main


def test_the_shipped_weights_are_small_versioned_and_checksummed() -> None:
    metadata = json.loads((PACKAGED_MODELS / "tiles_v1.json").read_text())
    weights = PACKAGED_MODELS / metadata["weights_file"]
    assert weights.stat().st_size < 2_000_000
    assert metadata["weights_sha256"] == sha256_of(weights)
    assert {"format_version", "name", "version", "created", "training", "script"} <= set(metadata)
    assert metadata["training"]["seed"] == RECIPE["seed"] and metadata["training"]["steps"] >= 100
    assert "pretrain" in metadata["script"]


def test_a_damaged_weights_file_is_refused(tmp_path: pathlib.Path) -> None:
    for name in ("tiles_v1.json", "tiles_v1.pt"):
        shutil.copy(PACKAGED_MODELS / name, tmp_path / name)
    assert load_backbone(tmp_path / "tiles_v1.json").name == "tiles_v1"
    weights = tmp_path / "tiles_v1.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BackboneIntegrityError, match="checksum mismatch"):
        load_backbone(tmp_path / "tiles_v1.json")
    with pytest.raises(FileNotFoundError, match="no backbone called 'nonexistent'"):
        load_backbone("nonexistent")


def test_features_ignore_contrast_and_refuse_tiles_too_small() -> None:
    backbone = load_backbone()
    tiles = numpy.random.default_rng(0).normal(size=(6, 32, 32)).astype(numpy.float32)
    features = backbone.features(tiles)
    assert features.shape == (6, 128) and numpy.all(numpy.isfinite(features))
    # a tile is standardised on its own: brighter and more contrasty is the same tile
    assert numpy.allclose(backbone.features(3 * tiles + 10), features, atol=1e-4)
    assert not numpy.allclose(features[0], features[1], atol=1e-3)
    with pytest.raises(ValueError, match=f"tiles of 12 px are smaller than the backbone accepts \\({MIN_TILE_PX} px on a side\\); choose tile_px >= {MIN_TILE_PX}"):
        backbone.features(numpy.zeros((2, 12, 12)))


def test_the_pretraining_script_writes_weights_that_load(tmp_path: pathlib.Path) -> None:
    threads = torch.get_num_threads()
    try:
        assert pretrain_main(["--out", str(tmp_path / "tiny_v0"), "--steps", "2", "--batch", "16", "--patches", "64", "--version", "0", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    metadata = json.loads((tmp_path / "tiny_v0.json").read_text())
    assert metadata["training"]["steps"] == 2 and metadata["version"] == "0"
    assert load_backbone(tmp_path / "tiny_v0.json").features(numpy.zeros((1, 16, 16))).shape == (1, 128)
