"""Calibration in, calibration respected: sampling, resampling and "nothing here" for ELIT atom finding.

Frames come from the MoS2 digital twin (nion_autoem.twin), a generator other
than the one the packaged models were trained with.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing
import pytest
import scipy.ndimage

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import lattice as twin_lattice
from nion_autoem.twin.mos2 import MoS2Sample
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem_elit import evaluation
from nion_autoem_elit import find_atoms
from nion_autoem_elit import lattices
from nion_autoem_elit import sampling

_NDArray = numpy.typing.NDArray[typing.Any]
NAMES = ("background", "Mo", "S2", "S1", "W")
NEIGHBOUR_A = lattices.mos2_lattice().nearest_neighbour_A


def twin_frame(pixel_size_A: float, field_nm: float = 2.0, seed: int = 0) -> tuple[_NDArray, _NDArray, _NDArray]:
    """A twin frame of ``field_nm`` at ``pixel_size_A``: image, true positions (pixels), true ELIT classes."""
    twin = MoS2Sample(twin_lattice.mos2_flake(3.0, seed=seed, s_vacancy_fraction=0.1), seed=seed)
    truth = twin.ground_truth()  # before the frame: ejections during it show only in the next one
    pixels = int(round(field_nm / (pixel_size_A / 10.0)))
    frame = ScanFrame((pixels, pixels), field_nm)
    image = twin.render_frame(frame, 8.0, ProbeConditions())["HAADF"].astype(float)
    keep = numpy.isin(truth.column_class, (twin_lattice.MO, twin_lattice.S2, twin_lattice.S1))
    classes = numpy.array([1, 2, 3])[truth.column_class[keep]]  # twin Mo, S2, S1 -> ELIT classes
    return image, frame.nm_to_pixel(truth.position_nm[keep]), classes


def scores(result: typing.Any, image: _NDArray, positions: _NDArray, classes: _NDArray, pixel_size_A: float) -> dict[str, typing.Any]:
    neighbour_px = NEIGHBOUR_A / pixel_size_A
    return evaluation.score_frame(result.positions, result.classes, positions, classes, neighbour_px, NAMES,
                                  frame_shape=image.shape, border_px=0.5 * neighbour_px)


@pytest.mark.parametrize("pixel_size_A", [0.05, 0.1, 0.2, 0.3])
def test_calibration_alone_gives_columns_and_vacancies_at_any_sampling(pixel_size_A: float) -> None:
    image, positions, classes = twin_frame(pixel_size_A)
    result = find_atoms(image, pixel_size_nm=pixel_size_A / 10.0)
    s = scores(result, image, positions, classes, pixel_size_A)
    assert s["f1"] >= 0.95, s
    s1_true = s["S1_tp"] + s["S1_fn"]
    assert s1_true >= 3 and s["S1_tp"] / s1_true >= 0.75, s
    assert not result.out_of_distribution and result.pixel_size_nm == pytest.approx(pixel_size_A / 10.0)
    trained = 0.008 <= pixel_size_A / 10.0 <= 0.016
    assert result.in_trained_range is trained
    # The network always sees a trained sampling: coarser frames upsampled to the middle of
    # the range, finer ones (and the finer part of the range) downsampled to near its coarse end.
    assert result.model_pixel_size_nm is not None and 0.008 <= result.model_pixel_size_nm <= 0.016
    assert result.resampled_by == pytest.approx(pixel_size_A / 10.0 / result.model_pixel_size_nm)
    assert any("outside the model's trained" in w for w in result.warnings) is not trained
    assert result.trained_ranges["pixel_size_nm"] == pytest.approx((0.008, 0.016))
    # positions and maps are in the input frame's pixels
    assert result.mean_probabilities.shape[1:] == result.variance.shape[1:] == image.shape


def test_positions_are_mapped_back_with_sub_pixel_accuracy() -> None:
    image, positions, classes = twin_frame(0.3)
    result = find_atoms(image, pixel_size_nm=0.03)
    assert result.resampled_by == pytest.approx(2.5) and result.model_pixel_size_nm == pytest.approx(0.012)
    s = scores(result, image, positions, classes, 0.3)
    assert s["tp"] > 50 and s["rmse_px"] < 0.5, s


@pytest.mark.parametrize(("pixel_size_nm", "model_pixel_size_nm"), [(0.012, 0.015), (0.008, 0.015), (0.005, 0.015), (0.014, 0.014), (0.016, 0.016), (0.03, 0.012)])
def test_frames_are_processed_near_the_coarse_end_of_the_trained_range(pixel_size_nm: float, model_pixel_size_nm: float) -> None:
    metadata = {"imaging_ranges": {"pixel_size_A": [0.08, 0.16]}, "lattice": "MoS2"}
    plan = sampling.plan_sampling((512, 512), pixel_size_nm, metadata)
    assert plan.model_pixel_size_nm == pytest.approx(model_pixel_size_nm)
    assert plan.zoom == pytest.approx(pixel_size_nm / model_pixel_size_nm)
    assert plan.in_trained_range is (0.008 <= pixel_size_nm <= 0.016)
    assert bool(plan.warnings) is not plan.in_trained_range
    # Small frames are not downsampled for speed: a trained sampling is used as it is, a finer one goes to the middle.
    small = sampling.plan_sampling((200, 200), 0.008, metadata)
    assert small.zoom == 1.0 and small.in_trained_range and not small.warnings
    finer = sampling.plan_sampling((200, 200), 0.005, metadata)
    assert finer.model_pixel_size_nm == pytest.approx(0.012) and not finer.in_trained_range and finer.warnings


def test_resampling_maps_pixel_centres_like_the_positions() -> None:
    # A linear ramp resampled linearly stays the same ramp in input coordinates (away from the clamped edges).
    rows, cols = numpy.mgrid[0:90, 0:70].astype(numpy.float32)
    ramp = 3.0 * rows - 2.0 * cols
    for zoom in (0.8, 0.37, 1.7):
        small = sampling.resample(ramp, zoom)
        back_rows, back_cols = numpy.mgrid[0 : small.shape[0], 0 : small.shape[1]].astype(float)
        centres = sampling.to_input_pixels(numpy.stack([back_rows.ravel(), back_cols.ravel()], axis=1), ramp.shape, small.shape)
        expected = (3.0 * centres[:, 0] - 2.0 * centres[:, 1]).reshape(small.shape)
        inner = (slice(2, -2), slice(2, -2))
        numpy.testing.assert_allclose(small[inner], expected[inner], atol=1e-3)
        assert sampling.maps_to_input(small[None], ramp.shape).shape == (1,) + ramp.shape


def test_without_calibration_the_result_says_the_sampling_was_not_checked() -> None:
    image, _, _ = twin_frame(0.12)
    result = find_atoms(image)
    assert result.pixel_size_nm is None and result.in_trained_range is None and result.resampled_by == 1.0
    assert any("pixel_size_nm" in w and "0.008-0.016 nm/pixel" in w for w in result.warnings)


def test_dose_and_probe_outside_the_trained_ranges_are_flagged_not_hidden() -> None:
    image, _, _ = twin_frame(0.12)
    inside = find_atoms(image, pixel_size_nm=0.012, dose_e_per_nm2=2e7, probe_fwhm_nm=0.08)
    assert inside.in_trained_range is True and not any("outside the model's trained" in w for w in inside.warnings)
    low_dose = find_atoms(image, pixel_size_nm=0.012, dose_e_per_nm2=1e5)
    assert low_dose.in_trained_range is False and len(low_dose) == len(inside)  # the columns are still there
    assert any(w.startswith("dose 1e+05 e/nm² is outside the model's trained 5e+06-1e+08 e/nm²") for w in low_dose.warnings), low_dose.warnings
    wide_probe = find_atoms(image, pixel_size_nm=0.012, probe_fwhm_nm=0.2)
    assert wide_probe.in_trained_range is False and any(w.startswith("probe 0.2 nm is outside") for w in wide_probe.warnings)
    with pytest.raises(ValueError, match="dose_e_per_nm2"):
        find_atoms(image, pixel_size_nm=0.012, dose_e_per_nm2=-1.0)


def _noise(rng: numpy.random.Generator) -> _NDArray:
    return rng.poisson(50.0, (192, 192)).astype(float)


def _vacuum(rng: numpy.random.Generator) -> _NDArray:
    return rng.poisson(2.0, (192, 192)).astype(float) + rng.normal(0.0, 0.3, (192, 192))


def _amorphous(rng: numpy.random.Generator) -> _NDArray:
    # Atom-sized Gaussian blobs of random brightness at random positions.
    density = numpy.zeros((192, 192))
    spots = rng.integers(0, 192, (500, 2))
    numpy.add.at(density, (spots[:, 0], spots[:, 1]), rng.uniform(0.5, 1.5, 500))
    blurred: _NDArray = scipy.ndimage.gaussian_filter(density, 2.0)
    return rng.poisson(20.0 + 1000.0 * blurred).astype(float)


def _coarse_map(rng: numpy.random.Generator) -> _NDArray:
    # A 5 nm/pixel DKL-like map: smooth contrast at the scale of many pixels, nothing atomic.
    field: _NDArray = scipy.ndimage.gaussian_filter(rng.normal(size=(64, 64)), 3.0)
    field = (field - field.min()) / (field.max() - field.min())
    return rng.poisson(200.0 + 800.0 * field).astype(float)


@pytest.mark.parametrize("make", [_noise, _vacuum, _amorphous, _coarse_map], ids=["noise", "vacuum", "amorphous", "coarse-map"])
def test_no_lattice_means_no_columns(make: typing.Callable[[numpy.random.Generator], _NDArray]) -> None:
    image = make(numpy.random.default_rng(3))
    for pixel_size_nm in (None, 0.012):
        result = find_atoms(image, pixel_size_nm=pixel_size_nm)
        assert len(result) == 0 and result.out_of_distribution, (pixel_size_nm, len(result))
        assert "lattice" in result.reason
        assert result.uncertainties.shape == (0,) and result.counts() == {"Mo": 0, "S2": 0, "S1": 0, "W": 0}


def test_hopeless_sampling_is_refused_naming_the_sampling_the_model_needs() -> None:
    image = _coarse_map(numpy.random.default_rng(0))
    with pytest.raises(ValueError, match=r"needs 0\.008-0\.016 nm/pixel; this image is 5 nm/pixel.*smaller field or more pixels"):
        find_atoms(image, pixel_size_nm=5.0)
    # too fine for the field: downsampled it would be smaller than a network frame
    with pytest.raises(ValueError, match=r"needs 0\.008-0\.016 nm/pixel.*field of at least"):
        find_atoms(numpy.random.default_rng(0).random((64, 64)), pixel_size_nm=0.001)
    for bad in (0.0, -1.0, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="pixel_size_nm must be a positive finite"):
            find_atoms(image, pixel_size_nm=bad)  # type: ignore[arg-type]


def test_the_check_can_be_switched_off() -> None:
    result = find_atoms(_noise(numpy.random.default_rng(1)), check_lattice=False)
    assert len(result) > 0 and not result.out_of_distribution
