"""Plans and the engine: composition, checkpoints, suspenders, wrappers, rewards, dry runs, bad plans."""

from __future__ import annotations

import pathlib
import time

import numpy
import numpy.typing
import pytest

from nion_autoem.actions import Acquire
from nion_autoem.actions import Dwell
from nion_autoem.actions import MoveStage
from nion_autoem.actions import SetDefocus
from nion_autoem.actions import Survey
from nion_autoem.actions import Verify
from nion_autoem.actions import Wait
from nion_autoem.dry_run import dry_run
from nion_autoem.instrument import Measurement
from nion_autoem.journal import read_journal
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Report
from nion_autoem.plan import Reward
from nion_autoem.plan import SubPlan
from nion_autoem.plan import every_n_actions
from nion_autoem.plan import plan
from nion_autoem.plan import with_cleanup
from nion_autoem.products import MemorySink
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.suspenders import Suspender
from nion_autoem.suspenders import SuspenderContext
from nion_autoem.suspenders import dose_rate_above
from tests.core.plans import WalkPlan
from tests.core.plans import replay_scope


@plan("composed", rewards=(Reward("bright spectra", lambda m, r: float(r.get("total", 0.0) > 0), units="spectra"),))
def composed(points: int = 4) -> PlanGenerator:
    frame = yield Survey(label="survey")
    assert frame.frame is not None
    spectra = yield from spectra_along_diagonal(frame.frame.pixel_to_nm(numpy.linspace(4, 27, points)[:, None].repeat(2, axis=1)))
    return f"{len(spectra)} spectra"


def spectra_along_diagonal(positions: numpy.typing.NDArray[numpy.float64]) -> SubPlan:
    taken: list[Measurement] = []
    for y, x in positions:
        yield Checkpoint()
        spectrum = yield Acquire((float(y), float(x)), 10.0, label=f"spectrum {len(taken) + 1}")
        taken.append(spectrum)
        yield Report({"total": float(spectrum.xdata.data.sum())})
    return taken


