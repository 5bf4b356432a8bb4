"""The few-shot picker in Swift: labelled graphics on an image are the examples, the class map comes back as data items.

A microscopist classifies the tiles of any calibrated image without code:

1. draw rectangles (or points) over a few tiles of each kind and give each
   graphic the class name as its label (the Inspector's Label field, or the
   panel's "Label selected graphics" button);
2. press Classify: every tile whose centre lies in a labelled rectangle, or
   that holds a labelled point, is an example of that class.  The class map
   (colours, legend), the counts and area fractions (a CSV next to the
   journal) and the per-tile table arrive as data items, and the support set
   is saved with the run so the next image or the next session can reuse it;
3. correct a tile by drawing a labelled point on it and classify again;
   "Suggest" marks the tiles whose label would help most.

The algorithms are in :mod:`nion_autoem_fewshot`; this module only reads
graphics, writes graphics and starts runs (:func:`classify_image`), which go
through the runner like any experiment: journaled, off the UI thread.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing
import uuid

import numpy
from nion.data import DataAndMetadata

from nion_autoem.products import Product
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.swift.live_frames import LiveFrameAnalysis
from nion_autoem.xdata import frame_from_xdata

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController
    from nion.swift.model import DisplayItem

    from nion_autoem_fewshot.classifier import TileMap
    from nion_autoem_fewshot.support import SupportSet
    from nion_autoem_fewshot.tiles import TileGrid

#: Label of the point graphics :func:`mark_suggestions` adds; they are not examples and are replaced each time.
SUGGESTION_LABEL = "label me?"
#: At most this many suggestions at once: a handful of graphics keeps Swift responsive and the choice clear.
MAX_SUGGESTIONS = 8


@dataclasses.dataclass(frozen=True)
class LabelledRegion:
    """One labelled graphic: a class name and the pixels it covers (a point covers one)."""

    class_name: str
    top_left_px: tuple[float, float]
    size_px: tuple[float, float] = (0.0, 0.0)

    def contains(self, centres_px: numpy.typing.NDArray[typing.Any]) -> numpy.typing.NDArray[numpy.bool_]:
        """Which of ``centres_px`` (n, 2) lie inside (for a point: whose tile holds it, decided by the caller)."""
        (top, left), (height, width) = self.top_left_px, self.size_px
        return (centres_px[:, 0] >= top) & (centres_px[:, 0] <= top + height) & (centres_px[:, 1] >= left) & (centres_px[:, 1] <= left + width)


def labelled_regions(display_item: DisplayItem.DisplayItem) -> list[LabelledRegion]:
    """The rectangles and points on an image that carry a class name as their label (suggestion marks excluded)."""
    from nion.swift.model import Graphics

    data_item = display_item.data_item
    if data_item is None or data_item.xdata is None:
        return []
    rows, cols = data_item.xdata.data_shape[:2]
    regions: list[LabelledRegion] = []
    for graphic in display_item.graphics:
        name = (graphic.label or "").strip()
        if not name or name == SUGGESTION_LABEL:
            continue
        if isinstance(graphic, Graphics.RectangleGraphic):
            (top, left), (height, width) = graphic.bounds
            regions.append(LabelledRegion(name, (top * rows, left * cols), (height * rows, width * cols)))
        elif isinstance(graphic, Graphics.PointGraphic):
            y, x = graphic.position
            regions.append(LabelledRegion(name, (y * rows, x * cols)))
    return regions


def tiles_labelled(grid: TileGrid, regions: typing.Sequence[LabelledRegion]) -> dict[str, list[int]]:
    """Tile indices per class: tiles whose centre lies in a labelled rectangle, and the tile under each labelled point.

    A tile labelled twice keeps its last label (a later graphic corrects an earlier one).
    """
    label_of: dict[int, str] = {}
    centres = grid.centres_px
    for region in regions:
        if region.size_px == (0.0, 0.0):
            y, x = region.top_left_px
            rows, cols = grid.image_shape
            if 0 <= y < rows and 0 <= x < cols:
                label_of[grid.index_at(y, x)] = region.class_name
            continue
        for inside in numpy.flatnonzero(region.contains(centres)):
            label_of[int(inside)] = region.class_name
    labelled: dict[str, list[int]] = {}
    for tile, name in sorted(label_of.items()):
        labelled.setdefault(name, []).append(tile)
    return labelled


def support_from_graphics(display_item: DisplayItem.DisplayItem, *, tile_px: int | None = None, tile_nm: float | None = None,
                          overlap: float = 0.0) -> tuple[SupportSet, TileGrid]:
    """The support set the labelled graphics on an image make, and the tile grid it was cut on.

    Reads the graphics (UI thread, where Swift's document lives), then
    :func:`support_from_regions` does the rest.

    Raises
    ------
    ValueError
        If the item is not a calibrated 2D image, or no graphic carries a
        class label, with what to do instead.
    """
    data_item = display_item.data_item
    xdata = data_item.xdata if data_item is not None else None
    if xdata is None or len(xdata.data_shape) != 2:
        raise ValueError("select an image (a 2D data item) with labelled rectangles or points on it")
    return support_from_regions(xdata, labelled_regions(display_item), tile_px=tile_px, tile_nm=tile_nm, overlap=overlap)


def support_from_regions(xdata: DataAndMetadata.DataAndMetadata, regions: typing.Sequence[LabelledRegion], *, tile_px: int | None = None,
                         tile_nm: float | None = None, overlap: float = 0.0) -> tuple[SupportSet, TileGrid]:
    """The support set that labelled regions of a calibrated image make, and the tile grid it was cut on (any thread).

    Raises
    ------
    ValueError
        If the image is not calibrated, there are no regions, or they cover no
        tile centre, with what to do instead.
    """
    from nion_autoem_fewshot.support import SupportSet
    from nion_autoem_fewshot.tiles import cut_tiles

    frame = frame_from_xdata(xdata)
    if not regions:
        raise ValueError("no labelled graphics on the image: draw rectangles (or points) over a few tiles of each kind and give each the class name "
                         "as its label (Inspector, or 'Label selected graphics'), or reuse a saved support set")
    origin = frame.pixel_to_nm((0.0, 0.0))
    grid = cut_tiles(numpy.asarray(xdata.data, dtype=float), tile_px=tile_px, tile_nm=tile_nm, pixel_size_nm=frame.pixel_size_nm, overlap=overlap,
                     origin_nm=(float(origin[0]), float(origin[1])))
    labelled = tiles_labelled(grid, regions)
    if not labelled:
        raise ValueError(f"the labelled graphics cover no tile centre of {grid.tile_px} px tiles: draw larger rectangles, or put points on the tiles")
    return SupportSet.from_grid(grid, labelled), grid


def label_selected_graphics(display_item: DisplayItem.DisplayItem, class_name: str) -> int:
    """Give the selected rectangles and points on an image ``class_name`` as their label; returns how many were labelled."""
    from nion.swift.model import Graphics

    name = class_name.strip()
    if not name or name == SUGGESTION_LABEL:
        raise ValueError(f"type a class name first (e.g. 'particle', 'amorphous'), not {class_name!r}")
    selected = [display_item.graphics[i] for i in sorted(display_item.graphic_selection.indexes) if i < len(display_item.graphics)]
    chosen = [g for g in selected if isinstance(g, (Graphics.RectangleGraphic, Graphics.PointGraphic))]
    for graphic in chosen:
        graphic.label = name
    return len(chosen)


def mark_suggestions(display_item: DisplayItem.DisplayItem, tile_map: TileMap, k: int = 5,
                     queue_task: typing.Callable[[typing.Callable[[], None]], None] | None = None) -> list[int]:
    """Mark the ``k`` tiles whose labels would help most with points labelled :data:`SUGGESTION_LABEL`; returns their indices.

    Earlier marks are removed first; tiles that already carry a labelled
    graphic are not suggested again.  With ``queue_task`` (a window's
    ``queue_task``) each mark is added on its own UI refresh: Swift's
    Inspector builds a section per graphic of the shown image, and five at
    once held the window for half a second.
    """
    from nion.swift.model import Graphics

    for graphic in [g for g in display_item.graphics if (g.label or "") == SUGGESTION_LABEL]:
        display_item.remove_graphic(graphic).close()
    grid = tile_map.grid
    labelled = {i for indices in tiles_labelled(grid, labelled_regions(display_item)).values() for i in indices}
    chosen = tile_map.suggestions(min(max(k, 1), MAX_SUGGESTIONS), exclude=labelled)
    rows, cols = grid.image_shape

    def mark(index: int) -> None:
        y, x = grid.centres_px[index]
        point = Graphics.PointGraphic()
        point.position = (float(y + 0.5) / rows, float(x + 0.5) / cols)
        point.label = SUGGESTION_LABEL
        display_item.add_graphic(point)

    if queue_task is None:
        for index in chosen:
            mark(int(index))
        return list(chosen)
    waiting = [int(index) for index in chosen]

    def mark_next() -> None:
        # each mark queues the next, so they land on successive refreshes (a window runs everything queued at once together)
        if waiting:
            mark(waiting.pop(0))
        if waiting:
            queue_task(mark_next)

    queue_task(mark_next)
    return list(chosen)


def classify_image(data_item: typing.Any, *, window: DocumentController.DocumentController | None = None,
                   document_controller: DocumentController.DocumentController | None = None, support: SupportSet | str | pathlib.Path | None = None,
                   tile_px: int | None = None, tile_nm: float | None = None, overlap: float = 0.0, features: str = "combined",
                   run_dir: str | pathlib.Path | None = None) -> ExperimentRunner:
    """Classify the tiles of an image in Swift with a few labelled examples; returns the (running) runner.

    Parameters
    ----------
    data_item : nion.swift.model.DataItem.DataItem or Facade.DataItem
        A 2D image calibrated in nm (or Å, µm).
    window, document_controller
        Where the results go (in Swift's console: ``window=_window``).
    support : SupportSet or path, optional
        The examples.  By default, the labelled graphics on the image itself
        (see :func:`support_from_graphics`); a path reuses a saved support set.
    tile_px, tile_nm : optional
        Tile size; by default the support set's.  A new support set from
        graphics needs one of them.
    overlap : float
        Fraction of a tile shared with its neighbour.
    features : ``"combined"``, ``"backbone"`` or ``"texture"``
        The shipped backbone's and the texture baseline's features side by
        side (the default: the most accurate on both benchmark kinds), or
        either alone.
    run_dir : path-like, optional
        Journal directory; the support set is saved in its ``support`` folder.

    Returns
    -------
    ExperimentRunner
        Its plan's ``results[-1].tile_map`` holds the classification once it ends.
    """
    from nion_autoem.plans.tile_classification import TileClassification
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem.swift.console import runs_root
    from nion_autoem.swift.console import start_experiment

    target = window if window is not None else document_controller
    if target is None:
        raise ValueError("pass window=_window (Swift's console defines it) so the results have a document to go to")
    model_item = getattr(data_item, "_data_item", data_item)  # a Facade item wraps the model's
    xdata = model_item.xdata
    if xdata is None or len(xdata.data_shape) != 2:
        raise ValueError("the selected item must be a 2D image; pick a single frame of a sequence or spectrum image")
    frame = frame_from_xdata(xdata)
    if support is None:
        display_item = target.document_model.get_display_item_for_data_item(model_item)
        if display_item is None:
            raise ValueError("the image is not shown in this window's document; select it there")
        support, _ = support_from_graphics(display_item, tile_px=tile_px, tile_nm=tile_nm, overlap=overlap)
        tile_px = tile_nm = None  # the support set remembers the size it was cut at
    from nion_autoem.plans.tile_classification import resolve_support

    chosen = resolve_support(support)
    chosen.check()
    if tile_px is not None or tile_nm is not None:
        from nion_autoem_fewshot.tiles import tile_size_px
        chosen.check_tile_size(tile_size_px(tile_px=tile_px, tile_nm=tile_nm, pixel_size_nm=frame.pixel_size_nm), tile_nm)
    folder = pathlib.Path(run_dir) if run_dir is not None else runs_root() / f"tiles-{uuid.uuid4().hex[:8]}"
    saved = chosen.save(folder / "support")
    scope = ReplayMicroscope(numpy.asarray(xdata.data, dtype=float), frame)
    plan = TileClassification(saved, tile_px=tile_px, tile_nm=tile_nm, overlap=overlap, features=typing.cast(typing.Any, features))
    return start_experiment(plan, window=target, run_dir=folder, microscope=scope, budget=Budget(max_steps=1))


class LiveTileClassifier(LiveFrameAnalysis):
    """Classify the tiles of every completed scan frame with a support set; the class map and counts update in place.

    Parameters
    ----------
    document_controller : DocumentController
        Where the results go.
    scan_id : str
        Hardware-source id of the scan (``"usim_scan_device"`` on the simulator).
    support : SupportSet or path
        The examples (e.g. the support set the last classification saved).
    channel : str
        Scan channel to classify.
    features : ``"combined"``, ``"backbone"`` or ``"texture"``
        The shipped backbone's and the texture baseline's features side by
        side (the default: the most accurate on both benchmark kinds), or
        either alone.
    """

    name = "live tiles"

    def __init__(self, document_controller: DocumentController.DocumentController, scan_id: str, support: SupportSet | str | pathlib.Path, *,
                 channel: str = "HAADF", features: str = "combined") -> None:
        from nion_autoem.plans.tile_classification import resolve_support

        super().__init__(document_controller, scan_id, channel=channel)
        self.support = resolve_support(support)
        self.support.check()
        self.__features = features

    def analyse(self, xdata: DataAndMetadata.DataAndMetadata) -> tuple[typing.Sequence[Product], dict[str, int], str]:
        from nion_autoem.plans.tile_classification import tile_products
        from nion_autoem_fewshot.classifier import classify_tiles

        frame = frame_from_xdata(xdata)
        origin = frame.pixel_to_nm((0.0, 0.0))
        tile_map = classify_tiles(numpy.asarray(xdata.data, dtype=float), self.support, pixel_size_nm=frame.pixel_size_nm,
                                  features=typing.cast(typing.Any, self.__features), origin_nm=(float(origin[0]), float(origin[1])))
        used = {"backbone": self.support.backbone, "texture": "texture", "combined": f"{self.support.backbone}+texture"}[self.__features]
        version = f"fewshot/{used}+support r{self.support.revision}"
        return tile_products(xdata, tile_map, support=self.support), tile_map.counts(), version
