"""Tile classification in plans: a replayed frame classified, published and used by another plan to choose where to go."""

from __future__ import annotations

import pathlib

import numpy
import pytest

from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.tile_classification import COUNT_COLUMNS
from nion_autoem.plans.tile_classification import TileClassification
from nion_autoem.plans.tile_classification import classify_tiles_in
from nion_autoem.products import MemorySink
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.views import class_colours
from nion_autoem_fewshot import SupportSet
from nion_autoem_fewshot import cut_tiles
from nion_autoem_fewshot import interface_scene
from nion_autoem_fewshot.classifier import ROW_COLUMNS
from nion_autoem_fewshot.synthetic import tile_truth

FRAME = ScanFrame((256, 256), fov_nm=12.8)  # 0.05 nm per pixel
SCENE = interface_scene(FRAME.shape, seed=1005)


def saved_support(folder: pathlib.Path) -> pathlib.Path:
    grid = cut_tiles(SCENE.image, tile_nm=1.6, pixel_size_nm=FRAME.pixel_size_nm)
    truth, pure = tile_truth(SCENE.labels, grid.origins_px, grid.tile_px)
    picks = {name: numpy.flatnonzero(pure & (truth == k))[:3].tolist() for k, name in enumerate(SCENE.class_names)}
    SupportSet.from_grid(grid, picks).save(folder)
    return folder


def test_the_plan_publishes_a_class_map_counts_and_tiles(tmp_path: pathlib.Path) -> None:
    sink = MemorySink()
    policy = TileClassification(saved_support(tmp_path / "support"), frames=2)
    runner = ExperimentRunner(ReplayMicroscope(SCENE.image, FRAME), policy, run_dir=tmp_path / "run", sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    assert len(policy.results) == 2 and progress.message.startswith("64 tiles in the last of 2 frame(s)")
    tile_map = policy.results[-1].tile_map
    assert tile_map.grid.tile_px == 32  # 1.6 nm at 0.05 nm per pixel, from the saved set's size in nm
    products = sink.products
    class_map = products["tile_classes"].xdata
    assert class_map.data_shape == (256, 256, 3) and class_map.dimensional_calibrations[0].units == "nm"
    # Swift reads B, G, R: a tile of the first class carries that class's colour in the right channel order
    k = int(tile_map.classes[0])
    assert k >= 0
    r0, c0 = tile_map.grid.origins_px[0]
    blue, green, red = (int(v) for v in class_map.data[r0 + 10, c0 + 10])
    colour = class_colours(tile_map.class_names)[k]
    assert (red > blue) == (colour[0] > colour[2])
    caption = products["tile_classes"].caption
    counts = tile_map.counts()
    assert "rock salt" in caption and f"{counts['rock salt']}" in caption and "area" in caption
    table = products["tile_counts"].table
    assert table is not None and table.columns == COUNT_COLUMNS
    csv_rows = table.to_csv().splitlines()
    assert csv_rows[0] == ",".join(COUNT_COLUMNS) and len(csv_rows) == 1 + 4
    assert sum(int(row.split(",")[1]) for row in csv_rows[1:]) == 64
    tiles_table = products["tiles"].table
    assert tiles_table is not None and tiles_table.columns == ROW_COLUMNS and len(tiles_table.rows) == 64
    record = read_journal(tmp_path / "run")
    classified = [s for s in record.steps if s.action.kind == "survey"]
    assert len(classified) == 2 and classified[0].entry["result"]["counts"] == policy.results[0].counts()


@plan("go-to-honeycomb")
def go_to_honeycomb(support: str, most: int = 3) -> PlanGenerator:
    frame = yield Survey(label="survey")
    tiles = yield from classify_tiles_in(frame, support, key_prefix="survey-")
    return tiles.centres_nm("honeycomb")[:most]


def test_another_plan_uses_the_sub_plan_to_decide_where_to_go(tmp_path: pathlib.Path) -> None:
    sink = MemorySink()
    runner = ExperimentRunner(ReplayMicroscope(SCENE.image, FRAME), go_to_honeycomb(str(saved_support(tmp_path / "support"))), run_dir=tmp_path / "run", sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    assert "survey-tile_classes" in sink.products
    generator = go_to_honeycomb(str(tmp_path / "support")).messages()
    survey = next(generator)
    assert isinstance(survey, Survey)
    messages = []
    try:
        messages.append(generator.send(ReplayMicroscope(SCENE.image, FRAME).survey()))
        while True:
            messages.append(generator.send(None))
    except StopIteration as stop:
        positions = stop.value
    assert len(positions) == 3
    for position in positions:
        row, col = numpy.round(FRAME.nm_to_pixel(position)).astype(int)
        assert SCENE.labels[row, col] == SCENE.class_names.index("honeycomb")


def test_a_point_measurement_is_not_a_frame(tmp_path: pathlib.Path) -> None:
    from nion_autoem.instrument import Measurement

    with pytest.raises(ValueError, match="needs a surveyed frame"):
        next(classify_tiles_in(Measurement({}, "spectrum"), saved_support(tmp_path / "support")))
