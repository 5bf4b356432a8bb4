"""The beam of a microscope that is not there: scan field, probe, blanker and current, kept once.

The pure microscopes (the twins in :mod:`nion_autoem.twin`, the
:class:`~nion_autoem.replay.ReplayMicroscope` and the dry run's
:class:`~nion_autoem.dry_run.PlanningMicroscope`) differ in what they return
for an acquisition, not in how they keep the beam: the scan field it scans,
where the probe is parked, whether it is blanked, its current.
:class:`SimulatedBeam` is that bookkeeping, so each of them adds only what it
measures.  It imports no Swift.
"""

from __future__ import annotations

import math
import threading

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import OutOfFieldError
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.instrument import cut_at_alarm


class SimulatedBeam:
    """Scan field, parked probe, blanker and beam current of a simulated :class:`~nion_autoem.instrument.Microscope`.

    Subclasses add the acquisitions (``survey``, ``acquire_spectrum``,
    ``adf_trace``, ...), the stage and the focus; they read and write the
    beam's state through the protected attributes ``_frame``, ``_probe``,
    ``_blanked`` and ``_beam_current_A`` and guard it with ``_lock``.

    Parameters
    ----------
    frame : ScanFrame
        The scan field at start; the probe must stay inside it.
    beam_current_A : float
        Probe current (A), for dose accounting.
    blanked : bool
        Whether the beam starts blanked.

    Examples
    --------
    >>> beam = SimulatedBeam(ScanFrame((64, 64), 20.0), 50e-12)
    >>> beam.park_probe((1.0, -2.0)); beam.unblank()
    >>> beam.probe_position_nm, beam.is_blanked
    ((1.0, -2.0), False)
    >>> beam.make_safe(); beam.probe_position_nm, beam.is_blanked
    (None, True)
    """

    def __init__(self, frame: ScanFrame, beam_current_A: float, *, blanked: bool = True) -> None:
        self._frame = frame
        self._beam_current_A = float(beam_current_A)
        self._blanked = blanked
        self._probe: Position | None = None
        # reentrant: a subclass's acquisition holds it while it parks or reads the probe
        self._lock = threading.RLock()

    @property
    def scan_frame(self) -> ScanFrame:
        """The current scan field."""
        return self._frame

    @property
    def beam_current_A(self) -> float:
        """The probe current (A)."""
        return self._beam_current_A

    @property
    def is_blanked(self) -> bool:
        """Whether the beam is blanked (no dose reaches the sample)."""
        return self._blanked

    @property
    def probe_position_nm(self) -> Position | None:
        """Where the probe is parked (scan-field nm), or None when it is not."""
        return self._probe

    def probe_fraction(self, position_nm: Position) -> Position:
        """The fractional scan-field position (0..1 along each axis) of ``position_nm``.

        Raises
        ------
        OutOfFieldError
            If the position lies outside the current scan field.
        """
        fy, fx = self._frame.nm_to_fraction(position_nm)
        if not (0.0 <= fy <= 1.0 and 0.0 <= fx <= 1.0):
            raise OutOfFieldError(self._outside_field_message(position_nm))
        return float(fy), float(fx)

    def _outside_field_message(self, position_nm: Position) -> str:
        """Why ``position_nm`` is refused; a subclass may word it for its readers."""
        return f"probe position {position_nm} nm is outside the scan field {self._frame}"

    def park_probe(self, position_nm: Position) -> None:
        """Park the probe at ``position_nm`` (scan-field nm), which must lie inside the scan field."""
        self.probe_fraction(position_nm)
        with self._lock:
            self._probe = (float(position_nm[0]), float(position_nm[1]))

    def blank(self) -> None:
        """Blank the beam."""
        self._blanked = True

    def unblank(self) -> None:
        """Unblank the beam."""
        self._blanked = False

    def make_safe(self) -> None:
        """Blank the beam and forget the parked probe: the state a stop leaves behind."""
        self._blanked = True
        self._probe = None

    def set_scan_frame(self, frame: ScanFrame) -> None:
        """Make ``frame`` the current scan field."""
        self._frame = frame

    def _cut_trace(self, full: Measurement, until: DropAlarm, sample_time_us: float, channel: str, *, record_cut: bool = False) -> Measurement:
        """``full`` (an ADF trace) cut where ``until`` fires: dwell and dose count only the samples an instrument that stops there dwelt.

        ``record_cut`` writes how many samples were asked and whether the
        alarm stopped the trace into its metadata.
        """
        asked = len(full.xdata.data)
        trace = cut_at_alarm(full.xdata.data, until)
        metadata = {"samples_asked": asked, "stopped_at_alarm": len(trace) < asked} if record_cut else None
        return Measurement.of({channel: xdata_builders.trace_xdata(trace, sample_time_us, channel=channel, metadata=metadata)}, "adf_trace",
                              dwell_s=len(trace) * sample_time_us * 1e-6, beam_current_A=self._beam_current_A, blanked=self._blanked,
                              position_nm=full.position_nm, started_at=full.started_at)


def checked_stage_position(position_nm: Position, limits_nm: StageLimits) -> Position:
    """``position_nm`` as floats, if it is finite and within ``limits_nm``.

    Raises
    ------
    ValueError
        If it is not finite or lies beyond the limits.

    Examples
    --------
    >>> checked_stage_position((1, 2), ((-5.0, 5.0), (-5.0, 5.0)))
    (1.0, 2.0)
    """
    y, x = float(position_nm[0]), float(position_nm[1])
    (y0, y1), (x0, x1) = limits_nm
    if not (math.isfinite(y) and math.isfinite(x) and y0 <= y <= y1 and x0 <= x <= x1):
        raise ValueError(f"stage position ({y:.6g}, {x:.6g}) nm is beyond the limits {limits_nm} nm")
    return y, x
