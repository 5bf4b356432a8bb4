"""`ReplayMicroscope`: the instrument facade over recorded arrays.

A survey image plus a spectrum image (y, x, energy) or a 4D dataset
(y, x, ky, kx) recorded on the same grid stand in for the microscope, so an
experiment can be developed, benchmarked or re-run offline.  Parking the probe
selects the nearest recorded scan position; nothing moves and nothing waits.

A recording has one field of view, one stage position and one focus.  The
replay may be pointed at any sub-field of the recorded survey
(:meth:`ReplayMicroscope.set_scan_frame`, or ``survey(frame)``), which it
serves by resampling the recorded image; it reports the stage where the data
were recorded and refuses to move it; it stores a defocus it is given without
changing the data.
"""

from __future__ import annotations

import math
import time
import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.data import DataAndMetadata

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.simulated import SimulatedBeam

_NDArray = numpy.typing.NDArray[typing.Any]

#: Largest defocus :meth:`ReplayMicroscope.set_defocus` accepts, in nm (+-10 um, as on the live instrument).
MAX_DEFOCUS_NM = 10_000.0
# Sub-frames may touch the recorded frame's edge; this much (as a fraction of the field) absorbs rounding.
_EDGE_TOLERANCE = 1e-9


class ReplayMicroscope(SimulatedBeam):
    """A :class:`nion_autoem.instrument.Microscope` that serves recorded data.

    Parameters
    ----------
    survey : ndarray, shape (rows, cols)
        The recorded survey image (HAADF).
    frame : ScanFrame
        The scan geometry of ``survey``.
    spectrum_image : ndarray, shape (rows', cols', channels), optional
        Spectra recorded on a (possibly coarser) grid covering the same field.
    energy_axis : tuple of float
        ``(offset_eV, scale_eV_per_channel)`` of the spectra.
    datacube : ndarray, shape (rows', cols', ky, kx), optional
        Diffraction frames recorded on a grid covering the same field.
    beam_current_A : float
        Nominal probe current for dose accounting.
    seed : int or None
        If given, ADF traces get Poisson noise from this seed; otherwise they
        repeat the survey value exactly.
    stage_position_nm : tuple of float
        Stage (y, x) in nm where the data were recorded; the replay's stage
        cannot leave it, so its limits are that single point.
    defocus_nm : float
        Objective defocus the data were recorded at, reported by :attr:`defocus_nm`.

    Examples
    --------
    >>> import numpy
    >>> from nion_autoem.geometry import ScanFrame
    >>> frame = ScanFrame((8, 8), fov_nm=4.0)
    >>> si = numpy.zeros((8, 8, 16)); si[2, 3, 5] = 1.0
    >>> scope = ReplayMicroscope(numpy.ones((8, 8)), frame, spectrum_image=si, energy_axis=(0.0, 0.5))
    >>> scope.park_probe(tuple(frame.pixel_to_nm((2, 3))))
    >>> int(scope.acquire_spectrum(10).xdata.data.argmax())
    5
    """

    def __init__(self, survey: _NDArray, frame: ScanFrame, *, spectrum_image: _NDArray | None = None, energy_axis: tuple[float, float] = (0.0, 1.0),
                 datacube: _NDArray | None = None, beam_current_A: float = 50e-12, seed: int | None = None,
                 stage_position_nm: Position = (0.0, 0.0), defocus_nm: float = 0.0) -> None:
        survey = numpy.asarray(survey, dtype=float)
        if survey.ndim != 2:
            raise ValueError(f"survey must be a 2D image, got shape {survey.shape}")
        if survey.shape != frame.shape:
            raise ValueError(f"survey shape {survey.shape} does not match the frame shape {frame.shape}")
        if not numpy.all(numpy.isfinite(survey)):
            raise ValueError("survey contains NaN or infinite values; replace them (e.g. numpy.nan_to_num) before replaying")
        if spectrum_image is not None and numpy.ndim(spectrum_image) != 3:
            raise ValueError(f"spectrum_image must be (rows, cols, channels), got shape {numpy.shape(spectrum_image)}")
        if datacube is not None and numpy.ndim(datacube) != 4:
            raise ValueError(f"datacube must be (rows, cols, ky, kx), got shape {numpy.shape(datacube)}")
        if not (len(energy_axis) == 2 and all(math.isfinite(float(v)) for v in energy_axis) and float(energy_axis[1]) > 0):
            raise ValueError(f"energy_axis must be (offset_eV, scale_eV_per_channel) with a finite offset and a positive scale, got {energy_axis!r}")
        if isinstance(beam_current_A, bool) or not isinstance(beam_current_A, (int, float, numpy.number)) or not math.isfinite(beam_current_A) or beam_current_A < 0:
            raise ValueError(f"beam_current_A must be a finite probe current >= 0 A (e.g. 50e-12 for 50 pA), got {beam_current_A!r}")
        # a replay's beam starts unblanked: the recording was made with the beam on
        super().__init__(frame, beam_current_A, blanked=False)
        self.__survey = survey
        self.__recorded_frame = frame
        self.__spectrum_image = None if spectrum_image is None else numpy.asarray(spectrum_image)
        self.__energy_axis = (float(energy_axis[0]), float(energy_axis[1]))
        self.__datacube = None if datacube is None else numpy.asarray(datacube)
        self.__rng = None if seed is None else numpy.random.default_rng(seed)
        self.__stage_nm = _finite_pair(stage_position_nm, "stage_position_nm")
        self.__defocus_nm = _checked_defocus(defocus_nm)

    @classmethod
    def from_spectrum_image(cls, spectrum_image: DataAndMetadata.DataAndMetadata, *, beam_current_A: float = 50e-12, seed: int | None = None) -> ReplayMicroscope:
        """A replay of a recorded spectrum image alone: the survey is its intensity summed over energy.

        Parameters
        ----------
        spectrum_image : DataAndMetadata
            (rows, cols, energy): two scan axes calibrated in nm (or Å, µm) and an energy axis in eV,
            e.g. a spectrum image open in Swift or read with :mod:`nion_autoem.files`.

        Raises
        ------
        ValueError
            If it is not (rows, cols, energy), or its axes are not calibrated in nm and eV.
        """
        from nion_autoem.xdata import frame_from_xdata

        shape = tuple(spectrum_image.data_shape)
        if len(shape) != 3:
            raise ValueError(f"a spectrum image must be (rows, cols, energy), got shape {shape}; choose a 3D item with two scan axes and an energy axis")
        energy = spectrum_image.dimensional_calibrations[-1]
        if energy.units != "eV" or not energy.scale:
            raise ValueError(f"the spectrum image's last axis must be an energy axis in eV, got units {energy.units!r} and scale {energy.scale!r}")
        data = numpy.asarray(spectrum_image.data, dtype=float)
        survey = DataAndMetadata.new_data_and_metadata(data.sum(axis=-1), dimensional_calibrations=list(spectrum_image.dimensional_calibrations[:2]))
        frame = frame_from_xdata(survey)  # refuses scan axes that are not calibrated in nm (or Å, µm)
        return cls(survey.data, frame, spectrum_image=data, energy_axis=(float(energy.offset), float(energy.scale)), beam_current_A=beam_current_A, seed=seed)

    @classmethod
    def from_4d(cls, datacube: DataAndMetadata.DataAndMetadata, *, survey: DataAndMetadata.DataAndMetadata | None = None, beam_current_A: float = 50e-12,
                seed: int | None = None, field_tolerance: float = 0.03) -> ReplayMicroscope:
        """A replay of a recorded 4D-STEM dataset: each parked probe gets the diffraction frame recorded nearest to it.

        Parameters
        ----------
        datacube : DataAndMetadata
            (rows, cols, ky, kx): two scan axes calibrated in nm (or Å, µm),
            then the diffraction frame, e.g. a 4D dataset open in Swift.
        survey : DataAndMetadata, optional
            The image to choose positions on, recorded over the same field
            (e.g. the HAADF image taken with the 4D dataset), any pixel count.
            By default a virtual annular dark-field image of the dataset itself:
            each frame's intensity outside its bright-field disc.
        beam_current_A, seed
            As for :class:`ReplayMicroscope`.
        field_tolerance : float
            How far (a fraction of the field) the survey's field may differ from the dataset's.

        Raises
        ------
        ValueError
            If the dataset is not (rows, cols, ky, kx) with scan axes in nm, or
            the survey is not a calibrated 2D image covering the same field.

        Examples
        --------
        >>> import numpy
        >>> from nion.data import Calibration, DataAndMetadata
        >>> cube = numpy.ones((4, 4, 8, 8)); cube[1, 2, 0, 0] = 9.0
        >>> nm = Calibration.Calibration(0.0, 1.0, "nm")
        >>> scope = ReplayMicroscope.from_4d(DataAndMetadata.new_data_and_metadata(cube, dimensional_calibrations=[nm, nm, Calibration.Calibration(), Calibration.Calibration()]))
        >>> scope.park_probe(tuple(scope.scan_frame.pixel_to_nm((1, 2)))); float(scope.acquire_camera_frame(5.0).xdata.data[0, 0])
        9.0
        """
        from nion_autoem.xdata import frame_from_xdata

        if not isinstance(datacube, DataAndMetadata.DataAndMetadata):
            raise TypeError(f"datacube must be a (rows, cols, ky, kx) DataAndMetadata with scan axes in nm, got {type(datacube).__name__}")
        shape = tuple(datacube.data_shape)
        if len(shape) != 4:
            raise ValueError(f"a 4D dataset must be (rows, cols, ky, kx), got shape {shape}; choose a 4D item with two scan axes and a diffraction frame")
        cube = numpy.asarray(datacube.data)
        scan_calibrations = list(datacube.dimensional_calibrations[:2])
        own = DataAndMetadata.new_data_and_metadata(numpy.zeros(shape[:2]), dimensional_calibrations=scan_calibrations)
        own_frame = frame_from_xdata(own)  # refuses scan axes that are not calibrated in nm (or Å, µm)
        if survey is None:
            image = virtual_annular_dark_field(cube)
            return cls(image, own_frame, datacube=cube, beam_current_A=beam_current_A, seed=seed)
        if len(tuple(survey.data_shape)) != 2:
            raise ValueError(f"survey must be a 2D image recorded over the 4D dataset's field, got shape {tuple(survey.data_shape)}")
        frame = frame_from_xdata(survey)
        for axis, (size, own_size) in enumerate(zip(frame.size_nm, own_frame.size_nm)):
            centre, own_centre = frame.center_nm[axis], own_frame.center_nm[axis]
            if abs(size - own_size) > field_tolerance * own_size or abs(centre - own_centre) > field_tolerance * own_size + own_frame.pixel_size_nm / 2:
                raise ValueError(f"survey must cover the 4D dataset's field: along axis {axis} it spans {size:.4g} nm centred on {centre:.4g} nm, "
                                 f"the dataset {own_size:.4g} nm centred on {own_centre:.4g} nm (tolerance {field_tolerance:.0%}); "
                                 f"pass the image recorded with the dataset")
        return cls(numpy.asarray(survey.data, dtype=float), frame, datacube=cube, beam_current_A=beam_current_A, seed=seed)

    @classmethod
    def from_files(cls, survey: typing.Any, spectrum_image: typing.Any | None = None, *, datacube: typing.Any | None = None,
                   survey_signal: int | str | None = None, spectrum_signal: int | str | None = None, datacube_signal: int | str | None = None,
                   beam_current_A: float = 50e-12, seed: int | None = None, stage_position_nm: Position = (0.0, 0.0), defocus_nm: float = 0.0,
                   field_tolerance: float = 0.03) -> ReplayMicroscope:
        """A replay of a recorded survey plus a spectrum image and/or a 4D dataset read from files.

        ``survey``, ``spectrum_image`` and ``datacube`` are paths (str or
        ``pathlib.Path``).  Any format :func:`nion_autoem.files.read_file` reads will do (DM3/DM4,
        EMD, HSPY, NeXus, Swift .ndata/.h5, ...).  The survey must be a 2D
        image calibrated in nm (or Å, µm); the spectrum image (rows, cols,
        energy) needs an energy axis in eV, the 4D dataset is (rows, cols, ky,
        kx).  Both must cover the survey's field of view to within
        ``field_tolerance`` (a fraction of the field).  ``*_signal`` picks a
        signal (index or title) in files holding several.

        Raises
        ------
        FileNotFoundError, ValueError
            Naming the file and the problem: unreadable, uncalibrated, of the
            wrong dimensionality, not in eV, or covering another field.
        """
        from pathlib import Path

        from nion_autoem import files

        survey_path = Path(survey)
        survey_xdata = files.read_file(survey_path, signal=survey_signal)
        if len(survey_xdata.data_shape) != 2:
            raise ValueError(f"{survey_path}: the survey must be a 2D image, got shape {tuple(survey_xdata.data_shape)}; pick a single frame with survey_signal=")
        cy, cx = survey_xdata.dimensional_calibrations
        if cy.units != "nm" or cx.units != "nm":
            raise ValueError(f"{survey_path}: the survey's axes must be calibrated in nm (or Å, µm), got {cy.units!r}/{cx.units!r}")
        if not math.isclose(cy.scale, cx.scale, rel_tol=0.01):
            raise ValueError(f"{survey_path}: the survey's pixels are not square ({cy.scale:.6g} x {cx.scale:.6g} nm); a replay needs square pixels")
        try:
            frame = xdata_builders.frame_from_xdata(survey_xdata)
        except ValueError as error:
            raise ValueError(f"{survey_path}: {error}") from error

        def covering(path: Path, xdata: typing.Any, what: str) -> None:
            calibrations = xdata.dimensional_calibrations[:2]
            for axis, (recorded, calibration, n_survey, n) in enumerate(zip(survey_xdata.dimensional_calibrations, calibrations, survey_xdata.data_shape,
                                                                            xdata.data_shape[:2])):
                if calibration.units != "nm":
                    raise ValueError(f"{path}: the {what}'s scan axes must be calibrated in nm (or Å, µm), axis {axis} is in {calibration.units!r}")
                field, own = recorded.scale * n_survey, calibration.scale * n
                start, own_start = recorded.offset - recorded.scale / 2, calibration.offset - calibration.scale / 2
                # half a pixel of slack: formats differ on whether the offset is a pixel's centre or its edge
                slack = field_tolerance * field + max(recorded.scale, calibration.scale) / 2
                if abs(own - field) > field_tolerance * field or abs(own_start - start) > slack:
                    raise ValueError(f"{path}: the {what} does not cover the survey's field ({survey_path}): along axis {axis} it spans "
                                     f"{own_start:.4g}..{own_start + own:.4g} nm, the survey {start:.4g}..{start + field:.4g} nm "
                                     f"(tolerance {field_tolerance:.0%} of the field); record both on the same scan frame")

        si = None
        energy_axis = (0.0, 1.0)
        if spectrum_image is not None:
            si_path = Path(spectrum_image)
            si_xdata = files.read_file(si_path, signal=spectrum_signal)
            descriptor = si_xdata.data_descriptor
            if len(si_xdata.data_shape) != 3 or descriptor.collection_dimension_count != 2 or descriptor.datum_dimension_count != 1:
                raise ValueError(f"{si_path}: a spectrum image must be (rows, cols, energy) with two scan and one energy axis, got shape "
                                 f"{tuple(si_xdata.data_shape)} with {descriptor.collection_dimension_count} scan and {descriptor.datum_dimension_count} signal axes")
            energy = si_xdata.dimensional_calibrations[2]
            if energy.units != "eV" or not energy.scale > 0:
                raise ValueError(f"{si_path}: the spectrum image's energy axis must be in eV with a positive dispersion, got scale {energy.scale:g} {energy.units!r}")
            covering(si_path, si_xdata, "spectrum image")
            si = si_xdata.data
            energy_axis = (float(energy.offset), float(energy.scale))
        cube = None
        if datacube is not None:
            cube_path = Path(datacube)
            cube_xdata = files.read_file(cube_path, signal=datacube_signal)
            descriptor = cube_xdata.data_descriptor
            if len(cube_xdata.data_shape) != 4 or descriptor.collection_dimension_count != 2:
                raise ValueError(f"{cube_path}: a 4D dataset must be (rows, cols, ky, kx) with two scan axes, got shape {tuple(cube_xdata.data_shape)} "
                                 f"with {descriptor.collection_dimension_count} scan axes")
            covering(cube_path, cube_xdata, "4D dataset")
            cube = cube_xdata.data
        return cls(survey_xdata.data, frame, spectrum_image=si, energy_axis=energy_axis, datacube=cube, beam_current_A=beam_current_A, seed=seed,
                   stage_position_nm=stage_position_nm, defocus_nm=defocus_nm)

    @property
    def name(self) -> str:
        return "ReplayMicroscope"

    @property
    def scan_frame(self) -> ScanFrame:
        """The current scan context: the recorded frame, or the sub-field last set or surveyed."""
        return self._frame

    @property
    def recorded_frame(self) -> ScanFrame:
        """The frame the survey was recorded with."""
        return self.__recorded_frame

    # --- scan field, stage, focus -----------------------------------------------------------------

    def __check_within_recording(self, frame: ScanFrame) -> None:
        recorded = self.__recorded_frame
        corners = frame.fraction_to_nm([(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)])
        f = recorded.nm_to_fraction(corners)
        if not numpy.all((f >= -_EDGE_TOLERANCE) & (f <= 1.0 + _EDGE_TOLERANCE)):
            h, w = recorded.size_nm
            raise ValueError(f"a replay can only serve fields inside its recorded frame ({h:.4g} x {w:.4g} nm centred on {recorded.center_nm} nm, "
                             f"rotation {recorded.rotation_rad:.4g} rad); {frame} reaches outside it: choose a smaller field of view or a centre "
                             f"closer to the recorded one")

    def set_scan_frame(self, frame: ScanFrame) -> None:
        """Make ``frame`` the current scan context; it must lie inside the recorded frame.

        Raises
        ------
        ValueError
            If any corner of ``frame`` lies outside the recorded frame.
        """
        if not isinstance(frame, ScanFrame):
            raise TypeError(f"frame must be a ScanFrame (pixels, field of view, centre, rotation), got {type(frame).__name__}")
        self.__check_within_recording(frame)
        with self._lock:
            self._frame = frame

    @property
    def stage_position_nm(self) -> Position:
        """Where the stage was when the data were recorded."""
        return self.__stage_nm

    @property
    def stage_limits_nm(self) -> StageLimits:
        """The recorded stage position as a range of one point: a replay cannot move."""
        y, x = self.__stage_nm
        return (y, y), (x, x)

    def move_stage(self, position_nm: Position) -> None:
        """Accept only the recorded stage position: a replay has no stage.

        Raises
        ------
        ValueError
            For any other (or a non-finite) position.
        """
        y, x = _finite_pair(position_nm, "a stage position")
        ry, rx = self.__stage_nm
        if not (math.isclose(y, ry, abs_tol=1e-6) and math.isclose(x, rx, abs_tol=1e-6)):
            raise ValueError(f"a replay has no stage: its data were recorded at stage ({ry:.6g}, {rx:.6g}) nm (limits {self.stage_limits_nm}), "
                             f"so it cannot move to ({y:.6g}, {x:.6g}) nm; use a live or simulated microscope to move the stage")

    @property
    def defocus_nm(self) -> float:
        """The defocus last set (initially the recorded one); it does not change the replayed data."""
        return self.__defocus_nm

    def set_defocus(self, defocus_nm: float) -> None:
        """Store a defocus for :attr:`defocus_nm`; the recorded data stay as they are.

        Raises
        ------
        ValueError
            If it is not finite or beyond +-10 um.
        """
        self.__defocus_nm = _checked_defocus(defocus_nm)

    # --- acquisitions ---------------------------------------------------------------------------

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        """The recorded survey, resampled (bilinear) onto ``frame`` or the current frame if it is a sub-field."""
        if list(channels) != ["HAADF"]:
            raise ValueError(f"a replay has only the recorded HAADF channel; got {list(channels)}")
        pixel_time_us = 1.0 if pixel_time_us is None else pixel_time_us
        if not (isinstance(pixel_time_us, (int, float)) and math.isfinite(pixel_time_us) and 0 < pixel_time_us <= 1e4):
            raise ValueError(f"pixel_time_us must be in (0, 10000] µs, got {pixel_time_us!r}")
        if frame is not None:
            self.set_scan_frame(frame)
        used = self._frame
        if used == self.__recorded_frame:
            image = self.__survey.copy()
        else:
            pixels = self.__recorded_frame.nm_to_pixel(used.pixel_grid_nm())
            image = scipy.ndimage.map_coordinates(self.__survey, [pixels[..., 0], pixels[..., 1]], order=1, mode="nearest")
        dwell = used.shape[0] * used.shape[1] * pixel_time_us * 1e-6
        return Measurement.of({"HAADF": xdata_builders.image_xdata(image, used, channel="HAADF")}, "survey", dwell_s=dwell,
                              beam_current_A=self._beam_current_A, blanked=self._blanked, frame=used, started_at=time.time())

    def probe_fraction(self, position_nm: Position) -> Position:
        # a non-finite position gets its own message before the field check, which NaN would pass silently
        _finite_pair(position_nm, "a probe position", error=OutOfFieldError)
        return super().probe_fraction(position_nm)

    def __index(self, grid_shape: tuple[int, ...]) -> tuple[int, int]:
        """The recorded grid cell under the parked probe (recorded grids cover the recorded frame)."""
        if self._probe is None:
            raise InstrumentError("the probe is not parked: call park_probe(position_nm) first")
        fy, fx = self.__recorded_frame.nm_to_fraction(self._probe)
        return min(max(int(fy * grid_shape[0]), 0), grid_shape[0] - 1), min(max(int(fx * grid_shape[1]), 0), grid_shape[1] - 1)

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        _check_positive(exposure_ms, "exposure_ms", "an EELS exposure in ms, e.g. 20")
        if self.__spectrum_image is None:
            raise InstrumentError("this replay has no spectrum image; pass spectrum_image= to record spectra")
        row, col = self.__index(self.__spectrum_image.shape)
        assert self._probe is not None
        spectrum = xdata_builders.spectrum_xdata(self.__spectrum_image[row, col].astype(float), *self.__energy_axis,
                                                 metadata={"nion_autoem": {"position_nm": list(self._probe), "exposure_ms": exposure_ms}})
        return Measurement.of({"eels": spectrum}, "spectrum", dwell_s=exposure_ms * 1e-3, beam_current_A=self._beam_current_A, blanked=self._blanked,
                              position_nm=self._probe, started_at=time.time())

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        _check_positive(exposure_ms, "exposure_ms", "a camera exposure in ms, e.g. 5")
        if self.__datacube is None:
            raise InstrumentError("this replay has no 4D dataset; pass datacube= to record camera frames")
        row, col = self.__index(self.__datacube.shape)
        assert self._probe is not None
        frame = xdata_builders.camera_xdata(self.__datacube[row, col].astype(float), metadata={"nion_autoem": {"position_nm": list(self._probe)}})
        return Measurement.of({"ronchigram": frame}, "camera", dwell_s=exposure_ms * 1e-3, beam_current_A=self._beam_current_A, blanked=self._blanked,
                              position_nm=self._probe, started_at=time.time())

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        if channel != "HAADF":
            raise ValueError(f"a replay has only the recorded HAADF channel; got {channel!r}")
        if isinstance(samples, bool) or not isinstance(samples, (int, numpy.integer)) or samples < 1:
            raise ValueError(f"samples must be a positive whole number of ADF samples, e.g. 500; got {samples!r}")
        _check_positive(sample_time_us, "sample_time_us", "a time per ADF sample in µs, e.g. 100")
        samples = int(samples)
        row, col = self.__index(self.__survey.shape)
        assert self._probe is not None
        level = max(float(self.__survey[row, col]), 0.0)
        with self._lock:
            trace = self.__rng.poisson(level, samples).astype(float) if self.__rng is not None else numpy.full(samples, level)
        if self._blanked:
            trace = numpy.zeros(samples)
        return Measurement.of({channel: xdata_builders.trace_xdata(trace, sample_time_us, channel=channel)}, "adf_trace",
                              dwell_s=samples * sample_time_us * 1e-6, beam_current_A=self._beam_current_A, blanked=self._blanked,
                              position_nm=self._probe, started_at=time.time())

    def adf_trace_until(self, samples: int, sample_time_us: float, until: DropAlarm, *, channel: str = "HAADF") -> Measurement:
        """A recorded-level trace that stops at the sample where ``until`` fires; dwell and dose count only the samples kept."""
        if not isinstance(until, DropAlarm):
            raise TypeError(f"until must be a DropAlarm, got {type(until).__name__}")
        full = self.adf_trace(samples, sample_time_us, channel=channel)
        return self._cut_trace(full, until, sample_time_us, channel, record_cut=True)


