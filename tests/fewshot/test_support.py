"""Support sets: classes of example tiles, saved and loaded, and the bad support sets the issue names."""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy
import pytest

from nion_autoem_fewshot import IdenticalExamplesWarning
from nion_autoem_fewshot import SupportSet
from nion_autoem_fewshot import classify_tiles
from nion_autoem_fewshot import cut_tiles
from nion_autoem_fewshot import interface_scene

RNG = numpy.random.default_rng(0)


def test_classes_examples_and_a_round_trip_through_a_folder(tmp_path: pathlib.Path) -> None:
    grid = cut_tiles(RNG.normal(size=(96, 96)), tile_nm=3.2, pixel_size_nm=0.1)
    support = SupportSet.from_grid(grid, {"lattice": [0, 4], "film": [8], "defect": []})
    assert support.class_names == ("lattice", "film", "defect") and support.counts == {"lattice": 2, "film": 1, "defect": 0}
    assert support.tile_px == 32 and support.tile_nm == pytest.approx(3.2)
    support.add("defect", grid.tiles[2])
    support.remove("lattice", 0)
    assert support.counts == {"lattice": 1, "film": 1, "defect": 1}
    assert numpy.array_equal(support.tiles("lattice")[0], grid.tiles[4])
    json_path = support.save(tmp_path / "support")
    saved = json.loads(json_path.read_text())
    assert saved["tile_px"] == 32 and saved["tile_nm"] == pytest.approx(3.2) and saved["backbone"] == "tiles_v1"
    assert saved["counts"] == {"lattice": 1, "film": 1, "defect": 1}
    loaded = SupportSet.load(tmp_path / "support")
    assert loaded.class_names == support.class_names and loaded.tile_nm == pytest.approx(3.2)
    for name in support.class_names:
        assert numpy.array_equal(loaded.tiles(name), support.tiles(name))
    support.remove("defect")
    assert list(support.class_names) == ["lattice", "film"]


def test_a_tile_of_another_size_is_refused() -> None:
    support = SupportSet()
    support.add("lattice", RNG.normal(size=(32, 32)))
    with pytest.raises(ValueError, match="holds tiles of 32 px, got a tile of 48 px for 'film'; cut the image with tile_px=32"):
        support.add("film", RNG.normal(size=(48, 48)))
    with pytest.raises(ValueError, match="square 2D array"):
        support.add("film", RNG.normal(size=(32, 16)))
    with pytest.raises(ValueError, match="'unknown' is the classifier's answer"):
        support.add("unknown", RNG.normal(size=(32, 32)))
    with pytest.raises(FileNotFoundError, match="no support set at"):
        SupportSet.load("/nonexistent/support")


def test_a_class_with_no_examples_is_an_error_that_says_how_to_fix_it() -> None:
    scene = interface_scene((128, 128), seed=1000)
    support = SupportSet.from_grid(cut_tiles(scene.image, tile_px=32), {"rock salt": [0], "honeycomb": [3], "amorphous": []})
    with pytest.raises(ValueError, match=r"class 'amorphous' has no example tiles; add at least one \(support.add\('amorphous', tile\)\) or remove the class"):
        classify_tiles(scene.image, support)
    with pytest.raises(ValueError, match="no classes"):
        SupportSet(32).check()


def test_identical_examples_warn_that_they_count_as_one() -> None:
    scene = interface_scene((128, 128), seed=1000)
    grid = cut_tiles(scene.image, tile_px=32)
    support = SupportSet.from_grid(grid, {"rock salt": [0, 0, 0], "honeycomb": [3, 7]})
    with pytest.warns(IdenticalExamplesWarning, match="class 'rock salt' has 3 examples that are all the same tile: they count as one example"):
        tile_map = classify_tiles(scene.image, support)
    assert len(tile_map) == len(grid)  # a warning, not an error: one example still classifies
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SupportSet.from_grid(grid, {"rock salt": [0, 4], "honeycomb": [3]}).check()  # different tiles, or a single one: no warning


def test_a_support_set_of_another_tile_size_is_refused(tmp_path: pathlib.Path) -> None:
    scene = interface_scene((256, 256), seed=1000)
    support = SupportSet.from_grid(cut_tiles(scene.image, tile_px=32), {"rock salt": [0], "honeycomb": [7]})
    with pytest.raises(ValueError, match="made with tiles of 32 px, but tiles of 48 px were asked for; classify with tile_px=32"):
        classify_tiles(scene.image, support, tile_px=48)
    in_nm = SupportSet.from_grid(cut_tiles(scene.image, tile_px=32, pixel_size_nm=0.05), {"rock salt": [0], "honeycomb": [7]})
    with pytest.raises(ValueError, match="made with tiles of 1.6 nm .32 px., but tiles of 2.4 nm were asked for; classify with tile_nm=1.6"):
        classify_tiles(scene.image, in_nm, tile_nm=2.4, pixel_size_nm=0.05)
    # the same size in nm at another sampling is fine: the tiles are resampled to the set's pixels, the map keeps the image's
    coarse = scene.image.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    tile_map = classify_tiles(coarse, in_nm, pixel_size_nm=0.1)
    assert tile_map.grid.tile_px == 16 and tile_map.class_image().shape == coarse.shape
    assert SupportSet.load(in_nm.save(tmp_path / "nm")).tile_nm == pytest.approx(1.6)
