"""DKL as a runner policy: offline on a ReplayMicroscope, journaled, and replayable."""

from __future__ import annotations

import pathlib
import typing

import numpy
import numpy.typing
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plans.dkl_spectroscopy import DKLSettings
from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
from nion_autoem.plans.dkl_spectroscopy import band_integral
from nion_autoem.products import MemorySink
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.runner import replay
from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.synthetic import make_textured_sample
from tests.twins import plasmonic_twin

ENERGY = (-2.0, 0.1)  # offset, eV per channel


def recorded_sample(seed: int = 3) -> tuple[ReplayMicroscope, numpy.typing.NDArray[typing.Any], ScanFrame]:
    """A textured survey and a spectrum image whose 2 eV peak follows the local-structure property."""
    sample = make_textured_sample(seed, shape=(96, 96))
    frame = ScanFrame((96, 96), fov_nm=12.0)
    rows, cols = numpy.meshgrid(numpy.arange(96), numpy.arange(96), indexing="ij")
    prop = sample.property_at(numpy.stack([rows.ravel(), cols.ravel()], axis=1)).reshape(96, 96)
    energies = ENERGY[0] + ENERGY[1] * numpy.arange(64)
    peak = numpy.exp(-0.5 * ((energies - 2.0) / 0.3) ** 2)
    zlp = 50 * numpy.exp(-0.5 * (energies / 0.2) ** 2)
    si = zlp[None, None, :] + 20 * (1 + prop[:, :, None]) * peak[None, None, :]
    return ReplayMicroscope(sample.image, frame, spectrum_image=si, energy_axis=ENERGY), prop, frame


def make_policy(n: int = 24) -> DKLSpectroscopy:
    return DKLSpectroscopy(band_integral((1.0, 3.0)), DKLSettings(patch_size=12, stride=4, max_measurements=n, batch_size=2),
                           AgentConfig(n_initial=6, seed=1, full_iterations=30))


def test_dkl_runs_offline_and_publishes_maps(tmp_path: pathlib.Path) -> None:
    scope, prop, frame = recorded_sample()
    policy = make_policy()
    sink = MemorySink()
    progress = ExperimentRunner(scope, policy, run_dir=tmp_path / "run", sink=sink).run()
    assert progress.state is RunState.FINISHED, progress.message
    assert progress.step == 1 + 24 and len(set(policy.measured)) == 24
    products = sink.products
    assert {"survey", "prediction", "uncertainty", "acquisition", "signals", "convergence"} <= set(products)
    grid = products["prediction"].xdata
    assert grid.data.ndim == 2 and grid.dimensional_calibrations[0].units == "nm"
    assert len(products["survey"].points) == 24 and products["survey"].labels[-1] == "24"
    assert products["signals"].xdata.data_shape == (24, 64)
    assert products["signals"].xdata.dimensional_calibrations[-1].units == "eV"
    # the scalarized value tracks the property at the measured positions
    assert policy.agent is not None
    measured_px = numpy.round(policy.agent.positions[policy.measured]).astype(int)
    truth = prop[measured_px[:, 0], measured_px[:, 1]]
    assert numpy.corrcoef(truth, policy.values)[0, 1] > 0.95
    convergence = products["convergence"].xdata.data
    assert numpy.all(numpy.diff(convergence) >= 0)


def test_a_dkl_run_replays_from_its_journal_with_the_same_decisions(tmp_path: pathlib.Path) -> None:
    scope, _, _ = recorded_sample()
    original = make_policy(16)
    ExperimentRunner(scope, original, run_dir=tmp_path / "run").run()
    again = make_policy(16)
    runner = replay(tmp_path / "run", again)
    assert runner.state is RunState.FINISHED, runner.progress.message
    assert again.measured == original.measured
    assert numpy.allclose(again.values, original.values)
    steps = read_journal(tmp_path / "run").steps
    assert all("value" in s.entry["result"] for s in steps[1:])
    assert steps[-1].entry["model_version"].startswith("dkl/thompson/")


def test_dkl_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="detector"):
        DKLSettings(detector="xray")  # type: ignore[arg-type]  # the wrong detector on purpose
    with pytest.raises(ValueError, match="batch_size"):
        DKLSettings(batch_size=0)


