"""The Models panel: the repository's versions with their provenance, promotion and roll-back, and the panel's ELIT runs using production."""

from __future__ import annotations

import pathlib

import pytest

from nion_autoem.plans.atom_finding import AtomFinding
from nion_autoem.swift import models_panel
from nion_autoem_models.repository import ModelRepository


def test_the_panel_shows_provenance_promotes_and_rolls_back(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nion_autoem.swift import panel as experiment_panel

    monkeypatch.setenv("NION_AUTOEM_MODELS", str(tmp_path / "models"))
    assert models_panel.production_ensemble() is None  # no repository yet: the packaged model
    controller = models_panel.ModelsPanelController()
    try:
        assert controller.refs.value == [] and "empty" in str(controller.status.value)
        controller.add_packaged()
        assert controller.refs.value == ["graphene@1", "mos2@1"]
        controller.index.value = 1
        details = str(controller.details.value)
        assert details.startswith("mos2@1 (elit-ensemble, mos2@production)") and "no parent" in details
        assert "the panel's ELIT runs use mos2@production = mos2@1" in details
        # a retrained version, adapted from mos2@1 on one run's frames
        repo = ModelRepository(tmp_path / "models")
        weights, record = repo.load_weights("mos2@1")
        repo.register("mos2", weights, kind=record.kind, network=record.network, class_names=record.class_names, parent="mos2@1",
                      data_manifest=[{"run_id": "run-7", "path": "frames/1.npy", "sha256": "0" * 64}], metrics={"f1": 0.99},
                      imaging_ranges=record.imaging_ranges, extra=record.extra, recipe={"iterations": 1}, code_version="test")
        controller.refresh()
        controller.index.value = controller.refs.value.index("mos2@2")
        assert "from: mos2@1; trained on 1 frame(s) or journal(s) from 1 run(s)" in str(controller.details.value)
        controller.promote()
        assert "mos2@production = mos2@2" in str(controller.status.value)
        assert models_panel.production_ensemble() == "mos2@production"
        plan = experiment_panel.EXPERIMENTS[2].make_plan(experiment_panel.PanelParameters(1, 1.0, (1.0, 2.0), "thompson", 16))
        assert isinstance(plan, AtomFinding) and plan.model_version == "elit/mos2@2"  # what the panel's ELIT run will journal
        controller.roll_back()
        assert "mos2@production = mos2@1 again" in str(controller.status.value)
    finally:
        controller.close()


def _elit_run(runs: pathlib.Path, run_id: str, frames: int) -> None:
    """A real ELIT run (AtomFinding through the engine) on a replayed MoS2 image, journaled under ``runs``."""
    import numpy

    from nion_autoem.geometry import ScanFrame
    from nion_autoem.products import MemorySink
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem.runner import ExperimentRunner
    from nion_autoem.runner import RunState
    from nion_autoem_elit import lattices
    from nion_autoem_elit import synthetic

    image = synthetic.generate_frame(lattices.mos2_lattice(), (96, 96), seed=300 + len(run_id)).image
    frame = ScanFrame((96, 96), 96 * 0.0325)
    runner = ExperimentRunner(ReplayMicroscope(numpy.asarray(image, dtype=float), frame), AtomFinding(frames=frames, survey_frame=frame),
                              run_dir=runs / run_id, sink=MemorySink(), run_id=run_id)
    assert runner.run().state is RunState.FINISHED


def test_new_elit_frames_retrain_in_the_background_and_are_offered_not_swapped_in(tmp_path: pathlib.Path) -> None:
    import time

    from nion_autoem_elit import iterative
    from nion_autoem_models.repository import seed_from_package
    from nion_autoem_models.retraining import RetrainingRule

    runs = tmp_path / "runs"
    repo = ModelRepository(tmp_path / "models")
    seed_from_package(repo)
    _elit_run(runs, "before", 1)  # recorded before the rule was switched on: the production model's own data, not new
    assert [f.run_id for f in models_panel.elit_frames_in(runs)] == ["before"]
    tiny = iterative.IterationConfig(steps=3, crop=64, synthetic_frames=4, batch_per_member=1)
    controller = models_panel.ModelsPanelController(repo, runs_folder=runs, rule=RetrainingRule("mos2", "mos2@production", every_frames=2, config=tiny),
                                                    poll_s=0.05)
    try:
        controller.retrain_every.value = 2
        controller.retrain.value = True
        assert "Starting the Dask cluster (local)" in str(controller.jobs.value)
        _elit_run(runs, "after", 2)
        deadline = time.time() + 120
        while "is ready" not in str(controller.status.value) and time.time() < deadline:
            time.sleep(0.1)
        jobs = str(controller.jobs.value)
        assert "retrain mos2@production on 2 new mos2 frame(s): done: registered mos2@2" in jobs, jobs
        assert "on a local Dask cluster (1 worker)" in jobs, jobs  # trained as Dask tasks, not in Swift's process
        assert str(controller.status.value).startswith("mos2@2 is ready")
        assert controller.refs.value is not None and "mos2@2" in controller.refs.value
        new = repo.resolve("mos2@2")
        assert new.parent == "mos2@1" and {item["run_id"] for item in new.data_manifest} == {"after"}  # only the new run's frames
        assert repo.resolve("mos2@production").ref == "mos2@1"  # offered, not swapped in
        controller.retrain.value = False
        assert "Retraining is off." in str(controller.jobs.value) or "done" in str(controller.jobs.value)
    finally:
        controller.close()


def test_a_retraining_rule_that_makes_no_sense_is_refused_in_words(tmp_path: pathlib.Path) -> None:
    controller = models_panel.ModelsPanelController(ModelRepository(tmp_path / "models"), runs_folder=tmp_path / "runs")
    try:
        controller.retrain_every.value = 0
        controller.retrain.value = True
        assert str(controller.jobs.value).startswith("Cannot retrain") and "every_frames" in str(controller.jobs.value)
        assert controller.retrain.value is False
        controller.retrain_every.value = 5
        controller.train_on.value = "cluster-head"
        controller.retrain.value = True
        assert "tcp://cluster-head:8786" in str(controller.jobs.value) and controller.retrain.value is False
    finally:
        controller.close()
