"""Two scalarizers side by side: a finished 4D DKL run explored again with the other scalarizer, both paths on one survey."""

from __future__ import annotations

import csv
import math
import pathlib
import typing

import numpy
import pytest
from nion.swift import Facade

from nion_autoem.plans.dkl_comparison import PATH_COLOURS
from nion_autoem.plans.dkl_comparison import ScalarizerComparison
from nion_autoem.plans.dkl_comparison import comparison_from_run
from nion_autoem.plans.dkl_comparison import recorded_path
from nion_autoem.plans.dkl_spectroscopy import DKLSettings
from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
from nion_autoem.products import MemorySink
from nion_autoem.replay import RecordedPointsMicroscope
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem_dkl.agent import AgentConfig
from tests.dkl.test_dkl_4dstem import FIELD
from tests.dkl.test_dkl_4dstem import recorded_4d


def magnitude_run(run_dir: pathlib.Path, n: int = 12) -> tuple[typing.Any, typing.Any]:
    """A finished DKL run on the twin's 4D dataset; the replay serves the HAADF as its survey, so the survey is journaled."""
    cube, survey, _ = recorded_4d(grid=48, camera=24)
    # the undeflected disc sits at the centre of the 24 px frames: said explicitly, as on a real camera
    plan = DKLSpectroscopy.named("com_magnitude", DKLSettings(patch_size=8, stride=2, max_measurements=n, exposure_ms=1.0),
                                 AgentConfig(n_initial=6, seed=3, full_iterations=30), centre=(11.5, 11.5))
    progress = ExperimentRunner(ReplayMicroscope.from_4d(cube, survey=survey), plan, run_dir=run_dir).run()
    assert progress.state is RunState.FINISHED, progress.message
    return plan, cube


def coloured(rgb: typing.Any, colour: tuple[int, int, int]) -> int:
    return int(numpy.all(rgb == numpy.asarray(colour), axis=-1).sum())


def test_the_other_scalarizer_explores_the_full_dataset_and_both_paths_share_one_survey(tmp_path: pathlib.Path) -> None:
    first, cube = magnitude_run(tmp_path / "magnitude")
    plan, scope = comparison_from_run(tmp_path / "magnitude", "com_angle", data=cube)
    assert isinstance(plan, ScalarizerComparison) and type(scope) is ReplayMicroscope
    sink = MemorySink()
    progress = ExperimentRunner(scope, plan, run_dir=tmp_path / "angle", sink=sink).run()
    assert progress.state is RunState.FINISHED, progress.message
    # no new survey: the replay chose on the recorded one, with its own scalarizer and the same budget
    assert plan.second.survey is not None and numpy.array_equal(plan.second.survey.data, first.survey.data)
    second = plan.second_path
    assert second.scalarizer == "com_angle" and len(second.positions_nm) == 12
    assert all(-numpy.pi <= v <= numpy.pi for v in second.values)
    assert numpy.allclose(plan.first.positions_nm, first.measured_positions_nm)
    # told to look for another property, DKL went elsewhere
    assert {tuple(p) for p in numpy.round(second.positions_nm, 6)} != {tuple(p) for p in numpy.round(plan.first.positions_nm, 6)}
    product = sink.products["comparison"]
    rgb = numpy.asarray(product.xdata.data)[..., ::-1]  # stored B, G, R for Swift
    assert rgb.shape[0] >= 384 and product.xdata.dimensional_calibrations[0].units == "nm"
    assert coloured(rgb, PATH_COLOURS[0]) > 12 and coloured(rgb, PATH_COLOURS[1]) > 12
    assert "orange: centre-of-mass shift, magnitude" in product.caption and "blue: centre-of-mass shift, direction" in product.caption
    assert product.table is not None
    rows = product.table.rows
    assert [r[0] for r in rows] == ["recorded"] * 12 + ["replay"] * 12
    assert [r[1] for r in rows] == ["com_magnitude"] * 12 + ["com_angle"] * 12
    assert numpy.allclose([r[5] for r in rows[:12]], first.values)
    assert {"survey", "prediction", "signals"} <= set(sink.products)


