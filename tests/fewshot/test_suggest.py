"""Suggestions: a typical tile of the least understood kind, not the mixed tiles on a boundary."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem_fewshot.suggest import boundary_tiles
from nion_autoem_fewshot.suggest import suggest_tiles


def test_a_group_of_boundary_tiles_is_passed_over_for_a_kind_of_tile_of_its_own() -> None:
    rng = numpy.random.default_rng(0)
    # 40 well-understood tiles, 10 uncertain tiles of a kind of their own, 10 equally uncertain tiles on boundaries
    features = numpy.concatenate([rng.normal(0, 0.1, (40, 2)), rng.normal((5, 0), 0.1, (10, 2)), rng.normal((0, 5), 0.1, (10, 2))])
    probabilities = numpy.concatenate([numpy.tile([0.98, 0.02], (40, 1)), numpy.tile([0.55, 0.45], (20, 1))])
    distances = numpy.ones(60)
    boundary = numpy.zeros(60, dtype=bool)
    boundary[50:] = True
    # without the boundary flags the two uncertain groups are alike: both are suggested before any well-understood tile
    assert all(i >= 40 for i in suggest_tiles(features, probabilities, distances, 2.0, 2))
    first = suggest_tiles(features, probabilities, distances, 2.0, 1, boundary=boundary)[0]
    assert 40 <= first < 50
    # the labelled tiles are never suggested again
    assert first not in suggest_tiles(features, probabilities, distances, 2.0, 3, boundary=boundary, exclude=[first])
    with pytest.raises(ValueError, match="k must be at least 1"):
        suggest_tiles(features, probabilities, distances, 2.0, 0)


def test_boundary_tiles_are_those_with_a_neighbour_of_another_class() -> None:
    grid = numpy.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    assert boundary_tiles(grid).reshape(3, 4).tolist() == [[False, False, True, True], [False, True, True, True], [False, True, True, False]]


def test_the_default_suggestions_take_novel_tiles_first_then_the_least_sure_inside_regions_one_per_kind() -> None:
    from nion_autoem_fewshot.suggest import suggest_uncertain_tiles

    rng = numpy.random.default_rng(1)
    # 30 sure tiles, 10 unsure tiles inside a region, 10 unsurer tiles on a boundary, 5 tiles far from every class
    features = numpy.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal((5, 0), 0.1, (10, 2)), rng.normal((0, 5), 0.1, (10, 2)), rng.normal((9, 9), 0.1, (5, 2))])
    probabilities = numpy.concatenate([numpy.tile([0.95, 0.05], (30, 1)), numpy.tile([0.6, 0.4], (10, 1)), numpy.tile([0.51, 0.49], (10, 1)),
                                       numpy.tile([0.9, 0.1], (5, 1))])
    distances = numpy.concatenate([numpy.ones(50), numpy.full(5, 3.0)])
    boundary = numpy.zeros(55, dtype=bool)
    boundary[40:50] = True
    picks = suggest_uncertain_tiles(features, probabilities, distances, 2.0, 3, boundary=boundary)
    assert 50 <= picks[0] < 55 and len(set(picks)) == 3  # no class covers these: first; three different tiles
    # with those labelled: the least sure tiles inside a region, never the unsurer boundary tiles while others are left
    again = suggest_uncertain_tiles(features, probabilities, distances, 2.0, 3, boundary=boundary, exclude=range(50, 55))
    assert 30 <= again[0] < 40 and not any(40 <= i < 50 or i >= 50 for i in again)
    with pytest.raises(ValueError, match="k must be at least 1"):
        suggest_uncertain_tiles(features, probabilities, distances, 2.0, 0)
