"""What every twin sample offers the simulated instrument.

The usim glue talks to samples only through :class:`TwinSample`, so a new
sample is one class in one module, and tests drive samples without Swift.

Coordinates: every position here is in *scan-field nm* (see
:mod:`nion_autoem.geometry`).  A sample's own coordinates (where its atoms or
particles sit) differ from scan-field coordinates by the stage offset (stage
position minus beam shift, as usim computes it) plus the twin's stage drift at
the moment of the measurement.

Focus: a twin is in focus when the instrument's objective defocus (C10)
equals the sample's :attr:`~SampleBase.focus_c10_nm` (plus an optional tilt
of the sample, :attr:`~SampleBase.focus_gradient_nm_per_um`).  Away from it
the probe grows as a defocused aperture-limited probe does,
``sigma_eff = sqrt(sigma0**2 + (alpha * delta_f / 2)**2)`` with the
convergence semi-angle ``alpha``, so sharpness over a defocus series peaks at
the in-focus value, which is what an autofocus looks for.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import typing

import numpy
import numpy.typing
import scipy.ndimage

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift

_NDArray = numpy.typing.NDArray[typing.Any]

ELEMENTARY_CHARGE_C = 1.602176634e-19

#: Scan channels a twin can render, in usim's channel order.
CHANNELS = ("HAADF", "MAADF", "X1", "X2")

#: Probe convergence semi-angle of an aberration-corrected STEM (30 mrad): 10 nm of defocus blurs by 0.15 nm.
CONVERGENCE_SEMI_ANGLE_RAD = 0.03


@dataclasses.dataclass(frozen=True)
class ProbeConditions:
    """The beam as the sample sees it during one acquisition.

    Parameters
    ----------
    beam_current_a : float
        Probe current in ampere (usim's ``BeamCurrent`` control, 200 pA by default).
    blanked : bool
        Beam blanked (``C_Blank``): no electrons reach the sample, so no signal and no dose.
    defocus_nm : float or None
        Objective defocus C10 in nm as the instrument reports it (usim's ``C10``
        control, 500 nm by default).  The sample compares it with its own
        in-focus value; ``None`` (an instrument without a C10 control, or a
        model driven without one) images the sample in focus.
    convergence_semi_angle_rad : float
        Probe convergence semi-angle; it sets how fast the probe grows with defocus.
    """

    beam_current_a: float = 200e-12
    blanked: bool = False
    defocus_nm: float | None = None
    convergence_semi_angle_rad: float = CONVERGENCE_SEMI_ANGLE_RAD

    def __post_init__(self) -> None:
        if not math.isfinite(self.beam_current_a) or self.beam_current_a < 0:
            raise ValueError(f"beam_current_a must be a finite current >= 0 A, got {self.beam_current_a!r}")
        if self.defocus_nm is not None and not math.isfinite(self.defocus_nm):
            raise ValueError(f"defocus_nm must be a finite C10 in nm (or None for in focus), got {self.defocus_nm!r}")
        if not math.isfinite(self.convergence_semi_angle_rad) or not 0 < self.convergence_semi_angle_rad < 0.5:
            raise ValueError(f"convergence_semi_angle_rad must be in (0, 0.5) rad (about 0.03 for a corrected STEM), got {self.convergence_semi_angle_rad!r}")

    @property
    def electrons_per_s(self) -> float:
        """Electrons per second that reach the sample (0 when blanked)."""
        return 0.0 if self.blanked else self.beam_current_a / ELEMENTARY_CHARGE_C


@typing.runtime_checkable
class TwinSample(typing.Protocol):
    """A simulated sample that reacts to the beam.

    Every method that puts electrons on the sample advances :attr:`clock` by
    the time it takes and accrues the dose.
    """

    title: str
    clock: SimulatedClock
    drift: StageDrift
    #: Stage position minus beam shift in scan-field nm; the glue keeps it current.
    stage_offset_nm: tuple[float, float]
    #: Objective C10 (nm) at which the sample's origin is in focus; the glue sets it to the instrument's C10 at start-up.
    focus_c10_nm: float
    #: Change (dy, dx) of the in-focus C10 in nm per um of sample position: a tilted or bent sample.
    focus_gradient_nm_per_um: tuple[float, float]

    def render_frame(self, frame: ScanFrame, pixel_time_us: float, probe: ProbeConditions, channels: typing.Sequence[str] = ("HAADF",)) -> dict[str, _NDArray]:
        """Raster ``frame`` once and return detector counts per channel, each of ``frame.shape``."""
        ...

    def spectrum(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, energies_eV: _NDArray) -> _NDArray:
        """Low-loss EELS counts per energy channel at a parked probe (a dwell of ``exposure_s``)."""
        ...

    def dwell(self, positions_nm: numpy.typing.ArrayLike, sample_time_s: float, probe: ProbeConditions) -> dict[str, _NDArray]:
        """Dwell at scan-field positions (N, 2) in time order; return ADF counts (N,) per channel."""
        ...

    def diffraction(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, shape: tuple[int, int], pixel_mrad: float) -> _NDArray | None:
        """A Ronchigram/CBED frame of ``shape`` at a parked probe, or ``None`` to let usim draw its own."""
        ...

    @property
    def electrons_received(self) -> float:
        """Total electrons put on this sample so far."""
        ...


class SampleBase:
    """Bookkeeping every twin shares: clock, stage drift and offset, electrons received, a lock, a seeded generator.

    Subclasses call ``super().__init__(seed=..., drift=..., clock=...)`` and
    guard their own state with ``self._lock``.
    """

    def __init__(self, *, seed: int = 0, drift: StageDrift | None = None, clock: SimulatedClock | None = None) -> None:
        self.drift = drift or StageDrift()
        self.clock = clock or SimulatedClock()
        self.stage_offset_nm: tuple[float, float] = (0.0, 0.0)
        self.focus_c10_nm = 0.0
        self.focus_gradient_nm_per_um: tuple[float, float] = (0.0, 0.0)
        self._rng = numpy.random.default_rng(seed)
        self._electrons = 0.0
        self._lock = threading.RLock()

    @property
    def electrons_received(self) -> float:
        """Total electrons put on the sample so far."""
        return self._electrons

    def _to_sample(self, position_nm: _NDArray, time_s: numpy.typing.ArrayLike) -> _NDArray:
        """Scan-field nm to the sample's own coordinates at ``time_s``."""
        return typing.cast(_NDArray, position_nm - (numpy.asarray(self.stage_offset_nm) + self.drift.offset_nm(time_s)))

    def defocus_from_focus_nm(self, probe: ProbeConditions, sample_position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """How far the probe's C10 is from focus at sample positions (..., 2): ``C10 - in-focus C10``, in nm.

        The in-focus C10 at sample position ``s`` is ``focus_c10_nm + gradient . s`` (``s`` in um).
        A probe without a C10 reading (``defocus_nm`` None) is in focus everywhere.
        """
        p = numpy.asarray(sample_position_nm, dtype=float)
        if probe.defocus_nm is None:
            return numpy.zeros(p.shape[:-1])
        in_focus = self.focus_c10_nm + (p * 1e-3) @ numpy.asarray(self.focus_gradient_nm_per_um, dtype=float)
        return typing.cast(_NDArray, probe.defocus_nm - in_focus)

    def _dwell_samples(self, positions_nm: numpy.typing.ArrayLike, sample_time_s: float, probe: ProbeConditions) -> tuple[_NDArray, float]:
        """Spend one sample of ``sample_time_s`` at each position, in order; call with ``self._lock`` held.

        Advances the clock, counts the electrons, and returns the positions in
        sample coordinates at the middle of each sample, with the electrons per sample.
        """
        p = numpy.atleast_2d(numpy.asarray(positions_nm, dtype=float))
        t0 = self.clock.advance(p.shape[0] * sample_time_s)
        electrons = probe.electrons_per_s * sample_time_s
        self._electrons += electrons * p.shape[0]
        return self._to_sample(p, t0 + (numpy.arange(p.shape[0]) + 0.5) * sample_time_s), electrons


def defocus_blur_nm(defocus_nm: numpy.typing.ArrayLike, convergence_semi_angle_rad: float = CONVERGENCE_SEMI_ANGLE_RAD) -> _NDArray:
    """Gaussian sigma (nm) that ``defocus_nm`` away from focus adds to the probe: ``alpha * |delta_f| / 2``.

    Examples
    --------
    >>> round(float(defocus_blur_nm(10.0)), 4)
    0.15
    """
    return typing.cast(_NDArray, convergence_semi_angle_rad * numpy.abs(numpy.asarray(defocus_nm, dtype=float)) / 2)


def effective_probe_sigma_nm(sigma0_nm: float, defocus_nm: numpy.typing.ArrayLike, convergence_semi_angle_rad: float = CONVERGENCE_SEMI_ANGLE_RAD) -> _NDArray:
    """Probe sigma (nm) ``defocus_nm`` away from focus: ``sqrt(sigma0**2 + (alpha * delta_f / 2)**2)``.

    Examples
    --------
    >>> round(float(effective_probe_sigma_nm(0.05, 10.0)), 4)
    0.1581
    """
    return numpy.hypot(sigma0_nm, defocus_blur_nm(defocus_nm, convergence_semi_angle_rad))


def blur_image(image: _NDArray, sigma_px: float) -> _NDArray:
    """``image`` seen through a Gaussian probe of ``sigma_px`` pixels (edges extended, not wrapped)."""
    if sigma_px < 0.05:
        return image
    return typing.cast(_NDArray, scipy.ndimage.gaussian_filter(image, sigma_px, truncate=3.5, mode="nearest"))


def sample_to_scan_field(sample: TwinSample, sample_position_nm: numpy.typing.ArrayLike, time_s: numpy.typing.ArrayLike | None = None) -> _NDArray:
    """Where points of ``sample`` appear in the scan field at ``time_s`` (default: now)."""
    t = sample.clock.now_s if time_s is None else time_s
    shift = numpy.asarray(sample.stage_offset_nm) + sample.drift.offset_nm(t)
    return typing.cast(_NDArray, numpy.asarray(sample_position_nm, dtype=float) + shift)


def scan_field_to_sample(sample: TwinSample, position_nm: numpy.typing.ArrayLike, time_s: numpy.typing.ArrayLike | None = None) -> _NDArray:
    """Which point of ``sample`` sits under scan-field ``position_nm`` at ``time_s`` (default: now)."""
    t = sample.clock.now_s if time_s is None else time_s
    shift = numpy.asarray(sample.stage_offset_nm) + sample.drift.offset_nm(t)
    return typing.cast(_NDArray, numpy.asarray(position_nm, dtype=float) - shift)


def raster_times_s(frame: ScanFrame, start_s: float, pixel_time_us: float, flyback_us: float = 0.0) -> tuple[_NDArray, float]:
    """Time at which each row of a raster starts, and the frame's duration.

    Returns
    -------
    row_start_s : ndarray, shape (rows,)
    duration_s : float
    """
    if not math.isfinite(pixel_time_us) or pixel_time_us <= 0:
        raise ValueError(f"pixel_time_us must be a positive dwell time in microseconds, got {pixel_time_us!r}")
    line_s = (frame.shape[1] * pixel_time_us + flyback_us) * 1e-6
    rows = numpy.arange(frame.shape[0])
    return start_s + rows * line_s, frame.shape[0] * line_s


def add_poisson_noise(expected: _NDArray, rng: numpy.random.Generator) -> _NDArray:
    """Counts drawn from ``expected`` (float32); cheap normal approximation where counts are large."""
    expected = numpy.clip(expected, 0.0, None)
    high = expected > 50.0
    out = numpy.empty(expected.shape, numpy.float32)
    if numpy.any(high):
        lam = expected[high]
        out[high] = numpy.rint(lam + numpy.sqrt(lam) * rng.standard_normal(lam.shape))
    low = ~high
    out[low] = rng.poisson(expected[low])
    return out
