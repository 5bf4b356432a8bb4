"""The session's dose history in Swift: where the beam has been, shown as one data item that updates.

Every measurement of an experiment started from the panel or the console
(:func:`~nion_autoem.swift.console.start_experiment` passes
:meth:`DoseHistory.add` to the runner) and every frame of the user's own live
scan (:class:`LiveScanDose`) is counted in the process's one
:func:`session_dose`.  :class:`DoseMapPublisher` turns it into
"Dose map (this session)": the mean dose (e/nm²) per area over a field that
holds everything the beam touched, with the peak named in the caption, at
most every :data:`PUBLISH_INTERVAL_S` and computed off the UI thread.  The
maths is :mod:`nion_autoem.dose_map`'s.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import typing

import numpy
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import dose_map
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import electrons
from nion_autoem.products import Display
from nion_autoem.products import Product
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.xdata import frame_calibrations
from nion_autoem.xdata import frame_from_xdata

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

#: The map is recomputed and shown at most this often.
PUBLISH_INTERVAL_S = 2.0
#: Cells of the map.
MAP_SHAPE = (128, 128)


class DoseHistory:
    """Every exposure of the session, thread-safe; ``version`` counts the changes."""

    def __init__(self) -> None:
        self.__lock = threading.Lock()
        self.__exposures: list[dose_map.Exposure] = []
        self.version = 0

    def add(self, measurement: Measurement) -> None:
        """Count what a measurement delivered (a runner's ``on_measurement`` hook)."""
        exposure = dose_map.exposure_of(measurement)
        if exposure is not None:
            self.add_exposure(exposure)

    def add_exposure(self, exposure: dose_map.Exposure) -> None:
        """Count one exposure; one on the same frame or spot as the last is added to it (dose adds up).

        So an hour of live view, or the hundreds of pieces of a dwell, stay one
        exposure each, and the map costs the same to draw after an hour as
        after a minute.
        """
        with self.__lock:
            last = self.__exposures[-1] if self.__exposures else None
            if (last is not None and last.frame == exposure.frame and last.position_nm == exposure.position_nm
                    and last.offset_nm == exposure.offset_nm and last.label == exposure.label):
                self.__exposures[-1] = dataclasses.replace(last, electrons=last.electrons + exposure.electrons)
            else:
                self.__exposures.append(exposure)
            self.version += 1

    @property
    def exposures(self) -> list[dose_map.Exposure]:
        with self.__lock:
            return list(self.__exposures)

    def clear(self) -> None:
        """Forget the history (a new sample)."""
        with self.__lock:
            self.__exposures.clear()
            self.version += 1

    def map_xdata(self) -> DataAndMetadata.DataAndMetadata | None:
        """The map as calibrated data (nm, e/nm²); None before any dose."""
        exposures = self.exposures
        field = dose_map.field_covering(exposures)
        if field is None:
            return None
        grid = dose_map.binned_dose(exposures, field, MAP_SHAPE)
        cells = ScanFrame(MAP_SHAPE, field.fov_nm, field.center_nm)
        peak = numpy.unravel_index(int(numpy.argmax(grid)), grid.shape)
        peak_nm = cells.pixel_to_nm(numpy.asarray([peak], dtype=float))[0]
        total = float(sum(e.electrons for e in exposures))
        return DataAndMetadata.new_data_and_metadata(
            grid, intensity_calibration=Calibration.Calibration(units="e/nm²"), dimensional_calibrations=list(frame_calibrations(cells)),
            metadata={"nion_autoem": {"peak_e_per_nm2": float(grid[peak]), "peak_nm": [float(v) for v in peak_nm], "total_e": total,
                                      "exposures": len(exposures)}})


_SESSION = DoseHistory()


def session_dose() -> DoseHistory:
    """The dose history of this Swift session (one per process)."""
    return _SESSION


def summary(xdata: DataAndMetadata.DataAndMetadata) -> str:
    """The map in one sentence: the peak and where, the total."""
    md = xdata.metadata["nion_autoem"]
    y, x = md["peak_nm"]
    return (f"dose so far: at most {md['peak_e_per_nm2']:.3g} e/nm² (mean over {xdata.dimensional_calibrations[0].scale:.2g} nm cells) "
            f"at ({y:.2f}, {x:.2f}) nm; {md['total_e']:.3g} e in {md['exposures']} exposures")


class DoseMapPublisher:
    """Shows the session's dose map in a window's document, updated while the beam works.

    Parameters
    ----------
    document_controller : DocumentController
        The window whose document shows the map.
    on_summary : callable, optional
        Called (on the UI thread) with the one-sentence summary after each update.
    history : DoseHistory, optional
        Default :func:`session_dose`.
    """

    def __init__(self, document_controller: DocumentController.DocumentController, on_summary: typing.Callable[[str], None] | None = None,
                 history: DoseHistory | None = None) -> None:
        #: Called (UI thread) with the summary after each update; the panel sets it to show the line.
        self.on_summary = on_summary
        self.document_controller = document_controller
        self.__sink = DataItemSink(document_controller)
        # updated every second while the beam works: on screen at once, on disk every WRITE_HELD_EVERY_S and when the window closes
        self.__sink.hold_writes()
        self.history = history or session_dose()
        self.__shown_version = -1
        self.__last_s = 0.0
        self.__lock = threading.Lock()

    def update(self, *, force: bool = False) -> None:
        """Recompute and show the map if the history changed (at most every PUBLISH_INTERVAL_S unless ``force``); any thread but the UI's."""
        with self.__lock:
            version = self.history.version
            now = time.monotonic()
            if version == self.__shown_version or (not force and now - self.__last_s < PUBLISH_INTERVAL_S):
                return
            self.__shown_version, self.__last_s = version, now
            xdata = self.history.map_xdata()
        if xdata is None:
            return
        text = summary(xdata)
        self.__sink.publish(Product("session-dose", "Dose map (this session)", xdata, caption=text, display=Display(color_map="magma")), {})
        if self.on_summary is not None:
            on_summary = self.on_summary
            self.document_controller.queue_task(lambda: on_summary(text))

    def data_item(self) -> typing.Any:
        """The map's data item, once shown."""
        return self.__sink.data_item("", "session-dose")


_PUBLISHERS: dict[int, DoseMapPublisher] = {}


def publisher_for(document_controller: DocumentController.DocumentController) -> DoseMapPublisher:
    """The one dose-map publisher of a window (so every run and the live scan update the same item)."""
    key = id(document_controller.document_model)
    publisher = _PUBLISHERS.get(key)
    if publisher is None or publisher.document_controller is not document_controller:
        publisher = _PUBLISHERS[key] = DoseMapPublisher(document_controller)
    return publisher


class LiveScanDose:
    """Counts every frame of the user's live scan (not the experiments' own recordings) in the session's history.

    Parameters
    ----------
    scan : ScanHardwareSource
        The scan to follow.
    beam_current_A : callable
        The beam current now (the instrument's).
    is_blanked : callable
        Whether the beam is blanked now (a blanked frame delivers nothing).
    after_frame : callable, optional
        Called after each counted frame (e.g. :meth:`DoseMapPublisher.update`), on the scan's thread.
    """

    def __init__(self, scan: typing.Any, beam_current_A: typing.Callable[[], float], is_blanked: typing.Callable[[], bool],
                 after_frame: typing.Callable[[], None] | None = None, history: DoseHistory | None = None) -> None:
        self.__scan = scan
        self.__beam_current_A = beam_current_A
        self.__is_blanked = is_blanked
        self.__after_frame = after_frame
        self.history = history or session_dose()
        self.frames_counted = 0
        self.__listener = scan.xdatas_available_event.listen(self.__frames)

    def __frames(self, data_promises: typing.Sequence[typing.Any]) -> None:
        if not self.__scan.is_playing or self.__is_blanked():  # an experiment's own recording is counted by its runner
            return
        fp = self.__scan.get_current_frame_parameters()
        for promise in data_promises[:1]:  # one frame scanned, however many channels
            xdata = promise.xdata if promise is not None else None
            if xdata is None or len(xdata.data_shape) != 2:
                continue
            frame = frame_from_xdata(xdata)
            beam_s = frame.shape[0] * frame.shape[1] * float(fp.pixel_time_us) * 1e-6
            self.history.add_exposure(dose_map.Exposure(electrons(self.__beam_current_A(), beam_s), frame=frame, label="live scan frame"))
            self.frames_counted += 1
        if self.__after_frame is not None:
            self.__after_frame()

    def close(self) -> None:
        if self.__listener is not None:
            self.__listener.close()
            self.__listener = None
