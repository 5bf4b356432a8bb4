"""The dose map: where the beam has been, how much each place took, and what a plan would add."""

from __future__ import annotations

import math
import pathlib

import numpy
import pytest

from nion_autoem.actions import Action
from nion_autoem.actions import Dwell
from nion_autoem.actions import Survey
from nion_autoem.actions import Verify
from nion_autoem.dose_map import DoseLimit
from nion_autoem.dose_map import DoseMap
from nion_autoem.dose_map import Exposure
from nion_autoem.dose_map import exposures_of_actions
from nion_autoem.dose_map import from_journal
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import electrons
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner

FIELD = ScanFrame((128, 128), fov_nm=4.0)


def test_a_survey_spreads_its_dose_evenly_and_a_parked_probe_piles_it_on_one_spot() -> None:
    dose = DoseMap(FIELD, shape=(32, 32))
    dose.add_exposure(Exposure(1.6e7, frame=ScanFrame((256, 256), 2.0, (1.0, 1.0))))
    inside, outside = dose.dose_at([(1.0, 1.0), (-1.0, -1.0)])
    assert inside == pytest.approx(1.6e7 / 4.0) and outside == 0.0
    dose.add_exposure(Exposure(1e6, position_nm=(-1.0, -1.0)))
    peak = 1e6 / (2 * math.pi * 0.05 ** 2)
    assert dose.dose_at([(-1.0, -1.0)])[0] == pytest.approx(peak)
    assert dose.dose_at([(-1.0, -0.9)])[0] == pytest.approx(peak * math.exp(-0.1 ** 2 / (2 * 0.05 ** 2)))
    # the grid shows the survey's quarter of the field and the spot's cell
    grid = dose.grid
    assert grid.shape == (32, 32) and 200 < numpy.count_nonzero(numpy.isclose(grid, 4e6)) <= 16 * 16
    assert dose.total_electrons == pytest.approx(1.7e7)


def test_drift_places_each_exposure_where_it_fell_on_the_sample() -> None:
    dose = DoseMap(FIELD)
    # the sample had drifted by (0.2, -0.1) nm when the probe was parked at (0.7, 0.4): it hit the atom that started at (0.5, 0.5)
    dose.add_exposure(Exposure(1e6, position_nm=(0.7, 0.4), offset_nm=(0.2, -0.1)))
    assert dose.dose_at([(0.5, 0.5)])[0] == pytest.approx(1e6 / (2 * math.pi * 0.05 ** 2))


def test_a_plan_that_would_push_an_area_past_its_limit_is_named() -> None:
    dose = DoseMap(FIELD)
    dose.add_exposure(Exposure(8e7, frame=ScanFrame((256, 256), 4.0)))  # 5e6 e/nm² everywhere
    limits = [DoseLimit(1e7, ((1.0, 1.0), (1.0, 1.0)), "keep fresh"), DoseLimit(1e12, name="anywhere")]
    actions: list[Action] = [Verify((1.0, 1.0), 1.0, (64, 64), 1.0), Dwell((-1.0, -1.0), 1000, 100.0)]
    planned = exposures_of_actions(actions, beam_current_A=200e-12, scan_frame=FIELD)
    assert [e.label for e in planned] == ["verify", "dwell"]
    assert planned[1].electrons == pytest.approx(electrons(200e-12, 0.1))
    breaches = dose.breaches(planned, limits)
    assert [b.limit.name for b in breaches] == ["keep fresh"]
    assert "past the limit 'keep fresh'" in str(breaches[0]) and breaches[0].dose_e_per_nm2 > 1e7
    # a gentler plan passes
    assert dose.breaches(exposures_of_actions([Survey(ScanFrame((64, 64), 4.0), pixel_time_us=0.5)], beam_current_A=200e-12, scan_frame=FIELD), limits) == []


def test_a_journal_becomes_a_dose_map(tmp_path: pathlib.Path) -> None:
    frame = ScanFrame((32, 32), 2.0)
    scope = ReplayMicroscope(numpy.full((32, 32), 100.0), frame, beam_current_A=100e-12)

    @plan("survey-and-dwell")
    def survey_and_dwell() -> PlanGenerator:
        yield Survey(frame, pixel_time_us=2.0)
        yield Dwell((0.25, -0.25), 200, 100.0)

    runner = ExperimentRunner(scope, survey_and_dwell(), run_dir=tmp_path / "run")
    runner.run()
    dose = from_journal(tmp_path / "run")
    assert dose.field == frame
    survey_e = electrons(100e-12, 32 * 32 * 2e-6)
    dwell_e = electrons(100e-12, 200 * 100e-6)
    # a 32 x 32 raster is summed pixel by pixel as probe-sized spots: even to a part in a thousand
    assert dose.dose_at([(-0.8, 0.8)])[0] == pytest.approx(survey_e / 4.0, rel=1e-3)
    assert dose.dose_at([(0.25, -0.25)])[0] == pytest.approx(survey_e / 4.0 + dwell_e / (2 * math.pi * 0.05 ** 2), rel=1e-3)


def test_bad_input_is_explained() -> None:
    with pytest.raises(ValueError, match="either a frame"):
        Exposure(1.0)
    with pytest.raises(ValueError, match="electrons"):
        Exposure(-1.0, position_nm=(0.0, 0.0))
    with pytest.raises(ValueError, match="e_per_nm2"):
        DoseLimit(0.0)
    with pytest.raises(TypeError, match="ScanFrame"):
        DoseMap((64, 64))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="points_nm"):
        DoseMap(FIELD).dose_at([1.0, 2.0, 3.0])
