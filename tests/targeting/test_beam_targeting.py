"""Beam targeting on the MoS2 twin: it writes vacancies, and it never leaves the beam unsafe."""

from __future__ import annotations

import pathlib
import threading
import time
import typing

import numpy
import pytest
from nion.utils import Registry

from nion_autoem.actions import Dwell
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.journal import read_journal
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.beam_targeting import BeamTargeting
from nion_autoem.plans.beam_targeting import Outcome
from nion_autoem.plans.beam_targeting import TargetingSettings
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration
from nion_autoem.twin import lattice
from tests.twins import mos2_twin

FRAME = ScanFrame((256, 256), fov_nm=3.0)


def test_writes_a_line_of_vacancies_verified_by_elit(tmp_path: pathlib.Path) -> None:
    configuration = create_configuration("mos2", seed=1, drift_nm_per_s=(0.5 / 60, 0.0))
    with UsimSession(configuration) as session:
        truth_before = mos2_twin(configuration).ground_truth()
        policy = BeamTargeting(TargetingSettings(FRAME, line=((0.0, -0.8), (0.0, 0.8), 0.35), max_targets=4))
        sink = MemorySink()
        runner = ExperimentRunner(session.microscope(), policy, run_dir=tmp_path / "run", sink=sink)
        session.run_until_done(runner, timeout=120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        truth_after = mos2_twin(configuration).ground_truth()
    assert len(policy.targets) == 4
    assert all(t.outcome is Outcome.TRANSFORMED for t in policy.targets)
    # the ground truth agrees: each targeted column lost sulfur
    for target in policy.targets:
        column = numpy.argmin(numpy.linalg.norm(truth_before.position_nm - numpy.asarray(target.position_nm), axis=1))
        assert truth_before.column_class[column] == lattice.S2
        assert truth_after.column_class[column] in (lattice.S1, lattice.EMPTY)
        assert target.alarm_sample is not None and target.dose_to_event_e is not None and target.dose_to_event_e > 0
    products = sink.products
    assert {"before", "after", "events", "traces"} <= set(products)
    assert len(products["before"].points) == 4 and products["after"].labels[0].endswith("transformed")
    events = products["events"]
    assert events.xdata.data_shape == (4,) and events.xdata.dimensional_calibrations[0].units == "target"
    assert events.table is not None and events.table.columns[3] == "outcome" and [row[3] for row in events.table.rows] == ["transformed"] * 4
    assert events.caption.startswith("4 of 4 targets transformed")
    # every target's ADF trace in one item: a sequence (slider) of traces in ms, not one item per target
    traces = products["traces"].xdata
    assert traces.is_sequence and traces.data_shape[0] == 4 and traces.dimensional_calibrations[-1].units == "ms"
    lengths = [m["samples"] for m in traces.metadata["nion_autoem"]["targets"]]
    assert all(numpy.isfinite(row[:n]).all() and numpy.isnan(row[n:]).all() for row, n in zip(traces.data, lengths, strict=True))
    kinds = [s.action.kind for s in read_journal(tmp_path / "run").steps]
    assert kinds[0] == "survey" and kinds[-1] == "survey" and "dwell" in kinds and "verify" in kinds


def test_a_probe_position_outside_the_field_is_refused_and_the_beam_made_safe(tmp_path: pathlib.Path) -> None:
    with UsimSession(create_configuration("mos2", seed=0)) as session:
        scope = session.microscope()
        scope.survey(FRAME, pixel_time_us=1.0)

        @plan("wander")
        def wander() -> PlanGenerator:
            yield Dwell((5.0, 0.0), 10, 100.0)  # 5 nm off-centre in a 3 nm field
            raise AssertionError("the dwell must not have happened")

        runner = ExperimentRunner(scope, wander(), run_dir=tmp_path / "run")
        runner.run()
        assert runner.state is RunState.FAILED and isinstance(runner.error, OutOfFieldError)
        assert "outside the scan field" in runner.progress.message
        stem = Registry.get_component("stem_controller")
        assert stem is not None
        assert scope.is_blanked and stem.probe_position is None


def test_dwell_is_bounded(tmp_path: pathlib.Path) -> None:
    with UsimSession(create_configuration("mos2", seed=0)) as session:
        scope = session.microscope(max_dwell_s=0.5)
        scope.survey(FRAME, pixel_time_us=1.0)
        scope.park_probe((0.0, 0.0))
        with pytest.raises(ValueError, match="dwell"):
            scope.adf_trace(10_000, 100.0)  # 1 s > 0.5 s


def test_stop_during_a_dwell_makes_the_beam_safe_within_100_ms(tmp_path: pathlib.Path) -> None:
    with UsimSession(create_configuration("mos2", seed=2, s_cross_section_barn=1e-6)) as session:
        scope = session.microscope()
        # a long chunk and a cross-section so small that nothing happens: the dwell goes on until stopped
        settings = TargetingSettings(FRAME, max_targets=2, chunk_samples=20_000, sample_time_us=200.0, max_dose_per_target_e=1e12)
        runner = ExperimentRunner(scope, BeamTargeting(settings), run_dir=tmp_path / "run")
        runner.start()
        deadline = time.time() + 60
        while "dwell" not in runner.progress.current_action and time.time() < deadline:
            session.pump(0.01)
        time.sleep(0.3)
        stem = Registry.get_component("stem_controller")
        assert stem is not None
        t0 = time.perf_counter()
        runner.stop()
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.1, f"stop took {elapsed * 1000:.0f} ms"
        assert scope.is_blanked
        runner.wait(10.0)
        assert runner.state is RunState.STOPPED and stem.probe_position is None


def test_an_exception_in_the_atom_finder_leaves_the_beam_safe(tmp_path: pathlib.Path) -> None:
    calls = {"n": 0}

    def flaky_finder(image: typing.Any, pixel_size_nm: float) -> typing.Any:
        from nion_autoem.plans.beam_targeting import elit_atom_finder
        calls["n"] += 1
        if calls["n"] > 1:  # the survey works, the first verification fails
            raise RuntimeError("model file unreadable")
        return elit_atom_finder(image, pixel_size_nm)

    with UsimSession(create_configuration("mos2", seed=3)) as session:
        scope = session.microscope()
        runner = ExperimentRunner(scope, BeamTargeting(TargetingSettings(FRAME, max_targets=2), atom_finder=flaky_finder), run_dir=tmp_path / "run")
        session.run_until_done(runner, timeout=60)
        assert runner.state is RunState.FAILED and "model file unreadable" in runner.progress.message
        stem = Registry.get_component("stem_controller")
        assert stem is not None
        assert scope.is_blanked and stem.probe_position is None
        assert len(read_journal(tmp_path / "run").steps) >= 3  # survey, registration and dwell(s) were kept


def test_bad_settings_are_explained() -> None:
    with pytest.raises(ValueError, match="drop_ratio"):
        TargetingSettings(FRAME, drop_ratio=1.5)
    with pytest.raises(ValueError, match="chunk_samples"):
        TargetingSettings(FRAME, chunk_samples=1)


def test_stop_from_another_thread_while_targeting(tmp_path: pathlib.Path) -> None:
    with UsimSession(create_configuration("mos2", seed=4)) as session:
        scope = session.microscope()
        runner = ExperimentRunner(scope, BeamTargeting(TargetingSettings(FRAME, max_targets=6)), run_dir=tmp_path / "run")
        threading.Timer(1.5, runner.stop).start()
        session.run_until_done(runner, timeout=60)
        assert runner.state in (RunState.STOPPED, RunState.FINISHED)
        assert scope.is_blanked and scope.probe_position_nm is None


def run_panel(session: UsimSession, controller: typing.Any, timeout: float = 120.0) -> typing.Any:
    controller.start()
    runner = controller.runner
    assert runner is not None, controller.status.value
    session.pump_until_done(runner, timeout)
    return runner


def test_from_the_panel_a_vacancy_line_is_written_and_verified(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion_autoem.swift import panel

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    configuration = create_configuration("mos2", seed=5, drift_nm_per_s=(0.5 / 60, 0.0))
    with UsimSession(configuration) as session:
        before = mos2_twin(configuration).ground_truth()
        controller = panel.ExperimentPanelController(session.document_controller)
        controller.experiment_index.value = 3
        controller.points.value = 3
        controller.field_nm.value = 3.0
        runner = run_panel(session, controller)
        assert runner.state is RunState.FINISHED, runner.progress.message
        status = controller.status.value
        assert status is not None and "finished" in status and controller.percent.value == 100
        policy = runner.plan
        assert [t.outcome for t in policy.targets] == [Outcome.TRANSFORMED] * 3
        after = mos2_twin(configuration).ground_truth()
        for target in policy.targets:
            column = numpy.argmin(numpy.linalg.norm(before.position_nm - numpy.asarray(target.position_nm), axis=1))
            assert after.column_class[column] in (lattice.S1, lattice.EMPTY)
        titles = [d.title for d in session.document_model.data_items]
        assert any(t.startswith("Targets after") for t in titles) and any(t.startswith("Targeting events") for t in titles)


def test_from_the_panel_targets_drawn_as_graphics(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion.swift import Facade

    from nion_autoem.swift import panel

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    configuration = create_configuration("mos2", seed=6)
    with UsimSession(configuration) as session:
        scope = session.microscope()
        survey = scope.survey(FRAME, pixel_time_us=1.0)
        truth = mos2_twin(configuration).ground_truth()
        s2 = numpy.flatnonzero((truth.column_class == lattice.S2) & (numpy.linalg.norm(truth.position_nm, axis=1) < 0.8))[:2]
        item = Facade.Library(session.document_model).create_data_item_from_data_and_metadata(survey.xdata, "my survey")
        for position in truth.position_nm[s2]:
            fy, fx = FRAME.nm_to_fraction(position + 0.02)  # a click is never exactly on the column
            item.add_point_region(float(fy), float(fx))
        # select it as a user would by clicking it in the data panel (no display panel has focus headless)
        session.document_controller.selected_display_panel = None
        session.document_controller.select_display_items_in_data_panel([item.display._item])
        session.pump(0.05)
        controller = panel.ExperimentPanelController(session.document_controller)
        controller.experiment_index.value = 4
        controller.points.value = 1
        runner = run_panel(session, controller)
        assert runner.state is RunState.FINISHED, runner.progress.message
        chosen = [t.position_nm for t in runner.plan.targets]
        assert len(chosen) == 2
        for position in truth.position_nm[s2]:
            assert min(numpy.linalg.norm(numpy.asarray(c) - position) for c in chosen) < 0.05
