"""The stage-scale twin: objects and their truth, rendering at any field, an imprecise stage, focus that varies, dose."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem.focus import sharpness
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import InstrumentError
from nion_autoem.twin.stage_sample import OBJECT_CLASSES
from nion_autoem.twin.stage_sample import RARE_CLASS
from nion_autoem.twin.stage_sample import StageErrors
from nion_autoem.twin.stage_sample import StageMicroscope
from nion_autoem.twin.stage_sample import StageSample


def test_a_grid_square_holds_every_class_and_about_one_percent_rare_objects() -> None:
    sample = StageSample(3, size_nm=40_000.0, objects=800)
    kinds = [o.kind for o in sample.objects]
    assert set(kinds) == set(OBJECT_CLASSES)
    assert 0.005 <= kinds.count(RARE_CLASS) / len(kinds) <= 0.02
    assert len(sample.truth_rows()) == len(kinds) and {"kind", "y_nm", "x_nm", "radius_nm"} <= set(sample.truth_rows()[0])


def test_it_renders_from_twenty_micrometres_down_to_fifty_nanometres() -> None:
    sample = StageSample(3, size_nm=40_000.0, objects=800)
    platelet = next(o for o in sample.objects if o.kind == RARE_CLASS)
    wide = sample.render(ScanFrame((256, 256), 20_000.0))
    assert wide.shape == (256, 256) and wide.std() > 0.2  # objects everywhere
    # on the platelet at 50 nm: uniformly its brightness (film 1 + 1.8), film texture on top
    close = sample.render(ScanFrame((64, 64), 50.0), offset_nm=platelet.centre_nm)
    assert abs(float(close.mean()) - 2.8) < 0.3


def test_the_stage_reports_where_it_was_told_and_lands_elsewhere_with_backlash_on_reversal() -> None:
    scope = StageMicroscope(StageSample(1, size_nm=20_000.0, objects=50), errors=StageErrors(backlash_nm=200.0, repeatability_nm=0.0, settling_nm=0.0), seed=1)
    scope.move_stage((0.0, 1000.0))
    forward = numpy.subtract(scope.true_stage_position_nm, scope.stage_position_nm)
    scope.move_stage((0.0, 0.0))
    back = numpy.subtract(scope.true_stage_position_nm, scope.stage_position_nm)
    assert scope.stage_position_nm == (0.0, 0.0)
    assert back[1] - forward[1] == pytest.approx(200.0)  # reversing x costs the backlash
    noisy = StageMicroscope(StageSample(1, size_nm=20_000.0, objects=50), seed=2)
    errors = []
    for k in range(20):
        noisy.move_stage((0.0, 400.0 * k))
        errors.append(numpy.subtract(noisy.true_stage_position_nm, noisy.stage_position_nm))
    spread = numpy.std(errors, axis=0)
    assert 20.0 < spread.max() < 300.0  # tens to hundreds of nm
    before = noisy.true_stage_position_nm
    noisy.clock.advance(30.0)
    assert numpy.hypot(*numpy.subtract(noisy.true_stage_position_nm, before)) > 0.5  # settling drift after a move
    with pytest.raises(ValueError, match="beyond the limits"):
        noisy.move_stage((0.0, 50_000.0))


def test_focus_varies_across_the_sample_and_defocus_blurs() -> None:
    sample = StageSample(2, size_nm=20_000.0, objects=80)
    scope = StageMicroscope(sample, errors=StageErrors(0.0, 0.0, 0.0), seed=0)
    scope.unblank()
    corner = (8000.0, 8000.0)
    assert abs(float(sample.height_nm(corner)) - float(sample.height_nm((0.0, 0.0)))) > 50.0
    scope.move_stage(corner)
    frame = ScanFrame((128, 128), 200.0)
    scope.set_defocus(float(sample.height_nm(corner)))
    sharp = sharpness(scope.survey(frame, pixel_time_us=20.0).xdata.data)
    scope.set_defocus(float(sample.height_nm(corner)) + 600.0)
    blurred = sharpness(scope.survey(frame, pixel_time_us=20.0).xdata.data)
    assert scope.blur_nm() > 5.0 and sharp > blurred


def test_surveys_count_dose_and_noise_and_nothing_while_blanked() -> None:
    scope = StageMicroscope(StageSample(0, size_nm=10_000.0, objects=40), seed=0)
    blanked = scope.survey(ScanFrame((64, 64), 2000.0), pixel_time_us=2.0)
    assert blanked.dose_e == 0.0 and float(numpy.sum(blanked.xdata.data)) == 0.0
    scope.unblank()
    start = scope.now_s
    m = scope.survey(ScanFrame((64, 64), 2000.0), pixel_time_us=2.0)
    assert m.dose_e == pytest.approx(50e-12 * 64 * 64 * 2e-6 / 1.602176634e-19)
    assert scope.now_s - start == pytest.approx(64 * 64 * 2e-6 + StageMicroscope.FLYBACK_S)
    assert m.xdata.dimensional_calibrations[0].units == "nm"
    with pytest.raises(InstrumentError, match="not parked"):
        scope.acquire_spectrum(100.0)
