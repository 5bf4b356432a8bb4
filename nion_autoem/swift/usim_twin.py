"""Register the twin samples with nionswift-usim's simulated STEM.

This is the only twin module that imports Nion code.  It builds a usim
instrument whose scan data generator lists usim's own samples followed by the
twins (so usim's sample chooser offers them), and EELS / Ronchigram camera
simulators that ask the selected twin for spectra and diffraction frames and
fall back to usim's behaviour for usim's own samples.

Two ways in:

* :func:`create_configuration` returns an object shaped like
  ``nion.usim_device.DeviceConfiguration.AcquisitionContextConfiguration``
  (``run()`` / ``stop()`` register and unregister with ``nion.utils.Registry``),
  for headless tests and scripts, plus ``.twin`` / ``.sample(name)`` for ground truth.
* :func:`install_in_swift` swaps the stock usim components that
  ``nionswift_plugin.usim.run()`` registered for a twin configuration, and
  points usim's Simulator Instrument panel at it; :func:`uninstall_from_swift`
  puts the stock usim back.

How acquisitions map onto the twin:

* A raster of more than one line and more than 4096 pixels is a *survey*: the
  twin renders the frame at once and accrues the raster dose.
* A single-line scan (``pixel_size = (1, N)``, N <= 100000) or any scan of at
  most 4096 pixels, within a field of view of at most 5 nm, is a sequence of
  *dwells* in raster order: with a tiny field of view this is a parked-probe
  ADF time trace of N samples of ``pixel_time_us``.
* A camera exposure at the parked probe is a dwell of ``exposure_ms``.
* Dose uses the ``BeamCurrent`` control; ``C_Blank`` gives no signal and no dose.
* Focus uses the ``C10`` control: the twins are in focus at the C10 the
  instrument had at start-up (or ``focus_c10_nm``), and blur away from it.
* The stage is usim's: ``stage_position_m`` minus the beam shift (plus usim's
  drift) moves the sample in the scan field, as for usim's own samples.
* The twins' clock advances only while the beam is on (see
  :mod:`nion_autoem.twin.clock`); :meth:`TwinConfiguration.run` registers it
  as the ``acquisition_clock`` component, and ``SwiftMicroscope`` stamps every
  survey and trace with it, so a drift model fitted to the stamps repeats.
* usim calls the generator once per enabled channel for the same frame; the
  twin renders all enabled channels on the first call and serves the rest
  from that rendering, so a frame is dosed once.
"""

from __future__ import annotations

import gettext
import logging
import math
import threading
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.device_kit import CameraDevice
from nion.device_kit import InstrumentDevice as DeviceKitInstrument
from nion.device_kit import ScanDevice as DeviceKitScan
from nion.instrumentation import stem_controller
from nion.usim_device import EELSCameraSimulator
from nion.usim_device import InstrumentDevice
from nion.usim_device import RonchigramCameraSimulator
from nion.usim_device import SampleSimulator
from nion.usim_device import ScanDevice
from nion.utils import Geometry
from nion.utils import Observable
from nion.utils import Registry

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import catalog
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.sample import CHANNELS
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem.twin.sample import TwinSample

_NDArray = numpy.typing.NDArray[typing.Any]
_ = gettext.gettext

INSTRUMENT_ID = "usim_stem_controller"
#: Registry type under which the twin's simulated clock is registered (the name SwiftMicroscope looks up).
ACQUISITION_CLOCK_COMPONENT = "acquisition_clock"
#: Scans with at most this many pixels (or a single line) are simulated dwell by dwell.
DWELL_SCAN_MAX_PIXELS = 4096
#: ... and only within this field of view (beyond it the probe-by-column bookkeeping grows too large).
DWELL_SCAN_MAX_FOV_NM = 5.0
# usim controls that move the sample under the beam (beam_shift_m follows CSH).
_STAGE_CONTROLS = frozenset({"stage_position_m", "beam_shift_m", "CSH"})


