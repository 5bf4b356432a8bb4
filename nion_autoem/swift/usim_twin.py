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
* usim calls the generator once per enabled channel for the same frame; the
  twin renders all enabled channels on the first call and serves the rest
  from that rendering, so a frame is dosed once.
"""

from __future__ import annotations

import gettext
import logging
import threading
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.device_kit import CameraDevice
from nion.device_kit import InstrumentDevice as DeviceKitInstrument
from nion.device_kit import ScanDevice as DeviceKitScan
from nion.instrumentation import camera_base
from nion.instrumentation import scan_base
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
#: Scans with at most this many pixels (or a single line) are simulated dwell by dwell.
DWELL_SCAN_MAX_PIXELS = 4096
#: ... and only within this field of view (beyond it the probe-by-column bookkeeping grows too large).
DWELL_SCAN_MAX_FOV_NM = 5.0


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
    """Beam current and blanking as the instrument's controls say now."""
    controls = typing.cast(InstrumentDevice.Instrument, instrument)
    current = controls.get_value("BeamCurrent")
    blank = controls.get_value("C_Blank")
    return ProbeConditions(float(current) if current is not None else 200e-12, bool(blank))


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
        key = (twin.title, size.height, size.width, scan_frame_parameters.fov_nm, center.y, center.x, scan_frame_parameters.rotation_rad, scan_frame_parameters.pixel_time_us)
        with self.__lock:
            if self.__pending and self.__pending_key == key:
                # A later channel of the frame rendered on the first call.
                return self.__pending.pop(0)[1]
            enabled = [i for i, on in enumerate(self.__scan_device.channels_enabled) if on] if self.__scan_device else [0]
            enabled = enabled or [0]
            frame = ScanFrame((size.height, size.width), float(scan_frame_parameters.fov_nm), (center.y, center.x), float(scan_frame_parameters.rotation_rad))
            twin.stage_offset_nm = stage_offset_nm(instrument)
            probe = probe_conditions(instrument)
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


def _parked_position_nm(scan_context: stem_controller.ScanContext, probe_position: Geometry.FloatPoint | None) -> tuple[float, float]:
    # usim's default (probe never placed) is the middle of the scan.
    fraction = probe_position if probe_position is not None else Geometry.FloatPoint(0.5, 0.5)
    size = scan_context.size
    if not size or not scan_context.fov_nm:
        return 0.0, 0.0
    center = Geometry.FloatPoint.make(scan_context.center_nm) if scan_context.center_nm else Geometry.FloatPoint()
    frame = ScanFrame((size.height, size.width), float(scan_context.fov_nm), (center.y, center.x), float(scan_context.rotation_rad or 0.0))
    nm = frame.fraction_to_nm((fraction.y, fraction.x))
    return float(nm[0]), float(nm[1])


