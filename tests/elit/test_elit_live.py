"""ELIT in Swift: live frames from the MoS2 twin, and an image already in the document."""

from __future__ import annotations

import pathlib
import time
import typing

import numpy
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift import Facade

from nion_autoem.geometry import ScanFrame
from nion_autoem.plans.atom_finding import MAX_MARKED_UNCERTAIN
from nion_autoem.plans.atom_finding import TABLE_COLUMNS
from nion_autoem.plans.atom_finding import AtomFinding
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.console import find_atoms_in_data_item
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration
from nion_autoem.twin import lattice
from nion_autoem_elit import generate_frame
from nion_autoem_elit import mos2_lattice
from tests.twins import mos2_twin


def test_live_frames_from_the_twin_become_classified_atoms(tmp_path: pathlib.Path) -> None:
    configuration = create_configuration("mos2", seed=3)
    with UsimSession(configuration) as session:
        sink = DataItemSink(session.document_controller)
        frame = ScanFrame((256, 256), fov_nm=3.0)
        policy = AtomFinding(frames=2, survey_frame=frame, pixel_time_us=8.0)
        runner = ExperimentRunner(session.microscope(), policy, run_dir=tmp_path / "run", sink=sink)
        session.run_until_done(runner, timeout=120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        truth = mos2_twin(configuration).ground_truth()
        result = policy.results[-1]
        found_nm = frame.pixel_to_nm(result.positions)
        visible = numpy.isin(truth.column_class, (lattice.MO, lattice.S2, lattice.S1)) & frame.contains_nm(truth.position_nm, margin=0.05)
        distance = numpy.min(numpy.linalg.norm(truth.position_nm[visible][:, None] - found_nm[None], axis=-1), axis=1)
        assert visible.sum() > 100 and numpy.mean(distance < 0.03) >= 0.95
        # Mo versus S2, the classes that dominate the field, must be told apart
        nearest = numpy.argmin(numpy.linalg.norm(truth.position_nm[visible][:, None] - found_nm[None], axis=-1), axis=1)
        found_names = numpy.array(result.class_names)[result.classes[nearest]]
        truth_names = numpy.array(truth.class_names)[truth.column_class[visible]]
        both = numpy.isin(truth_names, ("Mo", "S2"))
        assert numpy.mean(found_names[both] == truth_names[both]) >= 0.95

        frame_item = sink.data_item(runner.run_id, "frame")
        table_item = sink.data_item(runner.run_id, "atoms")
        map_item = sink.data_item(runner.run_id, "uncertainty")
        assert frame_item is not None and table_item is not None and map_item is not None
        # the class map: the frame in colour, one colour per class, not one graphic per column
        assert frame_item.xdata is not None and frame_item.xdata.data_shape == (256, 256, 3)
        assert frame_item.xdata.dimensional_calibrations[0].units == "nm"
        # no graphics at all (Swift's Inspector builds a section per graphic): the uncertain columns are ringed in white in the map itself
        assert [g for g in frame_item.display.graphics if g.graphic_type == "point-graphic"] == []
        unsure = numpy.argsort(-numpy.asarray(result.uncertainties))[:min(int(numpy.sum(numpy.asarray(result.uncertainties) > 0.2)), MAX_MARKED_UNCERTAIN)]
        rgb = numpy.asarray(frame_item.xdata.data)
        white = numpy.all(rgb == 255, axis=-1)
        for i in unsure:
            y, x = numpy.round(result.positions[i]).astype(int)
            assert white[max(y - 8, 0):y + 9, max(x - 8, 0):x + 9].any(), f"uncertain column {i} at {(y, x)} is not ringed"
        assert white.sum() <= len(unsure) * 200  # rings around the uncertain ones, nothing else white
        caption = frame_item._data_item.caption  # the caption is the item's legend
        assert caption is not None and f"Mo blue {result.counts()['Mo']}" in caption and f"S2 yellow {result.counts()['S2']}" in caption
        assert (f"the {len(unsure)} most uncertain ringed in white" in caption) == (len(unsure) > 0)
        # ... and Swift shows them in those colours: niondata stores colour as B, G, R
        mo = next(i for i in range(len(result)) if result.class_names[int(result.classes[i])] == "Mo" and i not in set(unsure.tolist()))
        y, x = numpy.round(result.positions[mo]).astype(int)
        blue, green, red = (int(v) for v in rgb[y, x])
        assert blue > red and blue == 255, (blue, green, red)
        # the table: every column, in words, as CSV beside the journal
        table_csv = tmp_path / "run" / "tables" / "atoms.csv"
        rows = table_csv.read_text().splitlines()
        assert rows[0] == ",".join(TABLE_COLUMNS) and len(rows) == 1 + len(result)
        assert {row.split(",")[2] for row in rows[1:]} <= set(result.class_names)
        assert table_item.xdata is not None and table_item.metadata is not None and map_item.xdata is not None
        assert table_item.xdata.data_shape == (len(result.class_names),) and list(table_item.xdata.data) == [result.counts().get(n, 0) for n in result.class_names]
        assert map_item.xdata.dimensional_calibrations[0].units == "nm"
        # the run's items sit together in one data group
        groups = [g for g in session.document_model.data_groups if runner.run_id in (g.title or "")]
        assert len(groups) == 1 and len(groups[0].display_items) == 3
        assert isinstance(runner.plan, AtomFinding)
        assert runner.plan.model_version == "elit/mos2"


def test_atoms_in_an_image_already_in_the_document(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    simulated = generate_frame(mos2_lattice(), (192, 192), seed=7)
    pixel_nm = 0.012
    xdata = DataAndMetadata.new_data_and_metadata(simulated.image.astype(float), dimensional_calibrations=[Calibration.Calibration(0.0, pixel_nm, "nm")] * 2)
    with UsimSession() as session:
        library = Facade.Library(session.document_model)
        item = library.create_data_item_from_data_and_metadata(xdata, "loaded MoS2 image")
        runner = find_atoms_in_data_item(item, document_controller=session.document_controller)
        session.pump_until_done(runner, 60)
        assert runner.state is RunState.FINISHED, runner.progress.message
        titles = [d.title for d in session.document_model.data_items]
        assert any(t.startswith("Atom classes (ELIT)") for t in titles) and any(t.startswith("Classified atoms (ELIT)") for t in titles)
        result = runner.plan.results[0]  # type: ignore[attr-defined]
        inside = simulated.positions[numpy.all((simulated.positions > 4) & (simulated.positions < 188), axis=1)]
        distance = numpy.min(numpy.linalg.norm(inside[:, None] - result.positions[None], axis=-1), axis=1)
        assert numpy.mean(distance < 3.0) >= 0.95


def test_an_uncalibrated_image_is_refused_with_a_reason() -> None:
    xdata = DataAndMetadata.new_data_and_metadata(numpy.ones((64, 64)))
    with UsimSession() as session:
        item = Facade.Library(session.document_model).create_data_item_from_data_and_metadata(xdata, "no calibration")
        try:
            find_atoms_in_data_item(item, document_controller=session.document_controller)
        except ValueError as e:
            assert "calibration in nm" in str(e)
        else:
            raise AssertionError("an uncalibrated image was accepted")


def test_the_panel_finds_atoms_live_on_the_twin_and_in_a_selected_image(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion_autoem.swift import panel

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    with UsimSession(create_configuration("mos2", seed=8)) as session:
        session.microscope().survey(ScanFrame((256, 256), fov_nm=3.0), pixel_time_us=4.0)  # the current scan: a 3 nm field
        controller = panel.ExperimentPanelController(session.document_controller)
        controller.experiment_index.value = 2
        controller.points.value = 2
        runners: list[typing.Any] = []
        for start in (controller.start, controller.find_atoms_in_selection):
            if start == controller.find_atoms_in_selection:
                # a survey of the twin the user has in the document (the class map is for reading, not for finding atoms in)
                scope = session.microscope()
                scope.unblank()  # the run left the beam blanked; the user unblanks to look again
                survey = scope.survey(ScanFrame((256, 256), fov_nm=3.0), pixel_time_us=4.0).xdata
                live = Facade.Library(session.document_model).create_data_item_from_data_and_metadata(survey, "a survey of mine")._data_item
                session.pump(0.2)  # the data panel lists the new item before it can be selected there
                session.document_controller.selected_display_panel = None
                live_display = session.document_model.get_display_item_for_data_item(live)
                assert live_display is not None
                session.document_controller.select_display_items_in_data_panel([live_display])
                session.pump(0.05)
            start()
            runner = controller.runner
            assert runner is not None and runner not in runners, controller.status.value
            runners.append(runner)
            session.pump_until_done(runner, 60)
            assert runner.state is RunState.FINISHED, runner.progress.message
            result = runner.plan.results[-1]  # type: ignore[attr-defined]
            assert len(result) > 150 and {"Mo", "S2"} <= set(result.labels)
        tables = [d for d in session.document_model.data_items if d.title.startswith("Classified atoms (ELIT)")]
        assert len(tables) == 2, [d.title for d in session.document_model.data_items]  # one from the live run, one from the selected image


def test_elit_follows_the_users_scan_frame_by_frame(tmp_path: pathlib.Path) -> None:
    from nion.instrumentation import HardwareSource
    from nion.instrumentation import scan_base
    from nion.utils import Geometry

    from nion_autoem.swift import panel

    with UsimSession(create_configuration("mos2", seed=9)) as session:
        hardware_source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_scan_device")
        assert hardware_source is not None
        # The manager hands back the base HardwareSource type; this id is usim's scan.
        scan = typing.cast(scan_base.ScanHardwareSource, hardware_source)
        fp = scan.get_current_frame_parameters()
        fp.pixel_size, fp.fov_nm, fp.pixel_time_us = Geometry.IntSize(192, 192), 2.5, 1.0
        scan.set_current_frame_parameters(fp)
        controller = panel.ExperimentPanelController(session.document_controller)
        controller.live_elit.value = True  # the panel's check box
        finder = controller.live_finder
        assert finder is not None, controller.status.value
        scan.start_playing()
        try:
            deadline = time.time() + 60
            while finder.frames_analysed < 3 and time.time() < deadline:
                session.pump(0.05)
        finally:
            scan.stop_playing(sync_timeout=5.0)
        controller.live_elit.value = False
        session.pump(0.2)
        assert finder.frames_analysed >= 3 and finder.last_error is None
        assert finder.last_counts.get("Mo", 0) > 50 and finder.last_counts.get("S2", 0) > 50
        frame_item = finder.data_item("frame")
        assert frame_item is not None and frame_item.xdata is not None and frame_item.xdata.data_shape == (192, 192, 3)
        assert [g for g in frame_item.display.graphics if g.graphic_type == "point-graphic"] == []  # uncertain ones are ringed in the map
        # one set of live items, updated in place, not one per frame
        assert sum(d.title.startswith("Atom classes (ELIT)") for d in session.document_model.data_items) == 1
        controller.close()
