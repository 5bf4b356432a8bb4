"""Stage, focus and scan field through SwiftMicroscope on the MoS2 twin: what an operator's controls do to the image."""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing
import pytest
import scipy.ndimage
from nion.utils import Geometry
from skimage.registration import phase_cross_correlation

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import lattice

_NDArray = numpy.typing.NDArray[typing.Any]

FRAME_SHAPE = (128, 128)


def _image(scope: typing.Any, frame: ScanFrame, pixel_time_us: float = 4.0) -> _NDArray:
    return numpy.asarray(scope.survey(frame, pixel_time_us=pixel_time_us).xdata.data, dtype=float)


def _registration_nm(moving: _NDArray, reference: _NDArray, frame: ScanFrame) -> _NDArray:
    """Shift (y, x) in nm that brings ``reference`` onto ``moving``, to 1/100 pixel."""
    register = typing.cast("typing.Callable[..., tuple[_NDArray, float, float]]", phase_cross_correlation)  # scikit-image is untyped
    shift, _, _ = register(moving, reference, upsample_factor=100)
    return typing.cast(_NDArray, numpy.asarray(shift) * frame.pixel_size_nm)


def _sharpness(image: _NDArray) -> float:
    """Variance of the Laplacian of the image smoothed over 2 pixels (smoothing keeps shot noise from dominating)."""
    return float(scipy.ndimage.gaussian_laplace(image, 2.0).var())


def _edge_x_nm(twin: typing.Any) -> float:
    """Scan-field x of the flake's right-hand edge along y = 0."""
    truth = twin.ground_truth()
    near_axis = numpy.abs(truth.position_nm[:, 0]) < 1.0
    return float(truth.position_nm[near_axis, 1].max())


def test_a_stage_move_brings_the_commanded_point_into_view(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=3, line_jitter_nm=0.0)
    scope = harness.microscope()
    twin = harness.configuration.twin
    assert scope.stage_position_nm == (0.0, 0.0)
    frame = ScanFrame(FRAME_SHAPE, fov_nm=4.0, center_nm=(0.3, -0.2))
    before = _image(scope, frame)
    atoms_before = twin.ground_truth().position_nm
    move = (0.37, -0.52)  # not a lattice translation, so a lattice that ignored the stage would not register

    scope.move_stage(move)

    assert scope.stage_position_nm == pytest.approx(move, abs=1e-9)
    stage_m = harness.stem.GetVal2D("stage_position_m", axis=("x", "y"))
    assert (stage_m.y, stage_m.x) == pytest.approx((-move[0] * 1e-9, -move[1] * 1e-9), abs=1e-18)  # usim's control moves the specimen
    # Every atom moves against the stage move in scan-field coordinates (the view moved onto the commanded point) ...
    assert numpy.allclose(twin.ground_truth().position_nm - atoms_before, numpy.negative(move), atol=1e-9)
    # ... and the image shows it: the field moved back by the stage move sees the same atoms on the same pixels.
    followed = ScanFrame(FRAME_SHAPE, fov_nm=4.0, center_nm=(0.3 - move[0], -0.2 - move[1]))
    residual_nm = _registration_nm(_image(scope, followed), before, frame)
    assert numpy.linalg.norm(residual_nm) < 0.02, residual_nm  # measured: about 0.001 nm
    # The field left where it was shows other atoms there.
    stayed_nm = _registration_nm(_image(scope, frame), before, frame)
    assert numpy.linalg.norm(stayed_nm) > 0.05, stayed_nm


def test_move_outside_the_limits_raises_before_anything_moves(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=0)
    scope = harness.microscope(stage_limits_nm=((-5.0, 5.0), (-5.0, 5.0)))
    assert scope.stage_limits_nm == ((-5.0, 5.0), (-5.0, 5.0))
    scope.move_stage((1.0, -2.0))
    for target in ((6.0, 0.0), (0.0, -5.5), (float("nan"), 0.0), (0.0, float("inf"))):
        with pytest.raises(ValueError, match=r"y in \[-5, 5\] nm.*x in \[-5, 5\] nm"):
            scope.move_stage(target)
        assert scope.stage_position_nm == pytest.approx((1.0, -2.0))
        stage_m = harness.stem.GetVal2D("stage_position_m", axis=("x", "y"))
        assert (stage_m.y, stage_m.x) == pytest.approx((-1e-9, 2e-9), abs=1e-18)
    with pytest.raises(ValueError, match=r"\(y, x\) pair"):
        scope.move_stage((1.0,))
    with pytest.raises(ValueError, match="min <= max"):
        harness.microscope(stage_limits_nm=((5.0, -5.0), (-5.0, 5.0)))


