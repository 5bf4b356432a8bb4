"""A recorded run exports as valid Bluesky event-model documents."""

from __future__ import annotations

import json
import pathlib
import time
import typing

import event_model
import numpy
import pytest

from nion_autoem.actions import Acquire
from nion_autoem.actions import Dwell
from nion_autoem.actions import ParkProbe
from nion_autoem.actions import Survey
from nion_autoem.export import NO_END_REASON
from nion_autoem.export import NpyHandler
from nion_autoem.export import to_event_documents
from nion_autoem.export import write_event_documents
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.journal import JOURNAL_NAME
from nion_autoem.journal import Journal
from nion_autoem.xdata import image_xdata
from nion_autoem.xdata import spectrum_xdata
from nion_autoem.xdata import trace_xdata

DOSES = [1.5e6, 2.0e4, 3.0e4, 0.0, 5.0e5]


def record_run(run_dir: pathlib.Path, *, end: str | None = "finished") -> None:
    """Five steps: a survey, two spectra, a probe move (no data) and an ADF dwell."""
    rng = numpy.random.default_rng(0)
    frame = ScanFrame((16, 16), 4.0)
    t0 = time.time()
    journal = Journal(run_dir)
    try:
        journal.write_header("test-run-0001", plan="export_test", parameters={"points": 2, "exposure_ms": 10.0}, microscope="test scope")
        journal.write_step(0, Survey(), Measurement({"HAADF": image_xdata(rng.random((16, 16), dtype=numpy.float32), frame)}, "survey",
                                                    frame=frame, dwell_s=256e-6, dose_e=DOSES[0], started_at=t0, duration_s=0.01))
        for i, position in enumerate([(0.0, 0.0), (0.5, -0.5)], start=1):
            spectrum = spectrum_xdata(rng.random(128), 100.0, 0.5)
            journal.write_step(i, Acquire(position, 10.0), Measurement({"eels": spectrum}, "spectrum", position_nm=position, dwell_s=0.01,
                                                                       dose_e=DOSES[i], started_at=t0 + i, duration_s=0.012))
            journal.write_result(i, {"peak_eV": 120.0 + i})  # the plan's report on the step, as the engine journals it
        journal.write_event("paused", reason="test")
        journal.write_step(3, ParkProbe((0.25, 0.25)), Measurement({}, "none", position_nm=(0.25, 0.25), started_at=t0 + 3))
        journal.write_step(4, Dwell((0.25, 0.25), 64, 10.0), Measurement({"HAADF": trace_xdata(rng.random(64), 10.0)}, "adf_trace",
                                                                         position_nm=(0.25, 0.25), dwell_s=64e-5, dose_e=DOSES[4], started_at=t0 + 4))
        if end is not None:
            journal.write_end(end, message="done" if end == "finished" else "by request", steps=5, dose_e=sum(DOSES))
    finally:
        journal.close()


VALIDATORS = {name: event_model.schema_validators[getattr(event_model.DocumentNames, name)] for name in ("start", "descriptor", "event", "resource", "datum", "stop")}


def validate_all(documents: typing.Sequence[tuple[str, dict[str, typing.Any]]]) -> None:
    for name, doc in documents:
        VALIDATORS[name].validate(doc)