class TwinSampleEntry(SampleSimulator.Sample):
    """A twin as an entry of usim's sample list.

    usim's camera simulators read ``sample.title``, ``sample.features`` and
    call ``sample.plot_features``; a twin has no usim features, so usim's own
    fallbacks see vacuum.
    """

    def __init__(self, twin: TwinSample) -> None:
        self.twin = twin

    @property
    def title(self) -> str:
        return self.twin.title

    @property
    def features(self) -> list[SampleSimulator.Feature]:
        return list()

    def plot_features(self, data: _NDArray, offset_m: Geometry.FloatPoint, fov_size_nm: Geometry.FloatSize, extra_nm: Geometry.FloatPoint,
                      center_nm: Geometry.FloatPoint, used_size: Geometry.IntSize) -> None:
        pass


def probe_conditions(instrument: DeviceKitInstrument.Instrument) -> ProbeConditions:
    """Beam current, blanking and objective defocus as the instrument's controls say now.

    ``BeamCurrent`` (A), ``C_Blank`` and ``C10`` (m) are read through the
    instrument's public ``get_value``; the defocus is passed on in nm.
    """
    controls = typing.cast(InstrumentDevice.Instrument, instrument)
    current = controls.get_value("BeamCurrent")
    blank = controls.get_value("C_Blank")
    c10_m = controls.get_value("C10")
    return ProbeConditions(float(current) if current is not None else 200e-12, bool(blank),
                           defocus_nm=float(c10_m) * 1e9 if c10_m is not None else None)


def stage_offset_nm(instrument: DeviceKitInstrument.Instrument) -> tuple[float, float]:
    """usim's sample offset (stage position - beam shift + usim drift) in scan-field nm."""
    value_manager = typing.cast(InstrumentDevice.ValueManager, instrument.value_manager)
    offset = value_manager.actual_offset_m
    return offset.y * 1e9, offset.x * 1e9


