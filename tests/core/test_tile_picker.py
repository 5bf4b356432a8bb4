"""The few-shot picker in Swift: labelled graphics on an image in, a class map, counts and a saved support set out."""

from __future__ import annotations

import pathlib
import time
import typing

import numpy
import pytest
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift.model import DataItem
from nion.swift.model import Graphics
from nion.ui import Declarative

from nion_autoem.runner import RunState
from nion_autoem.swift import tile_panel
from nion_autoem.swift import tile_picker
from nion_autoem_fewshot.synthetic import interface_scene
from nion_autoem_fewshot.synthetic import tile_truth

TILE_PX = 32
PIXEL_NM = 0.05


def _image_item(usim_session: typing.Any, seed: int = 1000) -> tuple[typing.Any, typing.Any, typing.Any]:
    """A calibrated interface image (rock salt | amorphous | honeycomb) in the document, and its ground truth."""
    scene = interface_scene((256, 256), seed=seed)
    xdata = DataAndMetadata.new_data_and_metadata(scene.image.astype(numpy.float32), dimensional_calibrations=[Calibration.Calibration(0.0, PIXEL_NM, "nm")] * 2)
    data_item = DataItem.new_data_item(xdata)
    data_item.title = f"interface {seed}"
    usim_session.document_model.append_data_item(data_item)
    display_item = usim_session.document_model.get_display_item_for_data_item(data_item)
    return data_item, display_item, scene


def _label(display_item: typing.Any, scene: typing.Any, per_class: int = 3) -> None:
    """Points labelled with the class name on the first ``per_class`` pure tiles of each class, as a person would click them."""
    from nion_autoem_fewshot.tiles import cut_tiles

    grid = cut_tiles(scene.image, tile_px=TILE_PX)
    classes, pure = tile_truth(scene.labels, grid.origins_px, TILE_PX)
    rows, cols = scene.image.shape
    for k, name in enumerate(scene.class_names):
        for index in numpy.flatnonzero((classes == k) & pure)[:per_class]:
            y, x = grid.centres_px[index]
            point = Graphics.PointGraphic()
            point.position = (float(y) / rows, float(x) / cols)
            point.label = name
            display_item.add_graphic(point)


def test_labelled_rectangles_and_points_select_tiles() -> None:
    from nion_autoem_fewshot.tiles import cut_tiles

    grid = cut_tiles(numpy.zeros((128, 128)), tile_px=32)
    regions = [tile_picker.LabelledRegion("film", (0.0, 0.0), (64.0, 40.0)),  # centres at 15.5 and 47.5 rows, 15.5 columns
               tile_picker.LabelledRegion("particle", (100.0, 100.0)),       # a point in the last tile
               tile_picker.LabelledRegion("particle", (10.0, 10.0))]         # a later label corrects an earlier one
    labelled = tile_picker.tiles_labelled(grid, regions)
    assert labelled == {"film": [4], "particle": [0, 15]}


