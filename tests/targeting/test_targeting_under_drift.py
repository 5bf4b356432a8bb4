"""Beam targeting at 30 nm/min of drift on the MoS2 twin, checked against the twin's ground truth and its own dose record."""

from __future__ import annotations

import pathlib

import numpy
import pytest

from nion_autoem import dose_map
from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plans.beam_targeting import BeamTargeting
from nion_autoem.plans.beam_targeting import Outcome
from nion_autoem.plans.beam_targeting import TargetingSettings
from nion_autoem.products import MemorySink
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration
from nion_autoem.twin import lattice
from tests.twins import mos2_twin

FRAME = ScanFrame((192, 192), fov_nm=2.2)
DRIFT_NM_PER_S = (0.3, -0.4)  # 30 nm/min


def test_a_vacancy_line_at_30_nm_per_min_matches_the_ground_truth(tmp_path: pathlib.Path) -> None:
    configuration = create_configuration("mos2", seed=6, drift_nm_per_s=DRIFT_NM_PER_S)
    settings = TargetingSettings(FRAME, line=((0.0, -0.6), (0.0, 0.6), 0.35), max_targets=3)
    with UsimSession(configuration) as session:
        policy = BeamTargeting(settings)
        runner = ExperimentRunner(session.microscope(), policy, run_dir=tmp_path / "run", sink=MemorySink())
        session.run_until_done(runner, timeout=120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        twin = mos2_twin(configuration)
        truth = twin.ground_truth()
        events = list(twin.damage_events)
    assert len(policy.targets) == 3
    assert [t.outcome for t in policy.targets] == [Outcome.TRANSFORMED] * 3, [t.explanation(settings) for t in policy.targets]
    # Where the sample was at t = 0, from the twin's truth: the targets were picked on the survey that began then.
    at_start = truth.position_nm - twin.drift.offset_nm(truth.time_s)
    survey_end = read_journal(tmp_path / "run").steps[0].entry["data"]["HAADF"]["metadata"]["acquisition_clock_s"][1]
    targeted = []
    for target in policy.targets:
        # each target was picked where the raster saw the column, so its column is the nearest one then
        seen = at_start + twin.drift.offset_nm(target.survey_time_s)
        column = int(numpy.argmin(numpy.linalg.norm(seen - numpy.asarray(target.position_nm), axis=1)))
        targeted.append(column)
        first = [e for e in events if e.column_id == column and e.time_s > survey_end]
        assert first and first[0].before == "S2", f"target {target.index + 1}: the twin shows no ejection of column {column}"
        assert truth.column_class[column] in (lattice.S1, lattice.EMPTY)
        assert target.detected_by is not None and target.verified_class in ("S1", "empty")
    # The drift estimate followed the sample (0.5 nm/s on the twin's clock).
    registrations = [s.entry["result"] for s in read_journal(tmp_path / "run").steps if s.action.label.startswith("register")]
    velocity = numpy.asarray(registrations[-1]["velocity_nm_per_s"])
    # within 30 %: it learns from registrations and tracking excursions, not from the short checks after an alarm
    assert numpy.linalg.norm(velocity - numpy.asarray(DRIFT_NM_PER_S)) < 0.15, velocity
    # collateral: untargeted S columns in the field changed by the targeting (not by the first survey)
    inside = FRAME.contains_nm(at_start, margin=0.05) & numpy.isin(truth.column_class, (lattice.S2, lattice.S1, lattice.EMPTY))
    changed_after_survey = {e.column_id for e in events if e.time_s > survey_end}
    collateral = [c for c in numpy.flatnonzero(inside) if int(c) in changed_after_survey and int(c) not in targeted]
    assert len(collateral) <= 1
    # the dose map from the journal agrees with the twin's own record
    dose = dose_map.from_journal(tmp_path / "run", FRAME)
    near = FRAME.contains_nm(at_start, margin=0.05)
    mapped = dose.dose_at(at_start[near]) / 100.0
    recorded = truth.dose_e_per_A2[near]
    assert numpy.abs(mapped - recorded).sum() / recorded.sum() < 0.05
    # the events table says what happened in words
    table = policy.events()
    assert table.columns[-1] == "what_happened" and all(row[-1].startswith("transformed: the S2 column became") for row in table.rows)


def test_a_run_without_targets_says_why_and_what_to_change(tmp_path: pathlib.Path) -> None:
    survey = numpy.random.default_rng(0).poisson(50.0, (64, 64)).astype(float)
    frame = ScanFrame((64, 64), 2.0)

    def only_molybdenum(image: numpy.ndarray, pixel_size_nm: float) -> tuple[numpy.ndarray, list[str]]:
        return numpy.array([[10.0, 10.0], [30.0, 30.0]]), ["Mo", "Mo"]

    def nothing(image: numpy.ndarray, pixel_size_nm: float) -> tuple[numpy.ndarray, list[str]]:
        return numpy.zeros((0, 2)), []

    for finder, words in ((only_molybdenum, "none of them S2"), (nothing, "found no columns")):
        policy = BeamTargeting(TargetingSettings(frame), atom_finder=finder)
        runner = ExperimentRunner(ReplayMicroscope(survey, frame), policy, run_dir=tmp_path / finder.__name__)
        runner.run()
        assert runner.state is RunState.FINISHED
        sentence = policy.outcome_sentence()
        assert words in sentence and ("fresh area" in sentence or "focus" in sentence), sentence


def test_settings_that_cannot_work_are_explained() -> None:
    with pytest.raises(ValueError, match="stop_within_samples"):
        TargetingSettings(FRAME, stop_within_samples=5)
    with pytest.raises(ValueError, match="verify_shape"):
        TargetingSettings(FRAME, verify_shape=(4, 4))
    with pytest.raises(ValueError, match="track_pixel_time_us"):
        TargetingSettings(FRAME, track_pixel_time_us=0.0)