class TwinScanDataGenerator(Observable.Observable, DeviceKitScan.ScanDataGeneratorLike):
    """usim's scan data generator with the twin samples appended to its sample list.

    Parameters
    ----------
    twins : sequence of TwinSample
        Samples appended after usim's own three.
    sample_index : int
        Initially selected entry of :attr:`sample_titles`.
    """

    def __init__(self, twins: typing.Sequence[TwinSample], *, sample_index: int = 0) -> None:
        super().__init__()
        self.stage_size_nm = 1000
        # usim's own samples stay behind usim's own generator, driven through its public sample_index.
        self.__usim_generator = InstrumentDevice.ScanDataGenerator()
        self.__usim_count = len(self.__usim_generator.sample_titles)
        self.__entries = [TwinSampleEntry(twin) for twin in twins]
        self.__sample_index = 0
        self.__scan_device: DeviceKitScan.Device | None = None
        self.__lock = threading.Lock()
        self.__pending_key: tuple[typing.Any, ...] | None = None
        self.__pending: list[tuple[int, _NDArray]] = list()
        self.sample_index = sample_index

    def attach_scan_device(self, scan_device: DeviceKitScan.Device) -> None:
        """Tell the generator which device calls it, so it knows the enabled channels of a frame."""
        self.__scan_device = scan_device

    @property
    def sample_titles(self) -> list[str]:
        return self.__usim_generator.sample_titles + [entry.title for entry in self.__entries]

    @property
    def sample_index(self) -> int:
        return self.__sample_index

    @sample_index.setter
    def sample_index(self, value: int) -> None:
        if not 0 <= int(value) < len(self.sample_titles):
            raise ValueError(f"sample_index must be in [0, {len(self.sample_titles) - 1}] (one of {self.sample_titles}), got {value!r}")
        self.__sample_index = int(value)
        if self.__sample_index < self.__usim_count:
            self.__usim_generator.sample_index = self.__sample_index
        self.notify_property_changed("sample_index")

    @property
    def sample(self) -> SampleSimulator.Sample:
        """The selected entry as usim's cameras expect it."""
        if self.__sample_index < self.__usim_count:
            return self.__usim_generator.sample
        return self.__entries[self.__sample_index - self.__usim_count]

    @property
    def twin(self) -> TwinSample | None:
        """The selected twin sample, or ``None`` when one of usim's own samples is selected."""
        sample = self.sample
        return sample.twin if isinstance(sample, TwinSampleEntry) else None

    @property
    def twins(self) -> list[TwinSample]:
        return [entry.twin for entry in self.__entries]

    def generate_scan_data(self, instrument: DeviceKitInstrument.Instrument, scan_frame_parameters: DeviceKitScan.ScanFrameParameters) -> numpy.typing.NDArray[numpy.float32]:
        twin = self.twin
        if twin is None:
            return self.__usim_generator.generate_scan_data(instrument, scan_frame_parameters)
        size = Geometry.IntSize.make(scan_frame_parameters.pixel_size)
        center = Geometry.FloatPoint.make(scan_frame_parameters.center_nm)
        # The stage, beam shift and focus are read per frame, so moving the stage or changing C10
        # between frames is what the next frame shows.
        offset = stage_offset_nm(instrument)
        probe = probe_conditions(instrument)
        # They belong to the key too: a left-over channel of an aborted frame must not be
        # served for a frame taken after a stage move or a focus change.
        key = (twin.title, size.height, size.width, scan_frame_parameters.fov_nm, center.y, center.x, scan_frame_parameters.rotation_rad,
               scan_frame_parameters.pixel_time_us, offset, probe)
        with self.__lock:
            if self.__pending and self.__pending_key == key:
                # A later channel of the frame rendered on the first call.
                return self.__pending.pop(0)[1]
            enabled = [i for i, on in enumerate(self.__scan_device.channels_enabled) if on] if self.__scan_device else [0]
            enabled = enabled or [0]
            frame = ScanFrame((size.height, size.width), float(scan_frame_parameters.fov_nm), (center.y, center.x), float(scan_frame_parameters.rotation_rad))
            twin.stage_offset_nm = offset
            pixel_time_us = float(scan_frame_parameters.pixel_time_us)
            names = [CHANNELS[i] if i < len(CHANNELS) else "" for i in enabled]
            n_pixels = size.height * size.width
            if (size.height == 1 or n_pixels <= DWELL_SCAN_MAX_PIXELS) and frame.fov_nm <= DWELL_SCAN_MAX_FOV_NM and n_pixels <= 100_000:
                positions = frame.pixel_grid_nm().reshape(-1, 2)
                trace = twin.dwell(positions, pixel_time_us * 1e-6, probe)
                data = [numpy.asarray(trace.get(name, numpy.zeros(len(positions))), numpy.float32).reshape(size.height, size.width) for name in names]
            else:
                rendered = twin.render_frame(frame, pixel_time_us, probe, [name for name in names if name])
                data = [rendered.get(name, numpy.zeros((size.height, size.width), numpy.float32)) for name in names]
            self.__pending_key = key
            self.__pending = list(zip(enabled[1:], data[1:]))
            return data[0]


def _context_frame(scan_context: stem_controller.ScanContext) -> ScanFrame | None:
    size = scan_context.size
    if not size or not scan_context.fov_nm:
        return None
    center = Geometry.FloatPoint.make(scan_context.center_nm) if scan_context.center_nm else Geometry.FloatPoint()
    return ScanFrame((size.height, size.width), float(scan_context.fov_nm), (center.y, center.x), float(scan_context.rotation_rad or 0.0))


def camera_probe_position_nm(instrument: DeviceKitInstrument.Instrument, scan_context: stem_controller.ScanContext,
                             parked_probe_position: Geometry.FloatPoint | None) -> tuple[float, float]:
    """Where the probe is, in scan-field nm, while a camera exposes.

    usim's rules for its own cameras, from public state only: a parked probe
    sits at ``parked_probe_position`` (a fraction of ``scan_context``); during
    a scan (a synchronized spectrum image) it is where the scan device has
    taken it; otherwise, as when the probe was never placed, at the middle of
    the scan.
    """
    frame = _context_frame(scan_context)
    if frame is None:
        return 0.0, 0.0
    fraction = Geometry.FloatPoint(0.5, 0.5)
    if instrument.probe_state == "parked" and parked_probe_position is not None:
        fraction = parked_probe_position
    elif instrument.probe_state == "scanning":
        scan = instrument.scan_controller
        device = scan.scan_device if scan is not None else None
        # Between frames the device reports a meaningless (0, 0); an exposure then falls back to the middle, as when idle.
        if isinstance(device, DeviceKitScan.Device) and device.is_scanning:
            fraction = _scanning_fraction(frame, device.current_probe_position)
    nm = frame.fraction_to_nm((fraction.y, fraction.x))
    return float(nm[0]), float(nm[1])


