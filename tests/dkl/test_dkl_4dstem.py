"""4D-STEM DKL end to end: diffraction frames on the polar-domain twin, checked against its polarization field; replay on a 4D dataset."""

from __future__ import annotations

import pathlib
import typing

import numpy
import numpy.typing
import pytest
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift import Facade

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plans.dkl_comparison import ScalarizerComparison
from nion_autoem.plans.dkl_spectroscopy import DKLSettings
from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
from nion_autoem.products import MemorySink
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin.diffraction import PolarDomainSample
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem_dkl.agent import AgentConfig

_NDArray = numpy.typing.NDArray[typing.Any]

# A 120 nm field holds three stripe periods and the edge of the bubble domain; 2.5 nm survey pixels resolve the walls.
FIELD = ScanFrame((48, 48), fov_nm=120.0)
CUBE_PIXEL_MRAD = 1.6  # 20 mrad disc: 12.5 px radius on a 32 px frame


def correlation(a: _NDArray, b: _NDArray) -> float:
    """Pearson correlation; 0 for a constant map (which predicts nothing)."""
    if numpy.std(a) == 0 or numpy.std(b) == 0:
        return 0.0
    return float(numpy.corrcoef(a, b)[0, 1])


def recorded_4d(seed: int = 0, grid: int = 48, camera: int = 32) -> tuple[DataAndMetadata.DataAndMetadata, DataAndMetadata.DataAndMetadata, PolarDomainSample]:
    """A 4D dataset and a HAADF survey of the polar-domain twin, recorded over FIELD."""
    twin = PolarDomainSample(seed=seed)
    probe = ProbeConditions()
    survey = twin.render_frame(FIELD, 50.0, probe)["HAADF"]
    cube_frame = ScanFrame((grid, grid), FIELD.fov_nm, FIELD.center_nm)
    positions = cube_frame.pixel_grid_nm()
    cube = numpy.stack([numpy.stack([typing.cast(_NDArray, twin.diffraction(positions[r, c], 1e-3, probe, (camera, camera), CUBE_PIXEL_MRAD))
                                     for c in range(grid)]) for r in range(grid)])
    cy, cx = xdata_builders.frame_calibrations(cube_frame)
    k = Calibration.Calibration(-CUBE_PIXEL_MRAD * camera / 2, CUBE_PIXEL_MRAD, "mrad")
    cube_xdata = DataAndMetadata.new_data_and_metadata(cube, intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=[cy, cx, k, k],
                                                       data_descriptor=DataAndMetadata.DataDescriptor(False, 2, 2))
    return cube_xdata, xdata_builders.image_xdata(survey, FIELD), twin


