"""The runner's state machine, budget, pause/resume, stop and error handling."""

from __future__ import annotations

import pathlib
import threading
import time
import typing

import numpy
import pytest

from nion_autoem.instrument import electrons
from nion_autoem.journal import read_journal
from nion_autoem.products import MemorySink
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from tests.core.plans import WalkPlan
from tests.core.plans import replay_scope


def test_runs_to_completion_and_journals_every_step(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    runner = ExperimentRunner(scope, WalkPlan(points=5), run_dir=tmp_path / "run")
    progress = runner.run()
    assert progress.state is RunState.FINISHED and progress.step == 6 and progress.fraction == 1.0
    record = read_journal(tmp_path / "run")
    assert record.is_complete and record.end is not None and record.end["state"] == "finished"
    assert [s.action.kind for s in record.steps] == ["survey"] + ["acquire"] * 5
    step = record.steps[2].entry
    for key in ("action", "position_nm", "started_at", "dwell_s", "dose_e", "result", "model_version", "data"):
        assert key in step
    assert step["model_version"] == "walk/1" and step["dose_e"] == pytest.approx(electrons(scope.beam_current_A, 0.01))
    assert numpy.array_equal(record.steps[2].load_measurement().xdata.data, runner.plan.spectra[1])  # type: ignore[attr-defined]
    assert scope.is_blanked and scope.probe_position_nm is None


def test_step_and_dose_budgets_end_the_run(tmp_path: pathlib.Path) -> None:
    progress = ExperimentRunner(replay_scope(), WalkPlan(points=50), run_dir=tmp_path / "a", budget=Budget(max_steps=4)).run()
    assert progress.state is RunState.FINISHED and progress.step == 4 and "step budget" in progress.message
    scope = replay_scope()
    per_spectrum = electrons(scope.beam_current_A, 0.01)
    survey_dose = electrons(scope.beam_current_A, 32 * 32 * 1e-6)
    runner = ExperimentRunner(scope, WalkPlan(points=50), run_dir=tmp_path / "b", budget=Budget(max_dose_e=survey_dose + 3.5 * per_spectrum))
    progress = runner.run()
    # three spectra fit; the fourth would overshoot, so it is never taken
    assert progress.step == 4 and progress.dose_e <= survey_dose + 3.5 * per_spectrum and "dose budget" in progress.message
    with pytest.raises(ValueError, match="max_steps"):
        Budget(max_steps=0)


def test_stop_returns_fast_and_leaves_the_beam_safe(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    runner = ExperimentRunner(scope, WalkPlan(points=1000, delay_s=0.02), run_dir=tmp_path / "run")
    runner.start()
    while runner.progress.step < 5:
        time.sleep(0.005)
    t0 = time.perf_counter()
    runner.stop()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.1
    assert scope.is_blanked  # safe before stop() returned
    progress = runner.wait(5.0)
    assert progress.state is RunState.STOPPED and "stopped by user" in progress.message
    assert scope.is_blanked and scope.probe_position_nm is None
    record = read_journal(tmp_path / "run")
    assert record.end is not None and record.end["state"] == "stopped"
    assert len(record.steps) == progress.step


def test_pause_blanks_and_resume_continues(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    runner = ExperimentRunner(scope, WalkPlan(points=30, delay_s=0.01), run_dir=tmp_path / "run")
    runner.start()
    while runner.progress.step < 3:
        time.sleep(0.005)
    runner.pause()
    deadline = time.time() + 5
    while runner.state is not RunState.PAUSED and time.time() < deadline:
        time.sleep(0.005)
    assert runner.state is RunState.PAUSED and scope.is_blanked
    held = runner.progress.step
    time.sleep(0.1)
    assert runner.progress.step == held
    runner.resume()
    progress = runner.wait(10.0)
    assert progress.state is RunState.FINISHED and progress.step == 31
    events = [e["event"] for e in read_journal(tmp_path / "run").events]
    assert events == ["paused", "resumed"]


@pytest.mark.parametrize("where", ["plan", "microscope"])
def test_an_exception_fails_the_run_safely_and_keeps_the_data(tmp_path: pathlib.Path, where: str) -> None:
    scope = replay_scope()
    if where == "plan":
        plan = WalkPlan(points=10, fail_at=3)
    else:
        plan = WalkPlan(points=10, exposure_ms=10.0)
        original = scope.acquire_spectrum
        calls = {"n": 0}

        def flaky(exposure_ms: float) -> typing.Any:
            calls["n"] += 1
            if calls["n"] == 4:
                raise OSError("camera cable unplugged")
            return original(exposure_ms)
        scope.acquire_spectrum = flaky  # type: ignore[method-assign]
    runner = ExperimentRunner(scope, plan, run_dir=tmp_path / "run")
    progress = runner.run()
    assert progress.state is RunState.FAILED
    # the place that really raised: the plan while it processed step 3, or the camera during step 4
    if where == "plan":
        assert "exploded on purpose" in progress.message and "while processing step 3" in progress.message
    else:
        assert "camera cable unplugged" in progress.message and "at step 4 (acquire" in progress.message
    assert scope.is_blanked and scope.probe_position_nm is None
    record = read_journal(tmp_path / "run")
    assert len(record.steps) == 4 and record.end is not None and record.end["state"] == "failed"
    assert any(e["event"] == "error" and "Traceback" in e["traceback"] for e in record.events)


def test_progress_reports_fraction_eta_and_action(tmp_path: pathlib.Path) -> None:
    runner = ExperimentRunner(replay_scope(), WalkPlan(points=20, delay_s=0.01), run_dir=tmp_path / "run")
    seen: list[typing.Any] = []
    lock = threading.Lock()

    def listen(progress: typing.Any) -> None:
        with lock:
            seen.append(progress)
    listener = runner.progress_changed_event.listen(listen)
    runner.start()
    runner.wait(10.0)
    listener.close()
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(p.eta_s is not None and p.eta_s > 0 for p in seen)
    assert any("acquire" in p.current_action for p in seen)


def test_a_live_run_needs_a_microscope(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="needs a microscope"):
        ExperimentRunner(None, WalkPlan(), run_dir=tmp_path)
    runner = ExperimentRunner(replay_scope(), WalkPlan(points=1), run_dir=tmp_path / "r", sink=MemorySink())
    runner.run()
    with pytest.raises(RuntimeError, match="starts once"):
        runner.start()