def virtual_annular_dark_field(datacube: _NDArray, *, inner_factor: float = 1.25) -> _NDArray:
    """A dark-field image of a 4D dataset: each frame's intensity outside the bright-field disc.

    The disc is where the mean frame exceeds half its maximum; the detector
    starts at ``inner_factor`` times the disc's radius around its centre.  A
    disc that fills the camera leaves no dark field: the total intensity is
    returned then.

    Parameters
    ----------
    datacube : ndarray, shape (rows, cols, ky, kx)

    Returns
    -------
    ndarray, shape (rows, cols)

    Examples
    --------
    >>> import numpy
    >>> cube = numpy.zeros((2, 2, 9, 9)); cube[..., 3:6, 3:6] = 10.0; cube[0, 1, 0, 0] = 1.0
    >>> virtual_annular_dark_field(cube).tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    cube = numpy.asarray(datacube, dtype=float)
    if cube.ndim != 4:
        raise ValueError(f"datacube must be (rows, cols, ky, kx), got shape {cube.shape}")
    mean = cube.mean(axis=(0, 1))
    disc = mean >= 0.5 * float(mean.max()) if mean.max() > 0 else numpy.ones(mean.shape, dtype=bool)
    rows, cols = numpy.indices(mean.shape)
    centre = (float(rows[disc].mean()), float(cols[disc].mean()))
    radius = math.sqrt(float(disc.sum()) / math.pi)
    outside = numpy.hypot(rows - centre[0], cols - centre[1]) > inner_factor * radius
    if not outside.any():
        return typing.cast(_NDArray, cube.sum(axis=(2, 3)))
    return typing.cast(_NDArray, cube[:, :, outside].sum(axis=-1))


class RecordedPointsMicroscope(ReplayMicroscope):
    """The signals a finished run measured, served again where they were measured: a replay without the full dataset.

    A live run records spectra or diffraction frames only at the positions it
    chose, so a replay can offer only those; parking the probe anywhere else
    and acquiring raises :class:`InstrumentError`.  Pair it with a plan that
    chooses among the recorded positions (``DKLSpectroscopy(...,
    restrict_to_nm=positions)``).

    Parameters
    ----------
    survey : ndarray, shape (rows, cols)
        The run's survey image.
    frame : ScanFrame
        Its scan geometry.
    positions_nm : (n, 2) array_like
        Where each signal was measured, (y, x) in nm.
    signals : sequence of DataAndMetadata
        One recorded spectrum or diffraction frame per position.
    tolerance_nm : float or None
        How close the parked probe must be to a recorded position; half a
        survey pixel by default.
    beam_current_A : float
        For dose accounting.

    Examples
    --------
    >>> import numpy
    >>> from nion_autoem import xdata as xdata_builders
    >>> frame = ScanFrame((8, 8), fov_nm=8.0)
    >>> scope = RecordedPointsMicroscope(numpy.ones((8, 8)), frame, [(0.5, 0.5)], [xdata_builders.camera_xdata(numpy.eye(4))])
    >>> scope.park_probe((0.6, 0.4)); float(scope.acquire_camera_frame(5.0).xdata.data.trace())
    4.0
    """

    def __init__(self, survey: _NDArray, frame: ScanFrame, positions_nm: numpy.typing.ArrayLike, signals: typing.Sequence[DataAndMetadata.DataAndMetadata],
                 *, tolerance_nm: float | None = None, beam_current_A: float = 50e-12) -> None:
        super().__init__(survey, frame, beam_current_A=beam_current_A)
        positions = numpy.asarray(positions_nm, dtype=float).reshape(-1, 2)
        if len(positions) != len(signals) or not len(signals):
            raise ValueError(f"positions_nm and signals must pair up, one position per recorded signal (at least one), got {len(positions)} and {len(signals)}")
        if not numpy.all(numpy.isfinite(positions)):
            raise ValueError("positions_nm must be finite (y, x) positions in nm")
        self.__positions = positions
        self.__signals = list(signals)
        self.__tolerance_nm = frame.pixel_size_nm / 2 if tolerance_nm is None else float(tolerance_nm)

    @classmethod
    def from_journal(cls, run_dir: str | typing.Any, *, survey: DataAndMetadata.DataAndMetadata | None = None) -> RecordedPointsMicroscope:
        """The survey and the spectra or frames of a journaled run.

        Parameters
        ----------
        run_dir : path-like
            The run's directory (its ``journal.jsonl`` and ``data/``).
        survey : DataAndMetadata, optional
            The survey, for a run that was given one instead of recording one.

        Raises
        ------
        ValueError
            If the journal holds no survey (and none is given) or no spectra or frames.
        """
        from nion_autoem.journal import read_journal
        from nion_autoem.xdata import frame_from_xdata

        record = read_journal(run_dir)
        surveys = [step for step in record.steps if step.entry.get("measurement_kind") == "survey"]
        measured = [step for step in record.steps if step.entry.get("measurement_kind") in ("spectrum", "camera") and step.entry.get("position_nm")]
        if survey is None:
            if not surveys:
                raise ValueError(f"the journal in {run_dir} holds no survey (the run was given one): pass survey= with that image")
            survey = surveys[0].load_measurement().xdata
        if not measured:
            raise ValueError(f"the journal in {run_dir} holds no spectra or diffraction frames to replay")
        frame = frame_from_xdata(survey)
        signals = [step.load_measurement().xdata for step in measured]
        positions = [step.entry["position_nm"] for step in measured]
        return cls(numpy.asarray(survey.data, dtype=float), frame, positions, signals)

    @property
    def recorded_positions_nm(self) -> _NDArray:
        """Where the signals were recorded, (n, 2) in nm."""
        return self.__positions.copy()

    def __recorded(self, exposure_ms: float) -> DataAndMetadata.DataAndMetadata:
        _check_positive(exposure_ms, "exposure_ms", "an exposure in ms, e.g. 5")
        probe = self.probe_position_nm
        if probe is None:
            raise InstrumentError("the probe is not parked: call park_probe(position_nm) first")
        distances = numpy.linalg.norm(self.__positions - numpy.asarray(probe), axis=1)
        nearest = int(numpy.argmin(distances))
        if distances[nearest] > self.__tolerance_nm:
            raise InstrumentError(f"nothing was recorded at {tuple(round(v, 3) for v in probe)} nm: the nearest of the {len(self.__positions)} recorded "
                                  f"positions is {distances[nearest]:.3g} nm away (tolerance {self.__tolerance_nm:.3g} nm); choose among the recorded positions")
        return self.__signals[nearest]

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        signal = self.__recorded(exposure_ms)
        if signal.data.ndim != 1:
            raise InstrumentError(f"this run recorded diffraction frames (shape {tuple(signal.data_shape)}), not spectra")
        return Measurement.of({"eels": signal}, "spectrum", dwell_s=exposure_ms * 1e-3, beam_current_A=self.beam_current_A, blanked=self.is_blanked,
                              position_nm=self.probe_position_nm, started_at=time.time())

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        signal = self.__recorded(exposure_ms)
        if signal.data.ndim != 2:
            raise InstrumentError(f"this run recorded spectra (shape {tuple(signal.data_shape)}), not diffraction frames")
        return Measurement.of({"ronchigram": signal}, "camera", dwell_s=exposure_ms * 1e-3, beam_current_A=self.beam_current_A, blanked=self.is_blanked,
                              position_nm=self.probe_position_nm, started_at=time.time())


def _finite_pair(value: Position, what: str, *, error: type[ValueError] = ValueError) -> Position:
    """``value`` as a (y, x) pair of floats, or ``error`` saying what was wrong."""
    try:
        if len(value) != 2:
            raise ValueError("not a pair")
        y, x = float(value[0]), float(value[1])
    except (TypeError, ValueError) as e:
        raise error(f"{what} must be a (y, x) pair in nm, got {value!r}") from e
    if not (math.isfinite(y) and math.isfinite(x)):
        raise error(f"{what} must be a finite (y, x) pair in nm, got {value!r}")
    return y, x


def _check_positive(value: float, name: str, what: str) -> None:
    """ValueError unless ``value`` is a finite number > 0; ``what`` says what a right value looks like."""
    if isinstance(value, bool) or not isinstance(value, (int, float, numpy.number)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 ({what}), got {value!r}")


def _checked_defocus(defocus_nm: float) -> float:
    if isinstance(defocus_nm, bool) or not isinstance(defocus_nm, (int, float, numpy.number)) or not math.isfinite(defocus_nm):
        raise ValueError(f"defocus must be a finite C10 in nm within +-{MAX_DEFOCUS_NM:g} nm, got {defocus_nm!r}")
    if abs(defocus_nm) > MAX_DEFOCUS_NM:
        raise ValueError(f"defocus {defocus_nm:.6g} nm is beyond the allowed +-{MAX_DEFOCUS_NM:g} nm; a focus series stays within a few hundred nm of focus")
    return float(defocus_nm)
