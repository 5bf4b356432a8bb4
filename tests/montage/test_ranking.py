"""The pieces of a search, alone: overlaps registered to a fraction of a pixel on shot-noisy film, a shape model that learns from visits, a visit order that weighs travel."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.plans.montage import register_pair
from nion_autoem.plans.search import ShapeModel
from nion_autoem.plans.search import next_candidate
from nion_autoem.plans.search import object_shape
from nion_autoem.twin.stage_sample import StageSample


def test_band_passed_overlaps_register_to_a_fraction_of_a_pixel_where_plain_correlation_slips() -> None:
    sample = StageSample(21, size_nm=20_000.0, objects=120)
    tile = ScanFrame((128, 128), 4000.0)  # 31 nm pixels, 12 counts per pixel on film, as a montage's tiles
    pixel = tile.pixel_size_nm
    step_px = 90
    rng = numpy.random.default_rng(0)
    errors: dict[str, list[float]] = {"band": [], "plain": []}
    for _ in range(12):
        start = rng.uniform(-7000.0, 7000.0, 2)
        e1, e2 = rng.normal(0.0, 100.0, 2), rng.normal(0.0, 100.0, 2)  # where the stage really landed for each tile
        first = rng.poisson(12.5 * sample.render(tile, offset_nm=tuple(start + e1))).astype(float)
        second = rng.poisson(12.5 * sample.render(tile, offset_nm=tuple(start + [0.0, step_px * pixel] + e2))).astype(float)
        for name, band_px in (("band", (0.7, 6.0)), ("plain", None)):
            shift, _ = register_pair(first, second, (0, step_px), pixel, band_px=band_px)
            errors[name].append(float(numpy.hypot(*(numpy.asarray(shift) - (e2 - e1))) / pixel))
    banded, plain = numpy.asarray(errors["band"]), numpy.asarray(errors["plain"])
    print("pair error px: band-passed", banded.round(2), "plain", plain.round(2))
    assert numpy.median(banded) < 0.25, banded
    assert numpy.median(banded) < numpy.median(plain) and numpy.sqrt(numpy.mean(banded**2)) < numpy.sqrt(numpy.mean(plain**2)), (banded, plain)


def test_object_shape_tells_a_platelet_from_a_flake_edge_and_a_speck() -> None:
    film = 10.0
    yy, xx = numpy.mgrid[0:32, 0:32] - 15.5
    platelet = numpy.where(numpy.hypot(yy, xx) < 9.0, 28.0, film)
    flake_edge = numpy.where(xx > -4.0, 24.0, film)  # a flake larger than the window, its edge crossing it
    speck = numpy.where(numpy.hypot(yy, xx) < 2.5, 40.0, film)
    shapes = [object_shape(w, film) for w in (platelet, flake_edge, speck)]
    assert all(s is not None for s in shapes)
    size, border = zip(*[(float(s[0]), float(s[1])) for s in shapes if s is not None], strict=True)
    assert border[0] == 0.0 and border[1] > 0.4 and size[2] < 0.05 < size[0]


def test_a_rejected_visit_teaches_the_shape_model_to_rank_its_look_down() -> None:
    platelet = numpy.array([0.45, 0.0, 1.4, 0.13, 0.96, 0.03])
    particle = numpy.array([0.04, 0.0, 1.3, 0.22, 0.97, 0.07])
    decoy = numpy.array([0.5, 0.45, 1.3, 0.12, 0.98, 0.3])  # a flake's edge: as large and flat as a platelet, cut by the window
    model = ShapeModel([platelet], [particle])
    before = float(model.probability([decoy])[0])
    model.learn(decoy + 0.01, verified=False)
    after = model.probability([decoy, platelet + 0.01])
    assert before > 0.5 and after[0] < 0.2 and after[1] > 0.9, (before, after)
    assert model.counts == (1, 2) and model.probability([None])[0] == 0.0


def test_the_visit_order_weighs_travel_against_likelihood() -> None:
    positions = [[0.0, 28_000.0], [0.0, 500.0]]
    assert next_candidate([0.6, 0.5], positions, (0.0, 0.0)) == 1  # nearly as likely, a fraction of the travel
    assert next_candidate([0.6, 0.5], positions, None) == 0  # where the stage is unknown: the likeliest
    assert next_candidate([0.9, 0.2], positions, (0.0, 0.0)) == 0


def test_a_kind_no_brighter_than_the_film_gets_no_shape_model_so_the_search_falls_back_to_tiles() -> None:
    from nion_autoem_fewshot import SupportSet

    rng = numpy.random.default_rng(1)
    support = SupportSet(32)
    for _ in range(3):
        support.add("hole", rng.poisson(1.0, (32, 32)).astype(float))  # vacuum: darker than the film
        speck = rng.poisson(12.0, (32, 32)).astype(float)
        speck[12:20, 12:20] += 30.0
        support.add("round particle", speck)
    with pytest.raises(ValueError, match="brighter than the film"):
        ShapeModel.from_support(support, "hole")
    assert ShapeModel.from_support(support, "round particle").counts == (3, 1)  # no other kind shows an object: one empty counter-example stands in
