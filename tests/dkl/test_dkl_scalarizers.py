from __future__ import annotations

import math

import numpy
import pytest

from nion_autoem_dkl import scalarizers as sc

ENERGY = numpy.arange(0.0, 20.0, 0.05)


def gaussian(centre: float, width: float, height: float = 1.0) -> numpy.ndarray:
    return height * numpy.exp(-0.5 * ((ENERGY - centre) / width) ** 2)


def test_band_maximum_and_integral_of_gaussian() -> None:
    spectrum = gaussian(7.0, 0.5, 3.0) + gaussian(15.0, 0.5, 10.0)
    assert sc.BandMaximum((0.0, 0.05), (5.0, 9.0))(spectrum) == pytest.approx(3.0, rel=1e-6)
    # Area of a Gaussian is height * width * sqrt(2 pi).
    integral = sc.BandIntegral((0.0, 0.05), (4.0, 10.0))(spectrum)
    assert integral == pytest.approx(3.0 * 0.5 * math.sqrt(2 * math.pi), rel=1e-4)


def test_explicit_energy_array_matches_calibration() -> None:
    spectrum = gaussian(7.0, 0.5)
    assert sc.BandIntegral(ENERGY, (4.0, 10.0))(spectrum) == pytest.approx(sc.BandIntegral((0.0, 0.05), (4.0, 10.0))(spectrum))


def test_peak_ratio() -> None:
    spectrum = gaussian(5.0, 0.4, 2.0) + gaussian(12.0, 0.4, 1.0)
    assert sc.PeakRatio((0.0, 0.05), (3.0, 7.0), (10.0, 14.0))(spectrum) == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize("centre", [6.013, 6.037, 9.5])
def test_peak_energy_is_sub_channel(centre: float) -> None:
    spectrum = gaussian(centre, 0.6) + 0.01
    found = sc.PeakEnergy((0.0, 0.05), (4.0, 11.0))(spectrum)
    assert abs(found - centre) < 0.005  # a tenth of a channel


def test_edge_intensity_removes_power_law_background() -> None:
    energies = numpy.arange(250.0, 450.0, 0.25)
    background = 3e8 * energies**-3.2
    edge = numpy.where(energies >= 284.0, 4.0 * numpy.exp(-(energies - 284.0) / 200.0), 0.0)
    scalarizer = sc.EdgeIntensity(energies, (255.0, 280.0), (290.0, 340.0))
    expected = float(numpy.trapezoid(edge[(energies >= 290) & (energies <= 340)], energies[(energies >= 290) & (energies <= 340)]))
    assert scalarizer(background + edge) == pytest.approx(expected, rel=2e-3)
    numpy.testing.assert_allclose(scalarizer.background(background + edge)[:20], background[:20], rtol=1e-6)
    assert scalarizer(background) == pytest.approx(0.0, abs=1e-6)


def test_center_of_mass_magnitude_and_angle() -> None:
    frame = numpy.zeros((33, 33))
    frame[16 - 3, 16 + 4] = 5.0  # 3 rows up, 4 columns right of centre
    assert sc.CenterOfMassMagnitude()(frame) == pytest.approx(5.0)
    assert sc.CenterOfMassAngle()(frame) == pytest.approx(math.atan2(3.0, 4.0))
    assert sc.CenterOfMassMagnitude(centre=(13.0, 20.0))(frame) == pytest.approx(0.0)


def test_custom_and_rescalarize() -> None:
    spectra = [gaussian(5.0, 0.5, h) for h in (1.0, 2.0)]
    values = sc.scalarize_all(spectra, sc.Custom(lambda s: s.max()))
    numpy.testing.assert_allclose(values, [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        sc.Custom(lambda s: float("nan"))(spectra[0])


def test_bad_inputs_are_explained() -> None:
    with pytest.raises(ValueError, match="contains no channel"):
        sc.BandMaximum((0.0, 0.05), (50.0, 60.0))(gaussian(5.0, 0.5))
    with pytest.raises(ValueError, match="channels"):
        sc.BandMaximum(numpy.arange(3.0), (0.0, 1.0))(gaussian(5.0, 0.5))
    with pytest.raises(ValueError, match="1D"):
        sc.BandMaximum((0.0, 1.0), (0.0, 1.0))(numpy.zeros((2, 2)))
    with pytest.raises(ValueError, match="2D"):
        sc.center_of_mass(numpy.zeros(4))


def test_counting_errors_match_the_poisson_spread() -> None:
    rng = numpy.random.default_rng(0)
    axis = (0.0, 1.0)
    expected = numpy.concatenate([numpy.full(10, 30.0), numpy.full(10, 80.0)])
    ratio = sc.PeakRatio(axis, (0.0, 9.0), (10.0, 19.0))
    band = sc.BandIntegral(axis, (0.0, 9.0))
    gain = 2.0
    draws = [gain * rng.poisson(expected).astype(float) for _ in range(4000)]
    ratios = numpy.array([ratio(d) for d in draws])
    integrals = numpy.array([band(d) for d in draws])
    assert numpy.isclose(ratio.standard_error(gain * expected, gain), ratios.std(), rtol=0.08)
    assert numpy.isclose(band.standard_error(gain * expected, gain), integrals.std(), rtol=0.08)
    assert math.isinf(ratio.standard_error(numpy.zeros(20)))
