"""Few-shot classification on scenes the backbone never saw: right classes, unknown tiles, counts, rows, suggestions."""

from __future__ import annotations

import math

import numpy
import pytest

from nion_autoem_fewshot import SupportSet
from nion_autoem_fewshot import classify_tiles
from nion_autoem_fewshot import cut_tiles
from nion_autoem_fewshot import interface_scene
from nion_autoem_fewshot import particle_scene
from nion_autoem_fewshot.classifier import ROW_COLUMNS
from nion_autoem_fewshot.classifier import augment
from nion_autoem_fewshot.synthetic import Scene
from nion_autoem_fewshot.synthetic import tile_truth


def labelled(scene: Scene, tile_px: int, shots: int, seed: int = 0) -> tuple[SupportSet, numpy.ndarray, numpy.ndarray]:
    grid = cut_tiles(scene.image, tile_px=tile_px)
    truth, pure = tile_truth(scene.labels, grid.origins_px, tile_px)
    rng = numpy.random.default_rng(seed)
    picks = {name: rng.choice(numpy.flatnonzero(pure & (truth == k)), shots, replace=False).tolist() for k, name in enumerate(scene.class_names)}
    return SupportSet.from_grid(grid, picks), truth, pure


@pytest.fixture(scope="module")
def interface() -> Scene:
    return interface_scene((512, 512), seed=1003)


@pytest.mark.parametrize("features", ["combined", "backbone", "texture"])
def test_three_labels_per_class_classify_an_interface(interface: Scene, features: str) -> None:
    support, truth, pure = labelled(interface, 32, 3)
    tile_map = classify_tiles(interface.image, support, features=features)  # type: ignore[arg-type]
    scored = pure.copy()
    scored[list(tile_map.labelled)] = False
    assert len(tile_map.labelled) == 9  # the support tiles are recognised as such (never suggested, not scored)
    assert numpy.mean(tile_map.classes[scored] == truth[scored]) >= 0.9
    assert tile_map.probabilities.shape == (len(tile_map), 3) and numpy.allclose(tile_map.probabilities.sum(axis=1), 1.0)
    # the nearest prototype is the answer, and its probability the highest
    known = tile_map.classes >= 0
    assert numpy.array_equal(numpy.argmax(tile_map.probabilities[known], axis=1), tile_map.classes[known])


def test_counts_area_fractions_map_and_rows_agree(interface: Scene) -> None:
    support, _, _ = labelled(interface, 32, 2)
    tile_map = classify_tiles(interface.image, support, overlap=0.25, pixel_size_nm=0.02)
    counts = tile_map.counts()
    assert list(counts) == ["rock salt", "amorphous", "honeycomb", "unknown"] and sum(counts.values()) == len(tile_map)
    fractions = tile_map.area_fractions()
    assert sum(fractions.values()) == pytest.approx(1.0)
    class_image = tile_map.class_image()
    assert class_image.shape == interface.image.shape
    for k, name in enumerate(tile_map.class_names):
        assert fractions[name] == pytest.approx(numpy.mean(class_image == k))
    rows = tile_map.to_rows()
    assert len(rows) == len(tile_map) and len(rows[0]) == len(ROW_COLUMNS)
    assert rows[5][7] == tile_map.class_of(5) and rows[5][6] == pytest.approx(float(tile_map.grid.centres_nm[5, 1]))  # type: ignore[index]


@pytest.mark.parametrize("seed", [1003, 1004])
def test_a_class_nobody_labelled_is_suggested_first_and_far_tiles_are_unknown(seed: int) -> None:
    interface = interface_scene((1024, 1024), seed=seed)
    grid = cut_tiles(interface.image, tile_px=64)
    truth, pure = tile_truth(interface.labels, grid.origins_px, 64)
    rng = numpy.random.default_rng(1)
    # only the two crystals are labelled: the amorphous layer is a kind of tile nobody named
    picks = {name: rng.choice(numpy.flatnonzero(pure & (truth == k)), 3, replace=False).tolist() for k, name in enumerate(interface.class_names) if name != "amorphous"}
    support = SupportSet.from_grid(grid, picks)
    tile_map = classify_tiles(interface.image, support)
    crystals = pure & (truth != 1)
    # the automatic unknown distance is conservative: tiles of the labelled classes are (almost) never unknown
    assert numpy.mean(tile_map.classes[crystals] == -1) <= 0.02
    # the suggestions go to the new kind of tile first
    assert truth[tile_map.suggestions(1)[0]] == 1
    # an explicit distance: exactly the tiles farther than it from every prototype are unknown
    cut = float(numpy.percentile(tile_map.distances[crystals], 99))
    strict = classify_tiles(interface.image, support, unknown_distance=cut)
    assert numpy.array_equal(strict.classes == -1, strict.distances > cut)
    assert numpy.mean(strict.classes[pure & (truth == 1)] == -1) > numpy.mean(strict.classes[crystals] == -1)
    assert strict.counts()["unknown"] == int(numpy.sum(strict.classes == -1)) > 0
    # and a distance of infinity never answers unknown
    assert numpy.all(classify_tiles(interface.image, support, unknown_distance=math.inf).classes >= 0)
    with pytest.raises(ValueError, match="unknown_distance must be a positive distance"):
        classify_tiles(interface.image, support, unknown_distance=-1.0)


def test_suggestions_leave_out_labelled_tiles_and_are_distinct() -> None:
    scene = particle_scene((512, 512), seed=1004)
    support, truth, pure = labelled(scene, 32, 1)
    tile_map = classify_tiles(scene.image, support)
    picks = tile_map.suggestions(5, exclude=[0, 1])
    assert len(picks) == len(set(picks)) == 5
    assert not set(picks) & (set(tile_map.labelled) | {0, 1})


