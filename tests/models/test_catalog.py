"""The run catalog: runs registered from their journals, and "all frames of MoS2 from this week" as one query."""

from __future__ import annotations

import datetime
import json
import pathlib
import typing

import numpy
import pytest
from nion.data import DataAndMetadata

from nion_autoem.actions import Survey
from nion_autoem.catalog import RunCatalog
from nion_autoem.catalog import start_of_week
from nion_autoem.instrument import Measurement
from nion_autoem.journal import JOURNAL_NAME
from nion_autoem.journal import Journal


def record_run(folder: pathlib.Path, run_id: str, sample: str, frames: int, *, model_version: str = "mos2@1", end: str | None = "finished") -> pathlib.Path:
    run_dir = folder / run_id
    journal = Journal(run_dir)
    journal.write_header(run_id, plan="atom-survey", parameters={"sample": sample}, microscope="twin")
    for step in range(frames):
        image = DataAndMetadata.new_data_and_metadata(numpy.full((8, 8), float(step)))
        journal.write_step(step, Survey(), Measurement({"HAADF": image}, "survey", dose_e=1.0), model_version=model_version)
    if end is not None:
        journal.write_end(end, steps=frames, dose_e=float(frames))
    journal.close()
    (run_dir / "report.json").write_text("{}")
    return run_dir


def test_frames_of_a_sample_from_this_week_are_one_query(tmp_path: pathlib.Path) -> None:
    catalog = RunCatalog(tmp_path / "catalog.sqlite")
    record_run(tmp_path, "run-a", "MoS2", 3)
    record_run(tmp_path, "run-b", "graphene", 2)
    record_run(tmp_path, "run-c", "MoS2", 2, model_version="mos2@2", end=None)
    for run in ("run-a", "run-b", "run-c"):
        catalog.register(tmp_path / run)
    frames = catalog.frames(sample="mos2", since=start_of_week())
    assert [(f.run_id, f.step) for f in frames] == [("run-a", 0), ("run-a", 1), ("run-a", 2), ("run-c", 0), ("run-c", 1)]
    assert all(pathlib.Path(f.path).exists() for f in frames)
    assert numpy.load(frames[1].path).mean() == 1.0
    assert catalog.frames(sample="MoS2", since=start_of_week() + datetime.timedelta(days=7)) == []
    assert [f.run_id for f in catalog.frames(model_version="mos2@2")] == ["run-c", "run-c"]
    assert [r.run_id for r in catalog.runs(model_version="mos2@1")] == ["run-a", "run-b"]
    runs = {r.run_id: r for r in catalog.runs()}
    assert runs["run-a"].outcome == "finished" and runs["run-c"].outcome == "incomplete" and runs["run-a"].steps == 3
    assert [pathlib.Path(p).name for p in catalog.products("run-a")] == ["report.json"]
    catalog.close()
    # The catalog is a file: a later session finds the same runs.
    again = RunCatalog(tmp_path / "catalog.sqlite")
    assert len(again.frames(sample="MoS2")) == 5
    again.close()


def test_registering_a_run_again_replaces_its_rows(tmp_path: pathlib.Path) -> None:
    catalog = RunCatalog(":memory:")
    record_run(tmp_path, "run-a", "MoS2", 2, end=None)
    catalog.register(tmp_path / "run-a")
    record_run(tmp_path, "run-a", "MoS2", 4)  # the resumed run appended to its journal
    entry = catalog.register(tmp_path / "run-a", sample="MoS2 flake 3")
    assert entry.outcome == "finished" and len(catalog.frames(sample="MoS2 flake 3")) == 4 and catalog.frames(sample="MoS2") == []


def test_bad_runs_get_clear_errors(tmp_path: pathlib.Path) -> None:
    catalog = RunCatalog(":memory:")
    with pytest.raises(FileNotFoundError, match="no journal"):
        catalog.register(tmp_path)
    (tmp_path / JOURNAL_NAME).write_text(json.dumps({"type": "event", "event": "x"}) + "\n")
    with pytest.raises(ValueError, match="header naming its run_id"):
        catalog.register(tmp_path)
    with pytest.raises(TypeError, match="since must be a datetime"):
        catalog.frames(since="monday")  # type: ignore[arg-type]


def test_every_run_started_in_swift_is_in_the_run_catalog_once_it_ends(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nion_autoem.geometry import ScanFrame
    from nion_autoem.plans import PointSpectroscopy
    from nion_autoem.runner import RunState
    from nion_autoem.swift.console import CATALOG_NAME
    from nion_autoem.swift.console import start_experiment

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    runner = start_experiment(PointSpectroscopy(points=1, refine_points=0, exposure_ms=10.0, survey_frame=ScanFrame((64, 64), 16.0)),
                              window=usim_session.document_controller)
    usim_session.pump_until_done(runner, 60)
    assert runner.state is RunState.FINISHED, runner.progress.message
    catalog = RunCatalog(tmp_path / "runs" / CATALOG_NAME)  # the panel's runs folder holds the catalog of its runs
    try:
        [entry] = catalog.runs()
        assert entry.run_id == runner.run_id and entry.outcome == "finished" and entry.steps >= 2 and entry.dose_e > 0
        assert catalog.frames(plan=entry.plan)  # its survey is a frame a training set can be queried from
    finally:
        catalog.close()
