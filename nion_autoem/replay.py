"""`ReplayMicroscope`: the instrument facade over recorded arrays.

A survey image plus a spectrum image (y, x, energy) or a 4D dataset
(y, x, ky, kx) recorded on the same grid stand in for the microscope, so an
experiment can be developed, benchmarked or re-run offline.  Parking the probe
selects the nearest recorded scan position; nothing moves and nothing waits.
"""

from __future__ import annotations

import threading
import time
import typing

import numpy
import numpy.typing

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import Position
from nion_autoem.instrument import electrons

_NDArray = numpy.typing.NDArray[typing.Any]


class ReplayMicroscope:
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
                 datacube: _NDArray | None = None, beam_current_A: float = 50e-12, seed: int | None = None) -> None:
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
        self.__survey = survey
        self.__frame = frame
        self.__spectrum_image = None if spectrum_image is None else numpy.asarray(spectrum_image)
        self.__energy_axis = (float(energy_axis[0]), float(energy_axis[1]))
        self.__datacube = None if datacube is None else numpy.asarray(datacube)
        self.__beam_current_A = beam_current_A
        self.__rng = None if seed is None else numpy.random.default_rng(seed)
        self.__probe: Position | None = None
        self.__blanked = False
        self.__lock = threading.Lock()

    @property
    def name(self) -> str:
        return "ReplayMicroscope"

    @property
    def scan_frame(self) -> ScanFrame:
        return self.__frame

    @property
    def beam_current_A(self) -> float:
        return self.__beam_current_A

    @property
    def is_blanked(self) -> bool:
        return self.__blanked

    @property
    def probe_position_nm(self) -> Position | None:
        return self.__probe

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        if frame is not None and frame != self.__frame:
            raise ValueError(f"a replay can only serve its recorded frame {self.__frame}; got {frame}")
        if list(channels) != ["HAADF"]:
            raise ValueError(f"a replay has only the recorded HAADF channel; got {list(channels)}")
        pixel_time_us = 1.0 if pixel_time_us is None else pixel_time_us
        dwell = self.__frame.shape[0] * self.__frame.shape[1] * pixel_time_us * 1e-6
        image = xdata_builders.image_xdata(self.__survey.copy(), self.__frame, channel="HAADF")
        return Measurement({"HAADF": image}, "survey", frame=self.__frame, dwell_s=dwell, dose_e=self.__dose(dwell), started_at=time.time())

    def probe_fraction(self, position_nm: Position) -> Position:
        fy, fx = self.__frame.nm_to_fraction(position_nm)
        if not (numpy.isfinite(fy) and numpy.isfinite(fx) and 0.0 <= fy <= 1.0 and 0.0 <= fx <= 1.0):
            raise OutOfFieldError(f"probe position {position_nm} nm is outside the recorded field {self.__frame}")
        return float(fy), float(fx)

    def park_probe(self, position_nm: Position) -> None:
        self.probe_fraction(position_nm)
        self.__probe = (float(position_nm[0]), float(position_nm[1]))

    def __index(self, grid_shape: tuple[int, ...]) -> tuple[int, int]:
        if self.__probe is None:
            raise InstrumentError("the probe is not parked: call park_probe(position_nm) first")
        fy, fx = self.probe_fraction(self.__probe)
        return min(int(fy * grid_shape[0]), grid_shape[0] - 1), min(int(fx * grid_shape[1]), grid_shape[1] - 1)

    def __dose(self, dwell_s: float) -> float:
        return 0.0 if self.__blanked else electrons(self.__beam_current_A, dwell_s)

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        if self.__spectrum_image is None:
            raise InstrumentError("this replay has no spectrum image; pass spectrum_image= to record spectra")
        row, col = self.__index(self.__spectrum_image.shape)
        assert self.__probe is not None
        spectrum = xdata_builders.spectrum_xdata(self.__spectrum_image[row, col].astype(float), *self.__energy_axis,
                                                 metadata={"nion_autoem": {"position_nm": list(self.__probe), "exposure_ms": exposure_ms}})
        return Measurement({"eels": spectrum}, "spectrum", position_nm=self.__probe, dwell_s=exposure_ms * 1e-3, dose_e=self.__dose(exposure_ms * 1e-3), started_at=time.time())

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        if self.__datacube is None:
            raise InstrumentError("this replay has no 4D dataset; pass datacube= to record camera frames")
        row, col = self.__index(self.__datacube.shape)
        assert self.__probe is not None
        frame = xdata_builders.camera_xdata(self.__datacube[row, col].astype(float), metadata={"nion_autoem": {"position_nm": list(self.__probe)}})
        return Measurement({"ronchigram": frame}, "camera", position_nm=self.__probe, dwell_s=exposure_ms * 1e-3, dose_e=self.__dose(exposure_ms * 1e-3), started_at=time.time())

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        if channel != "HAADF":
            raise ValueError(f"a replay has only the recorded HAADF channel; got {channel!r}")
        if samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        row, col = self.__index(self.__survey.shape)
        assert self.__probe is not None
        level = max(float(self.__survey[row, col]), 0.0)
        with self.__lock:
            trace = self.__rng.poisson(level, samples).astype(float) if self.__rng is not None else numpy.full(samples, level)
        if self.__blanked:
            trace = numpy.zeros(samples)
        dwell = samples * sample_time_us * 1e-6
        return Measurement({channel: xdata_builders.trace_xdata(trace, sample_time_us, channel=channel)}, "adf_trace", position_nm=self.__probe,
                           dwell_s=dwell, dose_e=self.__dose(dwell), started_at=time.time())

    def blank(self) -> None:
        self.__blanked = True

    def unblank(self) -> None:
        self.__blanked = False

    def make_safe(self) -> None:
        self.__blanked = True
        self.__probe = None
