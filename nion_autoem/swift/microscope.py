"""`SwiftMicroscope`: the instrument facade over nionswift-instrumentation.

It finds the instrument, the scan and the cameras through the Registry and
hardware-source ids only, so the same code runs on a Nion microscope and on
nionswift-usim.  Call it from a worker thread, never from the UI thread: every
method that acquires blocks until the data are in.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import time
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.instrumentation import HardwareSource
from nion.instrumentation import scan_base
from nion.utils import Geometry
from nion.utils import Registry

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import ACQUISITION_CLOCK_KEY
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits

if typing.TYPE_CHECKING:
    from nion.instrumentation import camera_base
    from nion.instrumentation import stem_controller as stem_controller_module

_logger = logging.getLogger(__name__)

SCAN_CHANNELS = {"HAADF": 0, "MAADF": 1}

# A spot scan this small keeps the probe on one point while the scan
# electronics clock out ADF samples; it is how a parked-probe trace is read.
_SPOT_FOV_NM = 1e-4

#: Stage travel of a typical STEM holder, about +-1 mm in y and x, in nm.
DEFAULT_STAGE_LIMITS_NM: StageLimits = ((-1e6, 1e6), (-1e6, 1e6))
#: Largest objective defocus a focus routine may ask for, in nm (+-10 um).
DEFAULT_MAX_DEFOCUS_NM = 10_000.0
#: How long make_safe watches that the probe stays unparked (Swift's probe graphic can write a late position back).
UNPARK_SETTLE_S = 0.5
#: Registry type of a simulator's own clock (an object with ``now_s``), stamped on acquisitions.
ACQUISITION_CLOCK_COMPONENT = "acquisition_clock"
# usim's and Nion's 2D controls are addressed in their native (x, y) axis.
_XY_AXIS = ("x", "y")


class SwiftMicroscope:
    """A :class:`nion_autoem.instrument.Microscope` backed by Nion Swift's instrumentation.

    Parameters
    ----------
    stem_controller_id : str or None
        Registry id of the instrument; None takes the registered ``stem_controller``.
    scan_id, eels_id, ronchigram_id : str or None
        Hardware-source ids; None takes the instrument's own devices.
    max_dwell_s : float
        Upper bound on a single parked dwell (spectrum exposure or trace).
    default_beam_current_A : float
        Used when the instrument does not report ``BeamCurrent``.
    stage_limits_nm : ((float, float), (float, float))
        ((y_min, y_max), (x_min, x_max)) the stage may be sent to, in nm;
        default +-1 mm, the travel of a typical holder.  Set it tighter to
        keep an experiment on one region of the sample.
    max_defocus_nm : float
        :meth:`set_defocus` refuses a C10 beyond +-this many nm (default 10 um).
    stage_control : str
        The instrument's 2D stage control, in metres (``"stage_position_m"`` on usim).
    stage_control_sign : float
        ``-1`` (the default, usim's) when the stage control is the specimen's
        displacement, so raising it moves the image content the same way and
        the field's centre then looks at ``-control``; ``+1`` when the control
        already reads the sample point at the field's centre.  Check it on a
        new instrument with :func:`nion_autoem.swift.microscope.measure_stage_sign`.
    defocus_control : str
        The instrument's objective defocus control, in metres (``"C10"``).
    clock : callable or None
        The sample's own clock in seconds, stamped on every survey and trace
        (see :func:`nion_autoem.instrument.acquisition_time_s`); None takes the
        ``acquisition_clock`` component a simulator registers (the twin's
        beam-time clock), if any, else stamps nothing (the wall clock rules).

    Raises
    ------
    InstrumentError
        If no instrument or scan device is registered.
    ValueError
        If ``stage_limits_nm`` or ``max_defocus_nm`` are not finite ranges.

    Notes
    -----
    Stage convention (the :class:`~nion_autoem.instrument.Microscope`
    protocol's): :attr:`stage_position_nm` is the point of the sample at the
    centre of the scan field, so a montage tile taken at stage ``s`` shows the
    sample around ``s`` and ``move_stage(p)`` brings the point ``p`` into view.
    On usim the stage control moves the specimen (a point ``p`` of the sample
    appears at scan-field ``p + control``), hence ``stage_control_sign=-1``.
    """

    def __init__(self, *, stem_controller_id: str | None = None, scan_id: str | None = None, eels_id: str | None = None,
                 ronchigram_id: str | None = None, max_dwell_s: float = 10.0, default_beam_current_A: float = 50e-12,
                 stage_limits_nm: StageLimits = DEFAULT_STAGE_LIMITS_NM, max_defocus_nm: float = DEFAULT_MAX_DEFOCUS_NM,
                 stage_control: str = "stage_position_m", stage_control_sign: float = -1.0, defocus_control: str = "C10",
                 clock: typing.Callable[[], float] | None = None) -> None:
        self.__stage_limits_nm = _checked_limits(stage_limits_nm)
        if stage_control_sign not in (-1, 1):
            raise ValueError(f"stage_control_sign must be -1 (the control moves the specimen, as on usim) or +1 (it reads the viewed point), got {stage_control_sign!r}")
        self.__stage_sign = float(stage_control_sign)
        if not (math.isfinite(max_defocus_nm) and max_defocus_nm > 0):
            raise ValueError(f"max_defocus_nm must be a positive finite defocus in nm (e.g. 10000 for +-10 um), got {max_defocus_nm!r}")
        self.__max_defocus_nm = float(max_defocus_nm)
        self.__stage_control = stage_control
        self.__defocus_control = defocus_control
        stem = Registry.get_component(stem_controller_id or "stem_controller")
        if stem is None:
            raise InstrumentError("no STEM instrument is registered: start Swift with a microscope connected, or with nionswift-usim installed")
        self.__stem = typing.cast("stem_controller_module.STEMController", stem)
        hsm = HardwareSource.HardwareSourceManager()
        scan = hsm.get_hardware_source_for_hardware_source_id(scan_id) if scan_id else self.__stem.scan_controller
        if scan is None:
            raise InstrumentError(f"no scan device {'with id ' + repr(scan_id) if scan_id else 'is attached to the instrument'}")
        self.__scan = typing.cast("scan_base.ScanHardwareSource", scan)
        self.__eels = typing.cast("camera_base.CameraHardwareSource | None", hsm.get_hardware_source_for_hardware_source_id(eels_id) if eels_id else self.__stem.eels_camera)
        self.__ronchigram = typing.cast("camera_base.CameraHardwareSource | None", hsm.get_hardware_source_for_hardware_source_id(ronchigram_id) if ronchigram_id else self.__stem.ronchigram_camera)
        self.__max_dwell_s = max_dwell_s
        self.__default_beam_current_A = default_beam_current_A
        # Serialises acquisitions; make_safe deliberately does not take it.
        self.__lock = threading.RLock()
        self.__user_scan: tuple[scan_base.ScanFrameParameters, tuple[bool, ...]] | None = None
        self.__clock = clock
        self.__user_cameras: dict[str, tuple[camera_base.CameraHardwareSource, camera_base.CameraFrameParameters]] = {}
        self.__spot_device: scan_base.ScanDevice | None = None  # the scan device while a survey or a parked-probe trace reads it
        self.__spot_cancelled = False

    def __clock_now(self) -> float | None:
        """The sample's own time, if this instrument keeps one (a simulator registers ``acquisition_clock``)."""
        if self.__clock is not None:
            return float(self.__clock())
        component = Registry.get_component(ACQUISITION_CLOCK_COMPONENT)
        now = getattr(component, "now_s", None) if component is not None else None
        return float(now) if isinstance(now, (int, float)) else None

    @property
    def name(self) -> str:
        return f"{type(self.__stem).__module__}.{type(self.__stem).__name__} / {self.__scan.hardware_source_id}"

    @property
    def scan_frame(self) -> ScanFrame:
        context = self.__stem.scan_context
        if context.size is None or context.fov_nm is None:
            fp = self.__scan.get_current_frame_parameters()
            return ScanFrame((fp.pixel_size.height, fp.pixel_size.width), fp.fov_nm, (fp.center_nm.y, fp.center_nm.x), fp.rotation_rad)
        center = context.center_nm or Geometry.FloatPoint()
        return ScanFrame((context.size.height, context.size.width), context.fov_nm, (center.y, center.x), context.rotation_rad or 0.0)

    @property
    def beam_current_A(self) -> float:
        ok, value = self.__stem.TryGetVal("BeamCurrent")
        return float(value) if ok and value else self.__default_beam_current_A

    @property
    def energy_range_eV(self) -> tuple[float, float] | None:
        """Energy loss (eV) of the spectrometer's first and last channel, from its dispersion and the camera's width; None without EELS."""
        if self.__eels is None:
            return None
        offset, scale = float(self.__stem.GetVal("eels_x_offset", 0.0)), float(self.__stem.GetVal("eels_x_scale", 1.0))
        width = int(self.__eels.get_expected_dimensions(1)[1])  # unbinned channels; the dispersion is per unbinned channel
        return offset, offset + scale * (width - 1)

    @property
    def is_blanked(self) -> bool:
        ok, value = self.__stem.TryGetVal("C_Blank")
        return bool(ok and value)

    @property
    def probe_position_nm(self) -> Position | None:
        fraction = self.__stem.probe_position
        if fraction is None or self.__stem.probe_state != "parked":
            return None
        y, x = self.scan_frame.fraction_to_nm((fraction.y, fraction.x))
        return float(y), float(x)

    @property
    def has_eels(self) -> bool:
        return self.__eels is not None

    @property
    def has_ronchigram(self) -> bool:
        return self.__ronchigram is not None

    # --- the user's live scan ------------------------------------------------------

    @property
    def took_over_live_scan(self) -> bool:
        """Whether an acquisition had to stop the user's live scan (see :meth:`give_back_scan`)."""
        return self.__user_scan is not None

    def __take_over_scan(self) -> None:
        """Stop the user's live scan before the experiment drives the scan, remembering its settings.

        A running scan moves the probe and owns the scan device: a parked-probe
        acquisition would find the probe "scanning".  Runs on the worker thread.
        """
        if not self.__scan.is_playing:
            return
        if self.__user_scan is None:
            enabled = tuple(self.__scan.get_channel_enabled(index) for index in range(len(SCAN_CHANNELS)))
            self.__user_scan = (self.__scan.get_current_frame_parameters(), enabled)
            _logger.info("stopping the live scan so the experiment can drive the scan; its settings are put back afterwards")
        self.__scan.abort_playing()
        deadline = time.time() + 5.0
        while self.__scan.is_playing and time.time() < deadline:
            time.sleep(0.01)
        if self.__scan.is_playing:
            raise InstrumentError("the live scan did not stop within 5 s; stop it (Scan ▸ Stop) and start the experiment again")

    def give_back_scan(self) -> bool:
        """Put back the cameras' settings the experiment changed, and the scan settings (frame, channels) of a live scan it stopped; True if there was one.

        Nothing is restarted: the beam is blanked after a run, and a
        microscopist restarts the view when ready.
        """
        for camera, camera_parameters in self.__user_cameras.values():
            camera.set_current_frame_parameters(camera_parameters)
        self.__user_cameras.clear()
        if self.__user_scan is None:
            return False
        frame_parameters, enabled = self.__user_scan
        self.__user_scan = None
        self.__scan.set_current_frame_parameters(frame_parameters)
        for index, on in enumerate(enabled):
            self.__scan.set_channel_enabled(index, on)
        return True

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        unknown = [c for c in channels if c not in SCAN_CHANNELS]
        if unknown or not channels:
            raise ValueError(f"unknown scan channel(s) {unknown}; choose from {sorted(SCAN_CHANNELS)}")
        if pixel_time_us is not None and not (0 < pixel_time_us <= 1e4):
            raise ValueError(f"pixel_time_us must be in (0, 10000] µs, got {pixel_time_us}")
        ordered = [name for name in SCAN_CHANNELS if name in channels]  # the device returns enabled channels in its own order
        with self.__lock:
            self.__take_over_scan()
            fp, used = self.__make_current_frame(frame, pixel_time_us)
            dwell_s = used.shape[0] * used.shape[1] * fp.pixel_time_us * 1e-6
            started = time.time()
            clock_started = self.__clock_now()
            with self.__device_scans(ordered, "a survey") as device:
                images = self.__read_frame(device, fp, len(ordered), "survey")
            duration = time.time() - started
            clock_ended = self.__clock_now()
            try:
                stage: list[float] | None = list(self.stage_position_nm)  # where the frame's centre was on the sample: a region drawn on it maps to the stage
            except InstrumentError:
                stage = None  # an instrument without the stage control
        scan_metadata: dict[str, typing.Any] = {}
        scan_base.update_scan_metadata(scan_metadata, self.__scan.hardware_source_id, self.__scan.display_name, fp, None, {"pixel_time_us": fp.pixel_time_us})
        data: dict[str, DataAndMetadata.DataAndMetadata] = {}
        for channel, image in zip(ordered, images):
            source: dict[str, typing.Any] = {"channel_index": SCAN_CHANNELS[channel]}
            scan_base.update_detector_metadata(source, self.__scan.hardware_source_id, self.__scan.display_name, image.shape, None, channel,
                                               str(SCAN_CHANNELS[channel]), {"pixel_time_us": fp.pixel_time_us})
            metadata: dict[str, typing.Any] = {"hardware_source": source, "scan": dict(scan_metadata),
                                               "nion_autoem": {"channel": channel, "scan_frame": used.to_dict(), **({"stage_nm": stage} if stage is not None else {})}}
            if clock_started is not None and clock_ended is not None:
                metadata[ACQUISITION_CLOCK_KEY] = [clock_started, clock_ended]
            data[channel] = DataAndMetadata.new_data_and_metadata(image, Calibration.Calibration(), list(xdata_builders.frame_calibrations(used)), metadata)
        return Measurement.of(data, "survey", dwell_s=dwell_s, beam_current_A=self.beam_current_A, blanked=self.is_blanked,
                              frame=used, started_at=started, duration_s=duration)

    def __make_current_frame(self, frame: ScanFrame | None, pixel_time_us: float | None) -> tuple[scan_base.ScanFrameParameters, ScanFrame]:
        """Make ``frame`` (None: keep the current one) the scan's current frame; returns its parameters and geometry.

        The scan context, which every probe fraction refers to, follows
        ``set_current_frame_parameters`` at once; ``record_immediate`` alone
        would not update it.
        """
        fp = self.__scan.get_current_frame_parameters()
        if frame is not None:
            fp.pixel_size = Geometry.IntSize(height=frame.shape[0], width=frame.shape[1])
            fp.fov_nm = frame.fov_nm
            fp.center_nm = Geometry.FloatPoint(y=frame.center_nm[0], x=frame.center_nm[1])
            fp.rotation_rad = frame.rotation_rad
        if pixel_time_us is not None:
            fp.pixel_time_us = pixel_time_us
        self.__scan.set_current_frame_parameters(fp)
        return fp, ScanFrame((fp.pixel_size.height, fp.pixel_size.width), fp.fov_nm, (fp.center_nm.y, fp.center_nm.x), fp.rotation_rad)

    def set_scan_frame(self, frame: ScanFrame) -> None:
        """Make ``frame`` the current scan context (field of view, centre, rotation, pixels) without scanning.

        :attr:`scan_frame`, probe fractions and the next :meth:`survey` follow
        it; no electrons reach the sample.  On a live-scanning instrument the
        running scan takes the new frame too, as it would from Swift's scan panel.
        """
        if not isinstance(frame, ScanFrame):
            raise TypeError(f"frame must be a ScanFrame (pixels, field of view, centre, rotation), got {type(frame).__name__}")
        with self.__lock:
            self.__make_current_frame(frame, None)

    # --- stage and focus ------------------------------------------------------------------------

    @property
    def stage_position_nm(self) -> Position:
        """Stage (y, x) in nm, read back from the instrument's stage control."""
        try:
            position_m = self.__stem.GetVal2D(self.__stage_control, axis=_XY_AXIS)
        except Exception as e:  # the base STEMController raises a bare Exception for an unknown control
            raise InstrumentError(f"the instrument has no 2D stage control {self.__stage_control!r} ({e}); pass stage_control= with its name") from e
        return self.__stage_sign * float(position_m.y) * 1e9, self.__stage_sign * float(position_m.x) * 1e9

    @property
    def stage_control_sign(self) -> float:
        """-1 if the stage control moves the specimen (usim), +1 if it reads the viewed point (see the class notes)."""
        return self.__stage_sign

    @property
    def stage_limits_nm(self) -> StageLimits:
        return self.__stage_limits_nm

    def move_stage(self, position_nm: Position) -> None:
        """Move the stage to an absolute (y, x) in nm within :attr:`stage_limits_nm`.

        Raises
        ------
        ValueError
            If the position is not a finite (y, x) pair or lies outside the
            limits; the stage is not touched.
        InstrumentError
            If the instrument refuses the move.
        """
        y, x = _checked_position(position_nm, self.__stage_limits_nm)
        with self.__lock:
            control = Geometry.FloatPoint(y=self.__stage_sign * y * 1e-9, x=self.__stage_sign * x * 1e-9)
            if not self.__stem.SetVal2D(self.__stage_control, control, axis=_XY_AXIS):
                raise InstrumentError(f"the instrument refused to move its stage control {self.__stage_control!r} to ({y:.6g}, {x:.6g}) nm")

    @property
    def defocus_nm(self) -> float:
        """Objective defocus C10 in nm, as the instrument reports it (usim starts at 500 nm)."""
        ok, value = self.__stem.TryGetVal(self.__defocus_control)
        if not ok or value is None:
            raise InstrumentError(f"the instrument has no defocus control {self.__defocus_control!r}; pass defocus_control= with its name")
        return float(value) * 1e9

    def set_defocus(self, defocus_nm: float) -> None:
        """Set the objective defocus C10 to ``defocus_nm`` (absolute, nm).

        Raises
        ------
        ValueError
            If it is not finite or beyond +-``max_defocus_nm``.
        InstrumentError
            If the instrument refuses the value.
        """
        try:
            value = float(defocus_nm)
        except (TypeError, ValueError) as e:
            raise ValueError(f"defocus must be a finite C10 in nm, got {defocus_nm!r}") from e
        if not math.isfinite(value):
            raise ValueError(f"defocus must be a finite C10 in nm within +-{self.__max_defocus_nm:g} nm, got {defocus_nm!r}")
        if abs(value) > self.__max_defocus_nm:
            raise ValueError(f"defocus {value:.6g} nm is beyond the allowed +-{self.__max_defocus_nm:g} nm; a focus series stays "
                             f"within a few hundred nm of focus (build the microscope with a larger max_defocus_nm if the instrument needs more)")
        with self.__lock:
            if not self.__stem.SetVal(self.__defocus_control, value * 1e-9):
                raise InstrumentError(f"the instrument refused to set {self.__defocus_control!r} to {value:.6g} nm")

    def probe_fraction(self, position_nm: Position) -> Position:
        if len(position_nm) != 2 or not all(math.isfinite(v) for v in position_nm):
            raise OutOfFieldError(f"a probe position must be a finite (y, x) pair in nm, got {position_nm!r}")
        frame = self.scan_frame
        fy, fx = frame.nm_to_fraction(position_nm)
        if not (0.0 <= fy <= 1.0 and 0.0 <= fx <= 1.0):
            h, w = frame.size_nm
            raise OutOfFieldError(f"probe position {tuple(round(v, 3) for v in position_nm)} nm is outside the scan field "
                                  f"({h:.3g} x {w:.3g} nm centred on {frame.center_nm} nm, rotation {frame.rotation_rad:.3g} rad)")
        return float(fy), float(fx)

    def park_probe(self, position_nm: Position) -> None:
        fy, fx = self.probe_fraction(position_nm)
        with self.__lock:
            self.__take_over_scan()
            self.__stem.probe_position = Geometry.FloatPoint(y=fy, x=fx)

    def __check_dwell(self, dwell_s: float, what: str) -> None:
        if not (0 < dwell_s <= self.__max_dwell_s):
            raise ValueError(f"{what} dwell of {dwell_s:.4g} s is outside (0, {self.__max_dwell_s:g}] s allowed for one parked acquisition")

    def __parked_position(self) -> Position:
        position = self.probe_position_nm
        if position is None:
            raise InstrumentError("the probe is not parked: call park_probe(position_nm) first")
        return position

    def __record_camera(self, camera: camera_base.CameraHardwareSource, exposure_ms: float, processing: str | None) -> tuple[DataAndMetadata.DataAndMetadata, int]:
        """Record one frame; returns it with the binning it was taken at.

        Through the camera's sequence acquisition, not its recording: Swift
        binds a recording to a "<camera>" data item in the user's document and
        reads and rewrites it on the UI thread for every frame (items left
        behind, and stalls of the window). The camera's settings are changed
        only when they differ, and :meth:`give_back_scan` puts them back.
        """
        if camera.is_playing:  # the user's live view: one acquisition at a time
            camera.stop_playing(sync_timeout=5.0)
        deadline = time.time() + 5.0
        while (camera.is_recording or camera.is_playing) and time.time() < deadline:
            time.sleep(0.002)
        cfp = camera.get_current_frame_parameters()
        if cfp.exposure_ms != exposure_ms or (processing is not None and cfp.processing != processing):
            self.__user_cameras.setdefault(camera.hardware_source_id, (camera, copy.deepcopy(cfp)))
            cfp.exposure_ms = exposure_ms
            if processing is not None:
                cfp.processing = processing
            camera.set_current_frame_parameters(cfp)
        elements = camera.acquire_sequence(1)
        if not elements or elements[0].get("data") is None:
            raise InstrumentError(f"{camera.hardware_source_id} returned no data (the acquisition was aborted)")
        element = elements[0]
        calibrations = [Calibration.Calibration(c.get("offset", 0.0), c.get("scale", 1.0), c.get("units", "")) for c in element.get("spatial_calibrations", [])[1:]]
        intensity = dict(element.get("intensity_calibration", {}))
        data = numpy.asarray(element["data"])[0]
        frame = DataAndMetadata.new_data_and_metadata(data, Calibration.Calibration(intensity.get("offset", 0.0), intensity.get("scale", 1.0), intensity.get("units", "")),
                                                      calibrations if len(calibrations) == data.ndim else None, dict(element.get("metadata", {})))
        return frame, int(getattr(cfp, "binning", 1) or 1)

    def __energy_axis(self, raw: DataAndMetadata.DataAndMetadata, binning: int) -> tuple[float, float]:
        calibration = raw.dimensional_calibrations[-1] if raw.dimensional_calibrations else None
        if calibration is not None and calibration.units == "eV" and calibration.scale:
            return calibration.offset, calibration.scale
        # usim's record path drops the energy calibration; the spectrometer
        # controls give it per unbinned detector channel.
        return self.__stem.GetVal("eels_x_offset", 0.0), self.__stem.GetVal("eels_x_scale", 1.0) * binning

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        if self.__eels is None:
            raise InstrumentError("no EELS camera is attached to this instrument; spectra cannot be acquired")
        self.__check_dwell(exposure_ms * 1e-3, "EELS exposure")
        with self.__lock:
            position = self.__parked_position()
            started = time.time()
            raw, binning = self.__record_camera(self.__eels, exposure_ms, "sum_project")
            duration = time.time() - started
            data = numpy.asarray(raw.data)
            if data.ndim == 2:
                data = data.sum(axis=0)
            offset, scale = self.__energy_axis(raw, binning)
            spectrum = xdata_builders.spectrum_xdata(data, offset, scale, metadata={**dict(raw.metadata), "nion_autoem": {"position_nm": list(position), "exposure_ms": exposure_ms}})
        return Measurement.of({"eels": spectrum}, "spectrum", dwell_s=exposure_ms * 1e-3, beam_current_A=self.beam_current_A, blanked=self.is_blanked,
                              position_nm=position, started_at=started, duration_s=duration)

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        if self.__ronchigram is None:
            raise InstrumentError("no Ronchigram / diffraction camera is attached to this instrument")
        self.__check_dwell(exposure_ms * 1e-3, "camera exposure")
        with self.__lock:
            position = self.__parked_position()
            started = time.time()
            raw, _ = self.__record_camera(self.__ronchigram, exposure_ms, None)
            duration = time.time() - started
        metadata = dict(raw.metadata)
        metadata["nion_autoem"] = {"position_nm": list(position), "exposure_ms": exposure_ms}
        frame = DataAndMetadata.new_data_and_metadata(raw.data, raw.intensity_calibration, raw.dimensional_calibrations, metadata, data_descriptor=raw.data_descriptor)
        return Measurement.of({"ronchigram": frame}, "camera", dwell_s=exposure_ms * 1e-3, beam_current_A=self.beam_current_A, blanked=self.is_blanked,
                              position_nm=position, started_at=started, duration_s=duration)

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        if channel not in SCAN_CHANNELS:
            raise ValueError(f"unknown ADF channel {channel!r}; choose from {sorted(SCAN_CHANNELS)}")
        if isinstance(samples, bool) or samples < 1 or int(samples) != samples:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        dwell = samples * sample_time_us * 1e-6
        self.__check_dwell(dwell, "ADF trace")
        with self.__lock:
            position = self.__parked_position()
            context = self.scan_frame
            started = time.time()
            clock_started = self.__clock_now()
            with self.__device_scans((channel,), "an ADF trace with the probe parked") as device:
                counts = self.__spot_scan(device, position, int(samples), sample_time_us)
            duration = time.time() - started
            clock_ended = self.__clock_now()
        metadata: dict[str, typing.Any] = {"position_nm": list(position), "scan_frame": context.to_dict()}
        if clock_started is not None and clock_ended is not None:
            metadata[ACQUISITION_CLOCK_KEY] = [clock_started, clock_ended]
        trace = xdata_builders.trace_xdata(counts, sample_time_us, channel=channel, metadata=metadata)
        return Measurement.of({channel: trace}, "adf_trace", dwell_s=dwell, beam_current_A=self.beam_current_A, blanked=self.is_blanked,
                              position_nm=position, started_at=started, duration_s=duration)

    def adf_trace_until(self, samples: int, sample_time_us: float, until: DropAlarm, *, channel: str = "HAADF") -> Measurement:
        """A parked-probe trace that ends within ``until.within_samples`` samples of the alarm.

        Swift's scan cannot stop a spot scan at a given sample, so the trace is
        streamed as short spot scans of ``within_samples + 1`` samples and the
        test runs after each: the beam leaves the column at most
        ``within_samples`` samples after the alarm sample.  Between the short
        scans the probe stays parked (a real instrument keeps dosing it then;
        the twin, whose clock is beam time, does not).  The trace, dwell and
        dose hold only the samples dwelt.
        """
        if not isinstance(until, DropAlarm):
            raise TypeError(f"until must be a DropAlarm, got {type(until).__name__}")
        if channel not in SCAN_CHANNELS:
            raise ValueError(f"unknown ADF channel {channel!r}; choose from {sorted(SCAN_CHANNELS)}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        self.__check_dwell(samples * sample_time_us * 1e-6, "ADF trace")
        piece = until.within_samples + 1
        parts: list[numpy.typing.NDArray[numpy.float64]] = []
        statistic = until.statistic
        alarmed = False
        with self.__lock:
            position = self.__parked_position()
            context = self.scan_frame
            started = time.time()
            clock_started = self.__clock_now()
            dwelt = 0
            with self.__device_scans((channel,), "an ADF trace with the probe parked") as device:
                while dwelt < samples and not alarmed:
                    n = min(piece, samples - dwelt)
                    counts = self.__spot_scan(device, position, n, sample_time_us)
                    parts.append(counts)
                    dwelt += n
                    w = until.statistics(counts, statistic)
                    alarmed = bool(numpy.any(w >= until.threshold))
                    statistic = float(w[-1])
            duration = time.time() - started
            clock_ended = self.__clock_now()
        metadata: dict[str, typing.Any] = {"position_nm": list(position), "scan_frame": context.to_dict(), "samples_asked": samples, "stopped_at_alarm": alarmed}
        if clock_started is not None and clock_ended is not None:
            metadata[ACQUISITION_CLOCK_KEY] = [clock_started, clock_ended]
        trace = xdata_builders.trace_xdata(numpy.concatenate(parts), sample_time_us, channel=channel, metadata=metadata)
        return Measurement.of({channel: trace}, "adf_trace", dwell_s=dwelt * sample_time_us * 1e-6, beam_current_A=self.beam_current_A,
                              blanked=self.is_blanked, position_nm=position, started_at=started, duration_s=duration)

    @contextlib.contextmanager
    def __device_scans(self, channels: typing.Sequence[str], what: str) -> typing.Iterator[scan_base.ScanDevice]:
        """The scan device with only ``channels`` enabled, for frames read outside Swift's document.

        Surveys and parked-probe traces are read from the scan device itself,
        not recorded through the scan's hardware source: a recording binds to
        the scan's data items, so every frame made Swift reload and rewrite the
        "Scan" item, rebuild the scan control panel's thumbnails and redraw the
        probe graphic on the UI thread (hundreds of short spot scans per
        target in a vacancy line stalled the window for up to 2 s), and the
        changed "Scan" item re-sorted the data panel, which moved the user's
        selection onto another item.  The device's channels are put back
        afterwards; ``make_safe`` cancels a frame in flight (Swift's abort
        does not know it).
        """
        if self.__scan.is_playing or self.__scan.is_recording:
            raise InstrumentError(f"the scan is running, so the experiment cannot take {what}; stop the scan (Scan ▸ Stop) and try again")
        device = self.__scan.scan_device
        enabled = tuple(device.channels_enabled)
        for name, index in SCAN_CHANNELS.items():
            device.set_channel_enabled(index, name in channels)
        self.__spot_cancelled = False
        self.__spot_device = device
        try:
            yield device
        finally:
            self.__spot_device = None
            for index, on in enumerate(enabled):
                device.set_channel_enabled(index, on)

    def __read_frame(self, device: scan_base.ScanDevice, fp: scan_base.ScanFrameParameters, channels: int, what: str) -> list[numpy.typing.NDArray[typing.Any]]:
        """Scan one frame of ``fp`` on ``device`` and return a copy of each enabled channel's data, in the device's channel order."""
        device.set_frame_parameters(fp)
        pixels = fp.pixel_size.height * fp.pixel_size.width
        frame_number: int | None = device.start_frame(False)
        skip = 0
        deadline = time.time() + 5.0 + 10.0 * pixels * fp.pixel_time_us * 1e-6
        try:
            while True:
                elements, complete, bad_frame, _, frame_number, skip = device.read_partial(frame_number, skip)
                if complete or bad_frame:
                    break
                if time.time() > deadline:
                    raise InstrumentError(f"the scan device did not finish the {what} ({fp.pixel_size.height} x {fp.pixel_size.width} pixels) in time; it was abandoned")
        finally:
            device.stop()
        if self.__spot_cancelled:
            raise InstrumentError(f"the {what} was cut short: the beam was made safe (stopped or paused) while it ran")
        if bad_frame or len(elements) < channels:
            raise InstrumentError(f"the {what} returned {len(elements)} of {channels} channel(s) (the scan was aborted)")
        return [numpy.array(element["data"]).reshape(fp.pixel_size.height, fp.pixel_size.width) for element in elements[:channels]]

    def __spot_scan(self, device: scan_base.ScanDevice, position: Position, samples: int, sample_time_us: float) -> numpy.typing.NDArray[numpy.float64]:
        """One spot scan of ``samples`` samples at ``position``: the probe stays on the point while the electronics clock out ADF counts.

        The spot scan is not made the current frame: the scan context, and
        with it every probe fraction, stays that of the survey.
        """
        fp = self.__scan.get_current_frame_parameters()
        fp.pixel_size = Geometry.IntSize(height=1, width=samples)
        fp.fov_nm = _SPOT_FOV_NM
        fp.center_nm = Geometry.FloatPoint(y=position[0], x=position[1])
        fp.rotation_rad = 0.0
        fp.pixel_time_us = sample_time_us
        fp.subscan_pixel_size = None
        fp.subscan_fractional_size = None
        fp.subscan_fractional_center = None
        return self.__read_frame(device, fp, 1, "ADF trace")[0].astype(float).reshape(-1)

    def blank(self) -> None:
        self.__stem.SetVal("C_Blank", 1.0)

    def unblank(self) -> None:
        self.__stem.SetVal("C_Blank", 0.0)

    def make_safe(self) -> None:
        # Order matters: blank first, so the sample is protected even if one
        # of the aborts below hangs or raises.
        for step in (self.blank, self.__abort_all, self.__unpark):
            try:
                step()
            except Exception:  # make_safe must never raise: it runs on error paths
                _logger.exception("make_safe: %s failed", getattr(step, "__name__", step))

    def __abort_all(self) -> None:
        spot = self.__spot_device
        if spot is not None:
            self.__spot_cancelled = True
            spot.cancel()  # a parked-probe trace read from the scan device ends at once
        for camera in (self.__eels, self.__ronchigram):
            if camera is not None:
                camera.acquire_sequence_cancel()  # the cameras' sequence acquisition (on usim a no-op: the exposure ends by itself)
        for source in (self.__eels, self.__ronchigram, self.__scan):
            if source is not None and source.is_recording:
                source.abort_recording()

    def __unpark(self) -> None:
        was_parked = self.__stem.probe_position is not None
        self.__stem.probe_position = None
        if not was_parked or threading.current_thread() is threading.main_thread():
            return
        # Swift's probe graphic follows the probe on the UI thread and writes its own position back: a park still on
        # its way there parks the probe again just after this (seen in the real window under load), so look again
        deadline = time.monotonic() + UNPARK_SETTLE_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if self.__stem.probe_position is not None:
                _logger.info("make_safe: the probe was parked again by a late update of Swift's probe graphic; unparked it")
                self.__stem.probe_position = None


def measure_stage_sign(microscope: SwiftMicroscope, *, step_fraction: float = 0.2, frame: ScanFrame | None = None, pixel_time_us: float = 2.0) -> float:
    """Which way the instrument's stage control moves the view: the ``stage_control_sign`` to pass to :class:`SwiftMicroscope`.

    Surveys the field, moves the stage by ``step_fraction`` of the field in x
    through ``microscope`` (whose sign is assumed), surveys again and measures
    how the image content moved; the stage goes back afterwards and the beam
    is blanked.  Take it on a feature-rich area: on a blank one the shift is
    not measurable and an :class:`InstrumentError` says so.

    Returns
    -------
    float
        ``-1.0`` or ``+1.0``: the sign to use.  It equals ``microscope``'s own
        sign when that is right.
    """
    from nion_autoem_targeting.drift import measure_shift

    used = frame or microscope.scan_frame
    step_nm = step_fraction * used.fov_nm
    start = microscope.stage_position_nm
    microscope.unblank()
    try:
        before = numpy.asarray(microscope.survey(used, pixel_time_us=pixel_time_us).xdata.data, dtype=float)
        microscope.move_stage((start[0], start[1] + step_nm))
        after = numpy.asarray(microscope.survey(used, pixel_time_us=pixel_time_us).xdata.data, dtype=float)
    finally:
        microscope.blank()
        microscope.move_stage(start)
    _, dx_nm = measure_shift(before, after, used.pixel_size_nm)
    if not 0.5 * step_nm < abs(dx_nm) < 1.5 * step_nm:
        raise InstrumentError(f"moving the stage by {step_nm:.3g} nm moved the image by {dx_nm:.3g} nm; choose an area with features (and no drift) and try again")
    # The protocol wants the view to move onto the commanded point: content then shifts by -step.
    return microscope.stage_control_sign * (-1.0 if dx_nm > 0 else 1.0)


def _checked_limits(limits: StageLimits) -> StageLimits:
    """``limits`` as floats, or ValueError saying what a stage range must look like."""
    try:
        (y_min, y_max), (x_min, x_max) = ((float(limits[0][0]), float(limits[0][1])), (float(limits[1][0]), float(limits[1][1])))
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"stage_limits_nm must be ((y_min, y_max), (x_min, x_max)) in nm, got {limits!r}") from e
    if not all(math.isfinite(v) for v in (y_min, y_max, x_min, x_max)) or y_min > y_max or x_min > x_max:
        raise ValueError(f"stage_limits_nm must be finite ranges with min <= max, ((y_min, y_max), (x_min, x_max)) in nm, got {limits!r}")
    return (y_min, y_max), (x_min, x_max)


def _checked_position(position_nm: Position, limits: StageLimits) -> Position:
    """``position_nm`` as floats if it lies within ``limits``; otherwise ValueError naming the limits."""
    (y_min, y_max), (x_min, x_max) = limits
    try:
        if len(position_nm) != 2:
            raise ValueError("not a pair")
        y, x = float(position_nm[0]), float(position_nm[1])
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"a stage position must be a (y, x) pair in nm, got {position_nm!r}") from e
    if not (math.isfinite(y) and math.isfinite(x)):
        raise ValueError(f"a stage position must be a finite (y, x) in nm within the stage limits y in [{y_min:.6g}, {y_max:.6g}] nm, "
                         f"x in [{x_min:.6g}, {x_max:.6g}] nm; got {position_nm!r}")
    if not (y_min <= y <= y_max and x_min <= x <= x_max):
        raise ValueError(f"stage position ({y:.6g}, {x:.6g}) nm is outside the stage limits y in [{y_min:.6g}, {y_max:.6g}] nm, "
                         f"x in [{x_min:.6g}, {x_max:.6g}] nm; choose a position inside them (or build the microscope with wider stage_limits_nm)")
    return y, x
