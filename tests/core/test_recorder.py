"""Recording an operator's session in Swift, and replaying it as a plan on the twin."""

from __future__ import annotations

import pathlib
import time
import typing

import pytest
from nion.utils import Geometry

from nion_autoem.actions import Acquire
from nion_autoem.actions import Action
from nion_autoem.actions import MoveStage
from nion_autoem.actions import ParkProbe
from nion_autoem.actions import SetDefocus
from nion_autoem.actions import SetField
from nion_autoem.actions import Survey
from nion_autoem.actions import Wait
from nion_autoem.actions import action_to_dict
from nion_autoem.actions import is_action
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.journal import Journal
from nion_autoem.journal import read_journal
from nion_autoem.plan import GeneratorPlan
from nion_autoem.recording import plan_from_journal
from nion_autoem.recording import plan_script
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.recorder import OperatorRecorder
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.session import leaked_components
from nion_autoem.swift.usim_twin import create_configuration

FRAME = ScanFrame((64, 64), 8.0, (0.5, -0.25), 0.0)


def _manual_session(session: UsimSession) -> None:
    """What a person's clicks do, through the same public calls Swift's panels make."""
    stem = typing.cast(typing.Any, session.instrument)
    scan, eels = stem.scan_controller, stem.eels_camera
    # Scan panel: set the frame, then Record one frame of HAADF.
    fp = scan.get_current_frame_parameters()
    fp.pixel_size = Geometry.IntSize(height=FRAME.shape[0], width=FRAME.shape[1])
    fp.fov_nm = FRAME.fov_nm
    fp.center_nm = Geometry.FloatPoint(y=FRAME.center_nm[0], x=FRAME.center_nm[1])
    fp.pixel_time_us = 2.0
    scan.set_current_frame_parameters(fp)
    for index in range(4):
        scan.set_channel_enabled(index, index == 0)
    scan.record_immediate(fp)
    # Probe graphic dragged onto the image.
    stem.probe_position = Geometry.FloatPoint(y=0.25, x=0.75)
    # EELS panel: one recorded spectrum.
    cfp = eels.get_current_frame_parameters()
    cfp.exposure_ms = 20.0
    cfp.processing = "sum_project"
    eels.start_recording(frame_parameters=cfp).grab_xdatas(timeout=10.0)
    deadline = time.time() + 5.0
    while eels.is_recording and time.time() < deadline:
        time.sleep(0.005)
    # Stage control typed in (metres, native x/y axis).
    stem.SetVal2D("stage_position_m", Geometry.FloatPoint(y=5e-9, x=-3e-9), axis=("x", "y"))
    session.pump(0.05)


def _sequence(run_dir: pathlib.Path) -> list[dict[str, typing.Any]]:
    return [action_to_dict(step.action) for step in read_journal(run_dir).steps]


def test_a_manual_session_is_journaled_and_replays_as_the_same_plan(tmp_path: pathlib.Path) -> None:
    recorded_dir = tmp_path / "operator"
    with UsimSession(create_configuration("mos2", seed=0)) as session:
        with OperatorRecorder(recorded_dir, run_id="manual-1") as recorder:
            _manual_session(session)
        assert recorder.steps == 5
    assert leaked_components() == {}

    record = read_journal(recorded_dir)
    assert record.header["plan"] == "operator" and record.is_complete
    assert [step.source for step in record.steps] == ["operator"] * 5
    actions = [step.action for step in record.steps]
    assert [type(a) for a in actions] == [SetField, Survey, ParkProbe, Acquire, MoveStage]
    set_field, survey, park, acquire, move = actions
    assert isinstance(set_field, SetField) and set_field.frame == FRAME
    assert isinstance(survey, Survey) and survey.frame == FRAME and survey.channels == ("HAADF",) and survey.pixel_time_us == 2.0
    expected_park = FRAME.fraction_to_nm((0.25, 0.75))
    assert isinstance(park, ParkProbe) and park.position_nm == pytest.approx(tuple(expected_park))
    assert isinstance(acquire, Acquire) and acquire.position_nm == park.position_nm and acquire.exposure_ms == 20.0 and acquire.detector == "eels"
    assert move == MoveStage.to(y=-5.0, x=3.0)  # usim's control moves the specimen: the field's centre sees the opposite point
    # The data came with the steps, and the dose was counted.
    survey_m = record.steps[1].load_measurement()
    assert survey_m.xdata.data_shape == (64, 64) and survey_m.dose_e > 0
    spectrum = record.steps[3].load_measurement()
    assert spectrum.kind == "spectrum" and spectrum.xdata.dimensional_calibrations[-1].units == "eV"

    recorded = _sequence(recorded_dir)
    replay = plan_from_journal(recorded_dir)
    assert replay.name == "replay-of-manual-1" and replay.parameters["source_run_dir"] == str(recorded_dir)
    namespace: dict[str, typing.Any] = {}
    exec(plan_script(recorded_dir), namespace)
    scripted = namespace["recorded_session"]()
    assert isinstance(scripted, GeneratorPlan) and scripted.name == replay.name
    assert [action_to_dict(typing.cast(Action, a)) for a in scripted.messages() if is_action(a)] == recorded

    for name, plan in (("replayed", replay), ("scripted", scripted)):
        with UsimSession(create_configuration("mos2", seed=0)) as session:
            runner = ExperimentRunner(session.microscope(), plan, run_dir=tmp_path / name)
            session.run_until_done(runner, timeout=60.0)
            assert runner.state == RunState.FINISHED, runner.progress
        assert _sequence(tmp_path / name) == recorded


def test_plan_script_rebuilds_every_recorded_field_without_swift(tmp_path: pathlib.Path) -> None:
    """Awkward floats, a rotated frame and a relative move survive the journal and the script exactly."""
    actions: list[Action] = [Survey(frame=ScanFrame((32, 48), 7.1, (0.1, -1 / 3), 0.3), channels=("HAADF", "MAADF"), pixel_time_us=0.7, label="look 'here'"),
                             MoveStage.by(y=1e-3), SetDefocus(-12.5, relative=True), Wait(0.0), Acquire(None, 3.3, "ronchigram")]
    journal = Journal(tmp_path)
    journal.write_header("odd", plan="operator", parameters={}, microscope="none")
    for step, action in enumerate(actions, start=1):
        journal.write_step(step, action, Measurement({}, "none"), source="operator")
    journal.close()
    namespace: dict[str, typing.Any] = {}
    exec(plan_script(tmp_path, function_name="odd_session"), namespace)
    assert list(namespace["odd_session"]().messages()) == actions == list(plan_from_journal(tmp_path).messages())
