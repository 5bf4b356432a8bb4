"""Publishing products as Swift data items, on the UI thread, readable at a glance.

Plans publish from the engine's worker thread.  The sink coalesces updates per
product (only the newest version of an item waits) and does one small step per
UI task: updating an item, or, for a new item, adding it, filing it in the
run's group and styling it, each in its own refresh.  A burst of products is so
spread over several refreshes instead of holding the UI thread in one (every
change to the document relays out Swift's data panel and rewrites part of the
project file on the UI thread); each step's changes are made in one document
transaction, so Swift writes the project once per step.  While a run or a
live analysis is going its items' disk writes are held back altogether
(:meth:`DataItemSink.hold_writes`): Swift rewrites an item's file, parsing
and re-zipping it, and the project file on the UI thread, which is what was
left of the stalls.  The journal is the record meanwhile; each item is
written every :data:`WRITE_HELD_EVERY_S` seconds at most, once more, one per
refresh, when the run ends, and at once if the window closes first.  What the UI thread does
stays small on purpose:

- every run's items go into one data group, "<plan> <run id>", so a week of
  runs does not bury the data panel;
- at most :data:`MAX_POINT_GRAPHICS` point graphics per item (Swift's
  Inspector builds a section per graphic; hundreds freeze it): plans show
  more positions as data, and the caption says how many are marked;
- the caption carries what a person should read first (legend, counts,
  outcome); images get their colour map, spectra their interval of interest
  and log scale;
- tables are written as CSV next to the journal, on the worker thread.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
import threading
import time
import typing

from nion.data import DataAndMetadata
from nion.swift import Facade
from nion.swift.model import DataItem
from nion.swift.model import DisplayItem
from nion.swift.model import DocumentModel
from nion.swift.model import Graphics

from nion_autoem.products import Product
from nion_autoem.swift.user_selection import keeping_the_selection

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

# Graphics we draw carry this role so we can replace them without touching the user's own.
_ROLE = "nion_autoem.position"
#: While writes are held, an item is still written when it has been held this long (s), so a crash of Swift loses less.
WRITE_HELD_EVERY_S = 30.0
#: Point graphics drawn per item at most (the most recent ones); Swift's Inspector builds a section for each when the item is shown.
MAX_POINT_GRAPHICS = 20


class DataItemSink:
    """A :class:`~nion_autoem.products.ResultSink` that writes Swift data items.

    Parameters
    ----------
    document_controller : DocumentController
        The window whose document receives the items (in Swift's console it
        is ``_window``).

    Notes
    -----
    Items are titled ``"<title> (<run id>)"``, carry the run's provenance in
    their metadata under ``"nion_autoem"``, and sit in the run's data group.
    Publishing the same product key again updates the item's data, metadata,
    caption and position graphics in place.
    """

    def __init__(self, document_controller: DocumentController.DocumentController) -> None:
        if not hasattr(document_controller, "document_model") or not hasattr(document_controller, "queue_task"):
            raise TypeError(f"the sink needs Swift's document controller (in the console: _window), got {type(document_controller).__name__}")
        self.__document_controller = document_controller
        self.__document_model = document_controller.document_model
        self.__lock = threading.Lock()
        self.__pending: dict[str, tuple[Product, dict[str, typing.Any]]] = {}
        self.__items: dict[str, DataItem.DataItem] = {}
        self.__drawn_points: dict[str, tuple[tuple[tuple[float, float], ...], tuple[str, ...]]] = {}
        self.__steps: collections.deque[typing.Callable[[], None]] = collections.deque()  # follow-up steps of new items (UI thread)
        self.__holding = False  # disk writes of the items are held back (hold_writes) ...
        self.__held: dict[str, tuple[DataItem.DataItem, DocumentModel.Transaction, float]] = {}  # ... by these transactions, since (UI thread)
        self.__draining = False
        self.tables_written: list[pathlib.Path] = []
        # a window closed while writes are held (Swift quit mid-run) writes them first
        self.__closing_listener = self.__document_model.about_to_close_event.listen(self.__write_all_held)

    def publish(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        item_key = f"{run_metadata.get('run_id', '')}/{product.key}"
        table_path = self.__write_table(product, run_metadata)
        metadata = dict(run_metadata)
        if table_path is not None:
            metadata["table_csv"] = str(table_path)
        with self.__lock:
            self.__pending[item_key] = (product, metadata)  # replaces an older version still waiting
            if self.__draining:
                return
            self.__draining = True
        self.__document_controller.queue_task(self.__apply_next)

    @property
    def pending(self) -> int:
        """Products, steps and held-back item writes (after :meth:`release_writes`) waiting for the UI thread."""
        with self.__lock:
            return len(self.__pending) + len(self.__steps) + (0 if self.__holding else len(self.__held))

    def hold_writes(self) -> None:
        """Hold back Swift's disk writes of the items from their next update until :meth:`release_writes`; any thread.

        Swift then keeps the items in a transaction, as it keeps its own live
        "Scan" item: their data and properties change in the document and on
        screen, but their files and the project file are not rewritten at
        every update.
        """
        with self.__lock:
            self.__holding = True

    def release_writes(self) -> None:
        """Let Swift write the held items, one per refresh, after any products still waiting; any thread."""
        with self.__lock:
            self.__holding = False
            if self.__draining or not self.__held:
                return
            self.__draining = True
        self.__document_controller.queue_task(self.__apply_next)

    def __write_all_held(self) -> None:
        """The document is closing (UI thread): Swift writes every held item now, and nothing is held from here on."""
        with self.__lock:
            self.__holding = False
        while self.__held:
            self.__held.pop(next(iter(self.__held)))[1].close()

    def __apply_next(self) -> None:
        """On the UI thread: one step (a new item's next step first, else the oldest waiting product, else a held item's write); the next on the next refresh."""
        try:
            # an updated item moves to the top of the data panel, and the panel's selection would move off the user's item
            with keeping_the_selection(self.__document_controller):
                if self.__steps:
                    self.__steps.popleft()()
                else:
                    with self.__lock:
                        oldest = next(iter(self.__held), None)
                        overdue = oldest is not None and self.__holding and time.monotonic() - self.__held[oldest][2] > WRITE_HELD_EVERY_S
                        item_key = None if overdue else next(iter(self.__pending), None)
                        pending = self.__pending.pop(item_key) if item_key is not None else None
                        write = overdue or (item_key is None and not self.__holding and oldest is not None)
                    if item_key is not None and pending is not None:
                        self.__apply(item_key, *pending)
                    elif write and oldest is not None:
                        self.__held.pop(oldest)[1].close()  # Swift writes this item now (held again at its next update, if still holding)
        finally:
            with self.__lock:
                more = bool(self.__pending) or bool(self.__steps) or (not self.__holding and bool(self.__held))
                self.__draining = more
            if more:
                self.__document_controller.queue_task(self.__apply_next)

    def data_item(self, run_id: str, key: str) -> Facade.DataItem | None:
        """The data item of a published product, once the UI thread has made it."""
        item = self.__items.get(f"{run_id}/{key}")
        return Facade.DataItem(item) if item is not None else None

    def __write_table(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> pathlib.Path | None:
        """The product's table as CSV beside the journal (worker thread: file I/O stays off the UI thread)."""
        if product.table is None or not run_metadata.get("run_dir"):
            return None
        folder = pathlib.Path(str(run_metadata["run_dir"])) / "tables"
        path = folder / f"{product.key}.csv"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".csv.tmp")
            temporary.write_text(product.table.to_csv(), encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            return None  # the journal is the record; a table that cannot be written must not stop the run
        self.tables_written.append(path)
        return path

    def __apply(self, item_key: str, product: Product, run_metadata: dict[str, typing.Any]) -> None:
        metadata = dict(product.xdata.metadata)
        metadata["nion_autoem"] = {**dict(metadata.get("nion_autoem", {})), **run_metadata}
        xdata = DataAndMetadata.new_data_and_metadata(product.xdata.data, product.xdata.intensity_calibration, product.xdata.dimensional_calibrations,
                                                      metadata, data_descriptor=product.xdata.data_descriptor)
        run_id = run_metadata.get("run_id", "")
        title = f"{product.title} ({run_id})" if run_id else product.title  # a session-wide item (the dose map) belongs to no run
        caption = self.__caption(product, run_metadata)
        item = self.__items.get(item_key)
        if item is None or item not in self.__document_model.data_items:  # never made, or deleted by the user
            self.__add(item_key, xdata, title, caption, product, run_metadata)
            return
        display_item = self.__document_model.get_display_item_for_data_item(item)
        # one transaction: Swift writes the item and the project once, not once per change
        with self.__transaction(item_key, item, display_item):
            item.set_xdata(xdata)
            # unchanged properties are not set again: every change relays out Swift's data panel
            if item.title != title:
                item.title = title
            if item.caption != caption:
                item.caption = caption
            if display_item is not None:
                self.__draw_points(item_key, display_item, product)

    def __add(self, item_key: str, xdata: DataAndMetadata.DataAndMetadata, title: str, caption: str, product: Product,
              run_metadata: typing.Mapping[str, typing.Any]) -> None:
        """A new item, in three steps on three refreshes: add it (titled and captioned before Swift sees it), file it, style it."""
        item = DataItem.new_data_item(xdata)
        item.title = title
        item.caption = caption
        self.__document_model.append_data_item(item)
        self.__items[item_key] = item
        self.__drawn_points.pop(item_key, None)
        # from now on its writes are held, if they are being held (held before Swift sees it, adding it cost several project writes)
        self.__hold(item_key, item)

        def file_in_group() -> None:
            if item in self.__document_model.data_items:
                self.__file_in_group(item, run_metadata)

        def style() -> None:
            display_item = self.__document_model.get_display_item_for_data_item(item) if item in self.__document_model.data_items else None
            if display_item is not None:
                with self.__transaction(item_key, item, display_item):
                    self.__style(display_item, product)
                    self.__draw_points(item_key, display_item, product)

        self.__steps.extend((file_in_group, style))

    def __hold(self, item_key: str, item: DataItem.DataItem) -> bool:
        """Whether the item's writes are held; while writes are being held, a transaction is opened for an item that has none."""
        with self.__lock:
            holding = self.__holding
        held = self.__held.get(item_key)
        if held is not None and held[0] is not item:  # the user deleted the item and it was made again
            self.__held.pop(item_key)[1].close()
            held = None
        if holding and held is None:
            held = self.__held[item_key] = (item, self.__document_model.item_transaction(item), time.monotonic())
        return held is not None

    def __transaction(self, item_key: str, item: DataItem.DataItem, display_item: DisplayItem.DisplayItem | None) -> contextlib.ExitStack:
        """Swift writes the item and the project when this closes; while writes are held, when :meth:`release_writes` closes the item's held one."""
        transaction = contextlib.ExitStack()
        if self.__hold(item_key, item):
            return transaction  # the held transaction covers the item, its display item and graphics
        if display_item is not None:
            transaction.enter_context(self.__document_model.item_transaction(display_item))
        transaction.enter_context(self.__document_model.item_transaction(item))
        return transaction

    def __caption(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> str:
        parts = [product.caption] if product.caption else []
        if len(product.points) > MAX_POINT_GRAPHICS:
            parts.append(f"the last {MAX_POINT_GRAPHICS} of {len(product.points)} positions are marked; all are in the metadata")
        if run_metadata.get("table_csv"):
            parts.append(f"table: {run_metadata['table_csv']}")
        return "\n".join(parts)

    def __file_in_group(self, item: DataItem.DataItem, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        display_item = self.__document_model.get_display_item_for_data_item(item)
        if display_item is None or not run_metadata.get("run_id"):
            return
        plan = str(dict(run_metadata.get("provenance", {})).get("plan", "run"))
        group = self.__document_model.get_or_create_data_group(f"{plan} {run_metadata.get('run_id', '')}")
        group.append_display_item(display_item)

    def __style(self, display_item: DisplayItem.DisplayItem, product: Product) -> None:
        display = product.display
        channel = display_item.display_data_channel
        if display.color_map is not None and channel is not None:
            channel.color_map_id = display.color_map
        if display.interval is not None and product.xdata.dimensional_calibrations:
            calibration = product.xdata.dimensional_calibrations[-1]
            low, high = sorted(calibration.convert_from_calibrated_value(v) for v in display.interval)
            display_item.set_display_property("left_channel", int(max(low, 0)))
            display_item.set_display_property("right_channel", int(min(high, product.xdata.data_shape[-1])))
        if display.log_scale:
            display_item.set_display_property("y_style", "log")

    def __draw_points(self, item_key: str, display_item: DisplayItem.DisplayItem, product: Product) -> None:
        """Mark the (last) positions; graphics already there are moved, not replaced, so a growing path costs one new graphic."""
        points = product.points[-MAX_POINT_GRAPHICS:]
        labels = product.labels[-MAX_POINT_GRAPHICS:] if len(product.labels) == len(product.points) else product.labels[:len(points)]
        wanted = (points, labels)
        if self.__drawn_points.get(item_key) == wanted:
            return
        ours = [graphic for graphic in display_item.graphics if graphic.graphic_id == _ROLE and isinstance(graphic, Graphics.PointGraphic)]
        for extra in ours[len(points):]:
            display_item.remove_graphic(extra).close()
        for i, (y, x) in enumerate(points):
            label = labels[i] if i < len(labels) else None
            if i < len(ours):
                point = ours[i]
                if tuple(point.position) != (float(y), float(x)):
                    point.position = (float(y), float(x))
                if point.label != label:
                    point.label = label
                continue
            point = Graphics.PointGraphic()
            point.position = (float(y), float(x))  # before it is shown: a point without a position cannot be drawn
            point.graphic_id = _ROLE
            point.label = label
            display_item.add_graphic(point)
        self.__drawn_points[item_key] = wanted
