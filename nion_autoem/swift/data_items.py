"""Publishing products as Swift data items, on the UI thread.

Policies publish from the runner's worker thread.  The sink coalesces updates
per product (only the newest version of an item waits in the queue) and hands
the document changes to the document controller's queue, so the UI thread
never sees more than one small task per product per refresh.
"""

from __future__ import annotations

import threading
import typing

from nion.data import DataAndMetadata
from nion.swift import Facade

from nion_autoem.products import Product

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

# Graphics we draw carry this role so we can replace them without touching the user's own.
_ROLE = "nion_autoem.position"


class DataItemSink:
    """A :class:`~nion_autoem.products.ResultSink` that writes Swift data items.

    Parameters
    ----------
    window : Facade.DocumentWindow or DocumentController
        The window whose document receives the items (the console's
        ``api.application.document_windows[0]``, or a document controller).

    Notes
    -----
    Items are titled ``"<title> (<run id>)"`` and carry the run's provenance in
    their metadata under ``"nion_autoem"``.  Publishing the same product key
    again updates the item's data, metadata and position graphics in place.
    """

    def __init__(self, window: Facade.DocumentWindow | DocumentController.DocumentController) -> None:
        # Only the facade's public window API: its task queue and its library.
        self.__window = window if isinstance(window, Facade.DocumentWindow) else Facade.DocumentWindow(window)
        self.__library = self.__window.library
        self.__lock = threading.Lock()
        self.__pending: dict[str, tuple[Product, dict[str, typing.Any]]] = {}
        self.__items: dict[str, Facade.DataItem] = {}
        self.__drawn_points: dict[str, tuple[tuple[tuple[float, float], ...], tuple[str, ...]]] = {}

    def publish(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        item_key = f"{run_metadata.get('run_id', '')}/{product.key}"
        with self.__lock:
            already_queued = item_key in self.__pending
            self.__pending[item_key] = (product, dict(run_metadata))
        if not already_queued:
            self.__window.queue_task(lambda: self.__apply(item_key))

    def data_item(self, run_id: str, key: str) -> Facade.DataItem | None:
        """The data item of a published product, once the UI thread has made it."""
        return self.__items.get(f"{run_id}/{key}")

    def __apply(self, item_key: str) -> None:
        with self.__lock:
            pending = self.__pending.pop(item_key, None)
        if pending is None:
            return
        product, run_metadata = pending
        metadata = dict(product.xdata.metadata)
        metadata["nion_autoem"] = {**dict(metadata.get("nion_autoem", {})), **run_metadata}
        xdata = DataAndMetadata.new_data_and_metadata(product.xdata.data, product.xdata.intensity_calibration, product.xdata.dimensional_calibrations,
                                                      metadata, data_descriptor=product.xdata.data_descriptor)
        title = f"{product.title} ({run_metadata.get('run_id', '')})"
        item = self.__items.get(item_key)
        if item is None or self.__library.get_data_item_by_uuid(item.uuid) is None:  # never made, or deleted by the user
            item = self.__library.create_data_item_from_data_and_metadata(xdata, title)
            self.__items[item_key] = item
            self.__drawn_points.pop(item_key, None)
        else:
            item.set_data_and_metadata(xdata)
            item.title = title
        self.__draw_points(item_key, item, product)

    def __draw_points(self, item_key: str, item: Facade.DataItem, product: Product) -> None:
        wanted = (product.points, product.labels)
        if self.__drawn_points.get(item_key) == wanted:
            return
        display = item.display
        for graphic in list(display.graphics):
            if graphic.get_property("role") == _ROLE:
                item.remove_region(graphic)
        for i, (y, x) in enumerate(product.points):
            point = display.add_graphic({"type": "point-graphic", "position": (float(y), float(x))})
            if point is not None:
                point.set_property("role", _ROLE)
                if i < len(product.labels):
                    point.label = product.labels[i]
        self.__drawn_points[item_key] = wanted