def test_without_the_dataset_the_replay_chooses_among_the_recorded_frames(tmp_path: pathlib.Path) -> None:
    first, _ = magnitude_run(tmp_path / "magnitude", n=12)
    path = recorded_path(tmp_path / "magnitude")
    assert path.scalarizer == "com_magnitude" and numpy.allclose(path.values, first.values)
    plan, scope = comparison_from_run(tmp_path / "magnitude", "com_angle")
    assert isinstance(scope, RecordedPointsMicroscope)
    assert plan.second.parameters["scalarizer"] == {"name": "com_angle", "band_eV": None, "centre": [11.5, 11.5]}  # the run's camera centre
    progress = ExperimentRunner(scope, plan, run_dir=tmp_path / "angle", sink=MemorySink()).run()
    assert progress.state is RunState.FINISHED, progress.message
    recorded = {tuple(p) for p in numpy.round(path.positions_nm, 6)}
    chosen = [tuple(p) for p in numpy.round(plan.second_path.positions_nm, 6)]
    assert len(chosen) == 6 and set(chosen) <= recorded  # half the recorded frames, by default
    # each re-scalarized value is the direction of the frame recorded there
    for position, value in zip(plan.second_path.positions_nm, plan.second_path.values):
        index = int(numpy.argmin(numpy.linalg.norm(path.positions_nm - position, axis=1)))
        assert value == pytest.approx(math.atan2(*_com_shift(first.signals[index])))
    # the replay microscope refuses a position where nothing was recorded
    scope.park_probe(tuple(FIELD.pixel_to_nm((1.0, 1.0))))
    with pytest.raises(Exception, match="nothing was recorded"):
        scope.acquire_camera_frame(1.0)
    with pytest.raises(ValueError, match="ronchigram"):
        comparison_from_run(tmp_path / "magnitude", "band_integral", band_eV=(1.0, 2.0))
    with pytest.raises(ValueError, match="measurements"):
        comparison_from_run(tmp_path / "magnitude", "com_angle", measurements=0)


def _com_shift(frame: typing.Any) -> tuple[float, float]:
    """(-d_row, d_col) of a frame's centre of mass from its geometric centre: atan2 of it is the direction."""
    rows, cols = numpy.indices(frame.shape)
    total = frame.sum()
    return -float((rows * frame).sum() / total - (frame.shape[0] - 1) / 2), float((cols * frame).sum() / total - (frame.shape[1] - 1) / 2)


def test_the_console_compares_scalarizers_and_writes_both_paths_as_csv(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    from nion_autoem.swift.console import compare_scalarizers

    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    _, cube = magnitude_run(tmp_path / "magnitude", n=10)
    cube_item = Facade.Library(usim_session.document_model).create_data_item_from_data_and_metadata(cube, "the 4D dataset")
    runner = compare_scalarizers(tmp_path / "magnitude", "com_angle", window=usim_session.document_controller, data_item=cube_item, measurements=8)
    usim_session.pump_until_done(runner, 60)
    assert runner.state is RunState.FINISHED, runner.progress.message
    item = next(d for d in usim_session.document_model.data_items if (d.title or "").startswith("DKL paths: com_magnitude vs com_angle"))
    assert item.xdata is not None and item.xdata.is_data_rgb
    with open(runner.run_dir / "tables" / "comparison.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["path"] for r in table] == ["recorded"] * 10 + ["replay"] * 8
    assert all(float(r["y_nm"]) ** 2 + float(r["x_nm"]) ** 2 <= 2 * 60.0**2 for r in table)
    with pytest.raises(ValueError, match="DKL run"):
        compare_scalarizers(runner.run_dir, "com_magnitude", window=usim_session.document_controller)
