"""Products: what a run shows the user, and where it goes.

Whatever a plan wants the user to see (maps, stacks, tables, positions) it
publishes as a :class:`Product`; the engine's sink turns products into Swift
data items (:mod:`nion_autoem.swift.data_items`), or keeps them in memory for
a notebook (:class:`MemorySink`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import typing

from nion.data import DataAndMetadata

from nion_autoem.views import Table


@dataclasses.dataclass(frozen=True)
class Product:
    """A result for the user; publishing the same ``key`` again updates it in place.

    Parameters
    ----------
    key : str
        Stable name within the run, e.g. ``"survey"`` or ``"spectra"``.
    title : str
        Title of the data item.
    xdata : DataAndMetadata
        Calibrated data.
    points : tuple of (y, x)
        Positions to mark on the item, as fractions of its extent (a sink
        marks a few tens at most; show more as data, e.g. a class map).
    labels : tuple of str
        One label per point (e.g. the measurement order).
    caption : str
        What a person should read first: a legend, counts, an outcome.
    table : Table or None
        Rows behind the item, written as CSV next to the journal.
    display : Display
        How to show it: colour map, the interval of interest, log scale.
    """

    key: str
    title: str
    xdata: DataAndMetadata.DataAndMetadata
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[str, ...] = ()
    caption: str = ""
    table: Table | None = None
    display: Display = dataclasses.field(default_factory=lambda: Display())


@dataclasses.dataclass(frozen=True)
class Display:
    """How a product is best shown.

    Parameters
    ----------
    color_map : str or None
        Swift colour map id for images ("magma", "viridis", "grayscale", ...).
    interval : (low, high) or None
        Calibrated range of the last axis to show first (e.g. the energy band of interest).
    log_scale : bool
        Intensity on a log scale (spectra with a zero-loss peak).
    """

    color_map: str | None = None
    interval: tuple[float, float] | None = None
    log_scale: bool = False


class ResultSink(typing.Protocol):
    """Where products go: Swift data items, memory, or nowhere."""

    def publish(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        """Create or update the product's item. May be called from any thread."""
        ...


class TeeSink:
    """Publishes every product to several sinks (e.g. Swift data items and a remote client's copy)."""

    def __init__(self, sinks: typing.Sequence[ResultSink]) -> None:
        self.sinks = tuple(sinks)

    def publish(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        for sink in self.sinks:
            sink.publish(product, run_metadata)

    @property
    def pending(self) -> int:
        """Products not yet shown, summed over the sinks that say (Swift's sink applies them on the UI thread)."""
        return sum(int(getattr(sink, "pending", 0)) for sink in self.sinks)


class MemorySink:
    """Keeps the latest version of every product; for notebooks and tests."""

    def __init__(self) -> None:
        self.__lock = threading.Lock()
        self.__products: dict[str, Product] = {}
        self.__metadata: dict[str, typing.Mapping[str, typing.Any]] = {}
        self.publish_count = 0

    def publish(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        with self.__lock:
            self.__products[product.key] = product
            self.__metadata[product.key] = dict(run_metadata)
            self.publish_count += 1

    @property
    def products(self) -> dict[str, Product]:
        with self.__lock:
            return dict(self.__products)

    def metadata(self, key: str) -> typing.Mapping[str, typing.Any]:
        with self.__lock:
            return self.__metadata[key]


@dataclasses.dataclass
class RunContext:
    """The run a product belongs to: its id, directory, parameters and provenance."""

    run_id: str
    run_dir: pathlib.Path
    parameters: typing.Mapping[str, typing.Any]
    sink: ResultSink
    provenance: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)
    step: int = 0
    dose_e: float = 0.0

    def publish(self, product: Product) -> None:
        """Send a product to the sink, tagged with the run's provenance."""
        self.sink.publish(product, {"run_id": self.run_id, "run_dir": str(self.run_dir), "step": self.step, "dose_e": self.dose_e,
                                    "parameters": dict(self.parameters), "provenance": dict(self.provenance), "product": product.key})
