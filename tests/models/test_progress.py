"""Progress of training and retraining jobs: one object the job writes and a panel polls from another thread."""

from __future__ import annotations

import threading

import pytest

from nion_autoem_elit import training
from nion_autoem_models import distributed as elit_dask
from nion_autoem_models.progress import JobProgress
from nion_autoem_models.progress import ProgressSnapshot


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fraction_stage_and_eta_from_the_time_per_unit_of_work_so_far() -> None:
    clock = Clock()
    progress = JobProgress("retrain mos2", clock=clock)
    assert progress.snapshot() == ProgressSnapshot("waiting", 0.0, "", None, 0.0, "", None)
    progress.start("loading mos2@production")
    clock.now += 10.0
    progress.update(0.25, "adapting to frame 1 of 3")
    first = progress.snapshot()
    assert (first.state, first.fraction, first.stage, first.elapsed_s) == ("running", 0.25, "adapting to frame 1 of 3", 10.0)
    assert first.eta_s == pytest.approx(30.0)  # 10 s for a quarter: 30 s for the rest
    assert first.describe() == "adapting to frame 1 of 3: 25 %, about 30 s to go"
    progress.update(0.1, "a stale report")  # a late, lower report never moves progress back
    assert progress.snapshot().fraction == 0.25 and progress.snapshot().stage == "adapting to frame 1 of 3"
    clock.now += 30.0
    progress.finish("registered mos2@2", result="mos2@2")
    clock.now += 100.0
    done = progress.snapshot()
    assert done.done and done.finished and not done.failed
    assert (done.fraction, done.eta_s, done.elapsed_s, done.result) == (1.0, None, 40.0, "mos2@2")  # the clock stops at the end
    progress.fail("a late error")  # only the first end counts
    progress.update(0.5, "late")
    assert progress.snapshot() == done


def test_a_failed_job_says_why_and_bad_fractions_are_refused() -> None:
    progress = JobProgress("train mos2")
    progress.update(0.5, "training member 2 of 4")
    progress.fail("training mos2 failed: RuntimeError: out of memory")
    failed = progress.snapshot()
    assert failed.failed and failed.finished and failed.fraction == 0.5 and failed.eta_s is None
    assert failed.describe() == "failed: training mos2 failed: RuntimeError: out of memory"
    with pytest.raises(ValueError, match="fraction must be a share of the work between 0 and 1, got 1.5"):
        JobProgress("x").update(1.5)
    with pytest.raises(ValueError, match="fraction must be a share"):
        JobProgress("x").update(float("nan"))


def test_a_panel_polling_from_another_thread_sees_consistent_snapshots() -> None:
    progress = JobProgress("many writers")
    seen: list[ProgressSnapshot] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append(progress.snapshot())
        seen.append(progress.snapshot())

    def work(offset: int) -> None:
        for i in range(500):
            progress.update((4 * i + offset) / 2000, f"step {4 * i + offset}")

    reader = threading.Thread(target=poll)
    reader.start()
    writers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert progress.snapshot().fraction == 1999 / 2000  # the highest of all the writers' reports
    progress.finish("all steps")
    stop.set()
    reader.join()
    fractions = [s.fraction for s in seen]
    assert fractions == sorted(fractions)  # never goes back, whatever the interleaving
    assert seen[-1].done and seen[-1].fraction == 1.0
    assert all(s.state in {"waiting", "running"} for s in seen if not s.finished)
    assert all(s.stage == f"step {round(s.fraction * 2000)}" for s in seen if s.state == "running" and s.stage.startswith("step"))


def test_an_ensemble_training_reports_each_member() -> None:
    progress = JobProgress("train")
    config = training.TrainingConfig(members=3, base_channels=4, crop=32, frames=2, steps=2, batch_per_member=1)
    stages: list[str] = []
    original = progress.update

    def recording(fraction: float, stage: str | None = None) -> None:
        stages.append(f"{fraction:.2f} {stage}")
        original(fraction, stage)

    progress.update = recording  # type: ignore[method-assign]
    elit_dask.train_ensemble("mos2", config, progress=progress)
    assert stages == ["0.00 training member 1 of 3 of MoS2", "0.33 training member 2 of 3 of MoS2", "0.67 training member 3 of 3 of MoS2"]
    assert progress.snapshot().done and progress.snapshot().message == "3 members of MoS2 trained"
