"""The journal survives a crash, and a run can be resumed or replayed from it."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy
import pytest

from nion_autoem.journal import JOURNAL_NAME
from nion_autoem.journal import read_journal
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.runner import replay
from tests.core.plans import WalkPlan
from tests.core.plans import replay_scope

ROOT = pathlib.Path(__file__).resolve().parents[2]


def crash_a_run(run_dir: pathlib.Path, steps_before_kill: int, *, module: str = "tests.core.crashing_run", counting: str = '"type":"step"',
                into_next_s: float = 0.0, timeout_s: float = 60.0) -> None:
    """Run ``module`` in a process of its own and SIGKILL it once its journal has ``steps_before_kill`` lines containing ``counting``."""
    process = subprocess.Popen([sys.executable, "-m", module, str(run_dir)], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = run_dir / JOURNAL_NAME
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            if journal.exists() and journal.read_text().count(counting) >= steps_before_kill:
                time.sleep(into_next_s)  # into the step after
                break
            if process.poll() is not None:
                raise AssertionError(f"the run died on its own: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.01)
        else:
            raise AssertionError("the run never got going")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_a_killed_run_keeps_every_completed_step(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    crash_a_run(run_dir, 8)
    record = read_journal(run_dir)
    assert not record.is_complete  # no end line: it really crashed
    assert len(record.steps) >= 8
    assert [s.step for s in record.steps] == list(range(len(record.steps)))
    for step in record.steps:  # every journaled step has its data on disk
        measurement = step.load_measurement()
        assert all(numpy.all(numpy.isfinite(x.data)) for x in measurement.data.values())


def test_a_torn_last_line_is_skipped_but_corruption_is_not(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    ExperimentRunner(replay_scope(), WalkPlan(points=3), run_dir=run_dir).run()
    journal = run_dir / JOURNAL_NAME
    with open(journal, "a") as f:
        f.write('{"type":"step","step":99,"act')
    record = read_journal(run_dir)
    assert record.torn_lines == 1 and len(record.steps) == 4
    lines = journal.read_text().split("\n")
    lines[1] = "garbage"
    journal.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="corrupt"):
        read_journal(run_dir)


def test_resume_after_a_crash_finishes_the_same_run(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    crash_a_run(run_dir, 6)
    before = read_journal(run_dir)
    done = len(before.steps)
    scope = replay_scope()
    policy = WalkPlan(points=400, delay_s=0.0)
    runner = ExperimentRunner(scope, policy, run_dir=run_dir, resume=True)
    assert runner.run_id == before.header["run_id"]
    progress = runner.run()
    assert progress.state is RunState.FINISHED and progress.step == 401
    after = read_journal(run_dir)
    assert [s.step for s in after.steps] == list(range(401))
    # the replayed steps were not measured again: their data are the originals
    assert [s.entry["started_at"] for s in after.steps[:done]] == [s.entry["started_at"] for s in before.steps]
    # and an uninterrupted run with the same seed takes the very same path
    reference = WalkPlan(points=400)
    ExperimentRunner(replay_scope(), reference, run_dir=tmp_path / "reference").run()
    ref = read_journal(tmp_path / "reference")
    assert [s.action for s in after.steps] == [s.action for s in ref.steps]


def test_replay_feeds_a_fresh_policy_the_recorded_observations(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    original = WalkPlan(points=12)
    ExperimentRunner(replay_scope(), original, run_dir=run_dir).run()
    again = WalkPlan(points=12)
    runner = replay(run_dir, again, sink=MemorySink())
    assert runner.state is RunState.FINISHED
    assert len(again.spectra) == 12
    assert all(numpy.array_equal(a, b) for a, b in zip(original.spectra, again.spectra, strict=True))
    # a policy that wants another path is told the replay diverged
    diverged = replay(run_dir, WalkPlan(points=12, seed=99))
    assert diverged.state is RunState.FAILED and "diverged at step 1" in str(diverged.error)


def test_journal_lines_are_plain_json(tmp_path: pathlib.Path) -> None:
    ExperimentRunner(replay_scope(), WalkPlan(points=2), run_dir=tmp_path / "run").run()
    lines = (tmp_path / "run" / JOURNAL_NAME).read_text().strip().split("\n")
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds[0] == "header" and kinds[-1] == "end" and kinds.count("step") == 3
