from __future__ import annotations

import typing

import numpy
import numpy.typing
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import electrons
from nion_autoem.replay import ReplayMicroscope


def make() -> tuple[ReplayMicroscope, ScanFrame, numpy.typing.NDArray[numpy.float64]]:
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
        scope.survey(ScanFrame((10, 10), 1.0, center_nm=(5.0, 5.0)))
    assert scope.scan_frame == frame  # a refused frame leaves the context as it was


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


def test_a_sub_field_is_served_by_resampling_the_recording() -> None:
    scope, frame, si = make()
    sub = ScanFrame((16, 24), fov_nm=2.0, center_nm=(1.2, -0.6), rotation_rad=0.5)
    scope.set_scan_frame(sub)
    assert scope.scan_frame == sub and scope.recorded_frame == frame
    m = scope.survey(pixel_time_us=2.0)
    assert m.frame == sub and m.xdata.data_shape == (16, 24)
    assert m.dwell_s == pytest.approx(16 * 24 * 2e-6)
    # The recording is linear in (row, column), 30 * row + column, so bilinear resampling is exact.
    rows, cols = numpy.moveaxis(frame.nm_to_pixel(sub.pixel_grid_nm()), -1, 0)
    assert numpy.allclose(m.xdata.data, 30 * rows + cols)
    # survey(frame) does the same in one call, and the recorded frame serves the recording itself.
    assert numpy.allclose(scope.survey(sub).xdata.data, 30 * rows + cols)
    assert numpy.array_equal(scope.survey(frame).xdata.data, numpy.arange(600).reshape(20, 30))
    # Probe positions stay scan-field nm: the spectrum under a point is the same in either field.
    scope.set_scan_frame(sub)
    scope.park_probe(tuple(frame.pixel_to_nm((9, 13))))
    assert numpy.array_equal(scope.acquire_spectrum(20).xdata.data, si[4, 6])
    with pytest.raises(OutOfFieldError):
        scope.park_probe(tuple(frame.pixel_to_nm((1, 1))))  # inside the recording, outside the sub-field


def test_frames_reaching_outside_the_recording_are_refused() -> None:
    scope, frame, _ = make()
    for outside in (ScanFrame((20, 30), fov_nm=6.5, center_nm=frame.center_nm, rotation_rad=frame.rotation_rad),  # larger
                    ScanFrame((20, 30), fov_nm=6.0, center_nm=frame.center_nm, rotation_rad=0.0),  # turned
                    ScanFrame((8, 8), fov_nm=1.0, center_nm=(4.0, -1.0))):  # off to one side
        with pytest.raises(ValueError, match="inside its recorded frame"):
            scope.set_scan_frame(outside)
        assert scope.scan_frame == frame


def test_a_replay_has_no_stage_and_keeps_the_defocus_it_is_given() -> None:
    scope, _, _ = make()
    assert scope.stage_position_nm == (0.0, 0.0) and scope.stage_limits_nm == ((0.0, 0.0), (0.0, 0.0))
    scope.move_stage((0.0, 0.0))
    with pytest.raises(ValueError, match="a replay has no stage"):
        scope.move_stage((1.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        scope.move_stage((float("nan"), 0.0))
    recorded_at = ReplayMicroscope(numpy.zeros((4, 4)), ScanFrame((4, 4), 1.0), stage_position_nm=(120.0, -40.0), defocus_nm=-3.0)
    assert recorded_at.stage_limits_nm == ((120.0, 120.0), (-40.0, -40.0))
    recorded_at.move_stage((120.0, -40.0))
    with pytest.raises(ValueError, match=r"recorded at stage \(120, -40\) nm"):
        recorded_at.move_stage((0.0, 0.0))
    assert recorded_at.defocus_nm == -3.0
    before = scope.survey().xdata.data
    scope.set_defocus(250.0)
    assert scope.defocus_nm == 250.0
    assert numpy.array_equal(scope.survey().xdata.data, before)  # focus does not change a recording
    for bad in (float("nan"), 2e4):
        with pytest.raises(ValueError, match="defocus"):
            scope.set_defocus(bad)
    assert scope.defocus_nm == 250.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.acquire_spectrum(-1.0), "exposure_ms must be a finite number > 0"),
    (lambda s: s.acquire_spectrum(float("nan")), "exposure_ms"),
    (lambda s: s.acquire_camera_frame(0.0), "exposure_ms"),
    (lambda s: s.adf_trace(10, -5.0), "sample_time_us must be a finite number > 0"),
    (lambda s: s.adf_trace(10, float("nan")), "sample_time_us"),
    (lambda s: s.adf_trace(0, 10.0), "samples must be a positive whole number"),
    (lambda s: s.adf_trace(2.5, 10.0), "samples"),
    (lambda s: s.survey(pixel_time_us=float("nan")), "pixel_time_us"),
])
def test_bad_acquisition_settings_say_what_would_be_right(call: typing.Callable[[ReplayMicroscope], object], message: str) -> None:
    scope, frame, _ = make()
    scope.park_probe(tuple(frame.pixel_to_nm((5, 5))))
    with pytest.raises(ValueError, match=message):
        call(scope)


def test_bad_beam_current_is_refused_at_construction() -> None:
    for bad in (-1e-12, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="beam_current_A must be a finite probe current >= 0 A"):
            ReplayMicroscope(numpy.zeros((4, 4)), ScanFrame((4, 4), 1.0), beam_current_A=bad)

