from __future__ import annotations

import math

import numpy
import pytest

from nion_autoem_targeting.selection import in_region
from nion_autoem_targeting.selection import near_line
from nion_autoem_targeting.selection import nearest_to
from nion_autoem_targeting.selection import select_targets


def _mos2_table() -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.str_]]:
    """Projected 2H-MoS2: Mo and S2 columns on two interleaved hexagonal sublattices."""
    a = 0.316
    i, j = numpy.mgrid[0:8, 0:8]
    mo = numpy.stack([(i * a * math.sqrt(3) / 2).ravel(), (j * a + (i % 2) * a / 2).ravel()], axis=1)
    s = mo + numpy.array([a / math.sqrt(3), 0.0])  # S2 column a/sqrt(3) = 0.182 nm from Mo
    positions = numpy.concatenate([mo, s])
    classes = numpy.array(["Mo"] * len(mo) + ["S2"] * len(s))
    classes[len(mo) + 5] = "S1"
    return positions, classes


def test_in_region_rectangle_with_edges() -> None:
    points = numpy.array([[0.0, 0.0], [0.5, 1.0], [0.5, 1.01], [-0.51, 0.0], [0.2, -0.9]])
    assert in_region(points, (0.0, 0.0), (1.0, 2.0)).tolist() == [True, True, False, False, True]
    assert in_region(points, (0.0, 0.0), 1.0).tolist() == [True, False, False, False, False]
    assert in_region(points, (0.5, 1.0), 0.1).tolist() == [False, True, True, False, False]
    assert in_region(numpy.zeros((0, 2)), (0.0, 0.0), 1.0).shape == (0,)
    with pytest.raises(ValueError, match="size_nm"):
        in_region(points, (0.0, 0.0), (1.0, -1.0))
    with pytest.raises(ValueError, match="center_nm"):
        in_region(points, (0.0,), 1.0)


def test_near_line_is_a_strip_along_a_slanted_segment() -> None:
    start, end = numpy.array([0.0, 0.0]), numpy.array([1.0, 1.0])
    normal = numpy.array([1.0, -1.0]) / math.sqrt(2)
    points = numpy.array(
        [
            [0.5, 0.5],  # on the segment
            [0.5, 0.5] + 0.09 * normal,  # inside the 0.2 nm wide strip
            [0.5, 0.5] - 0.11 * normal,  # just outside it
            [1.05, 1.05],  # beyond the end
            [-0.02, -0.02],  # before the start
            [1.0, 1.0],  # on the end
        ]
    )
    assert near_line(points, start, end, 0.2).tolist() == [True, True, False, False, False, True]
    # direction of the segment does not matter
    assert near_line(points, end, start, 0.2).tolist() == near_line(points, start, end, 0.2).tolist()
    with pytest.raises(ValueError, match="must differ"):
        near_line(points, start, start, 0.2)
    with pytest.raises(ValueError, match="width_nm"):
        near_line(points, start, end, 0.0)


def test_nearest_to_snaps_clicks_and_drops_misses() -> None:
    atoms = numpy.array([[0.0, 0.0], [0.0, 0.3], [0.3, 0.0], [0.3, 0.3]])
    clicks = numpy.array([[0.31, 0.29], [5.0, 5.0], [0.02, 0.01], [0.0, 0.28], [0.3, 0.31]])
    assert nearest_to(atoms, clicks, 0.05).tolist() == [3, 0, 1]
    assert nearest_to(atoms, clicks, 0.015).tolist() == [3]
    assert nearest_to(atoms, numpy.zeros((0, 2)), 0.1).tolist() == []
    assert nearest_to(numpy.zeros((0, 2)), clicks, 0.1).tolist() == []
    with pytest.raises(ValueError, match="points_nm"):
        nearest_to(atoms, [1.0, 2.0, 3.0], 0.1)
    with pytest.raises(ValueError, match="max_distance_nm"):
        nearest_to(atoms, clicks, -1.0)


def test_select_targets_by_kind_region_and_line() -> None:
    positions, classes = _mos2_table()
    s2 = select_targets(positions, classes)
    assert len(s2) == 63 and set(classes[s2]) == {"S2"}
    assert numpy.all(numpy.diff(s2) > 0)
    assert len(select_targets(positions, classes, kind=["S2", "S1"])) == 64
    assert len(select_targets(positions, classes, kind=None)) == 128
    region = ((1.0, 1.0), (0.8, 0.8))
    inside = select_targets(positions, classes, region=region)
    assert len(inside) > 0
    assert numpy.array_equal(inside, numpy.flatnonzero(in_region(positions, *region) & (classes == "S2")))
    line = ((0.182, 0.0), (0.182, 2.0), 0.05)  # along the first row of S2 columns
    on_line = select_targets(positions, classes, line=line)
    # seven S sites lie under the line; one of them has lost an atom (S1)
    assert numpy.allclose(positions[on_line, 0], 0.182, atol=1e-3) and len(on_line) == 6
    both = select_targets(positions, classes, region=((0.182, 0.5), 0.7), line=line)
    assert set(both) < set(on_line) and len(both) == 2


def test_select_targets_from_clicks_prefers_eligible_atoms() -> None:
    positions, classes = _mos2_table()
    s_site = 64 + 10
    assert classes[s_site] == "S2"
    mo_site = 10  # the Mo column 0.182 nm from that S2 site
    assert numpy.hypot(*(positions[s_site] - positions[mo_site])) == pytest.approx(0.182, abs=1e-3)
    # a click a little closer to the Mo column still picks the S2 site
    click = positions[mo_site] + 0.45 * (positions[s_site] - positions[mo_site])
    far_click = positions[s_site] + (3.0, 3.0)
    picked = select_targets(positions, classes, points=[click, far_click], max_distance_nm=0.12)
    assert picked.tolist() == [s_site]
    assert select_targets(positions, classes, kind="Mo", points=[click], max_distance_nm=0.12).tolist() == [mo_site]
    # a click outside the region finds nothing
    assert select_targets(positions, classes, region=((5.0, 5.0), 0.5), points=[click]).tolist() == []


def test_select_targets_rejects_mismatched_tables() -> None:
    positions, classes = _mos2_table()
    with pytest.raises(ValueError, match="one entry per atom"):
        select_targets(positions, classes[:-1])
    with pytest.raises(ValueError, match="region"):
        select_targets(positions, classes, region=((0.0, 0.0),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line"):
        select_targets(positions, classes, line=((0.0, 0.0), (1.0, 1.0)))  # type: ignore[arg-type]
