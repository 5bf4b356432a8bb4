"""Montage on the stage-scale twin, through the engine: registration beats the stage's own errors, the product is calibrated, bad input stops early."""

from __future__ import annotations

import pathlib
import typing

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plans.montage import MontageLayout
from nion_autoem.plans.montage import montage_plan
from nion_autoem.plans.montage import register_and_stitch
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from tests.montage.helpers import TILE
from tests.montage.helpers import layout
from tests.montage.helpers import montage_run
from tests.montage.helpers import run_montage
from tests.montage.helpers import stitch_errors_px
from tests.montage.helpers import twin


def test_registration_places_tiles_within_a_pixel_where_the_stage_alone_is_off_by_several(tmp_path: pathlib.Path) -> None:
    scope = twin(5)
    montage, sink = run_montage(scope, tmp_path / "run")
    rows, cols = layout().grid_shape
    assert len(montage.tiles) == rows * cols == 16
    fitted = stitch_errors_px(scope, montage, montage.fitted_nm)
    raw = stitch_errors_px(scope, montage, montage.commanded_nm)
    assert numpy.sqrt(numpy.mean(fitted**2)) < 0.3, fitted  # band-passed overlaps: a fraction of a pixel (it was 0.4 to 0.9 px on plain correlation)
    assert numpy.sqrt(numpy.mean(raw**2)) > 2.5, raw  # the stage's own errors: what registration corrects
    assert sum(p.used for p in montage.pairs) >= 0.8 * len(montage.pairs)
    # the product: calibrated in stage µm, grown row by row, the errors per move in its metadata
    product = sink.products["montage"]
    xdata = product.xdata
    assert [c.units for c in xdata.dimensional_calibrations] == ["µm", "µm"]
    assert xdata.dimensional_calibrations[1].scale == pytest.approx(TILE.pixel_size_nm * 1e-3)
    assert len(xdata.metadata["nion_autoem"]["montage"]["errors_nm"]) == 16 and "16 of 16 tiles" in product.caption
    assert sink.publish_count == rows  # the growing montage after each row but the last, and the whole at the end
    record = read_journal(tmp_path / "run")
    assert [s.action.kind for s in record.steps].count("move_stage") == 16


def test_stitching_without_registration_is_the_worse_baseline(tmp_path: pathlib.Path) -> None:
    scope = twin(6)
    montage, _ = run_montage(scope, tmp_path / "run")
    naive = register_and_stitch(montage.layout, montage.tiles, montage.commanded_nm, register=False)
    assert numpy.allclose(naive.errors_nm, 0.0)
    # the registered montage's overlaps agree better: compare each tile with the stitched image where it lies
    def disagreement(m: typing.Any) -> float:
        n = m.tiles[0].shape[0]
        values = []
        for tile, position in zip(m.tiles, m.fitted_nm, strict=True):
            r, c = numpy.round((position - numpy.asarray(m.origin_nm)) / m.pixel_size_nm - 0.5 * (n - 1)).astype(int)
            values.append(numpy.mean(numpy.abs(m.image[r:r + n, c:c + n] - tile)))
        return float(numpy.mean(values))
    assert disagreement(montage) < disagreement(naive)


def test_a_region_beyond_the_stage_fails_before_the_beam_is_unblanked(tmp_path: pathlib.Path) -> None:
    scope = twin(1)
    runner = ExperimentRunner(scope, montage_plan((0.0, 0.0), (30_000.0, 30_000.0), limits=scope.stage_limits_nm), run_dir=tmp_path / "run",
                              sink=MemorySink())
    progress = runner.run()
    assert progress.state is RunState.FAILED and "beyond its travel" in progress.message
    assert scope.is_blanked and scope.surveys == [] and scope.moves == []


def test_a_stage_that_lands_too_far_is_reported_not_ignored(tmp_path: pathlib.Path) -> None:
    scope = twin(2)
    box: dict[str, typing.Any] = {}
    runner = ExperimentRunner(scope, montage_run(box, max_stage_error_nm=20.0), run_dir=tmp_path / "run", sink=MemorySink())
    progress = runner.run()
    assert progress.state is RunState.FAILED and "did not go where it was told" in progress.message


def test_bad_layouts_are_refused_with_what_would_do() -> None:
    with pytest.raises(ValueError, match="overlap must be"):
        MontageLayout((0.0, 0.0), (8000.0, 8000.0), TILE, 0.9)
    with pytest.raises(ValueError, match="at least 64"):
        MontageLayout((0.0, 0.0), (8000.0, 8000.0), ScanFrame((32, 32), 4000.0), 0.3)
    with pytest.raises(ValueError, match="at least one tile's field"):
        MontageLayout((0.0, 0.0), (1000.0, 8000.0), TILE, 0.3)
