"""What every twin sample offers the simulated instrument.

The usim glue talks to samples only through :class:`TwinSample`, so a new
sample is one class in one module, and tests drive samples without Swift.

Coordinates: every position here is in *scan-field nm* (see
:mod:`nion_autoem.geometry`).  A sample's own coordinates (where its atoms or
particles sit) differ from scan-field coordinates by the stage offset (stage
position minus beam shift, as usim computes it) plus the twin's stage drift at
the moment of the measurement.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import typing

import numpy
import numpy.typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift

_NDArray = numpy.typing.NDArray[typing.Any]

ELEMENTARY_CHARGE_C = 1.602176634e-19

#: Scan channels a twin can render, in usim's channel order.
CHANNELS = ("HAADF", "MAADF", "X1", "X2")


@dataclasses.dataclass(frozen=True)
class ProbeConditions:
    """The beam as the sample sees it during one acquisition.

    Parameters
    ----------
    beam_current_a : float
        Probe current in ampere (usim's ``BeamCurrent`` control, 200 pA by default).
    blanked : bool
        Beam blanked (``C_Blank``): no electrons reach the sample, so no signal and no dose.
    """

    beam_current_a: float = 200e-12
    blanked: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.beam_current_a) or self.beam_current_a < 0:
            raise ValueError(f"beam_current_a must be a finite current >= 0 A, got {self.beam_current_a!r}")

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
