"""ELIT on every new scan frame, while the user scans.

:class:`LiveAtomFinder` listens to a scan hardware source's completed frames.
The acquisition thread only hands the newest frame over (a single-item
mailbox: frames that arrive while one is being analysed replace each other,
so the analysis never falls behind the scan); one worker thread runs the
ensemble; the results go to the document through a
:class:`~nion_autoem.swift.data_items.DataItemSink`, i.e. on the UI thread.
The same three data items (frame with labelled columns, classified-atoms
table, uncertainty map) update in place with every frame.
"""

from __future__ import annotations

import logging
import threading
import time
import typing
import uuid

import numpy
from nion.data import DataAndMetadata
from nion.instrumentation import HardwareSource

from nion_autoem.plans.atom_finding import atom_products
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.xdata import frame_from_xdata

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

_logger = logging.getLogger(__name__)


class LiveAtomFinder:
    """Find atoms in every completed frame of a scan channel.

    Parameters
    ----------
    document_controller : DocumentController
        Where the results go.
    scan_id : str
        Hardware-source id of the scan (``"usim_scan_device"`` on the simulator).
    channel : str
        Scan channel to analyse.
    ensemble : str or None
        ELIT model name or path (MoS2 by default).

    Examples
    --------
    >>> finder = LiveAtomFinder(document_controller, "usim_scan_device")  # doctest: +SKIP
    >>> finder.start()   # then scan as usual; finder.stop() when done  # doctest: +SKIP
    """

    def __init__(self, document_controller: DocumentController.DocumentController, scan_id: str, *, channel: str = "HAADF", ensemble: str | None = None) -> None:
        source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(scan_id)
        if source is None:
            raise ValueError(f"no hardware source with id {scan_id!r}; the simulator's scan is 'usim_scan_device'")
        self.__source = source
        self.__channel = channel
        self.__ensemble_name = ensemble
        self.__sink = DataItemSink(document_controller)
        self.run_id = "live-" + uuid.uuid4().hex[:6]
        self.__lock = threading.Lock()
        self.__mailbox: DataAndMetadata.DataAndMetadata | None = None
        self.__wakeup = threading.Event()
        self.__stopping = threading.Event()
        self.__thread: threading.Thread | None = None
        self.__listener: typing.Any = None
        self.frames_analysed = 0
        self.frames_skipped = 0
        self.last_error: str | None = None
        self.last_counts: dict[str, int] = {}

    def start(self) -> None:
        """Begin analysing frames as they complete."""
        if self.__thread is not None:
            return
        self.__stopping.clear()
        self.__thread = threading.Thread(target=self.__work, name="nion-autoem live ELIT", daemon=True)
        self.__thread.start()
        self.__listener = self.__source.xdatas_available_event.listen(self.__frame_completed)

    def stop(self) -> None:
        """Stop listening; a frame being analysed is finished first (within seconds)."""
        if self.__listener is not None:
            self.__listener.close()
            self.__listener = None
        self.__stopping.set()
        self.__wakeup.set()
        if self.__thread is not None:
            self.__thread.join(10.0)
            self.__thread = None

    def close(self) -> None:
        self.stop()

    def __frame_completed(self, data_promises: typing.Sequence[typing.Any]) -> None:
        # Runs on the acquisition thread: take the newest frame and return at once.
        for promise in data_promises:
            xdata = promise.xdata
            channel = xdata.metadata.get("hardware_source", {}).get("channel_name") if xdata is not None else None
            if xdata is not None and channel == self.__channel and len(xdata.data_shape) == 2:
                with self.__lock:
                    if self.__mailbox is not None:
                        self.frames_skipped += 1
                    # copy: the promise may point at memory the scan device reuses
                    self.__mailbox = DataAndMetadata.new_data_and_metadata(numpy.array(xdata.data), xdata.intensity_calibration,
                                                                           xdata.dimensional_calibrations, dict(xdata.metadata))
                self.__wakeup.set()

    def __work(self) -> None:
        from nion_autoem_elit import api

        ensemble = api.resolve_ensemble(self.__ensemble_name)
        while not self.__stopping.is_set():
            self.__wakeup.wait(0.2)
            self.__wakeup.clear()
            with self.__lock:
                xdata, self.__mailbox = self.__mailbox, None
            if xdata is None:
                continue
            try:
                started = time.perf_counter()
                frame = frame_from_xdata(xdata)
                result = api.find_atoms(numpy.asarray(xdata.data, dtype=float), ensemble)
                metadata = {"run_id": self.run_id, "product": "live atoms", "frame": self.frames_analysed + 1,
                            "provenance": {"model_version": f"elit/{self.__ensemble_name or 'mos2'}", "analysis_ms": round(1000 * (time.perf_counter() - started), 1)}}
                for product in atom_products(xdata, frame, result):
                    self.__sink.publish(product, metadata)
                self.last_counts = result.counts()
                self.frames_analysed += 1
            except Exception as e:  # one bad frame (e.g. no calibration) must not end the live mode
                self.last_error = f"{type(e).__name__}: {e}"
                _logger.warning("live ELIT skipped a frame: %s", self.last_error)

    def data_item(self, key: str) -> typing.Any:
        """The live data item for ``"frame"``, ``"atoms"`` or ``"uncertainty"``."""
        return self.__sink.data_item(self.run_id, key)
