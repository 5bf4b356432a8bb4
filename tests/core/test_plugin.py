"""The plug-in package Swift discovers, and the panel it registers."""

from __future__ import annotations

import pathlib
import time
import typing

import pytest
from nion.swift import Panel
from nion.ui import Declarative

from nion_autoem.runner import RunState
from nion_autoem.swift import panel
from nionswift_plugin import nion_autoem as plugin


def test_extension_registers_and_removes_the_panel() -> None:
    extension = plugin.AutonomousExperimentExtension(api_broker=None)
    try:
        assert panel.PANEL_ID in Panel.PanelManager().panel_ids
    finally:
        extension.close()
    assert panel.PANEL_ID not in Panel.PanelManager().panel_ids


@pytest.mark.parametrize("experiment, product", [(0, "Measured spectra"), (1, "DKL prediction"), (2, "Classified atoms"), (5, "DKL prediction"),
                                                 (6, "Forecast watch: measured series")])
def test_panel_runs_an_experiment_and_reports_progress(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any, experiment: int, product: str) -> None:
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    dc = usim_session.document_controller
    controller = panel.ExperimentPanelController(dc)
    widget = Declarative.DeclarativeWidget(dc.ui, dc.event_loop, controller)
    try:
        controller.experiment_index.value = experiment
        controller.points.value = {0: 12, 1: 12, 5: 12, 6: 40}.get(experiment, 1)
        controller.exposure_ms.value = 10.0
        controller.start()
        runner = controller.runner
        assert runner is not None, controller.status.value
        usim_session.pump_until_done(runner, 60)
        assert runner.state is RunState.FINISHED, runner.progress.message
        assert controller.percent.value == 100
        status = controller.status.value
        assert status is not None and "finished" in status
        assert (tmp_path / "runs" / runner.run_id / "journal.jsonl").exists()
        assert any(product in (d.title or "") for d in usim_session.document_model.data_items)
    finally:
        widget.close()


def test_panel_explains_bad_parameters(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    controller = panel.ExperimentPanelController(usim_session.document_controller)
    controller.points.value = 0
    controller.start()
    assert controller.runner is None
    status = controller.status.value
    assert status is not None and "Cannot start" in status and "Spectra must be at least 1" in status
    # a reversed band is refused before Start, with the fix
    controller.points.value = 4
    controller.band_low_eV.value, controller.band_high_eV.value = 2.1, 1.2
    controller.start()
    assert controller.runner is None and "swap the two values" in (controller.status.value or "")
    # a band beyond the spectrometer's axis is refused before any dose is spent, in the dry run too, naming the axis
    controller.band_low_eV.value, controller.band_high_eV.value = 600.0, 700.0
    controller.start()
    assert controller.runner is None and "outside the spectrometer's axis (-20 to " in (controller.status.value or "")
    controller.dry_run()
    assert "Cannot plan" in (controller.plan_summary.value or "") and "outside the spectrometer's axis" in (controller.plan_summary.value or "")
    controller.band_low_eV.value, controller.band_high_eV.value = 1.0, 3.0
    # only the fields an experiment uses are shown, and what it counts is named
    controller.experiment_index.value = 2
    assert controller.count_label.value == "Frames" and not controller.show_band.value and not controller.show_exposure.value and controller.show_field.value
    controller.experiment_index.value = 1
    assert controller.count_label.value == "Spectra" and controller.show_band.value and controller.show_dkl.value
    # Stop and Pause are offered only while something runs
    assert not controller.running.value and controller.idle.value
    controller.stop()
    assert controller.status.value == "Nothing is running."
    controller.close()


@pytest.mark.parametrize("experiment", [0, 1, 2, 3, 5, 6])
def test_panel_dry_run_shows_steps_beam_time_and_dose_before_start(usim_session: typing.Any, experiment: int) -> None:
    controller = panel.ExperimentPanelController(usim_session.document_controller)
    try:
        controller.experiment_index.value = experiment
        controller.points.value = 4 if experiment != 2 else 1
        controller.field_nm.value = 3.0
        controller.dry_run()
        deadline = time.time() + 60
        while controller.plan_summary.value == panel._("Planning…") and time.time() < deadline:
            usim_session.pump(0.05)
        summary = controller.plan_summary.value or ""
        assert summary.startswith("Dry run:") and "steps" in summary and "beam on" in summary and " e (" in summary, summary
        assert controller.runner is None  # nothing was run, nothing was dosed
    finally:
        controller.close()


def test_panel_switches_remote_steering_on_and_off(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    import socket

    from nion_autoem.remote import connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    monkeypatch.setattr(panel, "REMOTE_PORT", port)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # token and certificate go to ~/.nion-autoem/remote
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    controller = panel.ExperimentPanelController(usim_session.document_controller)
    try:
        controller.remote.value = True
        status = str(controller.status.value)
        assert status.startswith("Remote steering on at nion-autoem+tls://127.0.0.1:"), status
        token = status.rsplit(": ", 1)[-1]
        uri = status.split(" at ", 1)[1].split(" — ", 1)[0]
        client = connect(uri, token)
        try:
            assert "point-spectroscopy" in client.list_plans()["plans"]
        finally:
            client.close()
        with pytest.raises(Exception, match="token"):
            connect(uri, "not-the-token").list_plans()
        controller.remote.value = False
        assert controller.remote_server is None and "Remote steering off" in str(controller.status.value)
    finally:
        controller.close()
