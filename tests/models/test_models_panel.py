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