def test_a_fine_tuned_head_classifies_as_well(interface: Scene) -> None:
    support, truth, pure = labelled(interface, 32, 3, seed=2)
    tile_map = classify_tiles(interface.image, support, fine_tune=True)
    scored = pure.copy()
    scored[list(tile_map.labelled)] = False
    assert numpy.mean(tile_map.classes[scored] == truth[scored]) >= 0.9


def test_augmentation_keeps_the_tile_among_its_versions() -> None:
    tile = numpy.random.default_rng(0).normal(size=(1, 16, 16)).astype(numpy.float32)
    versions = augment(tile)
    assert versions.shape == (16, 16, 16)
    assert numpy.array_equal(versions[0], tile[0]) and numpy.array_equal(versions[2], numpy.rot90(tile[0]))
    assert not numpy.allclose(versions[1], versions[0])  # the jittered copy differs


def test_tiles_smaller_than_the_backbone_reads_are_refused(interface: Scene) -> None:
    grid = cut_tiles(interface.image, tile_px=8)
    support = SupportSet.from_grid(grid, {"a": [0], "b": [100]})
    with pytest.raises(ValueError, match="tiles of 8 px are smaller than the backbone accepts .16 px on a side.; choose tile_px >= 16, or a larger tile_nm"):
        classify_tiles(interface.image, support)
    with pytest.raises(ValueError, match="tile_nm=0.5 needs the image's pixel size in nm: the image needs a calibration in nm"):
        classify_tiles(interface.image, support, tile_nm=0.5)


def test_neighbour_smoothing_follows_the_smoothed_probabilities(interface: Scene) -> None:
    support, truth, pure = labelled(interface, 32, 2, seed=3)
    plain = classify_tiles(interface.image, support, smooth=0.0)
    smooth = classify_tiles(interface.image, support, smooth=0.5)
    known = smooth.classes >= 0
    assert numpy.array_equal(numpy.argmax(smooth.probabilities[known], axis=1), smooth.classes[known])
    assert numpy.array_equal(smooth.distances, plain.distances)  # the distances (and the unknown answer) are the tile's own
    scored = pure.copy()
    scored[list(smooth.labelled)] = False
    assert numpy.mean(smooth.classes[scored] == truth[scored]) >= numpy.mean(plain.classes[scored] == truth[scored]) - 0.02
    with pytest.raises(ValueError, match=r"smooth must be 'auto' or a weight in \[0, 1\]"):
        classify_tiles(interface.image, support, smooth=2.0)


def test_the_neighbours_prior_is_strong_on_a_map_of_regions_and_keeps_a_sure_lone_tile() -> None:
    from nion_autoem_fewshot.neighbours import potts_coupling
    from nion_autoem_fewshot.neighbours import potts_smoothed

    scene = particle_scene((1024, 1024), seed=2402)
    support, truth, pure = labelled(scene, 64, 3, seed=4)
    own = classify_tiles(scene.image, support, smooth=0.0)
    auto = classify_tiles(scene.image, support)
    assert own.coupling == 0.0 and auto.coupling > 0.3  # regions: neighbours agree far more often than by chance
    scored = pure.copy()
    scored[list(auto.labelled)] = False
    assert numpy.mean(auto.classes[scored] == truth[scored]) >= numpy.mean(own.classes[scored] == truth[scored])
    assert auto.own_probabilities is not None and numpy.allclose(auto.own_probabilities, own.probabilities)
    # scattered classes: (almost) no prior
    rng = numpy.random.default_rng(0)
    assert potts_coupling(rng.integers(0, 4, 256), (16, 16), 4) <= 0.1
    # a lone tile sure of its class keeps it; an unsure one follows its neighbours
    sure = numpy.array([[0.02, 0.98]] * 1 + [[0.9, 0.1]] * 8)[[1, 2, 3, 4, 0, 5, 6, 7, 8]]
    unsure = numpy.array([[0.4, 0.6]] * 1 + [[0.9, 0.1]] * 8)[[1, 2, 3, 4, 0, 5, 6, 7, 8]]
    assert potts_smoothed(sure, (3, 3), 0.75)[4].argmax() == 1 and potts_smoothed(unsure, (3, 3), 0.75)[4].argmax() == 0


def test_the_texture_features_are_those_of_a_plain_ring_by_ring_computation() -> None:
    from nion_autoem_fewshot.texture import RINGS
    from nion_autoem_fewshot.texture import texture_features

    tiles = numpy.random.default_rng(5).normal(size=(3, 20, 20)) + numpy.linspace(0, 1, 20)[None, None, :]
    features = texture_features(tiles)
    rows = cols = 20
    standard = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) / tiles.std(axis=(1, 2), keepdims=True)
    power = numpy.abs(numpy.fft.rfft2(standard * numpy.outer(numpy.hanning(rows), numpy.hanning(cols)))) ** 2
    radius = numpy.sqrt(numpy.fft.fftfreq(rows)[:, None] ** 2 + numpy.fft.rfftfreq(cols)[None, :] ** 2)
    ring = numpy.digitize(radius, numpy.geomspace(1.0 / rows, 0.5, RINGS + 1)) - 1
    for index in range(RINGS):
        members = power[:, ring == index]
        if members.shape[1]:
            assert features[:, index] == pytest.approx(numpy.log(members.mean(axis=1) + 1e-9), rel=1e-4, abs=1e-4)
            assert features[:, RINGS + index] == pytest.approx(numpy.log((members.max(axis=1) + 1e-9) / (members.mean(axis=1) + 1e-9)), rel=1e-4, abs=1e-4)
    assert features[:, -3] == pytest.approx((standard**4).mean(axis=(1, 2)) - 3, rel=1e-4)