def _parked_twin(camera: typing.Any, generator: TwinScanDataGenerator, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float,
                 scan_context: stem_controller.ScanContext, parked_probe_position: Geometry.FloatPoint | None) -> tuple[TwinSample, tuple[float, float]] | None:
    """The selected twin and the probe's scan-field position for a camera exposure, or None to let usim draw."""
    twin = generator.twin
    if twin is None:
        return None
    settings = camera._get_frame_settings(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
    twin.stage_offset_nm = stage_offset_nm(camera.instrument)
    return twin, _parked_position_nm(scan_context, settings.current_probe_position)


class TwinEELSCameraSimulator(EELSCameraSimulator.EELSCameraSimulator):
    """usim's EELS camera; with a twin selected, the spectrum comes from the twin at the probe."""

    def __init__(self, instrument: InstrumentDevice.Instrument, generator: TwinScanDataGenerator, sensor_dimensions: Geometry.IntSize, counts_per_electron: int) -> None:
        super().__init__(instrument, sensor_dimensions, counts_per_electron)
        self.__generator = generator

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float, scan_context: stem_controller.ScanContext,
                       parked_probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        parked = _parked_twin(self, self.__generator, readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        if parked is None:
            return super().get_frame_data(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        twin, position = parked
        calibrations = self.get_dimensional_calibrations(readout_area, binning_shape)
        energy = calibrations[1]
        height, width = self._sensor_dimensions.height, self._sensor_dimensions.width
        energies = energy.offset + energy.scale * numpy.arange(width)
        spectrum = twin.spectrum(position, exposure_s, probe_conditions(self.instrument), energies) * self._counts_per_electron
        # The camera sees the spectrum spread over its rows; summing rows gives the spectrum back.
        data = numpy.repeat((spectrum / height)[numpy.newaxis, :], height, axis=0)
        data = self._get_binned_data(data, binning_shape)
        return DataAndMetadata.new_data_and_metadata(data.astype(numpy.float32), intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=calibrations)


class TwinRonchigramCameraSimulator(RonchigramCameraSimulator.RonchigramCameraSimulator):
    """usim's Ronchigram camera; twins that simulate diffraction draw the frame, others let usim draw it."""

    def __init__(self, instrument: InstrumentDevice.Instrument, generator: TwinScanDataGenerator, ronchigram_shape: Geometry.IntSize, counts_per_electron: int, stage_size_nm: float) -> None:
        super().__init__(instrument, ronchigram_shape, counts_per_electron, stage_size_nm)
        self.__generator = generator

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float, scan_context: stem_controller.ScanContext,
                       parked_probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        parked = _parked_twin(self, self.__generator, readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        if parked is None:
            return super().get_frame_data(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        twin, position = parked
        shape = (max(readout_area.height // max(binning_shape.height, 1), 1), max(readout_area.width // max(binning_shape.width, 1), 1))
        pixel_mrad = self._tv_pixel_angle * 1e3 * max(binning_shape.height, 1)
        frame = twin.diffraction(position, exposure_s, probe_conditions(self.instrument), shape, pixel_mrad)
        if frame is None:
            return super().get_frame_data(readout_area, binning_shape, exposure_s, scan_context, parked_probe_position)
        calibrations = [Calibration.Calibration(offset=-pixel_mrad * 1e-3 * shape[0] / 2, scale=pixel_mrad * 1e-3, units="rad"),
                        Calibration.Calibration(offset=-pixel_mrad * 1e-3 * shape[1] / 2, scale=pixel_mrad * 1e-3, units="rad")]
        return DataAndMetadata.new_data_and_metadata((frame * self._counts_per_electron).astype(numpy.float32),
                                                     intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=calibrations)


class TwinConfiguration:
    """A usim instrument with the twin samples, shaped like usim's ``AcquisitionContextConfiguration``.

    Build it with :func:`create_configuration`.  Nothing is written to disk
    (``configuration_location`` is empty).
    """

    def __init__(self, twins: typing.Sequence[TwinSample], *, sample_index: int, clock: SimulatedClock,
                 eels_energy_offset_eV: float | None = None, eels_dispersion_eV: float | None = None) -> None:
        self.configuration_location = ""
        self.instrument_id = INSTRUMENT_ID
        self.clock = clock
        value_manager = InstrumentDevice.ValueManager()
        axis_manager = InstrumentDevice.AxisManager()
        self.scan_data_generator = TwinScanDataGenerator(twins, sample_index=sample_index)
        instrument = InstrumentDevice.Instrument(self.instrument_id, value_manager, axis_manager, self.scan_data_generator)
        if eels_energy_offset_eV is not None:
            value_manager.energy_offset_eV = eels_energy_offset_eV
        if eels_dispersion_eV is not None:
            value_manager.energy_per_channel_eV = eels_dispersion_eV
        self._instrument = instrument
        self.instrument: stem_controller.STEMController = instrument
        self._scan_module = ScanDevice.ScanModule(instrument)
        self.scan_module: scan_base.ScanModule = self._scan_module
        self.scan_data_generator.attach_scan_device(self._scan_module.device)
        self.ronchigram_camera_device_id = "usim_ronchigram_camera"
        self.eels_camera_device_id = "usim_eels_camera"
        ronchigram_simulator = TwinRonchigramCameraSimulator(instrument, self.scan_data_generator, Geometry.IntSize.make(instrument.camera_sensor_dimensions("ronchigram")),
                                                             instrument.counts_per_electron, instrument.stage_size_nm)
        self._ronchigram_camera_device = CameraDevice.Camera(self.ronchigram_camera_device_id, "ronchigram", _("uSim Ronchigram Camera"), ronchigram_simulator, instrument)
        self._ronchigram_camera_settings = CameraDevice.CameraSettings(self.ronchigram_camera_device_id)
        eels_simulator = TwinEELSCameraSimulator(instrument, self.scan_data_generator, Geometry.IntSize.make(instrument.camera_sensor_dimensions("eels")), instrument.counts_per_electron)
        self._eels_camera_device = CameraDevice.Camera(self.eels_camera_device_id, "eels", _("uSim EELS Camera"), eels_simulator, instrument)
        self._eels_camera_settings = CameraDevice.CameraSettings(self.eels_camera_device_id)
        self.ronchigram_camera_device: camera_base.CameraDevice3 = self._ronchigram_camera_device
        self.ronchigram_camera_settings: camera_base.CameraSettings = self._ronchigram_camera_settings
        self.eels_camera_device: camera_base.CameraDevice3 = self._eels_camera_device
        self.eels_camera_settings: camera_base.CameraSettings = self._eels_camera_settings
        value_manager.ronchigram_camera = self._ronchigram_camera_device
        value_manager.eels_camera = self._eels_camera_device
        self.__registered: list[tuple[typing.Any, set[str]]] = list()

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
            typing.cast(typing.Any, self.ronchigram_camera_device).camera_panel_type = "ronchigram"
            self.__register(CameraDevice.CameraModule(self.instrument_id, self._ronchigram_camera_device, self._ronchigram_camera_settings), {"camera_module"})
            typing.cast(typing.Any, self.eels_camera_device).camera_panel_type = "eels"
            self.__register(CameraDevice.CameraModule(self.instrument_id, self._eels_camera_device, self._eels_camera_settings), {"camera_module"})
            self.__register(self.scan_module, {"scan_module"})
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
        for device_id, device in ((self.ronchigram_camera_device_id, self._ronchigram_camera_device), (self.eels_camera_device_id, self._eels_camera_device)):
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
                         eels_dispersion_eV: float | None = 0.025) -> TwinConfiguration:
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
                             eels_energy_offset_eV=eels_energy_offset_eV, eels_dispersion_eV=eels_dispersion_eV)


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
        InstrumentPanel.run(configuration._instrument)
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
