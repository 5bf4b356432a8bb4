"""The instrument facade: everything an autonomous experiment asks of a STEM.

Experiments talk to a :class:`Microscope`; they never touch hardware sources,
controls or cameras themselves.  Two implementations exist:
:class:`nion_autoem.swift.microscope.SwiftMicroscope` (real Nion hardware or
nionswift-usim, through nionswift-instrumentation) and
:class:`nion_autoem.replay.ReplayMicroscope` (recorded arrays, offline).

Positions are scan-field nanometres (see :mod:`nion_autoem.geometry`).  Every
acquisition returns a :class:`Measurement` that carries the beam-on time and
the electron dose it cost, so policies and journals can count every electron.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
from nion.data import DataAndMetadata

from nion_autoem.geometry import ScanFrame

ELEMENTARY_CHARGE_C = 1.602176634e-19

Position = tuple[float, float]

MeasurementKind = typing.Literal["survey", "spectrum", "camera", "adf_trace", "none"]
"""What a measurement holds: an image, a spectrum, a camera frame, an ADF time trace, or nothing (moves, settings)."""

StageLimits = tuple[tuple[float, float], tuple[float, float]]
"""((y_min, y_max), (x_min, x_max)) of the stage, in nm."""


class InstrumentError(RuntimeError):
    """The instrument could not do what was asked; the message says why."""


class OutOfFieldError(ValueError):
    """A probe position lies outside the current scan field."""


class BeamBlankedError(InstrumentError):
    """An acquisition that needs the beam was asked for while it is blanked."""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One acquisition and what it cost.

    Parameters
    ----------
    data : mapping of str to DataAndMetadata
        The acquired data by channel name ("HAADF", "MAADF", "eels",
        "ronchigram", ...), calibrated.
    kind : str
        "survey", "spectrum", "camera" or "adf_trace".
    position_nm : tuple of float or None
        Where the probe was parked, for point acquisitions.
    frame : ScanFrame or None
        The scan geometry, for surveys and traces.
    dwell_s : float
        Beam-on time on the sample.
    dose_e : float
        Electrons delivered to the sample.
    started_at : float
        Wall-clock start (seconds since the epoch).
    duration_s : float
        Wall-clock duration, including overheads.
    """

    data: typing.Mapping[str, DataAndMetadata.DataAndMetadata]
    kind: MeasurementKind
    position_nm: Position | None = None
    frame: ScanFrame | None = None
    dwell_s: float = 0.0
    dose_e: float = 0.0
    started_at: float = 0.0
    duration_s: float = 0.0

    @classmethod
    def of(cls, data: typing.Mapping[str, DataAndMetadata.DataAndMetadata], kind: MeasurementKind, *, dwell_s: float, beam_current_A: float, blanked: bool,
           position_nm: Position | None = None, frame: ScanFrame | None = None, started_at: float = 0.0, duration_s: float = 0.0) -> Measurement:
        """The one place a measurement's dose is computed: ``beam_current_A`` for ``dwell_s``, nothing while blanked.

        Examples
        --------
        >>> m = Measurement.of({}, "spectrum", dwell_s=0.01, beam_current_A=1.602176634e-10, blanked=False)
        >>> round(m.dose_e)
        10000000
        >>> Measurement.of({}, "spectrum", dwell_s=0.01, beam_current_A=1e-10, blanked=True).dose_e
        0.0
        """
        if not (math.isfinite(dwell_s) and dwell_s >= 0):
            raise ValueError(f"dwell_s must be a finite time >= 0 s, got {dwell_s!r}")
        if not (math.isfinite(beam_current_A) and beam_current_A >= 0):
            raise ValueError(f"beam_current_A must be a finite current >= 0 A, got {beam_current_A!r}")
        dose = 0.0 if blanked else electrons(beam_current_A, dwell_s)
        return cls(data, kind, position_nm=position_nm, frame=frame, dwell_s=dwell_s, dose_e=dose, started_at=started_at, duration_s=duration_s)

    @property
    def xdata(self) -> DataAndMetadata.DataAndMetadata:
        """The first (or only) channel."""
        return next(iter(self.data.values()))

    @property
    def dose_e_per_A2(self) -> float:
        """Areal dose over the scanned area, for surveys; 0 for point acquisitions."""
        if self.frame is None:
            return 0.0
        height_nm, width_nm = self.frame.size_nm
        return self.dose_e / (height_nm * width_nm * 100.0)


