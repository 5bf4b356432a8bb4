"""Policy-driven retraining: new frames start an ELIT iteration on the cluster, registered with provenance, never swapped in mid-run."""

from __future__ import annotations

import pathlib
import time

import distributed
import numpy
import pytest

from nion_autoem_elit import iterative
from nion_autoem_elit import lattices
from nion_autoem_elit import synthetic
from nion_autoem_models import repository
from nion_autoem_models import retraining
from nion_autoem_models.progress import JobProgress

TINY = iterative.IterationConfig(steps=3, crop=64, synthetic_frames=4, batch_per_member=1)


def twin_frames(folder: pathlib.Path, count: int, run_id: str) -> list[retraining.FrameRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(count):
        path = folder / f"frame_{i:03d}.npy"
        numpy.save(path, synthetic.generate_frame(lattices.mos2_lattice(), (96, 96), seed=100 + i).image)
        frames.append(retraining.FrameRecord(str(path), run_id))
    return frames


def test_enough_new_frames_retrain_on_the_cluster_and_register_with_provenance(client: distributed.Client, tmp_path: pathlib.Path) -> None:
    repo = repository.ModelRepository(tmp_path / "models")
    repository.seed_from_package(repo)
    pinned = repo.resolve("mos2@production")  # what a run in progress uses, resolved when it started
    policy = retraining.RetrainingPolicy(repo, retraining.RetrainingRule("mos2", "mos2@production", every_frames=2, config=TINY), client)
    frames = twin_frames(tmp_path / "run-1", 2, "run-1")
    assert policy.offer(frames[:1]) is None and policy.offer(frames[:1]) is None  # a frame counts once
    started = policy.offer(frames)
    assert started is not None and policy.progress is not None
    # What a panel does: poll the job's progress from its own thread until it ends.
    seen = [policy.progress.snapshot()]
    deadline = time.monotonic() + 120
    while not seen[-1].finished and time.monotonic() < deadline:
        time.sleep(0.01)
        seen.append(policy.progress.snapshot())
    record = started.result(timeout=1)
    policy.close()
    stages = {s.stage for s in seen}
    assert {"adapting mos2@1 to frame 1 of 2 on the cluster", "adapting mos2@1 to frame 2 of 2 on the cluster"} <= stages, stages
    assert [s.fraction for s in seen] == sorted(s.fraction for s in seen)
    assert seen[-1].done and seen[-1].result == record.ref and "registered mos2@2 as mos2@candidate" in seen[-1].message
    assert policy.jobs == [policy.progress]
    assert record.ref == "mos2@2" and record.parent == "mos2@1"
    assert [(item["run_id"], item["sha256"]) for item in record.data_manifest] == [("run-1", repository.file_sha256(f.path)) for f in frames]
    assert len(record.metrics["elit_reports"]) == 2 and record.recipe["elit_iteration"]["steps"] == 3
    # Offered as a candidate; production (and the pinned run) still use the model they had.
    assert repo.resolve("mos2@candidate").ref == "mos2@2"
    assert repo.resolve("mos2@production").ref == pinned.ref == "mos2@1"
    # The next run, once the candidate is promoted, loads it and knows exactly which version it is.
    repo.promote("mos2@candidate", "production")
    assert repo.load_ensemble("mos2@production").metadata["model_ref"] == "mos2@2"


def test_a_failed_retraining_registers_nothing(tmp_path: pathlib.Path) -> None:
    repo = repository.ModelRepository(tmp_path / "models")
    repository.seed_from_package(repo)
    small = tmp_path / "small.npy"
    numpy.save(small, numpy.random.default_rng(0).random((48, 48)))  # smaller than a training crop
    progress = JobProgress("retrain")
    with pytest.raises(ValueError, match="at least 64 pixels"):
        retraining.retrain(repo, "mos2@production", [retraining.FrameRecord(str(small), "run-x")], "mos2", config=TINY, progress=progress)
    failed = progress.snapshot()
    assert failed.failed and failed.message.startswith("retraining mos2@production failed, nothing was registered: ValueError:") and "64 pixels" in failed.message
    assert [v.ref for v in repo.list("mos2")] == ["mos2@1"]
    assert repo.resolve("mos2@production").ref == "mos2@1"
    with pytest.raises(ValueError, match="every_frames must be"):
        retraining.RetrainingRule("mos2", "mos2@production", every_frames=0)
