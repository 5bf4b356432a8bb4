from __future__ import annotations

import math
import typing

import numpy
import numpy.typing
import pytest

from nion_autoem_targeting.drift import DriftEstimator
from nion_autoem_targeting.drift import measure_shift

_NDArray = numpy.typing.NDArray[typing.Any]

PIXEL_NM = 0.02  # 128 px over 2.56 nm


def _mos2_like(shift_px: tuple[float, float], seed: int = 0, shape: tuple[int, int] = (128, 128)) -> _NDArray:
    """Gaussian atoms on a hexagonal lattice (spacing 0.316 nm) with vacancies, moved by ``shift_px``."""
    rng = numpy.random.default_rng(seed)
    a = 0.316 / PIXEL_NM
    i, j = numpy.mgrid[-3:30, -3:30]
    y = (i * a * math.sqrt(3) / 2).ravel()
    x = (j * a + (i % 2) * a / 2).ravel()
    keep = rng.random(y.size) > 0.1  # vacancies make the pattern non-periodic
    amplitude = rng.uniform(0.6, 1.4, y.size)[keep]
    y, x = y[keep] + shift_px[0], x[keep] + shift_px[1]
    # A round Gaussian is separable: sum over atoms of outer(g_row, g_col).
    along_rows = numpy.exp(-((numpy.arange(shape[0])[:, None] - y) ** 2) / (2 * 1.8**2))
    along_cols = numpy.exp(-((numpy.arange(shape[1])[:, None] - x) ** 2) / (2 * 1.8**2))
    image: _NDArray = (along_rows * amplitude) @ along_cols.T
    return image


@pytest.mark.parametrize("shift_px", [(0.3, -0.7), (2.37, 1.61), (-4.21, 3.45), (0.0, 0.05)])
def test_sub_pixel_shift_is_measured_with_sign(shift_px: tuple[float, float]) -> None:
    reference = _mos2_like((0.0, 0.0))
    image = _mos2_like(shift_px)
    rng = numpy.random.default_rng(1)
    reference = reference + 0.05 * rng.standard_normal(reference.shape)
    image = image + 0.05 * rng.standard_normal(image.shape)
    dy, dx = measure_shift(reference, image, PIXEL_NM)
    assert dy / PIXEL_NM == pytest.approx(shift_px[0], abs=0.05)
    assert dx / PIXEL_NM == pytest.approx(shift_px[1], abs=0.05)
    # swapping the frames reverses the motion
    back = measure_shift(image, reference, PIXEL_NM)
    assert back[0] == pytest.approx(-dy, abs=0.05 * PIXEL_NM)
    assert back[1] == pytest.approx(-dx, abs=0.05 * PIXEL_NM)


def test_shift_scales_with_pixel_size() -> None:
    reference, image = _mos2_like((0.0, 0.0)), _mos2_like((1.5, -2.5))
    in_pixels = numpy.array(measure_shift(reference, image, 1.0))
    assert in_pixels == pytest.approx([1.5, -2.5], abs=0.05)
    assert numpy.array(measure_shift(reference, image, 0.05)) == pytest.approx(in_pixels * 0.05)


def test_measure_shift_rejects_bad_frames() -> None:
    reference = _mos2_like((0.0, 0.0))
    with pytest.raises(ValueError, match="shape"):
        measure_shift(reference, reference[:, :100], PIXEL_NM)
    broken = reference.copy()
    broken[3, 4] = numpy.nan
    with pytest.raises(ValueError, match="NaN"):
        measure_shift(reference, broken, PIXEL_NM)
    with pytest.raises(ValueError, match="NaN"):
        measure_shift(broken, reference, PIXEL_NM)
    with pytest.raises(ValueError, match="2-D"):
        measure_shift(reference.ravel(), reference.ravel(), PIXEL_NM)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        measure_shift(reference, reference, 0.0)
    with pytest.raises(ValueError, match="upsample"):
        measure_shift(reference, reference, PIXEL_NM, upsample=0)


def test_estimator_recovers_constant_velocity_from_noisy_offsets() -> None:
    velocity = numpy.array([0.004, -0.0025])  # nm/s, a typical stage drift
    rng = numpy.random.default_rng(2)
    drift = DriftEstimator(max_measurements=8)
    for t in numpy.arange(0.0, 80.0, 10.0):
        drift.add(t, 0.1 + velocity * t + rng.normal(0.0, 0.005, 2))
    # slope standard error is about 0.005 / sqrt(sum((t - mean)**2)) = 7.7e-5 nm/s
    assert drift.velocity_nm_per_s == pytest.approx(velocity, abs=3e-4)
    assert drift.predict(100.0) == pytest.approx(0.1 + velocity * 100.0, abs=0.02)
    assert len(drift) == 8


def test_estimator_with_few_measurements() -> None:
    drift = DriftEstimator()
    assert drift.predict(5.0).tolist() == [0.0, 0.0]
    drift.add(1.0, (0.2, -0.1))
    assert drift.velocity_nm_per_s.tolist() == [0.0, 0.0]
    assert drift.predict(100.0) == pytest.approx([0.2, -0.1])
    drift.add(1.0, (0.4, -0.3))  # same time: no velocity, the mean offset
    assert drift.velocity_nm_per_s.tolist() == [0.0, 0.0]
    assert drift.predict(50.0) == pytest.approx([0.3, -0.2])
    drift.reset()
    assert len(drift) == 0 and drift.predict(1.0).tolist() == [0.0, 0.0]


def test_estimator_follows_a_change_of_drift() -> None:
    # Drift slows from 0.01 to 0.002 nm/s at t = 100 s.
    times = numpy.arange(0.0, 200.0, 10.0)
    offsets = numpy.where(times < 100, 0.01 * times, 1.0 + 0.002 * (times - 100))
    window = DriftEstimator(max_measurements=5)
    weighted = DriftEstimator(max_measurements=20, half_life_s=15.0)
    plain = DriftEstimator(max_measurements=20)
    for t, y in zip(times, offsets):
        for estimator in (window, weighted, plain):
            estimator.add(t, (y, 0.0))
    assert window.velocity_nm_per_s[0] == pytest.approx(0.002)
    assert abs(weighted.velocity_nm_per_s[0] - 0.002) < 0.5 * abs(plain.velocity_nm_per_s[0] - 0.002)
    assert window.times_s.tolist() == [150.0, 160.0, 170.0, 180.0, 190.0]
    assert window.offsets_nm.shape == (5, 2)


def test_estimator_rejects_bad_input() -> None:
    drift = DriftEstimator()
    drift.add(10.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="backwards"):
        drift.add(5.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="offset_nm"):
        drift.add(11.0, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="time_s"):
        drift.add(math.nan, (0.0, 0.0))
    with pytest.raises(ValueError, match="max_measurements"):
        DriftEstimator(max_measurements=0)
    with pytest.raises(ValueError, match="half_life_s"):
        DriftEstimator(half_life_s=-1.0)