def _scanning_fraction(frame: ScanFrame, device_position: Geometry.FloatPoint) -> Geometry.FloatPoint:
    """The fraction of ``frame`` at the centre of the pixel the scan device is on.

    usim's scan device reports its probe as ``0.5 + rotate(corner + centre / fov, rotation)``,
    with ``corner`` the current pixel's top-left corner as a fraction of the
    scan, less 0.5; undo the rotation and the centre, and move to the pixel centre.
    """
    relative = (device_position - Geometry.FloatPoint(0.5, 0.5)).rotate(-frame.rotation_rad)
    return Geometry.FloatPoint(y=relative.y - frame.center_nm[0] / frame.fov_nm + 0.5 + 0.5 / frame.shape[0],
                               x=relative.x - frame.center_nm[1] / frame.fov_nm + 0.5 + 0.5 / frame.shape[1])


def _parked_twin(instrument: DeviceKitInstrument.Instrument, generator: TwinScanDataGenerator, scan_context: stem_controller.ScanContext,
                 parked_probe_position: Geometry.FloatPoint | None) -> tuple[TwinSample, tuple[float, float]] | None:
    """The selected twin and the probe's scan-field position for a camera exposure, or None to let usim draw."""
    twin = generator.twin
    if twin is None:
        return None
    twin.stage_offset_nm = stage_offset_nm(instrument)
    return twin, camera_probe_position_nm(instrument, scan_context, parked_probe_position)


def bin_camera_frame(data: _NDArray, binning_shape: Geometry.IntSize) -> _NDArray:
    """Sum ``binning_shape`` blocks of a camera frame, dropping rows and columns that do not fill a block (as usim does)."""
    bh, bw = max(binning_shape.height, 1), max(binning_shape.width, 1)
    rows, cols = data.shape[0] // bh, data.shape[1] // bw
    return typing.cast(_NDArray, data[:rows * bh, :cols * bw].reshape(rows, bh, cols, bw).sum(axis=(1, 3)))


def ronchigram_pixel_angle_rad(instrument: DeviceKitInstrument.Instrument, ronchigram_shape: Geometry.IntSize) -> float:
    """Angle one unbinned Ronchigram pixel subtends, by usim's formula: asin(stage size / max defocus) over the camera height."""
    return math.asin(instrument.stage_size_nm / (instrument.max_defocus * 1e9)) / ronchigram_shape.height


