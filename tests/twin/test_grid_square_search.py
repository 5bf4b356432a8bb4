"""The search plan on usim: montage, classify, go to a candidate through usim's own stage control, correct the stage's error, verify by its edge."""

from __future__ import annotations

import pathlib
import time
import typing

import numpy

from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import SubPlan
from nion_autoem.plans.search import Visit
from nion_autoem.plans.search import search_plan
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin.stage_sample import EDGES_EV
from nion_autoem.twin.stage_sample import RARE_CLASS
from nion_autoem.twin.stage_twin import GridSquareSample
from tests.montage.helpers import run_montage
from tests.montage.helpers import support_from_truth
from tests.montage.helpers import twin

CORE_LOSS = {"eels_energy_offset_eV": 200.0, "eels_dispersion_eV": 1.0}


def test_a_search_on_usims_stage_finds_and_verifies_a_platelet(twin_harness: typing.Any, tmp_path: pathlib.Path) -> None:
    pure = twin(101, min_rare=8)  # the examples come from another sample, as a person's clicks on yesterday's montage would
    examples, _ = run_montage(pure, tmp_path / "examples")
    support = support_from_truth(pure, examples)
    harness = twin_harness("grid-square", seed=0, **CORE_LOSS)
    grid = harness.configuration.twin
    assert isinstance(grid, GridSquareSample)
    platelet = next(o for o in grid.sample.objects if o.kind == RARE_CLASS)
    centre = (round(platelet.centre_nm[0] / 1000.0) * 1000.0, round(platelet.centre_nm[1] / 1000.0) * 1000.0)
    sink = MemorySink()
    handed: list[tuple[Visit, typing.Any]] = []

    def closer_look(visit: Visit) -> SubPlan:
        """The sub-plan each verified target is handed: a 300 nm field centred on it."""
        look = yield Survey(ScanFrame((64, 64), 300.0, visit.scan_offset_nm), pixel_time_us=2.0, label="closer look")
        handed.append((visit, look))

    plan = search_plan(centre, (7000.0, 7000.0), support, RARE_CLASS, wanted=1, max_visits=4, tile_fov_nm=4000.0, tile_px=128,
                       verify_edge_eV=EDGES_EV["Co L3"], then=closer_look)
    runner = ExperimentRunner(harness.microscope(), plan, run_dir=tmp_path / "search", sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    assert progress.message.startswith("1 of 1"), progress.message
    table = sink.products["visits"].table
    assert table is not None and len(table.rows) >= 1
    # the spectrum that verified it was taken on a platelet (the twin's truth), and no spectrum on anything else passed
    assert grid.spectra and grid.spectra[-1][1] is not None and grid.spectra[-1][1].kind == RARE_CLASS, grid.spectra
    # the verified target was handed to the sub-plan, with the stage still there
    assert len(handed) == 1 and handed[0][0].verified
    assert handed[0][1].frame is not None and handed[0][1].frame.center_nm == handed[0][0].scan_offset_nm
    # every stage move landed off target (usim's control plus the twin's imprecise stage), and the plan saw it
    errors = [numpy.hypot(*numpy.subtract(landed, commanded)) for commanded, landed in grid.moves]
    assert max(errors) > 60.0, errors
    assert harness.microscope().is_blanked


def test_the_panel_searches_a_region_drawn_on_an_overview(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion.swift.model import DataItem
    from nion.swift.model import Graphics
    from nion.ui import Declarative

    from nion_autoem.geometry import ScanFrame
    from nion_autoem.swift import panel
    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.session import leaked_components
    from nion_autoem.swift.usim_twin import create_configuration

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    pure = twin(101, min_rare=8)
    examples, _ = run_montage(pure, tmp_path / "examples")
    folder = support_from_truth(pure, examples).save(tmp_path / "platelet-examples")
    configuration = create_configuration("grid-square", seed=0, eels_energy_offset_eV=200.0, eels_dispersion_eV=1.0)
    with UsimSession(configuration) as session:
        grid = configuration.twin
        assert isinstance(grid, GridSquareSample)
        platelet = next(o for o in grid.sample.objects if o.kind == RARE_CLASS)
        # the user's overview: a 16 µm survey around the platelet's neighbourhood, with a rectangle drawn on it
        scope = session.microscope()
        scope.move_stage((round(platelet.centre_nm[0] / 1000.0) * 1000.0, round(platelet.centre_nm[1] / 1000.0) * 1000.0))
        scope.unblank()
        overview = scope.survey(ScanFrame((256, 256), 16000.0), pixel_time_us=1.0).xdata
        scope.blank()
        item = DataItem.new_data_item(overview)
        item.title = "Overview (mine)"
        session.document_model.append_data_item(item)
        display_item = session.document_model.get_display_item_for_data_item(item)
        assert display_item is not None
        region = Graphics.RectangleGraphic()
        region.bounds = ((0.28, 0.28), (0.44, 0.44))  # 7 µm around the centre
        display_item.add_graphic(region)
        session.document_controller.selected_display_panel = None
        session.document_controller.select_display_items_in_data_panel([display_item])
        session.pump(0.2)
        controller = panel.ExperimentPanelController(session.document_controller)
        widget = Declarative.DeclarativeWidget(session.document_controller.ui, session.document_controller.event_loop, controller)
        try:
            controller.experiment_index.value = next(i for i, e in enumerate(panel.EXPERIMENTS) if "search" in e.fields)
            assert controller.show_search.value and not controller.show_band.value and controller.count_label.value == "Targets"
            controller.points.value = 1
            controller.target_class.value = "platelets"
            controller.examples.value = str(folder)
            controller.verify_edge_eV.value = 779.0
            controller.start()
            assert controller.runner is None and "'platelets' has no examples in" in str(controller.status.value), controller.status.value
            controller.target_class.value = RARE_CLASS
            controller.then_index.value = list(panel.HAND_OFF_TITLES).index("spectra across it")
            controller.dry_run()
            deadline = time.time() + 120
            while controller.plan_summary.value == panel._("Planning…") and time.time() < deadline:
                session.pump(0.05)
            summary = str(controller.plan_summary.value)
            assert summary.startswith("Dry run:") and "failed" not in summary, summary  # the montage planned; the visits depend on what it shows
            controller.start()
            runner = controller.runner
            assert runner is not None, controller.status.value
            session.pump_until_done(runner, 120)
            assert runner.state is RunState.FINISHED, runner.progress.message
            assert runner.progress.message.startswith("1 of 1"), runner.progress.message
            # the verifying spectrum on the platelet, then the 5 spectra across it that the target was handed to
            verifying = grid.spectra[-6]
            assert verifying[1] is not None and verifying[1].kind == RARE_CLASS, grid.spectra
            assert len({round(where[1]) for where, _ in grid.spectra[-5:]}) == 5 and any(b is not None and b.kind == RARE_CLASS for _, b in grid.spectra[-5:])
            titles = [d.title or "" for d in session.document_model.data_items]
            assert any(t.startswith("Montage") for t in titles) and any("target-1" in t or "Target 1" in t for t in titles), titles
            assert any(t.startswith("Sample map (lattice, quality)") for t in titles), titles  # the montage's map comes with it
            assert scope.is_blanked
            # revisit: select the target and go there; the stage brings it back to the field's centre, the beam stays blanked
            target = next(d for d in session.document_model.data_items if (d.title or "").startswith("Target 1"))
            scope.move_stage((0.0, 0.0))
            target_display = session.document_model.get_display_item_for_data_item(target)
            assert target_display is not None
            session.document_controller.select_display_items_in_data_panel([target_display])
            session.pump(0.2)
            controller.go_to_selected()
            deadline = time.time() + 10
            while not str(controller.status.value).startswith(("Stage at", "Cannot")) and time.time() < deadline:
                session.pump(0.05)
            assert str(controller.status.value).startswith("Stage at"), controller.status.value
            verified = verifying[1]
            assert numpy.hypot(*numpy.subtract(scope.stage_position_nm, verified.centre_nm)) < verified.radius_nm
            assert scope.is_blanked
            # a rule on the sample map instead of a class: "go where the map says", no examples needed
            controller.target_class.value = "colour > 1"
            controller.start()
            assert "rule must read '<value> <op> <number>'" in str(controller.status.value), controller.status.value
            controller.target_class.value = "focus > 0"
            controller.then_index.value = 0
            session.document_controller.select_display_items_in_data_panel([display_item])
            session.pump(0.2)
            controller.start()
            runner = controller.runner
            assert runner is not None, controller.status.value
            session.pump_until_done(runner, 120)
            assert runner.state is RunState.FINISHED and runner.progress.message.startswith("1 tile(s) where focus > 0"), runner.progress.message
        finally:
            widget.close()
    assert leaked_components() == {}
