"""Every fault contained: the run always ends, the beam is made safe first, what was done stays saved."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import time
import typing

import pytest

from nion_autoem.journal import JOURNAL_NAME
from nion_autoem.journal import read_journal
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from tests.core.faults import FaultyMicroscope
from tests.core.plans import WalkPlan
from tests.core.plans import replay_scope


def assert_safe(scope: typing.Any) -> None:
    assert scope.is_blanked and scope.probe_position_nm is None


def test_a_run_directory_that_is_a_file_fails_the_run_and_wait_returns(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "run"
    blocker.write_text("not a directory")
    scope = replay_scope()
    runner = ExperimentRunner(scope, WalkPlan(points=3), run_dir=blocker)
    runner.start()
    progress = runner.wait(5.0)
    assert progress.state is RunState.FAILED and str(blocker) in progress.message
    assert_safe(scope)
    assert progress.dose_e == 0


def test_a_run_directory_that_cannot_be_created_fails_before_any_dose(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    progress = ExperimentRunner(scope, WalkPlan(points=3), run_dir="/proc/nion-autoem-cannot-be-here/run").run()
    assert progress.state is RunState.FAILED and "nion-autoem-cannot-be-here" in progress.message and progress.dose_e == 0
    assert_safe(scope)


@contextlib.contextmanager
def small_disk(path: pathlib.Path, size: str = "96k") -> typing.Iterator[pathlib.Path]:
    """A tmpfs of ``size`` where root may mount one; otherwise a journal whose data go to /dev/full."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        if not mounted:
            # no tmpfs here: the spectrum of step 4 is written into /dev/full, which is always full
            (path / "run" / "data").mkdir(parents=True)
            os.symlink("/dev/full", path / "run" / "data" / "step_000004_eels.npy.tmp")
        yield path / "run"
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)


def test_a_full_disk_mid_run_ends_the_run_with_the_beam_safe_and_the_steps_so_far_readable(tmp_path: pathlib.Path) -> None:
    scope = replay_scope()
    with small_disk(tmp_path / "disk") as run_dir:
        runner = ExperimentRunner(scope, WalkPlan(points=10_000), run_dir=run_dir)
        runner.start()
        progress = runner.wait(30.0)
        assert progress.state is RunState.FAILED and "No space left on device" in progress.message
        assert_safe(scope)
        record = read_journal(run_dir)
        assert len(record.steps) >= 3
        for step in record.steps:
            step.load_measurement()


def test_a_blanker_that_fails_is_the_loudest_thing_in_the_run(tmp_path: pathlib.Path) -> None:
    scope = FaultyMicroscope("blanker", nth=3)
    progress = ExperimentRunner(scope, WalkPlan(points=5), run_dir=tmp_path / "run").run()
    assert progress.beam_safe is False and progress.message.startswith("BEAM NOT SAFE")
    assert not scope.is_blanked and scope.probe_position_nm is None
    record = read_journal(tmp_path / "run")
    assert record.end is not None and record.end["beam_safe"] is False and record.end["message"].startswith("BEAM NOT SAFE")
    assert any(e["event"] == "beam not safe" for e in record.events)


def test_a_driver_that_ignores_aborts_does_not_keep_the_run_running(tmp_path: pathlib.Path) -> None:
    scope = FaultyMicroscope("wedge", nth=3)
    runner = ExperimentRunner(scope, WalkPlan(points=5), run_dir=tmp_path / "run", abandon_after_s=0.3)
    runner.start()
    while scope.acquisitions < 3:
        time.sleep(0.002)
    t0 = time.perf_counter()
    runner.stop()
    assert time.perf_counter() - t0 < 0.1
    assert_safe(scope)
    progress = runner.wait(2.0)
    assert time.perf_counter() - t0 < 1.0
    assert progress.state is RunState.STOPPED and "did not return" in progress.message and progress.beam_safe
    scope.released.set()  # the driver wakes up at last: nothing it returns is journaled
    time.sleep(0.1)
    record = read_journal(tmp_path / "run")
    assert record.end is not None and record.end["state"] == "stopped" and len(record.steps) == 2


def test_a_time_budget_preempts_an_action_that_outlasts_it(tmp_path: pathlib.Path) -> None:
    scope = FaultyMicroscope("wedge", nth=2)
    runner = ExperimentRunner(scope, WalkPlan(points=5), run_dir=tmp_path / "run", budget=Budget(max_time_s=0.3), abandon_after_s=0.3)
    t0 = time.perf_counter()
    runner.start()
    progress = runner.wait(5.0)
    assert time.perf_counter() - t0 < 2.0
    assert progress.state is RunState.STOPPED and "time budget of 0.3 s" in progress.message
    assert_safe(scope)
    scope.released.set()