def test_4d_dkl_on_the_polar_twin_learns_the_polarization_magnitude_and_replays_by_direction(tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion_autoem.swift.console import compare_scalarizers
    from nion_autoem.swift.console import start_dkl_4dstem
    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.usim_twin import create_configuration

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    configuration = create_configuration("polar-domains", seed=0)
    with UsimSession(configuration) as session:
        camera = configuration.instrument.ronchigram_camera
        assert camera is not None
        binning_before = camera.get_current_frame_parameters().binning
        runner = start_dkl_4dstem(window=session.document_controller, scalarizer="com_magnitude", measurements=30, exposure_ms=2.0, patch_size=8, stride=2,
                                  acquisition="max_uncertainty", survey_frame=FIELD, pixel_time_us=50.0, seed=1)
        session.pump_until_done(runner, 120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        # the run binned the camera for its frames and gave the user's binning back
        assert camera.get_current_frame_parameters().binning == binning_before != 8
        steps = read_journal(runner.run_dir).steps
        assert [s.entry["measurement_kind"] for s in steps] == ["survey"] + ["camera"] * 30
        frame_xdata = steps[1].load_measurement().xdata
        assert frame_xdata.data_shape == (256, 256)
        mrad_per_px = frame_xdata.dimensional_calibrations[0].scale * 1e3
        plan = typing.cast(DKLSpectroscopy, runner.plan)
        assert plan.agent is not None
        twin = typing.cast(PolarDomainSample, configuration.sample("polar-domains"))
        truth = numpy.linalg.norm(twin.com_field_at(FIELD.pixel_to_nm(plan.agent.positions)), axis=-1)
        # each frame's centre-of-mass shift is the twin's deflection where it was taken (mrad, not just proportional)
        measured = numpy.asarray(plan.values) * mrad_per_px
        assert numpy.abs(measured - truth[plan.measured]).max() < 0.05
        # from 30 frames the map over all 441 candidates follows the true polarization magnitude (walls low, domains high);
        # (0.6 when written) a random map would reach about +-0.1, a constant one 0
        mean, _ = plan.agent.predict()
        assert correlation(mean, truth) > 0.3, correlation(mean, truth)
        titles = [d.title or "" for d in session.document_model.data_items]
        assert any(t.startswith("DKL prediction") for t in titles) and any(t.startswith("DKL measured frames") for t in titles)
        stack = next(d for d in session.document_model.data_items if (d.title or "").startswith("DKL measured frames"))
        assert stack.xdata is not None and stack.xdata.data_shape == (30, 128, 128)  # binned for display; the journal keeps them whole
        # the same run, no beam: the recorded frames re-scalarized by direction, chosen among the positions measured
        beam_time_s = configuration.clock.now_s
        again = compare_scalarizers(runner.run_dir, "com_angle", window=session.document_controller)
        session.pump_until_done(again, 60)
        assert again.state is RunState.FINISHED, again.progress.message
        comparison = typing.cast(ScalarizerComparison, again.plan)
        chosen = {tuple(p) for p in numpy.round(comparison.second_path.positions_nm, 6)}
        assert len(chosen) == 15 and chosen <= {tuple(p) for p in numpy.round(plan.measured_positions_nm, 6)}
        assert configuration.clock.now_s == beam_time_s  # the twin's clock runs only while the beam is on
        assert any((d.title or "").startswith("DKL paths: com_magnitude vs com_angle") for d in session.document_model.data_items)


def test_a_4d_dataset_replays_frame_for_frame(tmp_path: pathlib.Path) -> None:
    cube, survey, twin = recorded_4d()
    scope = ReplayMicroscope.from_4d(cube, survey=survey)
    assert scope.scan_frame == FIELD
    plan = DKLSpectroscopy.named("com_magnitude", DKLSettings(patch_size=8, stride=2, max_measurements=25, exposure_ms=1.0),
                                 AgentConfig(acquisition="max_uncertainty", seed=1))
    progress = ExperimentRunner(scope, plan, run_dir=tmp_path / "run", sink=MemorySink()).run()
    assert progress.state is RunState.FINISHED, progress.message
    assert plan.agent is not None
    # every frame the plan got is the recorded frame of the grid cell under the probe
    cells = numpy.clip((FIELD.nm_to_fraction(plan.measured_positions_nm) * 48).astype(int), 0, 47)
    for signal, (row, col) in zip(plan.signals, cells):
        assert numpy.array_equal(signal, cube.data[row, col])
    truth = numpy.linalg.norm(twin.com_field_mrad(FIELD.pixel_to_nm(plan.agent.positions)), axis=-1)
    mean, _ = plan.agent.predict()
    assert correlation(mean, truth) > 0.3, correlation(mean, truth)
    # without a survey the replay chooses on the dataset's own virtual dark field, on the dataset's grid
    own = ReplayMicroscope.from_4d(cube)
    assert own.scan_frame.shape == (48, 48) and own.scan_frame.fov_nm == pytest.approx(120.0)
    with pytest.raises(ValueError, match=r"\(rows, cols, ky, kx\)"):
        ReplayMicroscope.from_4d(DataAndMetadata.new_data_and_metadata(numpy.ones((4, 4, 8))))
    with pytest.raises(ValueError, match="cover"):
        ReplayMicroscope.from_4d(cube, survey=xdata_builders.image_xdata(numpy.ones((48, 48)), ScanFrame((48, 48), fov_nm=60.0)))


def test_the_console_replays_4d_dkl_on_a_dataset_in_the_document(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion_autoem.swift.console import replay_dkl_on_4d

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    cube, survey, _ = recorded_4d(seed=1, grid=24, camera=24)
    library = Facade.Library(usim_session.document_model)
    cube_item = library.create_data_item_from_data_and_metadata(cube, "my 4D dataset")
    survey_item = library.create_data_item_from_data_and_metadata(survey, "its HAADF")
    runner = replay_dkl_on_4d(cube_item, survey_item=survey_item, window=usim_session.document_controller, scalarizer="com_angle", measurements=12)
    usim_session.pump_until_done(runner, 60)
    assert runner.state is RunState.FINISHED, runner.progress.message
    plan = typing.cast(DKLSpectroscopy, runner.plan)
    assert len(plan.values) == 12 and all(-numpy.pi <= v <= numpy.pi for v in plan.values)
    assert read_journal(runner.run_dir).header["parameters"]["scalarizer"]["name"] == "com_angle"
    assert any((d.title or "").startswith("DKL exploration path") for d in usim_session.document_model.data_items)
    with pytest.raises(ValueError, match="com_magnitude"):
        replay_dkl_on_4d(cube_item, window=usim_session.document_controller, scalarizer="band_integral")


def test_scalarizers_by_name_pick_the_detector_and_say_what_is_wrong() -> None:
    from nion_autoem.plans.dkl_spectroscopy import SCALARIZERS
    from nion_autoem.plans.dkl_spectroscopy import named_scalarizer

    assert {"com_magnitude", "com_angle", "band_integral", "peak_energy"} <= set(SCALARIZERS)
    assert DKLSpectroscopy.named("com_angle", DKLSettings(detector="eels")).settings.detector == "ronchigram"
    assert DKLSpectroscopy.named("peak_energy", band_eV=(1.0, 3.0)).settings.detector == "eels"
    frame = numpy.zeros((5, 5))
    frame[2, 4] = 1.0
    assert typing.cast(typing.Any, named_scalarizer("com_magnitude", centre=(2.0, 3.0)).function)(frame) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="com_angle"):
        named_scalarizer("com magnitude")
    with pytest.raises(ValueError, match="band_eV"):
        named_scalarizer("band_integral")
    with pytest.raises(ValueError, match="no energy band"):
        named_scalarizer("com_angle", band_eV=(1.0, 2.0))
    with pytest.raises(ValueError, match="no camera centre"):
        named_scalarizer("band_integral", band_eV=(1.0, 2.0), centre=(1.0, 1.0))
