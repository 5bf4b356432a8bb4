"""The band's calibration follows what is measured."""

from __future__ import annotations

import numpy

from nion_autoem_forecast.baselines import linear_extrapolation
from nion_autoem_forecast.baselines import persistence
from nion_autoem_forecast.uncertainty import OnlineCalibration


def test_a_band_too_narrow_is_widened_until_about_nine_in_ten_values_fall_inside() -> None:
    rng = numpy.random.default_rng(0)
    calibration = OnlineCalibration(horizon=2)
    for step in range(3000):
        calibration.expect(step, numpy.array([-0.2, -0.2]), numpy.zeros(2), numpy.array([0.2, 0.2]))
        calibration.observe(step + 1, float(rng.normal()))
    assert calibration.scale[0] > 4.0  # a band of +-0.2 for unit noise had to grow about 8 times
    assert 0.85 < calibration.coverage(0) < 0.93


def test_the_baselines() -> None:
    assert persistence([[1.0], [2.0]], 3)[:, 0].tolist() == [2.0, 2.0, 2.0]
    assert linear_extrapolation(numpy.arange(10.0), 2).tolist() == [10.0, 11.0]