def test_classify_image_from_labelled_points(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    data_item, display_item, scene = _image_item(usim_session)
    _label(display_item, scene)
    support, grid = tile_picker.support_from_graphics(display_item, tile_nm=TILE_PX * PIXEL_NM)
    assert grid.tile_px == TILE_PX and support.counts == {name: 3 for name in scene.class_names}

    runner = tile_picker.classify_image(data_item, document_controller=usim_session.document_controller, tile_nm=TILE_PX * PIXEL_NM, run_dir=tmp_path / "run")
    usim_session.pump_until_done(runner, 60)
    assert runner.state is RunState.FINISHED, runner.progress.message
    tile_map = typing.cast(typing.Any, runner.plan).results[-1].tile_map
    classes, pure = tile_truth(scene.labels, tile_map.grid.origins_px, TILE_PX)
    accuracy = float(numpy.mean(tile_map.classes[pure] == classes[pure]))
    assert accuracy > 0.8, accuracy
    titles = {d.title for d in usim_session.document_model.data_items}
    assert any("Tile classes" in t for t in titles) and any("Tile counts" in t for t in titles), titles
    class_map = next(d for d in usim_session.document_model.data_items if "Tile classes" in d.title)
    assert class_map.xdata.data_shape[:2] == scene.image.shape  # aligned with the image, never another size
    assert class_map.xdata.dimensional_calibrations[0].scale == pytest.approx(PIXEL_NM)
    assert (tmp_path / "run" / "support").is_dir() and (tmp_path / "run" / "tables" / "tile_counts.csv").is_file()

    # the support set saved with the run classifies the next image without labelling again
    other, _, other_scene = _image_item(usim_session, seed=1001)
    again = tile_picker.classify_image(other, document_controller=usim_session.document_controller, support=tmp_path / "run" / "support",
                                       run_dir=tmp_path / "again")
    usim_session.pump_until_done(again, 60)
    assert again.state is RunState.FINISHED, again.progress.message
    assert len(typing.cast(typing.Any, again.plan).results[-1].tile_map) == 64

    # suggestions: a few marks on the tiles to label next, replaced (not added to) each time
    first = tile_picker.mark_suggestions(display_item, tile_map, k=4)
    second = tile_picker.mark_suggestions(display_item, tile_map, k=4)
    marks = [g for g in display_item.graphics if g.label == tile_picker.SUGGESTION_LABEL]
    assert len(first) == 4 and sorted(first) == sorted(second) and len(marks) == 4
    labelled = {i for ids in tile_picker.tiles_labelled(tile_map.grid, tile_picker.labelled_regions(display_item)).values() for i in ids}
    assert not labelled & set(first)


def test_picker_says_what_is_missing(usim_session: typing.Any) -> None:
    data_item, display_item, scene = _image_item(usim_session)
    with pytest.raises(ValueError, match="no labelled graphics"):
        tile_picker.support_from_graphics(display_item, tile_px=TILE_PX)
    _label(display_item, scene)
    with pytest.raises(ValueError, match="tile size"):
        tile_picker.support_from_graphics(display_item)
    uncalibrated = DataItem.new_data_item(DataAndMetadata.new_data_and_metadata(scene.image.astype(numpy.float32)))
    usim_session.document_model.append_data_item(uncalibrated)
    with pytest.raises(ValueError, match="calibration"):
        tile_picker.classify_image(uncalibrated, document_controller=usim_session.document_controller, tile_px=TILE_PX)


def test_tile_panel_labels_classifies_and_suggests(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    dc = usim_session.document_controller
    data_item, display_item, scene = _image_item(usim_session)
    controller = tile_panel.TilePanelController(dc)
    widget = Declarative.DeclarativeWidget(dc.ui, dc.event_loop, controller)
    try:
        controller.classify()
        assert "Select an image" in str(controller.status.value)
        dc.select_display_items_in_data_panel([display_item])
        dc.selected_display_panel = None
        assert dc.selected_display_item is display_item
        controller.classify()
        assert "no labelled graphics" in str(controller.status.value)
        # label two drawn rectangles the way a person does: select them, type the class, press the button
        rows, cols = scene.image.shape
        for bounds in (((0.0, 0.0), (0.25, 0.12)), ((0.5, 0.0), (0.25, 0.12))):
            rectangle = Graphics.RectangleGraphic()
            rectangle.bounds = bounds
            display_item.add_graphic(rectangle)
        display_item.graphic_selection.set(0)
        display_item.graphic_selection.add(1)
        controller.class_name.value = "rock salt"
        controller.label_selected()
        assert "2 graphic(s) labelled" in str(controller.status.value)
        _label(display_item, scene, per_class=2)
        controller.unit_index.value = tile_panel.UNITS.index("px")
        controller.tile_size.value = float(TILE_PX)
        controller.classify()  # reads the graphics here; cuts, saves and starts on a worker thread
        assert not controller.idle.value and "Classifying" in str(controller.status.value)
        deadline = time.time() + 30
        while controller.runner is None and time.time() < deadline and not str(controller.status.value).startswith("Cannot"):
            usim_session.pump(0.05)
        runner = controller.runner
        assert runner is not None, controller.status.value
        usim_session.pump_until_done(runner, 60)
        usim_session.pump(0.2)
        assert runner.state is RunState.FINISHED, runner.progress.message
        assert controller.tile_map is not None and controller.support_path is not None
        status = str(controller.status.value)
        assert status.startswith("64 tiles of 32 px") and "rock salt" in status, status
        controller.suggest()
        assert "marked" in str(controller.status.value)
        marks = int(str(controller.status.value).split()[0])
        usim_session.pump(0.3)  # one mark per UI refresh: the Inspector builds a section per graphic
        assert sum(g.label == tile_picker.SUGGESTION_LABEL for g in display_item.graphics) == marks >= 1
    finally:
        widget.close()


def test_every_new_scan_frame_is_classified_with_the_saved_examples(tmp_path: pathlib.Path) -> None:
    from nion.instrumentation import HardwareSource
    from nion.instrumentation import scan_base
    from nion.utils import Geometry

    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.usim_twin import create_configuration
    from nion_autoem_fewshot.support import SupportSet
    from nion_autoem_fewshot.tiles import cut_tiles

    scene = interface_scene((256, 256), seed=1003)
    grid = cut_tiles(scene.image, tile_px=TILE_PX)
    classes, pure = tile_truth(scene.labels, grid.origins_px, TILE_PX)
    support = SupportSet.from_grid(grid, {name: list(numpy.flatnonzero((classes == k) & pure)[:3]) for k, name in enumerate(scene.class_names)})
    saved = support.save(tmp_path / "support")
    with UsimSession(create_configuration("mos2", seed=9)) as session:
        scan = typing.cast(scan_base.ScanHardwareSource, HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_scan_device"))
        fp = scan.get_current_frame_parameters()
        fp.pixel_size, fp.fov_nm, fp.pixel_time_us = Geometry.IntSize(192, 192), 2.5, 1.0
        scan.set_current_frame_parameters(fp)
        live = tile_picker.LiveTileClassifier(session.document_controller, scan.hardware_source_id, saved)
        live.start()
        scan.start_playing()
        try:
            deadline = time.time() + 60
            while live.frames_analysed < 2 and time.time() < deadline:
                session.pump(0.05)
        finally:
            scan.stop_playing(sync_timeout=5.0)
            live.stop()
        session.pump(0.3)
        assert live.frames_analysed >= 2 and live.last_error is None, live.last_error
        assert sum(live.last_counts.values()) == 36  # 192 px in 32 px tiles, every tile answered (a class or unknown)
        class_map = live.data_item("tile_classes")
        assert class_map is not None and class_map.xdata is not None and class_map.xdata.data_shape == (192, 192, 3)
        # one set of live items, updated in place, not one per frame
        assert sum(d.title.startswith("Tile classes (few-shot)") for d in session.document_model.data_items) == 1
