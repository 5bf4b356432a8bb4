"""The session's dose history in Swift: every experiment's measurements and the user's own live scan, as one updating map."""

from __future__ import annotations

import pathlib
import time
import typing

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import ELEMENTARY_CHARGE_C
from nion_autoem.journal import read_journal
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.runner import RunState
from nion_autoem.swift import panel
from nion_autoem.swift.console import start_experiment
from nion_autoem.swift.dose_history import publisher_for
from nion_autoem.swift.dose_history import session_dose
from nion_autoem.swift.microscope import SwiftMicroscope


def test_an_experiment_fills_the_session_dose_map(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    session_dose().clear()
    controller = panel.ExperimentPanelController(usim_session.document_controller)
    try:
        plan = PointSpectroscopy(points=3, refine_points=0, exposure_ms=20.0, survey_frame=ScanFrame((64, 64), 16.0))
        runner = start_experiment(plan, window=usim_session.document_controller, run_dir=tmp_path / "run")
        usim_session.pump_until_done(runner, 60)
        assert runner.state is RunState.FINISHED, runner.progress.message
        deadline = time.time() + 10
        while publisher_for(usim_session.document_controller).data_item() is None and time.time() < deadline:
            usim_session.pump(0.05)
        usim_session.pump(0.3)
        item = publisher_for(usim_session.document_controller).data_item()
        assert item is not None and item.title == "Dose map (this session)"
        xdata = item.xdata
        assert xdata is not None and xdata.intensity_calibration.units == "e/nm²" and xdata.dimensional_calibrations[0].units == "nm"
        # every electron of the run is in the map: the journal's dose and the map's total agree
        journal_dose = sum(float(s.entry.get("dose_e", 0.0)) for s in read_journal(tmp_path / "run").steps)
        metadata = xdata.metadata["nion_autoem"]
        assert journal_dose > 0 and metadata["total_e"] == pytest.approx(journal_dose, rel=1e-9)
        # ... and where they went: the cells sum to the electrons (mean dose x cell area), and the peak is on a spectrum's position
        cell_nm = xdata.dimensional_calibrations[0].scale
        assert float(numpy.sum(xdata.data)) * cell_nm**2 == pytest.approx(journal_dose, rel=0.02)
        spectra = numpy.asarray(plan.positions_nm)
        assert numpy.min(numpy.linalg.norm(spectra - numpy.asarray(metadata["peak_nm"]), axis=1)) <= 1.5 * cell_nm
        # the panel says it in a sentence
        assert str(controller.dose_summary.value).startswith("Dose so far: at most") and "e/nm²" in str(controller.dose_summary.value)
        # a second run updates the same item, not a new one
        runner = start_experiment(PointSpectroscopy(points=2, refine_points=0, exposure_ms=10.0, survey_frame=ScanFrame((64, 64), 16.0)),
                                  window=usim_session.document_controller, run_dir=tmp_path / "run2")
        usim_session.pump_until_done(runner, 60)
        usim_session.pump(0.5)
        maps = [d for d in usim_session.document_model.data_items if d.title == "Dose map (this session)"]
        assert len(maps) == 1 and maps[0].xdata.metadata["nion_autoem"]["total_e"] > journal_dose
    finally:
        controller.close()


def test_the_users_live_scan_is_counted(usim_session: typing.Any) -> None:
    from nion.instrumentation import HardwareSource
    from nion.utils import Geometry
    from nion.utils import Registry

    session_dose().clear()
    scan = typing.cast(typing.Any, HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_scan_device"))
    fp = scan.get_current_frame_parameters()
    fp.pixel_size, fp.fov_nm, fp.pixel_time_us = Geometry.IntSize(64, 64), 20.0, 2.0
    scan.set_current_frame_parameters(fp)
    stem = Registry.get_component("stem_controller")
    assert stem is not None
    stem.SetVal("C_Blank", 0.0)
    controller = panel.ExperimentPanelController(usim_session.document_controller)
    try:
        expected = 64 * 64 * 2e-6 * SwiftMicroscope().beam_current_A / ELEMENTARY_CHARGE_C  # one frame: pixels x pixel time x current
        assert expected > 0

        def live_electrons() -> float:
            return sum(e.electrons for e in session_dose().exposures if e.label == "live scan frame")

        scan.start_playing()
        deadline = time.time() + 20
        while live_electrons() < 3 * expected and time.time() < deadline:
            usim_session.pump(0.05)
        scan.stop_playing(sync_timeout=5.0)
        frames = [e for e in session_dose().exposures if e.label == "live scan frame"]
        # frames of the same field add up in one exposure (an hour of live view stays one), a whole number of frames' worth
        assert len(frames) == 1 and frames[0].frame is not None and frames[0].frame.fov_nm == pytest.approx(20.0) and frames[0].frame.shape == (64, 64)
        counted = frames[0].electrons / expected
        assert counted >= 3 and counted == pytest.approx(round(counted), abs=1e-6)
        usim_session.pump(2.5)
        publisher_for(usim_session.document_controller).update(force=True)
        usim_session.pump(0.5)
        assert str(controller.dose_summary.value).startswith("Dose so far: at most")
    finally:
        scan.stop_playing(sync_timeout=5.0)
        controller.close()


def test_the_dry_run_warns_before_a_plan_takes_an_area_past_the_dose_limit(usim_session: typing.Any) -> None:
    session_dose().clear()
    controller = panel.ExperimentPanelController(usim_session.document_controller)

    def dry_run_says() -> str:
        controller.dry_run()
        deadline = time.time() + 60
        while str(controller.plan_summary.value).startswith("Planning") and time.time() < deadline:
            usim_session.pump(0.05)
        return str(controller.plan_summary.value)

    try:
        controller.points.value, controller.exposure_ms.value, controller.band_low_eV.value, controller.band_high_eV.value = 3, 20.0, 1.0, 3.0
        assert controller.dose_limit.value == panel.DEFAULT_DOSE_LIMIT_E_PER_NM2
        assert "WARNING" not in dry_run_says()  # three spectra and a survey stay far below 1e8 e/nm² per 0.8 nm cell
        controller.dose_limit.value = 1e3
        said = dry_run_says()
        assert said.startswith("Dry run:") and "WARNING: this plan would bring (" in said and "past the limit of 1e+03 e/nm²" in said
        controller.dose_limit.value = 0.0  # no limit
        assert "WARNING" not in dry_run_says()
    finally:
        controller.close()