def electrons(beam_current_A: float, dwell_s: float) -> float:
    """Number of electrons a beam of ``beam_current_A`` delivers in ``dwell_s``."""
    return beam_current_A * dwell_s / ELEMENTARY_CHARGE_C


#: Metadata key under which an instrument that keeps its own time (a simulator's clock) stamps each acquisition: ``[start_s, end_s]``.
ACQUISITION_CLOCK_KEY = "acquisition_clock_s"


def acquisition_time_s(measurement: Measurement) -> float:
    """When ``measurement`` ended, on the instrument's own clock if it stamped one, else on the wall clock.

    Drift is a function of the sample's time.  A simulator whose sample only
    moves while the beam is on stamps its acquisitions with that time
    (:data:`ACQUISITION_CLOCK_KEY` in the data's metadata, which the journal
    keeps), so a drift model fitted to it repeats run after run; a real
    instrument has no such stamp and the wall clock is the sample's clock.

    Examples
    --------
    >>> from nion_autoem import xdata
    >>> import numpy
    >>> trace = xdata.trace_xdata(numpy.ones(3), 100.0, metadata={ACQUISITION_CLOCK_KEY: [1.5, 1.5003]})
    >>> acquisition_time_s(Measurement({"HAADF": trace}, "adf_trace", started_at=1e9, duration_s=0.02))
    1.5003
    >>> acquisition_time_s(Measurement({}, "none", started_at=100.0, duration_s=0.5))
    100.5
    """
    for xdata in measurement.data.values():
        stamp = xdata.metadata.get(ACQUISITION_CLOCK_KEY)
        if isinstance(stamp, (list, tuple)) and len(stamp) == 2:
            return float(stamp[1])
    return measurement.started_at + measurement.duration_s


@dataclasses.dataclass(frozen=True)
class DropAlarm:
    """When a parked-probe trace should stop: a Poisson CUSUM for a drop in counts, evaluated sample by sample.

    A :class:`~nion_autoem.actions.Dwell` that carries one asks the instrument
    for :meth:`Microscope.adf_trace_until`: the beam stays on until the
    statistic ``W[n] = max(0, W[n-1] + z[n])`` first reaches ``threshold``
    (``z = x log(rate_after / rate_before) + rate_before - rate_after`` for a
    sample of ``x`` counts), and the instrument may dwell at most
    ``within_samples`` samples past that sample.

    Parameters
    ----------
    rate_before, rate_after : float
        Expected counts per sample before and after the change (``0 < rate_after < rate_before``).
    threshold : float
        Alarm threshold in nats.
    statistic : float
        The statistic carried over from the previous trace on the same column (>= 0).
    within_samples : int
        Samples the instrument may still dwell after the alarm sample (0 to 3).

    Examples
    --------
    >>> alarm = DropAlarm(400.0, 250.0, 12.0)
    >>> alarm.first_alarm([400, 410, 395, 402, 250, 240, 260])
    4
    >>> alarm.first_alarm([400, 410, 395]) is None
    True
    >>> DropAlarm.from_dict(alarm.to_dict()) == alarm
    True
    """

    rate_before: float
    rate_after: float
    threshold: float
    statistic: float = 0.0
    within_samples: int = 2

    def __post_init__(self) -> None:
        for name in ("rate_before", "rate_after", "threshold", "statistic"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"drop alarm: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 < self.rate_after < self.rate_before:
            raise ValueError(f"drop alarm: need 0 < rate_after < rate_before (counts per sample, a drop), got {self.rate_before!r} and {self.rate_after!r}")
        if self.threshold <= 0 or self.statistic < 0:
            raise ValueError(f"drop alarm: threshold must be > 0 and statistic >= 0 nats, got {self.threshold!r} and {self.statistic!r}")
        if isinstance(self.within_samples, bool) or not isinstance(self.within_samples, int) or not 0 <= self.within_samples <= 3:
            raise ValueError(f"drop alarm: within_samples must be a whole number of samples from 0 to 3, got {self.within_samples!r}")

    def statistics(self, counts: typing.Any, start: float | None = None) -> numpy.typing.NDArray[numpy.float64]:
        """The CUSUM statistic after each sample of ``counts``, starting from ``start`` (default :attr:`statistic`)."""
        x = numpy.asarray(counts, dtype=float).reshape(-1)
        slope, offset = math.log(self.rate_after / self.rate_before), self.rate_before - self.rate_after
        # Lindley's identity, as nion_autoem_targeting.PoissonCusum computes it, so both agree sample for sample.
        c = numpy.cumsum(x * slope + offset)
        c += self.statistic if start is None else start
        w: numpy.typing.NDArray[numpy.float64] = c - numpy.minimum(numpy.minimum.accumulate(c), 0.0)
        return w

    def first_alarm(self, counts: typing.Any, start: float | None = None) -> int | None:
        """Index of the first sample of ``counts`` at which the statistic reaches the threshold, or None."""
        crossed = numpy.flatnonzero(self.statistics(counts, start) >= self.threshold)
        return int(crossed[0]) if crossed.size else None

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, typing.Any]) -> DropAlarm:
        return cls(**{k: d[k] for k in ("rate_before", "rate_after", "threshold", "statistic", "within_samples") if k in d})


