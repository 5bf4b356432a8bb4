"""An analysis of every new scan frame, while the user scans.

:class:`LiveFrameAnalysis` listens to a scan hardware source's completed
frames.  The acquisition thread only hands the newest frame over (a
single-item mailbox: frames that arrive while one is being analysed replace
each other, so the analysis never falls behind the scan); one worker thread
runs the analysis; the results go to the document through a
:class:`~nion_autoem.swift.data_items.DataItemSink`, i.e. on the UI thread,
and the same data items update in place with every frame.

What is analysed is a subclass's :meth:`LiveFrameAnalysis.analyse`: ELIT atom
finding (:class:`~nion_autoem.swift.live_atoms.LiveAtomFinder`) or few-shot
tile classification (:class:`~nion_autoem.swift.tile_picker.LiveTileClassifier`).
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

from nion_autoem.products import Product
from nion_autoem.swift import quiet_collections
from nion_autoem.swift.data_items import DataItemSink

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

_logger = logging.getLogger(__name__)


class LiveFrameAnalysis:
    """Analyse every completed frame of a scan channel; subclasses say how in :meth:`analyse`.

    Parameters
    ----------
    document_controller : DocumentController
        Where the results go.
    scan_id : str
        Hardware-source id of the scan (``"usim_scan_device"`` on the simulator).
    channel : str
        Scan channel to analyse.
    """

    #: Thread name and the start of the run id of the data items (``live-…``).
    name = "live analysis"

    def __init__(self, document_controller: DocumentController.DocumentController, scan_id: str, *, channel: str = "HAADF") -> None:
        source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(scan_id)
        if source is None:
            raise ValueError(f"no hardware source with id {scan_id!r}; the simulator's scan is 'usim_scan_device'")
        self.__source = source
        self.__channel = channel
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

    def analyse(self, xdata: DataAndMetadata.DataAndMetadata) -> tuple[typing.Sequence[Product], dict[str, int], str]:
        """The products to show for one frame, the counts to remember, and the model version behind them."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what :meth:`analyse` needs, on the worker thread, before the first frame."""

    def start(self) -> None:
        """Begin analysing frames as they complete."""
        if self.__thread is not None:
            return
        self.__stopping.clear()
        self.__sink.hold_writes()  # the items are written to disk when the analysis stops, not at every frame
        self.__thread = threading.Thread(target=self.__work, name=f"nion-autoem {self.name}", daemon=True)
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
        self.__sink.release_writes()

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
        with quiet_collections.quiet_collections():  # no full collection of Swift's heap between frames (see quiet_collections)
            self.__analyse_frames()

    def __analyse_frames(self) -> None:
        try:
            self.prepare()
        except Exception as e:  # e.g. a model that does not load: say so, and analyse nothing
            self.last_error = f"{type(e).__name__}: {e}"
            _logger.warning("%s could not start: %s", self.name, self.last_error)
            return
        while not self.__stopping.is_set():
            self.__wakeup.wait(0.2)
            self.__wakeup.clear()
            with self.__lock:
                xdata, self.__mailbox = self.__mailbox, None
            if xdata is None:
                continue
            try:
                started = time.perf_counter()
                products, counts, model_version = self.analyse(xdata)
                metadata = {"run_id": self.run_id, "product": self.name, "frame": self.frames_analysed + 1,
                            "provenance": {"model_version": model_version, "analysis_ms": round(1000 * (time.perf_counter() - started), 1)}}
                for product in products:
                    self.__sink.publish(product, metadata)
                self.last_counts = counts
                self.frames_analysed += 1
            except Exception as e:  # one bad frame (e.g. no calibration) must not end the live mode
                self.last_error = f"{type(e).__name__}: {e}"
                _logger.warning("%s skipped a frame: %s", self.name, self.last_error)

    def data_item(self, key: str) -> typing.Any:
        """The live data item of one product key."""
        return self.__sink.data_item(self.run_id, key)