class TwinEELSCameraSimulator(EELSCameraSimulator.EELSCameraSimulator):
    """usim's EELS camera; with a twin selected, the spectrum comes from the twin at the probe.

    Parameters
    ----------
    instrument : InstrumentDevice.Instrument
    generator : TwinScanDataGenerator
        Says which twin is selected.
    sensor_dimensions : IntSize
        Unbinned camera rows and energy channels.
    counts_per_electron : int
        Detector gain.
    """

    def __init__(self, instrument: InstrumentDevice.Instrument, generator: TwinScanDataGenerator, sensor_dimensions: Geometry.IntSize, counts_per_electron: int) -> None:
        super().__init__(instrument, sensor_dimensions, counts_per_electron)
        self.__generator = generator
        self.__sensor_dimensions = sensor_dimensions
        self.__counts_per_electron = counts_per_electron

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float, scan_context: stem_controller.ScanContext,
                       parked_probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        parked = _parked_twin(self.instrument, self.__generator, scan_context, parked_probe_position)
        if parked is None:
            return super().get_frame_data(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        twin, position = parked
        calibrations = self.get_dimensional_calibrations(readout_area, binning_shape)
        energy = calibrations[1]
        height, width = self.__sensor_dimensions.height, self.__sensor_dimensions.width
        energies = energy.offset + energy.scale * numpy.arange(width)
        spectrum = twin.spectrum(position, exposure_s, probe_conditions(self.instrument), energies) * self.__counts_per_electron
        # The camera sees the spectrum spread over its rows; summing rows gives the spectrum back.
        data = numpy.repeat((spectrum / height)[numpy.newaxis, :], height, axis=0)
        data = bin_camera_frame(data, binning_shape)
        return DataAndMetadata.new_data_and_metadata(data.astype(numpy.float32), intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=calibrations)


class TwinRonchigramCameraSimulator(RonchigramCameraSimulator.RonchigramCameraSimulator):
    """usim's Ronchigram camera; twins that simulate diffraction draw the frame, others let usim draw it.

    Parameters
    ----------
    instrument : InstrumentDevice.Instrument
    generator : TwinScanDataGenerator
        Says which twin is selected.
    ronchigram_shape : IntSize
        Unbinned camera shape.
    counts_per_electron : int
        Detector gain.
    stage_size_nm : float
        usim's stage size, for usim's own Ronchigram.
    pixel_angle_rad : float
        Angle one unbinned camera pixel subtends (see :func:`ronchigram_pixel_angle_rad`).
    """

    def __init__(self, instrument: InstrumentDevice.Instrument, generator: TwinScanDataGenerator, ronchigram_shape: Geometry.IntSize, counts_per_electron: int,
                 stage_size_nm: float, pixel_angle_rad: float) -> None:
        super().__init__(instrument, ronchigram_shape, counts_per_electron, stage_size_nm)
        self.__generator = generator
        self.__counts_per_electron = counts_per_electron
        self.__pixel_angle_rad = pixel_angle_rad

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float, scan_context: stem_controller.ScanContext,
                       parked_probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        parked = _parked_twin(self.instrument, self.__generator, scan_context, parked_probe_position)
        if parked is None:
            return super().get_frame_data(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        twin, position = parked
        shape = (max(readout_area.height // max(binning_shape.height, 1), 1), max(readout_area.width // max(binning_shape.width, 1), 1))
        pixel_mrad = self.__pixel_angle_rad * 1e3 * max(binning_shape.height, 1)
        frame = twin.diffraction(position, exposure_s, probe_conditions(self.instrument), shape, pixel_mrad)
        if frame is None:
            return super().get_frame_data(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        calibrations = [Calibration.Calibration(offset=-pixel_mrad * 1e-3 * shape[0] / 2, scale=pixel_mrad * 1e-3, units="rad"),
                        Calibration.Calibration(offset=-pixel_mrad * 1e-3 * shape[1] / 2, scale=pixel_mrad * 1e-3, units="rad")]
        return DataAndMetadata.new_data_and_metadata((frame * self.__counts_per_electron).astype(numpy.float32),
                                                     intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=calibrations)


class TwinConfiguration:
    """A usim instrument with the twin samples, shaped like usim's ``AcquisitionContextConfiguration``.

    Build it with :func:`create_configuration`.  Nothing is written to disk
    (``configuration_location`` is empty).
    """

    def __init__(self, twins: typing.Sequence[TwinSample], *, sample_index: int, clock: SimulatedClock,
                 eels_energy_offset_eV: float | None = None, eels_dispersion_eV: float | None = None,
                 focus_c10_nm: float | None = None, focus_gradient_nm_per_um: tuple[float, float] = (0.0, 0.0)) -> None:
        self.configuration_location = ""
        self.instrument_id = INSTRUMENT_ID
        self.clock = clock
        value_manager = InstrumentDevice.ValueManager()
        axis_manager = InstrumentDevice.AxisManager()
        self.scan_data_generator = TwinScanDataGenerator(twins, sample_index=sample_index)
        #: usim's instrument (a ``STEMController``): its controls, ``scan_data_generator`` and camera geometry.
        self.instrument = InstrumentDevice.Instrument(self.instrument_id, value_manager, axis_manager, self.scan_data_generator)
        if eels_energy_offset_eV is not None:
            value_manager.energy_offset_eV = eels_energy_offset_eV
        if eels_dispersion_eV is not None:
            value_manager.energy_per_channel_eV = eels_dispersion_eV
        self.__set_focus(twins, focus_c10_nm, focus_gradient_nm_per_um)
        self.scan_module = ScanDevice.ScanModule(self.instrument)
        self.scan_data_generator.attach_scan_device(self.scan_module.device)
        self.ronchigram_camera_device_id = "usim_ronchigram_camera"
        self.eels_camera_device_id = "usim_eels_camera"
        instrument = self.instrument
        ronchigram_shape = Geometry.IntSize.make(instrument.camera_sensor_dimensions("ronchigram"))
        ronchigram_simulator = TwinRonchigramCameraSimulator(instrument, self.scan_data_generator, ronchigram_shape, instrument.counts_per_electron,
                                                             instrument.stage_size_nm, ronchigram_pixel_angle_rad(instrument, ronchigram_shape))
        self.ronchigram_camera_device = CameraDevice.Camera(self.ronchigram_camera_device_id, "ronchigram", _("uSim Ronchigram Camera"), ronchigram_simulator, instrument)
        self.ronchigram_camera_settings = CameraDevice.CameraSettings(self.ronchigram_camera_device_id)
        eels_simulator = TwinEELSCameraSimulator(instrument, self.scan_data_generator, Geometry.IntSize.make(instrument.camera_sensor_dimensions("eels")), instrument.counts_per_electron)
        self.eels_camera_device = CameraDevice.Camera(self.eels_camera_device_id, "eels", _("uSim EELS Camera"), eels_simulator, instrument)
        self.eels_camera_settings = CameraDevice.CameraSettings(self.eels_camera_device_id)
        value_manager.ronchigram_camera = self.ronchigram_camera_device
        value_manager.eels_camera = self.eels_camera_device
        self.__registered: list[tuple[typing.Any, set[str]]] = list()

        # Acquisitions read the stage anyway; following its controls as well keeps the twins'
        # ground truth right between a stage move (or beam shift) and the next acquisition.
        def stage_changed(name: str) -> None:
            if name in _STAGE_CONTROLS:
                offset = stage_offset_nm(self.instrument)
                for twin in twins:
                    twin.stage_offset_nm = offset

        self.__stage_listener = self.instrument.property_changed_event.listen(stage_changed)

    def __set_focus(self, twins: typing.Sequence[TwinSample], focus_c10_nm: float | None, focus_gradient_nm_per_um: tuple[float, float]) -> None:
        if focus_c10_nm is None:
            # The instrument starts in focus on the twins: its own C10 at start-up (500 nm on usim) is the in-focus value.
            c10_m = self.instrument.get_value("C10")
            focus_c10_nm = float(c10_m) * 1e9 if c10_m is not None else 0.0
        gradient = (float(focus_gradient_nm_per_um[0]), float(focus_gradient_nm_per_um[1]))
        if not (math.isfinite(focus_c10_nm) and all(math.isfinite(g) for g in gradient)):
            raise ValueError(f"focus_c10_nm and focus_gradient_nm_per_um must be finite (nm, and nm per um as (dy, dx)), got {focus_c10_nm!r} and {focus_gradient_nm_per_um!r}")
        for twin in twins:
            twin.focus_c10_nm = float(focus_c10_nm)
            twin.focus_gradient_nm_per_um = gradient

    @property
    def twin(self) -> TwinSample | None:
        """The twin selected in usim's sample chooser, or ``None`` for one of usim's own samples."""
        return self.scan_data_generator.twin

    @property
    def twins(self) -> dict[str, TwinSample]:
        """Every twin sample by title."""
        return {twin.title: twin for twin in self.scan_data_generator.twins}

    def sample(self, name: str) -> TwinSample:
        """The twin whose title or catalog key is ``name`` (ground truth for tests and benchmarks)."""
        for twin in self.scan_data_generator.twins:
            if name in (twin.title, catalog.key_of(twin.title)):
                return twin
        raise ValueError(f"no twin sample named {name!r}; known: {sorted(self.twins)} or keys {catalog.KEYS}")

    def select(self, sample: str | int) -> None:
        """Select a sample in the chooser by index, title or catalog key."""
        self.scan_data_generator.sample_index = _resolve_index(self.scan_data_generator.sample_titles, sample)

    def run(self) -> None:
        """Register the instrument, cameras and scan with ``nion.utils.Registry`` as usim does."""
        logging.disable(logging.CRITICAL)
        try:
            self.__register(self.instrument, {"instrument_controller", "stem_controller"})
            # Swift's camera panels look for this attribute, which usim's own configuration sets the same way.
            typing.cast(typing.Any, self.ronchigram_camera_device).camera_panel_type = "ronchigram"
            self.__register(CameraDevice.CameraModule(self.instrument_id, self.ronchigram_camera_device, self.ronchigram_camera_settings), {"camera_module"})
            typing.cast(typing.Any, self.eels_camera_device).camera_panel_type = "eels"
            self.__register(CameraDevice.CameraModule(self.instrument_id, self.eels_camera_device, self.eels_camera_settings), {"camera_module"})
            self.__register(self.scan_module, {"scan_module"})
            # The twins' sample only moves while the beam is on: acquisitions are stamped with this
            # clock (SwiftMicroscope looks it up), so drift models fit the sample's own time.
            self.__register(self.clock, {ACQUISITION_CLOCK_COMPONENT})
        finally:
            logging.disable(logging.NOTSET)

    def __register(self, component: typing.Any, types: set[str]) -> None:
        Registry.register_component(component, types)
        self.__registered.append((component, types))

    def stop(self) -> None:
        """Unregister what :meth:`run` registered, in reverse order (other instruments stay)."""
        while self.__registered:
            component, types = self.__registered.pop()
            Registry.unregister_component(component, types)

    def close(self) -> None:
        """Stop the camera threads of a configuration that was never run (or run without Swift's
        instrumentation listeners, which otherwise close the cameras when they are unregistered)."""
        for device_id, device in ((self.ronchigram_camera_device_id, self.ronchigram_camera_device), (self.eels_camera_device_id, self.eels_camera_device)):
            if Registry.get_component(f"{device_id}_device") is device:
                device.close()


def _resolve_index(titles: typing.Sequence[str], sample: str | int) -> int:
    if isinstance(sample, int):
        if not 0 <= sample < len(titles):
            raise ValueError(f"sample index must be in [0, {len(titles) - 1}], got {sample}")
        return sample
    for index, title in enumerate(titles):
        if sample in (title, catalog.key_of(title)):
            return index
    raise ValueError(f"sample must be an index, a title {list(titles)} or a key {catalog.KEYS}, got {sample!r}")


def create_configuration(sample: str | int = "mos2", *, seed: int = 0, drift_nm_per_s: tuple[float, float] = (0.0, 0.0),
                         probe_sigma_nm: float = 0.05, s_cross_section_barn: float = 5.0, line_jitter_nm: float = 0.003,
                         migration_cross_section_barn: float = 0.0, eels_energy_offset_eV: float | None = -3.0,
                         eels_dispersion_eV: float | None = 0.025, focus_c10_nm: float | None = None,
                         focus_gradient_nm_per_um: tuple[float, float] = (0.0, 0.0)) -> TwinConfiguration:
    """Build a usim instrument whose sample chooser also lists the twin samples.

    Parameters
    ----------
    sample : str or int
        Initially selected sample: an index into ``sample_titles`` (usim's
        three come first), a title, or a catalog key ("mos2", "mos2-doped",
        "plasmonic", "polar-domains").
    seed : int
        Seed of every twin's random stream; the same seed and the same
        acquisitions give the same frames, spectra and damage.
    drift_nm_per_s : (float, float)
        Stage drift (vy, vx) in scan-field nm per simulated second.
    probe_sigma_nm, s_cross_section_barn, line_jitter_nm, migration_cross_section_barn : float
        MoS2 imaging and damage parameters (probe sigma 0.05 nm = 0.12 nm FWHM,
        which resolves S2 columns next to Mo as in aberration-corrected STEM;
        migration is off by default).
    eels_energy_offset_eV, eels_dispersion_eV : float or None
        Energy axis of the EELS camera (usim's own is -20 eV, 0.5 eV/channel,
        too coarse for plasmons); ``None`` keeps usim's.  ``stem.GetVal("eels_x_offset")``
        and ``"eels_x_scale"`` report these values.
    focus_c10_nm : float or None
        Objective defocus C10 (nm) at which the twins are in focus; ``None``
        takes the instrument's own C10 at start-up (500 nm on usim), so the
        instrument starts in focus.  Away from it images and parked-probe
        signals blur as a probe of 30 mrad convergence does.
    focus_gradient_nm_per_um : (float, float)
        How the in-focus C10 changes across the sample, (dy, dx) in nm per um
        of stage travel: a tilted sample.  Zero by default.

    Returns
    -------
    TwinConfiguration
        Call ``run()`` to register it, ``stop()`` to unregister.
    """
    clock = SimulatedClock()
    twins = catalog.build_twins(seed=seed, clock=clock, drift_nm_per_s=drift_nm_per_s, probe_sigma_nm=probe_sigma_nm,
                                s_cross_section_barn=s_cross_section_barn, line_jitter_nm=line_jitter_nm,
                                migration_cross_section_barn=migration_cross_section_barn)
    titles = InstrumentDevice.ScanDataGenerator().sample_titles + [twin.title for twin in twins]
    return TwinConfiguration(twins, sample_index=_resolve_index(titles, sample), clock=clock,
                             eels_energy_offset_eV=eels_energy_offset_eV, eels_dispersion_eV=eels_dispersion_eV,
                             focus_c10_nm=focus_c10_nm, focus_gradient_nm_per_um=focus_gradient_nm_per_um)


_installed: TwinConfiguration | None = None


def _unregister_stock_usim() -> None:
    for component in list(Registry.get_components_by_type("camera_module")):
        if getattr(component, "stem_controller_id", None) == INSTRUMENT_ID:
            Registry.unregister_component(component, {"camera_module"})
    for component in list(Registry.get_components_by_type("scan_module")):
        if getattr(component, "stem_controller_id", None) == INSTRUMENT_ID:
            Registry.unregister_component(component, {"scan_module"})
    for component in list(Registry.get_components_by_type("stem_controller")):
        if getattr(component, "instrument_id", None) == INSTRUMENT_ID:
            Registry.unregister_component(component, {"instrument_controller", "stem_controller"})


def install_in_swift(configuration: TwinConfiguration | None = None, **kwargs: typing.Any) -> TwinConfiguration:
    """Replace the stock usim instrument in a running Swift with a twin-enabled one.

    Call from a plug-in's ``run()`` (which Swift calls after usim's own
    ``run()`` registered the stock usim).  Unregisters, through the public
    Registry, every component whose instrument id is ``usim_stem_controller``,
    registers ``configuration`` (default :func:`create_configuration` with
    ``kwargs``), and re-registers usim's "Simulator Instrument" panel with
    the new instrument so its sample chooser lists the twins.  Panels opened
    before the swap keep showing the old instrument until reopened.
    """
    global _installed
    if _installed is not None:
        uninstall_from_swift()
    # The stock cameras must go first: a usim camera device registers itself under its id on construction.
    _unregister_stock_usim()
    configuration = configuration or create_configuration(**kwargs)
    configuration.run()
    _installed = configuration
    try:
        from nionswift_plugin.usim import InstrumentPanel
        InstrumentPanel.run(configuration.instrument)
    except ImportError:
        pass  # usim's UI is not installed (headless): nothing to point at the new instrument.
    return configuration


def uninstall_from_swift() -> None:
    """Undo :func:`install_in_swift`: unregister the twin instrument and bring back the stock usim."""
    global _installed
    if _installed is None:
        return
    _installed.stop()
    _installed = None
    try:
        import nionswift_plugin.usim as usim_plugin
        usim_plugin.run()
    except ImportError:
        pass
