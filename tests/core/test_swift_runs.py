"""Runs on usim inside a headless Swift: safety, data items, the saved project, no leaks."""

from __future__ import annotations

import contextlib
import pathlib
import threading
import time
import typing

import pytest
from nion.swift.model import Profile
from nion.utils import Registry

from nion_autoem.geometry import ScanFrame
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.session import leaked_components


@contextlib.contextmanager
def reopened(project_path: pathlib.Path, cache_dir: pathlib.Path) -> typing.Iterator[typing.Any]:
    """The document model of a saved project, read back from disk as a user reopening it would get it."""
    profile = Profile.Profile(cache_dir_path=cache_dir)
    cache_dir.mkdir()
    profile.read_profile()
    reference = profile.add_project_index(project_path, load=False)
    profile.read_project(reference)
    try:
        assert reference.document_model is not None
        yield reference.document_model
    finally:
        profile.close()


def test_stop_during_a_long_exposure_is_fast_and_safe(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    scope = usim_session.microscope()
    policy = PointSpectroscopy(points=3, refine_points=0, exposure_ms=3000.0, survey_frame=ScanFrame((64, 64), 32.0))
    runner = ExperimentRunner(scope, policy, run_dir=tmp_path / "run", sink=DataItemSink(usim_session.document_controller))
    runner.start()
    stem = Registry.get_component("stem_controller")
    assert stem is not None
    deadline = time.time() + 20
    while "spectrum" not in runner.progress.current_action and time.time() < deadline:
        usim_session.pump(0.01)
    time.sleep(0.2)  # well inside the 3 s exposure
    assert stem.probe_state == "parked" and stem.probe_position is not None
    t0 = time.perf_counter()
    runner.stop()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.1, f"stop took {elapsed * 1000:.0f} ms"
    assert scope.is_blanked and stem.probe_position is None
    progress = runner.wait(10.0)
    assert progress.state is RunState.STOPPED
    assert scope.is_blanked and stem.probe_position is None


def test_stop_aborts_the_exposure_itself(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    """Not only blanked: the 3 s exposure ends, so the camera is free at once for the next acquisition."""
    scope = usim_session.microscope()
    plan = PointSpectroscopy(points=3, refine_points=0, exposure_ms=3000.0, survey_frame=ScanFrame((64, 64), 32.0))
    runner = ExperimentRunner(scope, plan, run_dir=tmp_path / "run")
    runner.start()
    deadline = time.time() + 20
    while "spectrum" not in runner.progress.current_action and time.time() < deadline:
        usim_session.pump(0.01)
    time.sleep(0.2)
    t0 = time.perf_counter()
    runner.stop()
    runner.wait(10.0)
    scope.park_probe((0.0, 0.0))
    scope.acquire_spectrum(10.0)  # waits for the camera: about 2.8 s more if the stopped exposure were still running
    scope.make_safe()
    assert time.perf_counter() - t0 < 1.5, "the camera kept exposing after the stop"


def test_an_exception_mid_run_leaves_the_probe_safe(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    scope = usim_session.microscope()
    # A band outside the spectrum makes the plan raise on the first spectrum.
    policy = PointSpectroscopy(points=3, refine_points=0, band_eV=(5000.0, 6000.0), survey_frame=ScanFrame((64, 64), 32.0))
    runner = ExperimentRunner(scope, policy, run_dir=tmp_path / "run")
    usim_session.run_until_done(runner)
    assert runner.state is RunState.FAILED and "contains no channel" in runner.progress.message
    stem = Registry.get_component("stem_controller")
    assert stem is not None
    assert scope.is_blanked and stem.probe_position is None


def test_results_are_data_items_that_survive_reopening_the_project(tmp_path: pathlib.Path) -> None:
    project_dir = tmp_path / "project"
    with UsimSession(project_dir=project_dir, project_name="autoem-test") as session:
        policy = PointSpectroscopy(points=5, refine_points=2, exposure_ms=10.0, survey_frame=ScanFrame((128, 128), 48.0))
        sink = DataItemSink(session.document_controller)
        runner = ExperimentRunner(session.microscope(), policy, run_dir=tmp_path / "run", sink=sink, budget=Budget(max_steps=20))
        updates: list[int] = []
        survey_item = None

        def watch(progress: typing.Any) -> None:
            updates.append(progress.step)
        session.run_until_done(runner, on_progress=watch)
        assert runner.state is RunState.FINISHED, runner.progress.message
        survey_item = sink.data_item(runner.run_id, "survey")
        spectra_item = sink.data_item(runner.run_id, "spectra")
        assert survey_item is not None and spectra_item is not None
        measured = len(policy.positions_nm)
        assert spectra_item.xdata is not None
        assert spectra_item.xdata.data_shape[0] == measured >= 5
        run_id = runner.run_id
    assert leaked_components() == {}

    # reopen the saved project from disk, as a user would
    with reopened(project_dir / "autoem-test.nsproj", tmp_path / "cache") as document_model:
        ours = {d.title: d for d in document_model.data_items if d.metadata.get("nion_autoem", {}).get("run_id") == run_id}
        assert set(ours) == {f"Survey with measured points ({run_id})", f"Measured spectra ({run_id})"}
        # spectra are taken without Swift's camera recording path, so no uncalibrated "uSim EELS Camera" item is left behind
        assert [d.title for d in document_model.data_items if "EELS" in (d.title or "")] == []
        spectra = ours[f"Measured spectra ({run_id})"]
        spectra_xdata = spectra.xdata
        assert spectra_xdata is not None
        assert spectra_xdata.data_shape[0] == measured
        energy = spectra_xdata.dimensional_calibrations[-1]
        assert energy.units == "eV" and energy.scale > 0
        md = spectra.metadata["nion_autoem"]
        assert md["parameters"]["points"] == 5 and len(md["positions_nm"]) == measured
        assert md["provenance"]["plan"] == "point-spectroscopy" and md["provenance"]["software"].startswith("nion-autoem")
        assert md["provenance"]["journal"] == str(tmp_path / "run" / "journal.jsonl")
        survey = ours[f"Survey with measured points ({run_id})"]
        survey_xdata = survey.xdata
        assert survey_xdata is not None
        assert survey_xdata.dimensional_calibrations[0].units == "nm"
        survey_display = document_model.get_display_item_for_data_item(survey)
        assert survey_display is not None
        points = [g for g in survey_display.graphics if g.type == "point-graphic"]
        assert len(points) == measured
        labels = [g.label for g in points]
        assert all(label is not None for label in labels)
        assert sorted(int(label) for label in labels if label is not None) == list(range(1, measured + 1))


def test_stop_is_safe_from_another_thread_while_the_ui_thread_pumps(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    scope = usim_session.microscope()
    policy = PointSpectroscopy(points=50, refine_points=0, exposure_ms=50.0, survey_frame=ScanFrame((64, 64), 32.0))
    runner = ExperimentRunner(scope, policy, run_dir=tmp_path / "run", sink=DataItemSink(usim_session.document_controller))
    threading.Timer(1.0, runner.stop).start()
    usim_session.run_until_done(runner, timeout=30)
    assert runner.state is RunState.STOPPED
    assert scope.is_blanked and scope.probe_position_nm is None


@pytest.mark.parametrize("attempt", range(2))
def test_sessions_come_and_go_without_leaking(attempt: int) -> None:
    with UsimSession() as session:
        assert Registry.get_component("stem_controller") is session.instrument
        session.microscope().survey(ScanFrame((16, 16), 8.0))
    assert leaked_components() == {}


def test_a_run_holds_back_the_disk_writes_of_its_items_until_it_ends_and_then_saves_them(tmp_path: pathlib.Path) -> None:
    from nion_autoem.swift.console import start_experiment

    project_dir = tmp_path / "project"
    with UsimSession(project_dir=project_dir, project_name="held") as session:
        document_model = session.document_controller.document_model
        plan = PointSpectroscopy(points=6, refine_points=2, exposure_ms=10.0, survey_frame=ScanFrame((96, 96), 40.0))
        runner = start_experiment(plan, window=session.document_controller, run_dir=tmp_path / "run", budget=Budget(max_steps=30))

        def ours() -> list[typing.Any]:
            return [d for d in document_model.data_items if d.metadata.get("nion_autoem", {}).get("run_id") == runner.run_id]

        held_while_running: set[bool] = set()
        while not runner.state.is_final:
            session.pump(0.02)
            if not runner.state.is_final and len(ours()) == 2:
                held_while_running.update(d.is_write_delayed for d in ours())
        assert runner.state is RunState.FINISHED, runner.progress.message
        # updated many times on screen, written to disk by none of them while the run went on
        assert held_while_running == {True}
        deadline = time.time() + 10.0
        while any(d.is_write_delayed for d in ours()) and time.time() < deadline:
            session.pump(0.05)
        assert [d.is_write_delayed for d in ours()] == [False, False]
        measured = len(plan.positions_nm)
        run_id = runner.run_id
    # what was written at the end is the final state of every item
    with reopened(project_dir / "held.nsproj", tmp_path / "cache") as saved_model:
        saved = {d.title: d for d in saved_model.data_items if d.metadata.get("nion_autoem", {}).get("run_id") == run_id}
        spectra = saved[f"Measured spectra ({run_id})"].xdata
        assert spectra is not None and spectra.data_shape[0] == measured >= 6
        survey_display = saved_model.get_display_item_for_data_item(saved[f"Survey with measured points ({run_id})"])
        assert survey_display is not None
        assert len([g for g in survey_display.graphics if g.type == "point-graphic"]) == measured


def test_swift_closed_mid_run_writes_the_held_items_first(tmp_path: pathlib.Path) -> None:
    from nion_autoem.swift.console import start_experiment

    project_dir = tmp_path / "project"
    with UsimSession(project_dir=project_dir, project_name="quit") as session:
        document_model = session.document_controller.document_model
        plan = PointSpectroscopy(points=40, refine_points=0, exposure_ms=50.0, survey_frame=ScanFrame((96, 96), 40.0))
        runner = start_experiment(plan, window=session.document_controller, run_dir=tmp_path / "run", budget=Budget(max_steps=100))

        def spectra_shown() -> int:
            items = [d for d in document_model.data_items if (d.title or "").startswith(f"Measured spectra ({runner.run_id}")]
            return items[0].xdata.data_shape[0] if items and items[0].xdata is not None else 0

        deadline = time.time() + 60
        while spectra_shown() < 6 and time.time() < deadline:
            session.pump(0.05)
        shown = spectra_shown()
        assert shown >= 6 and not runner.state.is_final
        runner.stop("window closed")  # what the panel does as Swift quits; the window closes at once after it
    runner.wait(30)
    assert leaked_components() == {}
    with reopened(project_dir / "quit.nsproj", tmp_path / "cache") as saved_model:
        saved = [d for d in saved_model.data_items if (d.title or "").startswith(f"Measured spectra ({runner.run_id}")]
        assert len(saved) == 1 and saved[0].xdata is not None
        assert saved[0].xdata.data_shape[0] >= shown  # not the one spectrum of its first write


def test_held_items_are_still_written_every_so_often_and_all_at_release(usim_session: typing.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy
    from nion.data import DataAndMetadata

    from nion_autoem.products import Product
    from nion_autoem.swift import data_items

    monkeypatch.setattr(data_items, "WRITE_HELD_EVERY_S", 0.3)
    sink = DataItemSink(usim_session.document_controller)
    sink.hold_writes()

    def publish(key: str, value: float) -> None:
        sink.publish(Product(key, key, DataAndMetadata.new_data_and_metadata(numpy.full((8, 8), value))), {"run_id": "held"})

    for key in ("a", "b"):
        publish(key, 1.0)
    usim_session.pump(0.1)
    items = {key: sink.data_item("held", key) for key in ("a", "b")}
    assert all(item is not None and item._data_item.is_write_delayed for item in items.values())
    time.sleep(0.35)
    publish("b", 2.0)
    usim_session.document_controller.periodic()  # one refresh: the overdue item is written first, the update waits
    written = [key for key, item in items.items() if item is not None and not item._data_item.is_write_delayed]
    assert written == ["a"] and sink.pending == 1
    usim_session.pump(0.1)
    assert items["b"] is not None and float(items["b"].data[0, 0]) == 2.0
    sink.release_writes()
    usim_session.pump(0.1)
    assert sink.pending == 0 and not any(item is not None and item._data_item.is_write_delayed for item in items.values())


def test_an_experiment_takes_over_a_running_live_scan_and_gives_its_settings_back(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    from nion.instrumentation import HardwareSource
    from nion.instrumentation import scan_base
    from nion.utils import Geometry

    from nion_autoem.swift.console import start_experiment

    hardware_source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_scan_device")
    assert hardware_source is not None
    scan = typing.cast(scan_base.ScanHardwareSource, hardware_source)
    fp = scan.get_current_frame_parameters()
    fp.pixel_size, fp.fov_nm, fp.pixel_time_us = Geometry.IntSize(200, 300), 40.0, 2.0
    scan.set_current_frame_parameters(fp)
    eels = typing.cast(typing.Any, HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_eels_camera"))
    users_camera = eels.get_current_frame_parameters()
    users_camera.exposure_ms, users_camera.processing = 75.0, None
    eels.set_current_frame_parameters(users_camera)
    scan.start_playing()
    usim_session.pump(0.3)
    assert scan.is_playing
    plan = PointSpectroscopy(points=3, refine_points=0, exposure_ms=10.0, survey_frame=ScanFrame((64, 64), 32.0))
    runner = start_experiment(plan, window=usim_session.document_controller, run_dir=tmp_path / "run")
    usim_session.pump_until_done(runner, 60)
    assert runner.state is RunState.FINISHED, runner.progress.message  # it used to fail at once: "the probe is not parked"
    assert "your live scan was stopped for the experiment" in runner.progress.message
    assert not scan.is_playing
    back = scan.get_current_frame_parameters()
    assert (back.pixel_size.height, back.pixel_size.width, back.fov_nm, back.pixel_time_us) == (200, 300, 40.0, 2.0)
    # the spectra were taken at 10 ms, summed; the user's camera settings are back too
    camera_back = eels.get_current_frame_parameters()
    assert (camera_back.exposure_ms, camera_back.processing) == (75.0, None)