def test_a_composed_plan_runs_journals_results_and_rewards(tmp_path: pathlib.Path) -> None:
    sink = MemorySink()
    runner = ExperimentRunner(replay_scope(), composed(points=4), run_dir=tmp_path / "run", sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED and progress.message == "4 spectra" and progress.step == 5
    assert progress.rewards == {"bright spectra": 4.0}
    record = read_journal(tmp_path / "run")
    assert record.header["plan"] == "composed" and record.header["parameters"]["points"] == 4
    assert [s.action.kind for s in record.steps] == ["survey"] + ["acquire"] * 4
    assert all(s.has_result and s.entry["result"]["total"] > 0 for s in record.steps[1:])
    assert record.steps[-1].entry["rewards"] == {"bright spectra": 4.0}
    curve = sink.products["reward-bright spectra"].xdata
    assert list(curve.data) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_replaying_a_journal_into_a_fresh_plan_gives_the_same_run_without_a_microscope(tmp_path: pathlib.Path) -> None:
    ExperimentRunner(replay_scope(), WalkPlan(points=6), run_dir=tmp_path / "run").run()
    from nion_autoem.runner import replay

    runner = replay(tmp_path / "run", WalkPlan(points=6))
    assert runner.state is RunState.FINISHED and runner.progress.step == 7


@pytest.mark.parametrize("bad, fix", [
    (lambda: "survey please", "not something a plan can yield"),
    (lambda: Acquire((0.0, 0.0), 10.0, detector="xray"), "detector must be one of"),  # type: ignore[arg-type]
    (lambda: Dwell((0.0, 0.0), -5, 100.0), "samples must be a whole number"),
    (lambda: Dwell((0.0, 0.0), 10, float("nan")), "sample_time_us must be a finite number > 0"),
    (lambda: Acquire((0.0, 0.0), float("inf")), "exposure_ms must be a finite number > 0"),
    (lambda: Wait(-1.0), "seconds must be a finite number >= 0"),
    (lambda: MoveStage((("z", 10.0),)), "unknown stage axis 'z'"),
    (lambda: Acquire((float("nan"), 0.0), 10.0), "finite (y, x) pair"),
    (lambda: SetDefocus(float("nan")), "defocus_nm must be a finite number"),
])
def test_a_bad_message_fails_the_run_before_the_beam_is_unblanked(tmp_path: pathlib.Path, bad: object, fix: str) -> None:
    @plan("bad")
    def bad_plan() -> PlanGenerator:
        yield bad()  # type: ignore[operator]

    scope = replay_scope()
    progress = ExperimentRunner(scope, bad_plan(), run_dir=tmp_path / "run").run()
    assert progress.state is RunState.FAILED and fix in progress.message and "'bad'" in progress.message
    assert scope.is_blanked and read_journal(tmp_path / "run").steps == ()


def test_a_move_beyond_the_stage_limits_and_a_marathon_survey_are_caught_by_the_dry_run() -> None:
    @plan("far")
    def far() -> PlanGenerator:
        yield Survey(label="look")
        yield MoveStage.to(x=5e6)

    report = dry_run(far())
    assert not report.ok and "beyond its limits" in report.message and report.steps == 1
    from nion_autoem.geometry import ScanFrame

    @plan("marathon")
    def marathon() -> PlanGenerator:
        yield Survey(ScanFrame((2048, 2048), 100.0), pixel_time_us=1000.0)

    report = dry_run(marathon())
    assert not report.ok and "keeps the beam on for 4194 s" in report.message and report.dose_e == 0


def test_pause_waits_for_the_next_checkpoint(tmp_path: pathlib.Path) -> None:
    @plan("pairs")
    def pairs() -> PlanGenerator:
        for _ in range(20):
            yield Checkpoint()
            yield Verify((0.0, 0.0), 1.0, (16, 16), label="register")
            time.sleep(0.01)
            yield Acquire((0.0, 0.0), 10.0, label="spectrum")

    scope = replay_scope()
    runner = ExperimentRunner(scope, pairs(), run_dir=tmp_path / "run")
    runner.start()
    while runner.progress.step < 3:
        time.sleep(0.002)
    runner.pause()
    deadline = time.time() + 5
    while runner.state is not RunState.PAUSED and time.time() < deadline:
        time.sleep(0.002)
    held = runner.progress.step
    assert runner.state is RunState.PAUSED and scope.is_blanked
    assert held % 2 == 0  # never between a registration and its spectrum
    runner.resume()
    assert runner.wait(10).state is RunState.FINISHED


def test_a_suspender_trips_blanks_recovers_and_the_run_goes_on(tmp_path: pathlib.Path) -> None:
    def shaky_beam(context: SuspenderContext) -> str | None:
        return "beam current dropped" if context.step == 3 and not recovered else None

    recovered: list[int] = []

    def reregister() -> SubPlan:
        measurement = yield Survey(label="re-register")
        recovered.append(int(measurement.dose_e > 0))

    suspender = Suspender("beam current", shaky_beam, reregister, wait_s=0.05)
    runner = ExperimentRunner(replay_scope(), WalkPlan(points=5), run_dir=tmp_path / "run", suspenders=[suspender])
    progress = runner.run()
    assert progress.state is RunState.FINISHED and progress.step == 7 and recovered == [1] and suspender.trips == 1
    record = read_journal(tmp_path / "run")
    assert [e["event"] for e in record.events] == ["suspended", "recovered"]
    assert record.events[0]["reason"] == "beam current dropped"
    assert [s.source for s in record.steps].count("suspender:beam current") == 1 and record.steps[3].action.label == "re-register"
    # a replay counts the recovery step but does not feed it to the plan
    from nion_autoem.runner import replay

    again = replay(tmp_path / "run", WalkPlan(points=5))
    assert again.state is RunState.FINISHED and again.progress.step == 7


def test_a_suspender_needs_a_recovery_and_one_that_never_helps_ends_the_run(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="has no recovery"):
        Suspender("drift", lambda context: "too fast", None)

    def nothing() -> SubPlan:
        yield from ()

    always = dose_rate_above(1.0, nothing, wait_s=0.0, max_trips=2)
    progress = ExperimentRunner(replay_scope(), WalkPlan(points=10), run_dir=tmp_path / "run", suspenders=[always]).run()
    assert progress.state is RunState.FAILED and "tripped 3 times" in progress.message


def test_wrappers_insert_sub_plans_and_clean_up_after_an_error(tmp_path: pathlib.Path) -> None:
    def refocus() -> SubPlan:
        yield SetDefocus(0.0, relative=True, label="refocus")

    wrapped = plan("wrapped")(lambda: every_n_actions(WalkPlan(points=6).messages(), 3, refocus))()
    ExperimentRunner(replay_scope(), wrapped, run_dir=tmp_path / "a").run()
    labels = [s.action.label for s in read_journal(tmp_path / "a").steps]
    assert labels.count("refocus") == 2 and labels[3] == "refocus"

    def put_back() -> SubPlan:
        yield SetDefocus(0.0, label="put focus back")

    failing = plan("failing")(lambda: with_cleanup(WalkPlan(points=6, fail_at=2).messages(), put_back))()
    progress = ExperimentRunner(replay_scope(), failing, run_dir=tmp_path / "b").run()
    assert progress.state is RunState.FAILED
    assert read_journal(tmp_path / "b").steps[-1].action.label == "put focus back"


def test_a_dose_budget_is_checked_with_the_next_actions_planned_dose(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    survey_dose = Survey().planned_dose_e(scope)
    progress = ExperimentRunner(scope, WalkPlan(points=5, exposure_ms=1e4), run_dir=tmp_path / "run", budget=Budget(max_dose_e=survey_dose * 1.5)).run()
    assert progress.step == 1 and "would exceed the dose budget" in progress.message and progress.dose_e <= survey_dose * 1.5


def test_stop_and_pause_do_nothing_when_idle_or_after_the_end(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    runner = ExperimentRunner(scope, WalkPlan(points=1), run_dir=tmp_path / "run")
    runner.stop()
    assert runner.state is RunState.IDLE
    progress = runner.run()
    runner.stop()
    assert progress.state is RunState.FINISHED and runner.progress.message == "1 spectra"