def test_defocus_blurs_the_survey_and_refocusing_restores_it(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=3)
    scope = harness.microscope()
    # Half flake, half vacuum: the edge keeps a measurable sharpness even when the lattice has blurred away.
    frame = ScanFrame(FRAME_SHAPE, fov_nm=8.0, center_nm=(0.0, _edge_x_nm(harness.configuration.twin)))
    focus = scope.defocus_nm
    assert focus == pytest.approx(500.0)  # usim's C10 at start-up, which the twin takes as in focus
    sharpness = []
    for delta in (0.0, 5.0, 10.0, 20.0):
        scope.set_defocus(focus + delta)
        assert scope.defocus_nm == pytest.approx(focus + delta)
        assert harness.stem.GetVal("C10") == pytest.approx((focus + delta) * 1e-9)
        sharpness.append(_sharpness(_image(scope, frame)))
    # measured (seed 3): about 3.6, 1.0, 0.37, 0.15
    assert all(a > 1.5 * b for a, b in zip(sharpness, sharpness[1:])), sharpness
    scope.set_defocus(focus - 10.0)
    assert sharpness[3] < _sharpness(_image(scope, frame)) < sharpness[1]  # under- and over-focus blur alike
    scope.set_defocus(focus)
    assert _sharpness(_image(scope, frame)) == pytest.approx(sharpness[0], rel=0.25)


def test_twin_built_with_another_focus_is_sharpest_there(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=3, focus_c10_nm=510.0)
    scope = harness.microscope()
    frame = ScanFrame(FRAME_SHAPE, fov_nm=8.0, center_nm=(0.0, _edge_x_nm(harness.configuration.twin)))
    at_start = _sharpness(_image(scope, frame))
    scope.set_defocus(510.0)
    assert _sharpness(_image(scope, frame)) > 3 * at_start


def test_set_defocus_refuses_nonsense(twin_harness: typing.Any) -> None:
    scope = twin_harness("mos2", seed=0).microscope()
    for bad in (float("nan"), float("inf"), 2e4, -1.5e4):
        with pytest.raises(ValueError, match="defocus"):
            scope.set_defocus(bad)
    assert scope.defocus_nm == pytest.approx(500.0)


def test_adf_trace_on_a_column_drops_when_defocused(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=1, line_jitter_nm=0.0)
    scope = harness.microscope()
    scope.survey(ScanFrame(FRAME_SHAPE, fov_nm=3.0), pixel_time_us=1.0)
    truth = harness.configuration.twin.ground_truth()
    metal = numpy.flatnonzero((truth.column_class == lattice.MO) & (numpy.linalg.norm(truth.position_nm, axis=1) < 0.8))[0]
    scope.park_probe(tuple(truth.position_nm[metal]))
    focused = float(numpy.mean(scope.adf_trace(200, sample_time_us=20.0).xdata.data))
    scope.set_defocus(scope.defocus_nm + 10.0)
    defocused = float(numpy.mean(scope.adf_trace(200, sample_time_us=20.0).xdata.data))
    assert defocused < 0.6 * focused, (focused, defocused)


def test_set_scan_frame_changes_the_field_without_recording(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=0)
    scope = harness.microscope()
    scope.survey(ScanFrame((64, 64), fov_nm=4.0), pixel_time_us=1.0)
    twin = harness.configuration.twin
    electrons, now = twin.electrons_received, harness.configuration.clock.now_s
    frame = ScanFrame((96, 128), fov_nm=2.5, center_nm=(0.4, -0.3), rotation_rad=math.radians(20.0))

    scope.set_scan_frame(frame)

    assert scope.scan_frame == frame
    assert not harness.scan.is_recording
    assert twin.electrons_received == electrons and harness.configuration.clock.now_s == now
    # Probe fractions refer to the new field, and the next survey scans it.
    scope.park_probe(tuple(frame.pixel_to_nm((10.0, 100.0))))
    fraction = harness.stem.probe_position
    assert isinstance(fraction, Geometry.FloatPoint)
    assert frame.fraction_to_pixel((fraction.y, fraction.x)) == pytest.approx((10.0, 100.0))
    scope.make_safe()
    scope.unblank()
    assert scope.survey(pixel_time_us=1.0).frame == frame
