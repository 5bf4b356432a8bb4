"""Survey, pick features, take a spectrum on each, then look closer at the best.

The smallest closed loop worth running: the survey decides where the first
spectra go, and the spectra decide where the last ones go.  It is the
foundation's demo and a template for real policies.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.data import Calibration
from nion.data import DataAndMetadata
from skimage.feature import peak_local_max

from nion_autoem.actions import Acquire
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import SubPlan
from nion_autoem.products import Display
from nion_autoem.products import Product
from nion_autoem_dkl.scalarizers import BandIntegral

_NDArray = numpy.typing.NDArray[typing.Any]


def pick_features(image: _NDArray, count: int, *, min_distance: int = 8, smoothing_px: float = 2.0) -> _NDArray:
    """The ``count`` brightest, well-separated features of an image.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        A survey image.
    count : int
        How many positions to return.
    min_distance : int
        Minimum separation in pixels.
    smoothing_px : float
        Gaussian smoothing applied first, so noise is not mistaken for features.

    Returns
    -------
    ndarray, shape (n, 2)
        (row, column) pixel positions, brightest first; ``n <= count``.  If the
        image has fewer peaks than asked for, the rest are filled from a
        regular grid so a flat field still gets sampled.

    Examples
    --------
    >>> img = numpy.zeros((32, 32)); img[8, 8] = 5; img[20, 24] = 3
    >>> pick_features(img, 2, min_distance=4).tolist()
    [[8, 8], [20, 24]]
    """
    image = numpy.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {image.shape}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not numpy.all(numpy.isfinite(image)):
        raise ValueError("image contains NaN or infinite values")
    smooth = scipy.ndimage.gaussian_filter(image, smoothing_px) if smoothing_px > 0 else image
    peaks = peak_local_max(smooth, min_distance=min_distance, num_peaks=count, exclude_border=min_distance)  # type: ignore[no-untyped-call]
    if len(peaks) < count:
        side = int(numpy.ceil(numpy.sqrt(count)))
        rows = numpy.linspace(0, image.shape[0] - 1, side + 2)[1:-1]
        cols = numpy.linspace(0, image.shape[1] - 1, side + 2)[1:-1]
        grid = numpy.array([(r, c) for r in rows for c in cols]).round().astype(int)
        extra = [g for g in grid if len(peaks) == 0 or numpy.min(numpy.hypot(*(peaks - g).T)) >= min_distance]
        peaks = numpy.concatenate([peaks.reshape(-1, 2), numpy.array(extra, dtype=int).reshape(-1, 2)])[:count]
    return typing.cast(_NDArray, peaks)


def band_intensity(spectrum: DataAndMetadata.DataAndMetadata, band_eV: tuple[float, float]) -> float:
    """Counts integrated over an energy band of a calibrated spectrum (the same integral DKL's band scalarizer takes)."""
    calibration = spectrum.dimensional_calibrations[-1]
    return float(BandIntegral((calibration.offset, calibration.scale), band_eV)(numpy.asarray(spectrum.data, dtype=float)))


class PointSpectroscopy:
    """Survey, spectra on the brightest features, then a closer look at the best one.

    Parameters
    ----------
    points : int
        Spectra on survey features.
    refine_points : int
        Extra spectra on a ring around the feature with the highest band intensity.
    exposure_ms : float
        EELS exposure per spectrum.
    band_eV : tuple of float
        Energy band whose integrated intensity scores a spectrum.
    survey_frame : ScanFrame or None
        Frame to survey; None keeps the current one.
    pixel_time_us : float or None
        Survey pixel time.
    min_distance_px : int
        Minimum separation of picked features.
    """

    name = "point-spectroscopy"
    model_version = "point-spectroscopy/1"

    def __init__(self, *, points: int = 8, refine_points: int = 4, exposure_ms: float = 20.0, band_eV: tuple[float, float] = (5.0, 40.0),
                 survey_frame: ScanFrame | None = None, pixel_time_us: float | None = None, min_distance_px: int = 8) -> None:
        if points < 1 or refine_points < 0:
            raise ValueError(f"points must be >= 1 and refine_points >= 0, got {points} and {refine_points}")
        if band_eV[1] <= band_eV[0]:
            raise ValueError(f"band_eV must be (low, high) with low < high, got {band_eV}")
        self.__points = points
        self.__refine_points = refine_points
        self.__exposure_ms = exposure_ms
        self.__band_eV = (float(band_eV[0]), float(band_eV[1]))
        self.__survey_frame = survey_frame
        self.__pixel_time_us = pixel_time_us
        self.__min_distance_px = min_distance_px
        self.__frame: ScanFrame | None = None
        self.__survey: DataAndMetadata.DataAndMetadata | None = None
        self.__planned: list[tuple[float, float]] = []
        self.__positions: list[tuple[float, float]] = []
        self.__spectra: list[_NDArray] = []
        self.__energy: Calibration.Calibration | None = None
        self.__scores: list[float] = []

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"points": self.__points, "refine_points": self.__refine_points, "exposure_ms": self.__exposure_ms, "band_eV": list(self.__band_eV),
                "survey_frame": self.__survey_frame.to_dict() if self.__survey_frame else None, "pixel_time_us": self.__pixel_time_us,
                "min_distance_px": self.__min_distance_px}

    def fraction_done(self) -> float | None:
        total = 1 + (len(self.__planned) or self.__points) + self.__refine_points
        return min((int(self.__survey is not None) + len(self.__spectra)) / total, 1.0)

    @property
    def scores(self) -> list[float]:
        return list(self.__scores)

    @property
    def positions_nm(self) -> list[tuple[float, float]]:
        return list(self.__positions)

    def messages(self) -> PlanGenerator:
        self.__survey, self.__frame, self.__planned, self.__positions, self.__spectra, self.__scores = None, None, [], [], [], []
        survey = yield Survey(self.__survey_frame, pixel_time_us=self.__pixel_time_us)
        yield Report(self.__surveyed(survey))
        yield from self.__publish()
        yield from self.__spectra_at(list(self.__planned))
        ring = self.__ring_around_best()
        yield from self.__spectra_at(ring)
        best = int(numpy.argmax(self.__scores)) if self.__scores else None
        if best is None:
            return "no spectra taken"
        y, x = self.__positions[best]
        return f"{len(self.__spectra)} spectra; the strongest band ({self.__band_eV[0]:g}–{self.__band_eV[1]:g} eV) at ({y:.3g}, {x:.3g}) nm"

    def __spectra_at(self, positions: list[tuple[float, float]]) -> SubPlan:
        for position in positions:
            yield Checkpoint()
            spectrum = yield Acquire(position, self.__exposure_ms, label=f"spectrum {len(self.__spectra) + 1}")
            yield Report(self.__measured(spectrum), fraction=self.fraction_done())
            yield from self.__publish()

    def __ring_around_best(self) -> list[tuple[float, float]]:
        assert self.__frame is not None
        if self.__refine_points == 0:
            return []
        best = self.__positions[int(numpy.argmax(self.__scores))]
        radius = self.__min_distance_px * self.__frame.pixel_size_nm / 2
        angles = numpy.linspace(0, 2 * numpy.pi, self.__refine_points, endpoint=False)
        ring = [(best[0] + radius * numpy.sin(a), best[1] + radius * numpy.cos(a)) for a in angles]
        return [(float(y), float(x)) for y, x in ring if self.__frame.contains_nm((y, x))]

    def __surveyed(self, measurement: Measurement) -> dict[str, typing.Any]:
        assert measurement.frame is not None
        self.__frame = measurement.frame
        self.__survey = measurement.xdata
        pixels = pick_features(numpy.asarray(measurement.xdata.data), self.__points, min_distance=self.__min_distance_px)
        self.__planned = [(float(y), float(x)) for y, x in self.__frame.pixel_to_nm(pixels)]
        return {"features": len(self.__planned), "dose_e_per_A2": measurement.dose_e_per_A2}

    def __measured(self, measurement: Measurement) -> dict[str, typing.Any]:
        spectrum = measurement.xdata
        score = band_intensity(spectrum, self.__band_eV)
        self.__energy = spectrum.dimensional_calibrations[-1]
        self.__spectra.append(numpy.asarray(spectrum.data, dtype=float))
        assert measurement.position_nm is not None
        self.__positions.append(measurement.position_nm)
        self.__scores.append(score)
        return {"band_intensity": score, "position_nm": list(measurement.position_nm)}

    def __publish(self) -> SubPlan:
        assert self.__frame is not None and self.__survey is not None
        fractions = tuple((float(f[0]), float(f[1])) for f in self.__frame.nm_to_fraction(numpy.array(self.__positions).reshape(-1, 2)))
        yield Publish(Product("survey", "Survey with measured points", self.__survey, points=fractions,
                              labels=tuple(str(i + 1) for i in range(len(fractions))), caption=f"{len(fractions)} spectra, numbered in the order taken"))
        if self.__spectra and self.__energy is not None:
            # a sequence: Swift shows one spectrum with a slider to browse them, zoomed around the band
            stack = DataAndMetadata.new_data_and_metadata(
                numpy.stack(self.__spectra), intensity_calibration=Calibration.Calibration(units="counts"),
                dimensional_calibrations=[Calibration.Calibration(units="spectrum"), Calibration.Calibration(self.__energy.offset, self.__energy.scale, "eV")],
                metadata={"nion_autoem": {"positions_nm": [list(p) for p in self.__positions], "band_intensity": list(self.__scores), "band_eV": list(self.__band_eV)}},
                data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 1))
            low, high = self.__band_eV
            best = int(numpy.argmax(self.__scores))
            yield Publish(Product("spectra", "Measured spectra", stack, display=Display(interval=(low - 0.5 * (high - low), high + 0.5 * (high - low))),
                                  caption=f"{len(self.__spectra)} spectra in the order taken (slider), shown around the band {low:g}-{high:g} eV; "
                                          f"the strongest is spectrum {best + 1}"))
