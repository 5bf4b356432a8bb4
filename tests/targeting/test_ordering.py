from __future__ import annotations

import itertools

import numpy
import pytest

from nion_autoem_targeting.ordering import nearest_neighbour_path
from nion_autoem_targeting.ordering import path_length
from nion_autoem_targeting.ordering import shortest_path


def test_shuffled_line_comes_back_in_line_order() -> None:
    rng = numpy.random.default_rng(0)
    along = numpy.sort(rng.uniform(0, 5, 40))
    line = numpy.stack([0.5 * along, along], axis=1)  # a slanted line of atoms
    shuffle = rng.permutation(40)
    order = shortest_path(line[shuffle])
    visited = shuffle[order]  # original (sorted) index of each visited point
    assert visited.tolist() in (list(range(40)), list(range(39, -1, -1)))
    assert path_length(line[shuffle], order) == pytest.approx(numpy.hypot(0.5 * (along[-1] - along[0]), along[-1] - along[0]))


def test_start_position_picks_the_near_end() -> None:
    line = numpy.stack([numpy.zeros(6), numpy.arange(6.0)], axis=1)[::-1]  # x = 5, 4, ..., 0
    assert shortest_path(line, start_nm=(0.0, -1.0)).tolist() == [5, 4, 3, 2, 1, 0]
    assert shortest_path(line, start_nm=(0.0, 7.0)).tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", range(4))
def test_never_longer_than_nearest_neighbour(seed: int) -> None:
    rng = numpy.random.default_rng(seed)
    points = rng.uniform(0, 4, (60, 2))
    start = rng.uniform(0, 4, 2)
    for anchor in (None, start):
        order = shortest_path(points, anchor)
        assert sorted(order.tolist()) == list(range(60))
        greedy = nearest_neighbour_path(points, anchor)
        assert path_length(points, order, anchor) <= path_length(points, greedy, anchor) + 1e-9
    # on random clouds 2-opt usually gains clearly over the greedy tour
    assert path_length(points, shortest_path(points)) < 0.95 * path_length(points, nearest_neighbour_path(points))


@pytest.mark.parametrize("seed", range(5))
def test_close_to_optimal_on_small_sets(seed: int) -> None:
    points = numpy.random.default_rng(100 + seed).uniform(0, 1, (7, 2))
    best = min(path_length(points, list(p)) for p in itertools.permutations(range(7)))
    assert path_length(points, shortest_path(points)) <= best * (1 + 1e-9)


def test_trivial_inputs() -> None:
    assert shortest_path(numpy.zeros((0, 2))).tolist() == []
    assert shortest_path([]).dtype.kind == "i"
    assert shortest_path([[1.0, 2.0]]).tolist() == [0]
    assert shortest_path([[1.0, 2.0]], start_nm=(0.0, 0.0)).tolist() == [0]
    assert nearest_neighbour_path([]).tolist() == []
    assert path_length([[0.0, 0.0]], [0]) == 0.0
    assert path_length([[0.0, 0.0]], [0], start_nm=(3.0, 4.0)) == pytest.approx(5.0)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        shortest_path(numpy.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        shortest_path([[0.0, numpy.nan], [1.0, 1.0]])
    with pytest.raises(ValueError, match="start_nm"):
        shortest_path([[0.0, 0.0], [1.0, 1.0]], start_nm=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="max_passes"):
        shortest_path([[0.0, 0.0], [1.0, 1.0]], max_passes=-1)
