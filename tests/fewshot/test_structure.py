"""A tile with nothing in it (counting noise around a level, a blanked beam) is unknown, and real tiles are not taken for one."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem_fewshot import SupportSet
from nion_autoem_fewshot import classify_tiles
from nion_autoem_fewshot import cut_tiles
from nion_autoem_fewshot import interface_scene
from nion_autoem_fewshot import particle_scene
from nion_autoem_fewshot.structure import structureless
from nion_autoem_fewshot.synthetic import Scene
from nion_autoem_fewshot.synthetic import lattice
from nion_autoem_fewshot.synthetic import tile_truth


@pytest.fixture(scope="module")
def interface() -> Scene:
    return interface_scene((512, 512), seed=2400)


def interface_support(scene: Scene, tile_px: int, shots: int = 3) -> SupportSet:
    grid = cut_tiles(scene.image, tile_px=tile_px)
    truth, pure = tile_truth(scene.labels, grid.origins_px, tile_px)
    rng = numpy.random.default_rng(0)
    picks = {name: rng.choice(numpy.flatnonzero(pure & (truth == k)), shots, replace=False).tolist() for k, name in enumerate(scene.class_names)}
    return SupportSet.from_grid(grid, picks)


def test_noise_at_any_level_and_constant_tiles_are_structureless_and_a_lattice_is_not() -> None:
    rng = numpy.random.default_rng(1)
    y, x = numpy.mgrid[0:64, 0:64]
    frames = {
        "poisson, 0.3 counts": rng.poisson(0.3, (40, 64, 64)),
        "poisson, 20 counts": rng.poisson(20.0, (40, 64, 64)),
        "poisson, 5000 counts": rng.poisson(5000.0, (40, 64, 64)),
        "gaussian on a slope": rng.normal(0.0, 1.0, (40, 64, 64)) + 0.2 * x[None],
    }
    for name, tiles in frames.items():
        assert numpy.mean(structureless(tiles)) >= 0.95, name
    assert structureless(numpy.zeros((3, 64, 64))).all() and structureless(numpy.full((3, 32, 32), 7.5)).all()
    # a lattice whose columns barely stand above the noise is found by its spectral peaks; blurred noise by its excess of low frequencies
    faint = 20.0 + 6.0 * lattice((64, 64), 6.0, 0.3, "hex")[None] + rng.normal(0.0, 4.5, (40, 64, 64))
    assert not structureless(faint).any()
    from scipy import ndimage
    blurred = ndimage.gaussian_filter(rng.normal(size=(40, 64, 64)), (0, 1.5, 1.5)) + rng.normal(0.0, 0.1, (40, 64, 64))
    assert not structureless(blurred).any()
    with pytest.raises(ValueError, match="tiles must be a stack"):
        structureless(numpy.zeros((64, 64)))


def test_the_tiles_of_real_classes_are_not_taken_for_noise() -> None:
    for scene in (interface_scene((1024, 1024), seed=2401), particle_scene((1024, 1024), seed=2401)):
        tiles = cut_tiles(scene.image, tile_px=64).tiles
        assert numpy.mean(structureless(tiles)) <= 0.02


def test_a_frame_of_noise_or_a_blanked_frame_classified_with_interface_examples_is_unknown(interface: Scene) -> None:
    support = interface_support(interface, 32)
    rng = numpy.random.default_rng(2)
    for frame in (rng.poisson(20.0, (256, 256)).astype(float), rng.poisson(0.5, (256, 256)).astype(float), rng.normal(100.0, 5.0, (256, 256))):
        tile_map = classify_tiles(frame, support)
        assert tile_map.structureless is not None
        counts = tile_map.counts()
        # the first release called 64 of 64 such tiles one of the crystals (or amorphous)
        assert counts["unknown"] >= 0.9 * len(tile_map), counts
        assert numpy.array_equal(tile_map.classes[tile_map.structureless], numpy.full(int(tile_map.structureless.sum()), -1))
    blank = classify_tiles(numpy.full((256, 256), 3.0), support)
    assert blank.counts()["unknown"] == len(blank) and tile_map.class_image().shape == (256, 256)
    # the interface itself is still classified
    own = classify_tiles(interface.image, support)
    assert own.counts()["unknown"] <= 0.1 * len(own)


def test_a_class_whose_examples_are_noise_takes_the_noise_tiles() -> None:
    rng = numpy.random.default_rng(3)
    image = 50.0 + 40.0 * lattice((256, 256), 6.0, 0.2, "square")
    image[:, 128:] = 50.0
    image = rng.poisson(image).astype(float)  # the right half is vacuum: counting noise only
    grid = cut_tiles(image, tile_px=32)
    left = [i for i in range(len(grid)) if grid.origins_px[i][1] < 128]
    right = [i for i in range(len(grid)) if grid.origins_px[i][1] >= 128]
    support = SupportSet.from_grid(grid, {"lattice": left[:2], "vacuum": right[:2]})
    tile_map = classify_tiles(image, support)
    assert all(tile_map.class_of(i) == "vacuum" for i in right)
    assert all(tile_map.class_of(i) == "lattice" for i in left)