def test_an_instrument_error_names_the_step_and_leaves_the_data(tmp_path: pathlib.Path) -> None:
    scope = FaultyMicroscope("raise", nth=4)
    progress = ExperimentRunner(scope, WalkPlan(points=5), run_dir=tmp_path / "run").run()
    assert progress.state is RunState.FAILED and "camera cable unplugged" in progress.message and "at step 3" in progress.message
    assert_safe(scope)
    assert len(read_journal(tmp_path / "run").steps) == 3


def test_a_torn_line_is_cut_before_a_resume_appends(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    ExperimentRunner(replay_scope(), WalkPlan(points=6), run_dir=run_dir, budget=Budget(max_steps=4)).run()
    with open(run_dir / JOURNAL_NAME, "a") as f:
        f.write('{"type":"step","step":4,"act')  # a crash mid-write
    assert read_journal(run_dir).torn_lines == 1
    progress = ExperimentRunner(replay_scope(), WalkPlan(points=6), run_dir=run_dir, resume=True).run()
    assert progress.state is RunState.FINISHED
    record = read_journal(run_dir)  # readable: no line was glued to the fragment
    assert record.torn_lines == 0 and [s.step for s in record.steps] == list(range(7))


def test_an_empty_journal_is_not_a_run_to_resume(tmp_path: pathlib.Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / JOURNAL_NAME).write_text("")
    with pytest.raises(ValueError, match="no header line, so there is no run to resume"):
        ExperimentRunner(replay_scope(), WalkPlan(), run_dir=tmp_path / "run", resume=True)


@pytest.mark.parametrize("damage, complaint", [
    (lambda lines: lines[:2] + ["{not json"] + lines[2:], "is not a valid journal line"),
    (lambda lines: lines[:2] + ['{"type":"step","step":9}'] + lines[2:], "has no 'action' field"),
    (lambda lines: lines[:2] + ['{"type":"step","step":9,"action":{"kind":"teleport"}}'] + lines[2:], "unknown action kind 'teleport'"),
    (lambda lines: lines[:2] + ["[1, 2, 3]"] + lines[2:], "is a JSON object, this one is list"),
    (lambda lines: lines[:2] + ['{"type":"gossip"}'] + lines[2:], "unknown line type 'gossip'"),
])
def test_a_corrupt_journal_names_the_file_the_line_and_what_to_do(tmp_path: pathlib.Path, damage: typing.Callable[[list[str]], list[str]],
                                                                 complaint: str) -> None:
    run_dir = tmp_path / "run"
    ExperimentRunner(replay_scope(), WalkPlan(points=3), run_dir=run_dir).run()
    path = run_dir / JOURNAL_NAME
    path.write_text("\n".join(damage(path.read_text().splitlines())) + "\n")
    with pytest.raises(ValueError, match=complaint) as raised:
        read_journal(run_dir)
    assert f"{path}:3" in str(raised.value) and "cut" in str(raised.value)


def test_bytes_that_are_not_text_and_a_truncated_data_file_are_named(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    ExperimentRunner(replay_scope(), WalkPlan(points=3), run_dir=run_dir).run()
    path = run_dir / JOURNAL_NAME
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:2] + [b"\xff\xfe{}"] + lines[2:]))
    with pytest.raises(ValueError, match=f"{path}:3 is not a valid journal line"):
        read_journal(run_dir)
    path.write_bytes(b"\n".join(lines))
    step = read_journal(run_dir).steps[2]
    data_file = run_dir / step.entry["data"]["eels"]["file"]
    data_file.write_bytes(data_file.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{data_file}: the eels data of step 2 cannot be read"):
        step.load_measurement()


def test_a_killed_dwell_run_resumed_twice_keeps_one_contiguous_journal(tmp_path: pathlib.Path) -> None:
    from tests.core.test_journal import crash_a_run

    run_dir = tmp_path / "run"
    crash_a_run(run_dir, 6)
    for _ in range(2):
        progress = ExperimentRunner(replay_scope(), WalkPlan(points=400, delay_s=0.0), run_dir=run_dir, resume=True, budget=Budget(max_steps=200)).run()
        assert progress.state is RunState.FINISHED
    record = read_journal(run_dir)
    assert [s.step for s in record.steps] == list(range(len(record.steps))) and record.torn_lines == 0