def test_the_panel_runs_dkl_on_the_plasmonic_twin_and_finds_corner_modes(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:

    from nion_autoem.swift import panel
    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.usim_twin import create_configuration

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    configuration = create_configuration("plasmonic", seed=0)
    with UsimSession(configuration) as session:
        frame = ScanFrame((192, 192), fov_nm=320.0)
        session.microscope().survey(frame, pixel_time_us=2.0)  # the field the user set up
        controller = panel.ExperimentPanelController(session.document_controller)
        controller.experiment_index.value = 1
        controller.points.value = 60
        controller.band_low_eV.value, controller.band_high_eV.value = 1.2, 2.1
        controller.patch_size.value = 12
        controller.start()
        runner = controller.runner
        assert runner is not None, controller.status.value
        session.pump_until_done(runner, 120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        twin = plasmonic_twin(configuration)
        peak = {mode.name: mode.strength for mode in twin.modes}

        def excitation(position: typing.Any) -> float:
            return max((s / peak[n] for n, _, s in twin.modes_at(position) if "corner" in n or n.startswith("gap")), default=0.0)

        policy = runner.plan
        measured = frame.pixel_to_nm(policy.agent.positions[policy.measured])  # type: ignore[attr-defined]
        on_modes = sum(excitation(p) > 0.5 for p in measured)
        field = frame.pixel_grid_nm()[::4, ::4].reshape(-1, 2)
        area_fraction = float(numpy.mean([excitation(p) > 0.5 for p in field]))
        # random sampling would expect area_fraction * 60 (about one); DKL must do far better
        assert on_modes >= max(4, 4 * area_fraction * 60), (on_modes, area_fraction)
        assert any(d.title.startswith("DKL prediction") for d in session.document_model.data_items)
        # every spectrum's band integral went to the agent with its counting error (usim says its counts per electron)
        errors = policy.agent.measured_errors  # type: ignore[attr-defined]
        values = numpy.asarray(policy.values)  # type: ignore[attr-defined]
        assert len(errors) == len(values) == 60 and numpy.all(errors > 0) and numpy.all(errors < numpy.abs(values).max())
        # the outcome says how honest the intervals were: predicted before each measurement, over the recent ones
        held, count = policy.agent.prospective_coverage95, policy.agent.prospective_count  # type: ignore[attr-defined]
        assert count == 50 and 0.5 <= held <= 1.0
        assert runner.outcome.endswith(f"; 95 % intervals held {round(held * count)} of the last 50"), runner.outcome


def test_the_panel_takes_the_band_from_a_spectrum_and_the_survey_from_an_image(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:

    from nion.swift import Facade

    from nion_autoem import xdata as xdata_builders
    from nion_autoem.swift import panel
    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.usim_twin import create_configuration

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    with UsimSession(create_configuration("plasmonic", seed=1)) as session:
        library = Facade.Library(session.document_model)
        spectrum = library.create_data_item_from_data_and_metadata(xdata_builders.spectrum_xdata(numpy.ones(200), -3.0, 0.025), "a spectrum")
        spectrum.add_interval_region(0.25, 0.45)  # fractions of the axis: -3 + 200 * (0.25, 0.45) * 0.025 eV
        controller = panel.ExperimentPanelController(session.document_controller)

        def select(item: typing.Any) -> None:
            session.document_controller.selected_display_panel = None
            session.document_controller.select_display_items_in_data_panel([item.display._item])
            session.pump(0.05)

        select(spectrum)
        controller.band_from_selected_spectrum()
        assert (controller.band_low_eV.value, controller.band_high_eV.value) == pytest.approx((-1.75, -0.75))

        survey = session.microscope().survey(ScanFrame((128, 128), fov_nm=320.0), pixel_time_us=1.0)
        select(library.create_data_item_from_data_and_metadata(survey.xdata, "yesterday's survey"))
        controller.band_low_eV.value, controller.band_high_eV.value = 1.2, 2.1
        controller.experiment_index.value = 1
        controller.use_selected_survey.value = True
        controller.points.value = 12
        controller.patch_size.value = 8
        controller.start()
        runner = controller.runner
        assert runner is not None, controller.status.value
        session.pump_until_done(runner, 60)
        assert runner.state is RunState.FINISHED, runner.progress.message
        kinds = [s.action.kind for s in read_journal(runner.run_dir).steps]
        assert kinds == ["acquire"] * 12  # no new survey: the candidates came from the selected image
