"""Record what an operator does in Swift as a journal a plan could have written.

:class:`OperatorRecorder` listens to public nionswift-instrumentation events
while a person works and journals each thing they do as an action, with its
data, in the format of :mod:`nion_autoem.journal` (header ``plan="operator"``,
steps with ``source="operator"``).  :mod:`nion_autoem.recording` then turns the
journal into a plan that replays the session on the twin, or into the source
of one.

Events used (all public attributes of the instrumentation classes):

- ``stem_controller.scan_context_changed_event``: the scan frame (field of
  view, centre, pixels, rotation) changed -> :class:`~nion_autoem.actions.SetField`;
- ``scan.xdatas_available_event``: a scan frame completed (view or record)
  -> :class:`~nion_autoem.actions.Survey` with that frame's geometry, channels
  and pixel time, read from the data's own metadata, and the images as data;
- ``stem_controller.probe_state_changed_event``: the probe was parked at a new
  position -> :class:`~nion_autoem.actions.ParkProbe` (in scan-field nm of the
  scan context at that moment);
- ``eels.xdatas_available_event``: an EELS frame completed ->
  :class:`~nion_autoem.actions.Acquire` at the parked position with the
  exposure from the data's metadata and the spectrum as data;
- ``stem_controller.property_changed_event`` with ``"stage_position_m"``: the
  stage moved -> :class:`~nion_autoem.actions.MoveStage` (absolute, nm).

Settings (field, stage) change in bursts: a 2D control fires once per axis and
a person dragging a control fires many times.  They are therefore debounced:
the last value is journaled once it has been quiet for ``settle_s``, or just
before the next acquisition or probe move, whichever comes first.

Not recorded: defocus and other optics, blanking, Ronchigram frames, probe
unparking (there is no action for it; it is journaled as an event), and
anything done without the instrumentation (Swift processing, graphics).  Every
completed frame of a live view is a step: a minute of viewing is many surveys,
which is the dose the sample received.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import typing
import uuid

import numpy
from nion.data import DataAndMetadata
from nion.utils import Geometry
from nion.utils import Registry

from nion_autoem import xdata as xdata_builders
from nion_autoem.actions import SCAN_CHANNELS
from nion_autoem.actions import Acquire
from nion_autoem.actions import Action
from nion_autoem.actions import MoveStage
from nion_autoem.actions import ParkProbe
from nion_autoem.actions import ScanChannel
from nion_autoem.actions import SetField
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.journal import Journal

_logger = logging.getLogger(__name__)

OPERATOR_SOURCE = "operator"
OPERATOR_PLAN = "operator"

# usim's and Nion's 2D controls are addressed in their native (x, y) axis.
_XY_AXIS = ("x", "y")
_STOP = object()


class OperatorRecorder:
    """Journal an operator's scans, probe positions, stage moves and spectra while they work in Swift.

    Parameters
    ----------
    run_dir : path-like
        Where the journal and its data go (created if needed).
    stem_controller : object or None
        The instrument; None takes the registered ``stem_controller``.
    scan, eels : hardware source or None
        The scan device and EELS camera; None takes the instrument's own.
    run_id : str or None
        Identifier for the header; a time stamp by default.
    settle_s : float
        Quiet time after which a field or stage change is journaled.
    default_beam_current_A : float
        Used for dose when the instrument does not report ``BeamCurrent``.
    stage_control : str
        The instrument's 2D stage control, in metres.
    stage_control_sign : float
        As for :class:`~nion_autoem.swift.microscope.SwiftMicroscope`: -1 (usim)
        when the control moves the specimen, so the journaled stage position is
        the sample point at the field's centre and replays through
        ``SwiftMicroscope.move_stage`` to the same control value.

    Examples
    --------
    >>> with OperatorRecorder("runs/manual-1"):  # doctest: +SKIP
    ...     input("work in Swift, then press return")
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, stem_controller: typing.Any = None, scan: typing.Any = None, eels: typing.Any = None,
                 run_id: str | None = None, settle_s: float = 0.3, default_beam_current_A: float = 50e-12, stage_control: str = "stage_position_m",
                 stage_control_sign: float = -1.0) -> None:
        stem = stem_controller if stem_controller is not None else Registry.get_component("stem_controller")
        if stem is None:
            raise RuntimeError("no STEM instrument is registered: start Swift with a microscope (or nionswift-usim), or pass stem_controller=")
        self.stem = stem
        self.scan = scan if scan is not None else stem.scan_controller
        self.eels = eels if eels is not None else getattr(stem, "eels_camera", None)
        self.run_dir = run_dir
        self.run_id = run_id or "operator-" + time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.settle_s = settle_s
        self.default_beam_current_A = default_beam_current_A
        self.stage_control = stage_control
        self.stage_control_sign = float(stage_control_sign)
        # One lock orders everything: events arrive on acquisition threads, the
        # UI thread and the settle timer, and step numbers must follow causality.
        self.__lock = threading.RLock()
        self.__listeners: list[typing.Any] = []
        self.__queue: queue.Queue[typing.Any] = queue.Queue()
        self.__writer: threading.Thread | None = None
        self.__journal: Journal | None = None
        self.__running = False
        self.__step = 0
        self.__dose_e = 0.0
        self.__pending: dict[str, Action] = {}
        self.__timer: threading.Timer | None = None
        self.__last_fraction: tuple[float, float] | None = None
        self.__last_frame: ScanFrame | None = None
        self.__last_stage_nm: tuple[float, float] | None = None

    # --- life cycle -----------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """Actions journaled (or queued for the journal) so far."""
        with self.__lock:
            return self.__step

    def start(self) -> None:
        """Write the header and start listening."""
        with self.__lock:
            if self.__running:
                return
            self.__journal = Journal(self.run_dir)
            self.__journal.write_header(self.run_id, plan=OPERATOR_PLAN, parameters={}, microscope=f"{type(self.stem).__module__}.{type(self.stem).__name__}",
                                        recorder="nion_autoem.swift.recorder.OperatorRecorder")
            # What is already so is not something the operator did: start from it.
            position = self.stem.probe_position
            self.__last_fraction = None if position is None else (float(position.y), float(position.x))
            self.__last_frame = self.__context_frame()
            self.__last_stage_nm = self.__stage_nm()
            self.__writer = threading.Thread(target=self.__write_loop, name=f"nion-autoem recorder {self.run_id}", daemon=True)
            self.__writer.start()
            self.__running = True
            self.__listeners = [
                self.stem.scan_context_changed_event.listen(self.__scan_context_changed),
                self.stem.probe_state_changed_event.listen(self.__probe_state_changed),
                self.stem.property_changed_event.listen(self.__property_changed),
                self.scan.xdatas_available_event.listen(self.__scan_xdatas),
            ]
            if self.eels is not None:
                self.__listeners.append(self.eels.xdatas_available_event.listen(self.__eels_xdatas))

    def stop(self) -> None:
        """Stop listening, journal what is pending, wait for the writes and close the journal."""
        with self.__lock:
            if not self.__running:
                return
            listeners, self.__listeners = self.__listeners, []
        # Close outside the lock: a handler blocked on it while its event is being closed must not deadlock us.
        for listener in listeners:
            listener.close()
        with self.__lock:
            self.__running = False
            if self.__timer is not None:
                self.__timer.cancel()
                self.__timer = None
            self.__flush_pending()
            self.__queue.put(_STOP)
            writer, journal = self.__writer, self.__journal
            steps, dose = self.__step, self.__dose_e
        if writer is not None:
            writer.join()
        if journal is not None:
            journal.write_end("finished", message=f"operator session: {steps} actions recorded", steps=steps, dose_e=dose)
            journal.close()

    def __enter__(self) -> OperatorRecorder:
        self.start()
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.stop()

    # --- the instrument, read through public API ----------------------------------------------

    def __context_frame(self) -> ScanFrame | None:
        context = self.stem.scan_context
        if context.size is None or context.fov_nm is None:
            return None
        center = context.center_nm or Geometry.FloatPoint()
        return ScanFrame((context.size.height, context.size.width), context.fov_nm, (center.y, center.x), context.rotation_rad or 0.0)

    def __stage_nm(self) -> tuple[float, float] | None:
        try:
            position_m = self.stem.GetVal2D(self.stage_control, axis=_XY_AXIS)
        except Exception:  # the base STEMController raises a bare Exception for an unknown control
            return None
        # Round to femtometres so a script reads 5.0, not 5.000000000000001.
        sign = self.stage_control_sign
        return round(sign * float(position_m.y) * 1e9, 6) + 0.0, round(sign * float(position_m.x) * 1e9, 6) + 0.0  # + 0.0: no -0.0 in the journal

    def __beam(self) -> tuple[float, bool]:
        ok, current = self.stem.TryGetVal("BeamCurrent")
        ok_blank, blanked = self.stem.TryGetVal("C_Blank")
        return (float(current) if ok and current else self.default_beam_current_A), bool(ok_blank and blanked)

    def __parked_nm(self) -> tuple[float, float] | None:
        position = self.stem.probe_position
        frame = self.__context_frame()
        if position is None or frame is None or self.stem.probe_state != "parked":
            return None
        y, x = frame.fraction_to_nm((position.y, position.x))
        return float(y), float(x)

    # --- event handlers (any thread) ------------------------------------------------------------

    def __scan_context_changed(self) -> None:
        frame = self.__context_frame()
        with self.__lock:
            if self.__running and frame is not None and frame != self.__last_frame:
                self.__last_frame = frame
                self.__set_pending("field", SetField(frame))

    def __property_changed(self, name: str) -> None:
        if name != self.stage_control:
            return
        position = self.__stage_nm()
        with self.__lock:
            if self.__running and position is not None and position != self.__last_stage_nm:
                self.__last_stage_nm = position
                self.__set_pending("stage", MoveStage.to(y=position[0], x=position[1]))

    def __probe_state_changed(self, probe_state: str, probe_position: Geometry.FloatPoint | None) -> None:
        with self.__lock:
            if not self.__running:
                return
            fraction = None if probe_position is None else (float(probe_position.y), float(probe_position.x))
            if probe_state != "parked" or fraction == self.__last_fraction:
                return  # scanning, or the same spot again after a scan
            self.__last_fraction = fraction
            if fraction is None:
                self.__queue.put(("event", "probe_unparked", {}))
                return
            frame = self.__context_frame()
            if frame is None:
                return
            y, x = frame.fraction_to_nm(fraction)
            self.__record(ParkProbe((float(y), float(x))), Measurement({}, "none", position_nm=(float(y), float(x)), started_at=time.time()))

    def __scan_xdatas(self, promises: typing.Sequence[typing.Any]) -> None:
        started = time.time()
        # The promises may point at the device's buffers, which the next frame overwrites: copy now.
        xdatas = [promise.xdata for promise in promises]
        data: dict[str, DataAndMetadata.DataAndMetadata] = {}
        frame: ScanFrame | None = None
        pixel_time_us: float | None = None
        for xd in xdatas:
            if xd is None:
                continue
            source = dict(xd.metadata.get("hardware_source", {}))
            channel = str(source.get("channel_name", ""))
            if channel not in SCAN_CHANNELS or len(xd.data_shape) != 2:
                continue
            scan_md = dict(xd.metadata.get("scan", {}))
            frame = _frame_from_scan_metadata(scan_md, xd.data_shape)
            pixel_time_us = float(source.get("pixel_time_us") or scan_md.get("scan_device_parameters", {}).get("pixel_time_us") or 1.0)
            data[channel] = DataAndMetadata.new_data_and_metadata(numpy.array(xd.data, copy=True), xd.intensity_calibration, xd.dimensional_calibrations,
                                                                  dict(xd.metadata), data_descriptor=xd.data_descriptor)
        if not data or frame is None or pixel_time_us is None:
            return  # a subscan, line scan or channel the action vocabulary has no word for
        current, blanked = self.__beam()
        channels: tuple[ScanChannel, ...] = tuple(c for c in SCAN_CHANNELS if c in data)
        action = Survey(frame=frame, channels=channels, pixel_time_us=pixel_time_us)
        measurement = Measurement.of(data, "survey", dwell_s=frame.shape[0] * frame.shape[1] * pixel_time_us * 1e-6, beam_current_A=current, blanked=blanked,
                                     frame=frame, started_at=started)
        with self.__lock:
            if self.__running:
                self.__record(action, measurement)

    def __eels_xdatas(self, promises: typing.Sequence[typing.Any]) -> None:
        started = time.time()
        xdatas = [promise.xdata for promise in promises]
        xdatas = [xd for xd in xdatas if xd is not None]
        if not xdatas:
            return
        # The first channel is the camera's own (1D when processed, 2D in raw view); sum a 2D frame to a spectrum.
        raw = xdatas[0]
        spectrum = numpy.array(raw.data, dtype=float, copy=True)
        if spectrum.ndim == 2:
            spectrum = spectrum.sum(axis=0)
        if spectrum.ndim != 1:
            return
        source = dict(raw.metadata.get("hardware_source", {}))
        exposure_s = float(source.get("exposure") or 0.0)
        if not (math.isfinite(exposure_s) and exposure_s > 0):
            return
        exposure_ms = round(exposure_s * 1e3, 9)
        offset, scale = _energy_axis(raw, self.stem, int(source.get("binning") or 1))
        position = self.__parked_nm()
        current, blanked = self.__beam()
        xd = xdata_builders.spectrum_xdata(spectrum, offset, scale, metadata={**dict(raw.metadata), "nion_autoem": {"position_nm": list(position) if position else None,
                                                                                                                    "exposure_ms": exposure_ms}})
        action = Acquire(position, exposure_ms, "eels")
        measurement = Measurement.of({"eels": xd}, "spectrum", dwell_s=exposure_s, beam_current_A=current, blanked=blanked, position_nm=position, started_at=started)
        with self.__lock:
            if self.__running:
                self.__record(action, measurement)

    # --- journaling ---------------------------------------------------------------------------

    def __set_pending(self, key: str, action: Action) -> None:
        """Hold a setting until it settles; called with the lock held."""
        self.__pending[key] = action
        if self.__timer is not None:
            self.__timer.cancel()
        self.__timer = threading.Timer(self.settle_s, self.__settled)
        self.__timer.daemon = True
        self.__timer.start()

    def __settled(self) -> None:
        with self.__lock:
            if self.__running:
                self.__flush_pending()

    def __flush_pending(self) -> None:
        """Journal held settings, field before stage (the order they take effect in doesn't matter to a replay); lock held."""
        pending, self.__pending = self.__pending, {}
        for key in ("field", "stage"):
            action = pending.get(key)
            if isinstance(action, MoveStage):
                # An absolute move on both axes: its target does not depend on where the stage was.
                self.__enqueue(action, Measurement({}, "none", position_nm=action.target((0.0, 0.0)), started_at=time.time()))
            elif isinstance(action, SetField):
                self.__enqueue(action, Measurement({}, "none", frame=action.frame, started_at=time.time()))

    def __record(self, action: Action, measurement: Measurement) -> None:
        """Journal an acquisition or probe move after any settings it followed; lock held."""
        self.__flush_pending()
        self.__enqueue(action, measurement)

    def __enqueue(self, action: Action, measurement: Measurement) -> None:
        self.__step += 1
        self.__dose_e += measurement.dose_e
        self.__queue.put(("step", self.__step, action, measurement))

    def __write_loop(self) -> None:
        # Journal writes (arrays, fsync) happen here, so no acquisition or UI thread waits for the disk.
        journal = self.__journal
        assert journal is not None
        while True:
            item = self.__queue.get()
            if item is _STOP:
                return
            try:
                if item[0] == "step":
                    _, step, action, measurement = item
                    journal.write_step(step, action, measurement, source=OPERATOR_SOURCE)
                else:
                    _, event, details = item
                    journal.write_event(event, **details)
            except Exception:  # keep recording the rest; the journal says what it holds
                _logger.exception("operator recorder: could not journal %r", item[:2])


def _frame_from_scan_metadata(scan_md: typing.Mapping[str, typing.Any], shape: tuple[int, ...]) -> ScanFrame:
    """The geometry of a completed frame, from the ``scan`` metadata Swift attaches to it."""
    size = scan_md.get("scan_size") or shape
    return ScanFrame((int(size[0]), int(size[1])), float(scan_md["fov_nm"]), (float(scan_md.get("center_y_nm", 0.0)), float(scan_md.get("center_x_nm", 0.0))),
                     float(scan_md.get("rotation", 0.0)))


def _energy_axis(raw: DataAndMetadata.DataAndMetadata, stem: typing.Any, binning: int) -> tuple[float, float]:
    calibration = raw.dimensional_calibrations[-1] if raw.dimensional_calibrations else None
    if calibration is not None and calibration.units == "eV" and calibration.scale:
        return float(calibration.offset), float(calibration.scale)
    # usim's processed frames come without an energy calibration; the spectrometer controls give it per unbinned channel.
    return float(stem.GetVal("eels_x_offset", 0.0)), float(stem.GetVal("eels_x_scale", 1.0)) * binning
