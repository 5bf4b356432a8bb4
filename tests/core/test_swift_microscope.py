"""The instrument facade on nionswift-usim, through the public instrumentation API."""

from __future__ import annotations

import threading
import time
import typing

import numpy
import pytest
from nion.instrumentation import HardwareSource
from nion.instrumentation import camera_base
from nion.instrumentation import stem_controller
from nion.utils import Registry

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import electrons


def _stem_controller() -> stem_controller.STEMController:
    stem = Registry.get_component("stem_controller")
    assert isinstance(stem, stem_controller.STEMController)
    return stem


def test_survey_frames_carry_calibrations(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    frame = ScanFrame((128, 256), fov_nm=40.0, center_nm=(2.0, -3.0))
    m = scope.survey(frame, channels=("HAADF", "MAADF"), pixel_time_us=2.0)
    assert set(m.data) == {"HAADF", "MAADF"}
    haadf = m.data["HAADF"]
    assert haadf.data_shape == (128, 256)
    cy, cx = haadf.dimensional_calibrations
    assert cy.units == cx.units == "nm"
    assert cx.scale == pytest.approx(40.0 / 256) and cy.scale == pytest.approx(40.0 / 256)
    # Swift's own convention: origin at -centre - half the field
    assert cy.offset == pytest.approx(-2.0 - 20.0 / 2) and cx.offset == pytest.approx(3.0 - 20.0)
    assert m.frame == frame and scope.scan_frame == frame
    assert m.dwell_s == pytest.approx(128 * 256 * 2e-6)
    assert m.dose_e == pytest.approx(electrons(scope.beam_current_A, m.dwell_s))
    assert haadf.metadata["nion_autoem"]["scan_frame"] == frame.to_dict()


def test_surveys_leave_swifts_scan_items_and_the_users_channels_alone(usim_session: typing.Any) -> None:
    """A survey is read from the scan device: no "Scan" item is made or rewritten, and the channels the user enabled stay."""
    scope = usim_session.microscope()
    scan = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_scan_device")
    assert scan is not None
    scan.set_channel_enabled(1, False)
    before = [item.title for item in usim_session.document_model.data_items]
    m = scope.survey(ScanFrame((64, 64), 8.0), channels=("HAADF", "MAADF"))
    usim_session.pump(0.3)
    assert [item.title for item in usim_session.document_model.data_items] == before
    assert scan.get_channel_enabled(0) and not scan.get_channel_enabled(1)
    assert set(m.data) == {"HAADF", "MAADF"} and not numpy.array_equal(m.data["HAADF"].data, m.data["MAADF"].data)
    source = m.data["MAADF"].metadata["hardware_source"]
    assert source["channel_name"] == "MAADF" and source["pixel_time_us"] > 0 and m.data["MAADF"].metadata["scan"]["fov_nm"] == pytest.approx(8.0)


def test_make_safe_cuts_a_long_survey_short(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    outcome: dict[str, typing.Any] = {}

    def survey() -> None:
        try:
            outcome["survey"] = scope.survey(ScanFrame((512, 512), 20.0), pixel_time_us=20.0)  # 5.2 s of beam
        except InstrumentError as e:
            outcome["error"] = e

    worker = threading.Thread(target=survey)
    worker.start()
    time.sleep(0.3)
    made_safe = time.perf_counter()
    scope.make_safe()
    worker.join(timeout=10.0)
    assert not worker.is_alive() and "survey" not in outcome, outcome
    assert "cut short" in str(outcome["error"]) and time.perf_counter() - made_safe < 2.5
    assert scope.is_blanked
    assert scope.survey(ScanFrame((32, 32), 8.0)).data["HAADF"].data_shape == (32, 32)  # the next one works


@pytest.mark.parametrize("rotation", [0.0, 0.4])
def test_pixel_to_probe_to_pixel_round_trip_within_half_a_pixel(usim_session: typing.Any, rotation: float) -> None:
    scope = usim_session.microscope()
    frame = ScanFrame((200, 300), fov_nm=30.0, center_nm=(-1.5, 2.5), rotation_rad=rotation)
    scope.survey(frame, pixel_time_us=0.5)
    stem = _stem_controller()
    rng = numpy.random.default_rng(0)
    for pixel in rng.uniform((0, 0), (199, 299), size=(20, 2)):
        scope.park_probe(tuple(frame.pixel_to_nm(pixel)))
        assert stem.probe_state == "parked"
        fraction = stem.probe_position
        assert fraction is not None
        back = frame.fraction_to_pixel((fraction.y, fraction.x))
        assert numpy.all(numpy.abs(back - pixel) <= 0.5)
        assert scope.probe_position_nm == pytest.approx(tuple(frame.pixel_to_nm(pixel)))


def scope_binning(session: typing.Any) -> int:
    eels = typing.cast("camera_base.CameraHardwareSource | None", HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_eels_camera"))
    assert eels is not None
    return int(eels.get_current_frame_parameters().binning)


def test_spectrum_has_energy_calibration(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    scope.survey(ScanFrame((64, 64), 20.0))
    scope.park_probe((1.0, 1.0))
    m = scope.acquire_spectrum(exposure_ms=10)
    spectrum = m.xdata
    assert spectrum.data_shape[0] >= 256 and len(spectrum.data_shape) == 1
    energy = spectrum.dimensional_calibrations[0]
    stem = _stem_controller()
    assert energy.units == "eV"
    assert energy.offset == pytest.approx(stem.GetVal("eels_x_offset"))
    # binned channels are wider than the detector's own by the binning factor
    binning = scope_binning(usim_session)
    assert energy.scale == pytest.approx(stem.GetVal("eels_x_scale") * binning)
    assert energy.scale > 0 and energy.offset < 0  # the zero-loss peak is on the detector
    # the ZLP sits at 0 eV on that axis
    assert abs(energy.convert_to_calibrated_value(int(numpy.argmax(spectrum.data)))) < 5.0
    assert m.position_nm == pytest.approx((1.0, 1.0))
    assert m.dose_e == pytest.approx(electrons(scope.beam_current_A, 0.010))


def test_camera_frame_and_adf_trace_at_the_parked_probe(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    scope.survey(ScanFrame((64, 64), 20.0))
    scope.park_probe((0.0, 0.0))
    frame = scope.acquire_camera_frame(exposure_ms=5)
    assert frame.xdata.data.ndim == 2 and frame.kind == "camera"
    trace = scope.adf_trace(50, sample_time_us=100)
    assert trace.xdata.data_shape == (50,)
    assert trace.xdata.dimensional_calibrations[0].units == "ms"
    assert trace.xdata.dimensional_calibrations[0].scale == pytest.approx(0.1)
    assert trace.dwell_s == pytest.approx(50e-6 * 100)
    # the spot scan must not replace the survey as the probe's reference frame
    assert scope.scan_frame == ScanFrame((64, 64), 20.0)


def test_bad_input_gets_clear_errors(usim_session: typing.Any) -> None:
    scope = usim_session.microscope(max_dwell_s=1.0)
    scope.survey(ScanFrame((64, 64), 10.0))
    with pytest.raises(OutOfFieldError, match="outside the scan field"):
        scope.park_probe((50.0, 0.0))
    with pytest.raises(OutOfFieldError, match="finite"):
        scope.park_probe((float("nan"), 0.0))
    with pytest.raises(ValueError, match="unknown scan channel"):
        scope.survey(channels=("BF",))
    scope.make_safe()
    with pytest.raises(InstrumentError, match="not parked"):
        scope.acquire_spectrum(10)
    scope.park_probe((0.0, 0.0))
    with pytest.raises(ValueError, match="dwell"):
        scope.acquire_spectrum(5000)
    with pytest.raises(ValueError, match="samples"):
        scope.adf_trace(0, 10)


def test_missing_camera_is_reported(usim_session: typing.Any) -> None:
    scope = usim_session.microscope(eels_id="no_such_camera")
    assert not scope.has_eels
    scope.survey(ScanFrame((32, 32), 10.0))
    scope.park_probe((0.0, 0.0))
    with pytest.raises(InstrumentError, match="no EELS camera"):
        scope.acquire_spectrum(10)


def test_make_safe_blanks_and_unparks(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    scope.survey(ScanFrame((32, 32), 10.0))
    scope.unblank()
    scope.park_probe((0.5, 0.5))
    assert scope.probe_position_nm is not None and not scope.is_blanked
    scope.make_safe()
    assert scope.is_blanked and scope.probe_position_nm is None
    # blanked acquisitions deliver no dose
    scope.park_probe((0.5, 0.5))
    assert scope.acquire_spectrum(10).dose_e == 0.0


def test_make_safe_unparks_again_when_a_late_probe_graphic_update_parks_the_probe(usim_session: typing.Any) -> None:
    """Swift's probe graphic writes its position back on the UI thread; one that arrives just after make_safe re-parks the probe."""
    from nion.utils import Geometry

    scope = usim_session.microscope()
    scope.survey(ScanFrame((32, 32), 10.0))
    scope.park_probe((0.5, 0.5))
    stem = _stem_controller()
    late = threading.Timer(0.15, lambda: setattr(stem, "probe_position", Geometry.FloatPoint(0.4, 0.6)))
    safe = threading.Thread(target=scope.make_safe)  # as the runner does, off the UI thread
    late.start()
    safe.start()
    safe.join(5.0)
    late.join(5.0)
    assert scope.is_blanked and stem.probe_position is None


def test_stage_and_defocus_go_through_the_instrument_controls(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    stem = _stem_controller()
    assert scope.stage_position_nm == (0.0, 0.0)
    assert scope.stage_limits_nm == ((-1e6, 1e6), (-1e6, 1e6))  # about +-1 mm, a holder's travel
    scope.move_stage((250.0, -75.5))
    stage_m = stem.GetVal2D("stage_position_m", axis=("x", "y"))
    assert (stage_m.y, stage_m.x) == pytest.approx((-250e-9, 75.5e-9))  # usim's control moves the specimen (stage_control_sign=-1)
    assert scope.stage_position_nm == pytest.approx((250.0, -75.5))
    with pytest.raises(ValueError, match="outside the stage limits"):
        scope.move_stage((2e6, 0.0))
    assert scope.stage_position_nm == pytest.approx((250.0, -75.5))
    assert scope.defocus_nm == pytest.approx(stem.GetVal("C10") * 1e9) == pytest.approx(500.0)
    scope.set_defocus(-120.0)
    assert stem.GetVal("C10") == pytest.approx(-120e-9) and scope.defocus_nm == pytest.approx(-120.0)
    with pytest.raises(ValueError, match="beyond the allowed"):
        scope.set_defocus(1e5)
    assert scope.defocus_nm == pytest.approx(-120.0)


def test_set_scan_frame_sets_the_context_without_scanning(usim_session: typing.Any) -> None:
    scope = usim_session.microscope()
    stem = _stem_controller()
    frame = ScanFrame((100, 150), fov_nm=12.0, center_nm=(1.0, -2.0), rotation_rad=0.2)
    scope.set_scan_frame(frame)
    assert scope.scan_frame == frame
    assert stem.scan_context.fov_nm == pytest.approx(12.0)
    scan_controller = stem.scan_controller
    assert scan_controller is not None
    assert not scan_controller.is_playing and not scan_controller.is_recording
    # the dose of the next survey is counted once, through Measurement.of
    m = scope.survey(pixel_time_us=1.0)
    assert m.frame == frame and m.dose_e == pytest.approx(electrons(scope.beam_current_A, 100 * 150 * 1e-6))