def cut_at_alarm(trace: typing.Any, until: DropAlarm) -> numpy.typing.NDArray[numpy.float64]:
    """The samples an instrument that stops the moment ``until`` fires has dwelt: ``trace`` up to and including the alarm sample."""
    x = numpy.asarray(trace, dtype=float).reshape(-1)
    alarm = until.first_alarm(x)
    return x if alarm is None else x[: alarm + 1]


class Microscope(typing.Protocol):
    """What an experiment may ask of a STEM.

    Implementations must make :meth:`make_safe` callable from any thread at any
    time, including while another thread is inside an acquisition: it is how a
    stop button reaches the hardware.
    """

    @property
    def name(self) -> str:
        """Human-readable instrument name, recorded in journals and metadata."""
        ...

    @property
    def scan_frame(self) -> ScanFrame:
        """Geometry of the current scan context; probe fractions refer to it."""
        ...

    @property
    def beam_current_A(self) -> float:
        """Probe current, used for dose accounting."""
        ...

    @property
    def is_blanked(self) -> bool:
        ...

    @property
    def probe_position_nm(self) -> Position | None:
        """Where the probe is parked, or None if it is not parked at a position."""
        ...

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        """Scan a frame (default: the current one) and return calibrated images.

        The frame becomes the current scan context, so later probe positions
        refer to it.
        """
        ...

    def probe_fraction(self, position_nm: Position) -> Position:
        """Fractional probe position for a scan-field position in the current context.

        Raises :class:`OutOfFieldError` if the position is outside the scan field.
        """
        ...

    def park_probe(self, position_nm: Position) -> None:
        """Park the probe at a scan-field position inside the current scan field."""
        ...

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        """An EELS spectrum at the parked probe, with its energy calibration."""
        ...

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        """A Ronchigram / 4D-STEM camera frame at the parked probe."""
        ...

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        """A time trace of the ADF signal with the probe parked where it is."""
        ...

    def adf_trace_until(self, samples: int, sample_time_us: float, until: DropAlarm, *, channel: str = "HAADF") -> Measurement:
        """Like :meth:`adf_trace`, but the beam leaves the sample within ``until.within_samples`` samples of the alarm.

        The trace holds only the samples dwelt, and the measurement's dwell
        and dose count only those.
        """
        ...

    def blank(self) -> None:
        ...

    def unblank(self) -> None:
        ...

    def make_safe(self) -> None:
        """Abort acquisitions, unpark the probe and blank the beam. Never raises."""
        ...

    # --- operator controls: field, stage, focus ---------------------------------

    def set_scan_frame(self, frame: ScanFrame) -> None:
        """Make ``frame`` the current scan context (field of view / magnification, centre, rotation) without scanning."""
        ...

    @property
    def stage_position_nm(self) -> Position:
        """Stage (y, x) in nm, through the instrument's own stage controls: the point of the sample at the centre of the scan field.

        So a frame surveyed at stage ``s`` shows the sample around ``s``, and
        ``move_stage(p)`` brings the point ``p`` into view (what a montage and
        a go-to-target rely on); an instrument whose control moves the
        specimen the other way maps its control onto this.
        """
        ...

    @property
    def stage_limits_nm(self) -> StageLimits:
        """How far the stage may travel: ((y_min, y_max), (x_min, x_max)) in nm."""
        ...

    def move_stage(self, position_nm: Position) -> None:
        """Move the stage to an absolute (y, x) in nm; raises ValueError beyond :attr:`stage_limits_nm`."""
        ...

    @property
    def defocus_nm(self) -> float:
        """Objective defocus (C10) in nm."""
        ...

    def set_defocus(self, defocus_nm: float) -> None:
        """Set the objective defocus (C10) in nm."""
        ...
