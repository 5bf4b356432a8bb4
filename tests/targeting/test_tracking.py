"""Atom tracking: a 3 x 3 excursion finds the column's centre and tells a slide from an ejection."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem_targeting.tracking import locate_column


def excursion(centre: tuple[float, float], peak: float, *, rotation: float = 0.0, rng: numpy.random.Generator | None = None) -> tuple[numpy.ndarray, numpy.ndarray]:
    grid = ScanFrame((3, 3), 0.12, (0.2, -0.1), rotation).pixel_grid_nm()
    d2 = ((grid - numpy.asarray(centre)) ** 2).sum(axis=-1)
    expected = peak * numpy.exp(-d2 / (2 * 0.05 ** 2)) + 20.0  # a little background from the neighbours
    counts = rng.poisson(expected).astype(float) if rng is not None else expected
    return counts, grid


@pytest.mark.parametrize("rotation", [0.0, 0.7])
def test_the_centre_is_found_to_a_picometre_from_noisy_counts(rotation: float) -> None:
    rng = numpy.random.default_rng(5)
    errors = []
    for dy, dx in [(0.0, 0.0), (0.02, -0.015), (-0.03, 0.025)]:
        true = (0.2 + dy, -0.1 + dx)
        fix = locate_column(*excursion(true, 800.0, rotation=rotation, rng=rng))
        assert fix.found
        errors.append(numpy.hypot(fix.position_nm[0] - true[0], fix.position_nm[1] - true[1]))
        assert fix.peak_counts == pytest.approx(820.0, rel=0.06)
    assert max(errors) < 0.004


def test_an_ejection_shows_as_a_lower_peak_in_the_same_place_and_a_slide_as_the_same_peak_elsewhere() -> None:
    intact = locate_column(*excursion((0.2, -0.1), 800.0))
    ejected = locate_column(*excursion((0.2, -0.1), 520.0))
    slid = locate_column(*excursion((0.23, -0.07), 800.0))
    assert ejected.peak_counts < 0.7 * intact.peak_counts
    assert slid.peak_counts == pytest.approx(intact.peak_counts, rel=0.03)
    assert numpy.hypot(slid.position_nm[0] - 0.23, slid.position_nm[1] + 0.07) < 0.002


def test_no_column_under_the_excursion_is_not_found() -> None:
    flat, grid = excursion((0.2, -0.1), 0.0)
    assert not locate_column(flat, grid).found
    far = locate_column(*excursion((0.6, -0.1), 800.0))
    assert not far.found


def test_bad_input_is_explained() -> None:
    counts, grid = excursion((0.2, -0.1), 800.0)
    with pytest.raises(ValueError, match="one \\(y, x\\) per count"):
        locate_column(counts, grid[:2])
    with pytest.raises(ValueError, match="at least 4"):
        locate_column(counts.reshape(-1)[:3], grid.reshape(-1, 2)[:3])
    with pytest.raises(ValueError, match="finite"):
        locate_column(numpy.full(9, numpy.nan), grid)