def test_a_run_exports_as_valid_ordered_documents(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    record_run(run_dir)
    documents = to_event_documents(run_dir)
    validate_all(documents)
    names = [name for name, _ in documents]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("start") == 1 and names.count("stop") == 1

    # every reference points backwards: event -> descriptor, datum -> resource, event field -> datum
    seen: dict[str, set[str]] = {"descriptor": set(), "resource": set(), "datum": set()}
    start_uid = documents[0][1]["uid"]
    events = []
    for name, doc in documents[1:-1]:
        if name == "descriptor":
            assert doc["run_start"] == start_uid
            seen["descriptor"].add(doc["uid"])
        elif name == "resource":
            assert doc["run_start"] == start_uid and doc["spec"] == "NPY"
            seen["resource"].add(doc["uid"])
        elif name == "datum":
            assert doc["resource"] in seen["resource"]
            seen["datum"].add(doc["datum_id"])
        else:
            assert name == "event"
            assert doc["descriptor"] in seen["descriptor"]
            for field in doc["filled"]:
                assert doc["data"][field] in seen["datum"]
            events.append(doc)

    assert len(events) == 5  # one event per journaled step
    assert [e["data"]["step"] for e in events] == [0, 1, 2, 3, 4]
    assert [e["data"]["dose_e"] for e in events] == DOSES
    assert documents[-1][1]["exit_status"] == "success" and documents[-1][1]["reason"] == "done"
    assert documents[-1][1]["num_events"] == {"survey": 1, "acquire": 2, "park_probe": 1, "dwell": 1}
    assert documents[-1][1]["nion_autoem"]["dose_e"] == pytest.approx(sum(DOSES))
    assert [e["event"] for e in documents[-1][1]["nion_autoem"]["journal_events"]] == ["paused"]
    start = documents[0][1]
    assert start["plan_name"] == "export_test" and start["nion_autoem"]["run_id"] == "test-run-0001"
    assert start["detectors"] == ["HAADF", "eels"]

    descriptors = {doc["uid"]: doc for name, doc in documents if name == "descriptor"}
    streams = [descriptors[e["descriptor"]]["name"] for e in events]
    assert streams == ["survey", "acquire", "acquire", "park_probe", "dwell"]
    acquire = events[2]
    assert (acquire["data"]["position_y_nm"], acquire["data"]["position_x_nm"]) == (0.5, -0.5)
    assert json.loads(acquire["data"]["result"]) == {"peak_eV": 122.0}
    assert json.loads(acquire["data"]["action"])["kind"] == "acquire" and acquire["data"]["source"] == "plan"
    assert acquire["time"] == pytest.approx(events[0]["time"] + 2)
    assert "frame_fov_nm" in events[0]["data"] and "position_y_nm" not in events[0]["data"]
    survey_key = descriptors[events[0]["descriptor"]]["data_keys"]["HAADF"]
    assert survey_key["shape"] == [16, 16] and survey_key["dtype_numpy"] == "<f4" and survey_key["external"] == "FILESTORE:"


def test_datums_point_at_the_recorded_npy_files(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    record_run(run_dir)
    documents = to_event_documents(run_dir)
    resources = [doc for name, doc in documents if name == "resource"]
    assert len(resources) == 4  # survey, two spectra, one trace; parking the probe records none
    for resource in resources:
        path = pathlib.Path(resource["root"]) / resource["resource_path"]
        assert path.is_file() and path.suffix == ".npy"
        assert not pathlib.Path(resource["resource_path"]).is_absolute()

    # and event_model's own Filler reads the arrays back through them
    with event_model.Filler({"NPY": NpyHandler}, inplace=False) as filler:
        filled = [filler(name, doc) for name, doc in documents]
    events = [doc for name, doc in filled if name == "event"]
    survey = numpy.load(run_dir / "data" / "step_000000_HAADF.npy")
    numpy.testing.assert_array_equal(events[0]["data"]["HAADF"], survey)
    assert events[0]["filled"]["HAADF"] and events[1]["data"]["eels"].shape == (128,)


def test_scalars_only_export_and_jsonl_file(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    record_run(run_dir)
    scalars = to_event_documents(run_dir, include_data=False)
    validate_all(scalars)
    assert {name for name, _ in scalars} == {"start", "descriptor", "event", "stop"}
    assert all("HAADF" not in doc["data"] and not doc["filled"] for name, doc in scalars if name == "event")

    path = write_event_documents(run_dir, tmp_path / "run.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(line, list) and len(line) == 2 for line in lines)
    assert [(name, doc) for name, doc in lines] == to_event_documents(run_dir)  # and exporting is deterministic
    assert not (tmp_path / "run.jsonl.tmp").exists()


@pytest.mark.parametrize(("state", "exit_status"), [("stopped", "abort"), ("failed", "fail")])
def test_end_state_maps_to_exit_status(tmp_path: pathlib.Path, state: str, exit_status: str) -> None:
    run_dir = tmp_path / "run"
    record_run(run_dir, end=state)
    stop = to_event_documents(run_dir)[-1]
    assert stop[0] == "stop" and stop[1]["exit_status"] == exit_status and stop[1]["reason"] == "by request"


def test_an_incomplete_run_exports_as_failed(tmp_path: pathlib.Path) -> None:
    """A crashed run (no end line, a torn last line) is exported, with exit_status "fail" and a reason that says why."""
    run_dir = tmp_path / "run"
    record_run(run_dir, end=None)
    with open(run_dir / JOURNAL_NAME, "a", encoding="utf-8") as f:
        f.write('{"type":"step","step":5,"act')  # the crash tore the last line
    documents = to_event_documents(run_dir)
    validate_all(documents)
    assert sum(1 for name, _ in documents if name == "event") == 5
    name, stop = documents[-1]
    assert name == "stop" and stop["exit_status"] == "fail" and stop["reason"] == NO_END_REASON
    assert stop["nion_autoem"]["state"] is None
    assert documents[0][1]["nion_autoem"]["journal_torn_lines"] == 1


def test_a_directory_without_a_journal_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="no journal"):
        to_event_documents(tmp_path)
