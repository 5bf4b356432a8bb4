"""Policies: observations in, decisions out.

A policy never touches the instrument.  The runner asks it to :meth:`decide`
the next actions, performs them, and hands each result back through
:meth:`observe`.  Whatever the policy wants the user to see (maps, stacks,
tables, positions) it publishes as a :class:`Product`; the runner's sink turns
products into Swift data items, or keeps them in memory for a notebook.

Because a policy is deterministic given its observations (seed any randomness
from its parameters), a run can be replayed or resumed from its journal.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import typing

from nion.data import DataAndMetadata

from nion_autoem.actions import Action
from nion_autoem.actions import Observation


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
        Positions to mark on the item, as fractions of its extent.
    labels : tuple of str
        One label per point (e.g. the measurement order).
    """

    key: str
    title: str
    xdata: DataAndMetadata.DataAndMetadata
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[str, ...] = ()


class ResultSink(typing.Protocol):
    """Where products go: Swift data items, memory, or nowhere."""

    def publish(self, product: Product, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        """Create or update the product's item. May be called from any thread."""
        ...


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
    """What a policy may know about the run it is part of."""

    run_id: str
    run_dir: pathlib.Path
    parameters: typing.Mapping[str, typing.Any]
    sink: ResultSink
    provenance: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)
    step: int = 0
    dose_e: float = 0.0
    replaying: bool = False

    def publish(self, product: Product) -> None:
        """Send a product to the sink, tagged with the run's provenance."""
        self.sink.publish(product, {"run_id": self.run_id, "run_dir": str(self.run_dir), "step": self.step, "dose_e": self.dose_e,
                                    "parameters": dict(self.parameters), "provenance": dict(self.provenance), "product": product.key})


class Policy(typing.Protocol):
    """The decision-making half of an experiment."""

    @property
    def name(self) -> str:
        ...

    @property
    def parameters(self) -> typing.Mapping[str, typing.Any]:
        """JSON-ready parameters, journaled and attached to every product."""
        ...

    @property
    def model_version(self) -> str:
        """Version of the model behind the decisions, journaled with every step."""
        ...

    def decide(self, context: RunContext) -> typing.Sequence[Action]:
        """The next actions; an empty sequence means the experiment is done."""
        ...

    def observe(self, observation: Observation, context: RunContext) -> typing.Mapping[str, typing.Any] | None:
        """Take in one result; return a short JSON-ready summary for the journal."""
        ...

    def fraction_done(self) -> float | None:
        """The policy's own idea of progress in [0, 1], or None if it has none."""
        ...
