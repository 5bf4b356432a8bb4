from __future__ import annotations

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import electrons
from nion_autoem.replay import ReplayMicroscope


def make() -> tuple[ReplayMicroscope, ScanFrame, numpy.ndarray]:  # type: ignore[type-arg]
    frame = ScanFrame((20, 30), fov_nm=6.0, center_nm=(1.0, -1.0), rotation_rad=0.3)
    survey = numpy.arange(600, dtype=float).reshape(20, 30)
    si = numpy.zeros((10, 15, 40))
    for r in range(10):
        for c in range(15):
            si[r, c, (r + c) % 40] = 1.0
    datacube = numpy.zeros((10, 15, 8, 8))
    datacube[3, 4, 2, 5] = 7.0
    return ReplayMicroscope(survey, frame, spectrum_image=si, energy_axis=(-2.0, 0.25), datacube=datacube), frame, si


def test_survey_serves_the_recording_with_calibrations() -> None:
    scope, frame, _ = make()
    m = scope.survey()
    assert m.frame == frame
    assert numpy.array_equal(m.xdata.data, numpy.arange(600).reshape(20, 30))
    assert m.xdata.dimensional_calibrations[0].scale == pytest.approx(frame.pixel_size_nm)
    with pytest.raises(ValueError, match="recorded frame"):
        scope.survey(ScanFrame((10, 10), 1.0))


def test_spectra_follow_the_probe_on_a_coarser_grid() -> None:
    scope, frame, si = make()
    # survey pixel (7, 9) lies in spectrum-image cell (3, 4) on the 2x coarser grid
    scope.park_probe(tuple(frame.pixel_to_nm((7, 9))))
    m = scope.acquire_spectrum(20)
    assert numpy.array_equal(m.xdata.data, si[3, 4])
    energy = m.xdata.dimensional_calibrations[-1]
    assert (energy.offset, energy.scale, energy.units) == (-2.0, 0.25, "eV")
    assert m.dose_e == pytest.approx(electrons(scope.beam_current_A, 0.02))
    assert scope.acquire_camera_frame(5).xdata.data[2, 5] == 7.0


def test_trace_repeats_the_survey_value_and_blanking_zeroes_it() -> None:
    scope, frame, _ = make()
    scope.park_probe(tuple(frame.pixel_to_nm((5, 5))))
    trace = scope.adf_trace(16, 50.0)
    assert numpy.all(trace.xdata.data == 5 * 30 + 5)
    scope.blank()
    blanked = scope.adf_trace(16, 50.0)
    assert numpy.all(blanked.xdata.data == 0) and blanked.dose_e == 0.0


def test_errors() -> None:
    scope, frame, _ = make()
    with pytest.raises(InstrumentError, match="not parked"):
        scope.acquire_spectrum(10)
    with pytest.raises(OutOfFieldError):
        scope.park_probe((100.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        ReplayMicroscope(numpy.full((4, 4), numpy.nan), ScanFrame((4, 4), 1.0))
    with pytest.raises(ValueError, match="does not match"):
        ReplayMicroscope(numpy.zeros((4, 5)), ScanFrame((4, 4), 1.0))
    with pytest.raises(InstrumentError, match="no 4D dataset"):
        ReplayMicroscope(numpy.zeros((4, 4)), ScanFrame((4, 4), 1.0)).acquire_camera_frame(1.0)
    scope.park_probe((1.0, -1.0))
    scope.make_safe()
    assert scope.is_blanked and scope.probe_position_nm is None
