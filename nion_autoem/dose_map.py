"""The sample's dose history: where the beam has been, and how many electrons each area took.

A :class:`DoseMap` collects every exposure of a session, a survey or
registration frame (a raster), a parked-probe dwell, spectrum or camera
frame (a point), and answers two questions about the sample:

- how much dose (e/nm²) has a place received (:meth:`DoseMap.dose_at`, and
  :attr:`DoseMap.grid` over a field, to show as an image);
- would these planned exposures push an area past its limit
  (:meth:`DoseMap.breaches` with :class:`DoseLimit`).

Positions are scan-field nm.  A drifting sample moves under the scan field;
an exposure given with the drift measured at the time (``offset_nm``) is
placed where it fell *on the sample*, in the scan-field coordinates the
sample had when the drift was zero (e.g. at the survey that chose the
targets), so the map stays attached to the atoms.

How dose is spread:

- a raster of more than :data:`POINT_RASTER_MAX_PIXELS` pixels is uniform over
  its frame: electrons / area, as the scan coils deliver it when the pixels
  are closer than the probe is wide;
- a small raster (registration, an excursion around a column) and a parked
  probe are Gaussian spots of the probe's width, one per pixel.

This module is pure numpy; build it from :class:`~nion_autoem.instrument.Measurement`
objects (:meth:`DoseMap.add`) or from a run's journal (:func:`from_journal`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing

import numpy
import numpy.typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import electrons

if typing.TYPE_CHECKING:
    from nion_autoem.actions import Action
    from nion_autoem.journal import JournalRecord

_NDArray = numpy.typing.NDArray[typing.Any]

#: Rasters with at most this many pixels are spread pixel by pixel as probe-sized spots.
POINT_RASTER_MAX_PIXELS = 4096
#: A Gaussian spot reaches no further than this many probe sigmas.
_SPOT_REACH_SIGMAS = 6.0


@dataclasses.dataclass(frozen=True)
class Exposure:
    """Electrons delivered to the sample by one acquisition.

    Parameters
    ----------
    electrons : float
        Electrons delivered (0 while blanked).
    frame : ScanFrame or None
        The raster, for scanned frames.
    position_nm : (y, x) or None
        The parked probe, for point acquisitions.
    offset_nm : (y, x)
        The sample's drift (nm) at the time, subtracted to place the exposure on the sample.
    label : str
        What it was (shown in breach messages).
    """

    electrons: float
    frame: ScanFrame | None = None
    position_nm: tuple[float, float] | None = None
    offset_nm: tuple[float, float] = (0.0, 0.0)
    label: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.electrons) and self.electrons >= 0):
            raise ValueError(f"exposure {self.label!r}: electrons must be a finite count >= 0, got {self.electrons!r}")
        if (self.frame is None) == (self.position_nm is None):
            raise ValueError(f"exposure {self.label!r}: give either a frame (a raster) or a position_nm (a parked probe), not {'both' if self.frame else 'neither'}")
        for name in ("position_nm", "offset_nm"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or not all(math.isfinite(float(v)) for v in value)):
                raise ValueError(f"exposure {self.label!r}: {name} must be a finite (y, x) pair in nm, got {value!r}")

    def on_sample(self) -> Exposure:
        """The same exposure with the drift taken out (``offset_nm`` zero)."""
        dy, dx = self.offset_nm
        if dy == 0.0 and dx == 0.0:
            return self
        if self.frame is not None:
            f = self.frame
            frame = ScanFrame(f.shape, f.fov_nm, (f.center_nm[0] - dy, f.center_nm[1] - dx), f.rotation_rad)
            return Exposure(self.electrons, frame=frame, label=self.label)
        assert self.position_nm is not None
        return Exposure(self.electrons, position_nm=(self.position_nm[0] - dy, self.position_nm[1] - dx), label=self.label)


@dataclasses.dataclass(frozen=True)
class DoseLimit:
    """At most ``e_per_nm2`` anywhere in an area (the whole map if ``region`` is None).

    ``region`` is ((y, x) centre, (height, width)) in nm, as targeting regions are given.
    """

    e_per_nm2: float
    region: tuple[tuple[float, float], tuple[float, float]] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.e_per_nm2) and self.e_per_nm2 > 0):
            raise ValueError(f"dose limit {self.name!r}: e_per_nm2 must be a positive finite dose, got {self.e_per_nm2!r}")
        if self.region is not None:
            (cy, cx), (h, w) = self.region
            if not all(math.isfinite(v) for v in (cy, cx, h, w)) or h <= 0 or w <= 0:
                raise ValueError(f"dose limit {self.name!r}: region must be ((y, x) centre, (height, width)) in nm with a positive size, got {self.region!r}")

    def contains(self, points_nm: _NDArray) -> _NDArray:
        if self.region is None:
            return numpy.ones(points_nm.shape[:-1], dtype=bool)
        (cy, cx), (h, w) = self.region
        return typing.cast(_NDArray, (numpy.abs(points_nm[..., 0] - cy) <= h / 2) & (numpy.abs(points_nm[..., 1] - cx) <= w / 2))


@dataclasses.dataclass(frozen=True)
class Breach:
    """An area a plan would push past its limit."""

    limit: DoseLimit
    position_nm: tuple[float, float]
    dose_e_per_nm2: float
    added_e_per_nm2: float

    def __str__(self) -> str:
        name = f" {self.limit.name!r}" if self.limit.name else ""
        return (f"({self.position_nm[0]:.2f}, {self.position_nm[1]:.2f}) nm would reach {self.dose_e_per_nm2:.3g} e/nm² "
                f"({self.added_e_per_nm2:.3g} of it planned), past the limit{name} of {self.limit.e_per_nm2:.3g} e/nm²")


def _spot(points: _NDArray, centres: _NDArray, electrons_each: _NDArray, sigma_nm: float) -> _NDArray:
    """Dose (e/nm²) at ``points`` (M, 2) from Gaussian spots at ``centres`` (K, 2)."""
    out = numpy.zeros(len(points))
    if len(centres) == 0 or len(points) == 0:
        return out
    reach2 = (_SPOT_REACH_SIGMAS * sigma_nm) ** 2
    norm = 1.0 / (2 * math.pi * sigma_nm * sigma_nm)
    # Chunks keep the (M, K) distance table small for big grids.
    for start in range(0, len(points), 2048):
        p = points[start:start + 2048]
        d2 = ((p[:, numpy.newaxis, :] - centres[numpy.newaxis, :, :]) ** 2).sum(axis=-1)
        near = d2 < reach2
        out[start:start + 2048] = (numpy.where(near, numpy.exp(-d2 / (2 * sigma_nm * sigma_nm)), 0.0) * electrons_each).sum(axis=1) * norm
    return out


class DoseMap:
    """Dose history of a sample over a scan field.

    Parameters
    ----------
    field : ScanFrame
        The area shown by :attr:`grid` (e.g. the survey field); exposures
        outside it still count in :meth:`dose_at`.
    shape : (int, int)
        Cells of :attr:`grid` (dose at each cell centre).
    probe_sigma_nm : float
        Standard deviation of the probe, which spreads parked-probe dose.

    Examples
    --------
    >>> field = ScanFrame((128, 128), fov_nm=4.0)
    >>> dose = DoseMap(field, shape=(16, 16))
    >>> dose.add_exposure(Exposure(1.6e7, frame=ScanFrame((256, 256), 4.0), label="survey"))
    >>> round(float(dose.dose_at([(0.0, 0.0)])[0]))  # 1.6e7 e over 16 nm²
    1000000
    >>> dose.add_exposure(Exposure(1e6, position_nm=(0.5, 0.5), label="dwell"))
    >>> float(dose.dose_at([(0.5, 0.5)])[0]) > 60e6  # a parked probe piles dose on one column
    True
    >>> [str(b) for b in dose.breaches([Exposure(1e6, position_nm=(-1.0, -1.0))], [DoseLimit(5e7, ((-1.0, -1.0), (0.5, 0.5)), "fresh area")])]
    ["(-1.00, -1.00) nm would reach 6.47e+07 e/nm² (6.37e+07 of it planned), past the limit 'fresh area' of 5e+07 e/nm²"]
    """

    def __init__(self, field: ScanFrame, shape: tuple[int, int] = (64, 64), probe_sigma_nm: float = 0.05) -> None:
        if not isinstance(field, ScanFrame):
            raise TypeError(f"field must be a ScanFrame (the area to map), got {type(field).__name__}")
        if len(shape) != 2 or min(int(shape[0]), int(shape[1])) < 1:
            raise ValueError(f"shape must be (rows, columns) of at least one cell each, got {shape!r}")
        if not (math.isfinite(probe_sigma_nm) and probe_sigma_nm > 0):
            raise ValueError(f"probe_sigma_nm must be a positive probe width in nm (about 0.05 for an aberration-corrected probe), got {probe_sigma_nm!r}")
        self.field = field
        self.probe_sigma_nm = float(probe_sigma_nm)
        self.__cells = ScanFrame((int(shape[0]), int(shape[1])), field.fov_nm, field.center_nm, field.rotation_rad)
        self.__cell_points = self.__cells.pixel_grid_nm().reshape(-1, 2)
        self.__grid = numpy.zeros(len(self.__cell_points))
        self.exposures: list[Exposure] = []

    @property
    def grid(self) -> _NDArray:
        """Dose (e/nm²) at the centre of each cell of the field, shape ``shape`` (a copy)."""
        return typing.cast(_NDArray, self.__grid.reshape(self.__cells.shape).copy())

    @property
    def cells(self) -> ScanFrame:
        """The grid as a scan frame (one pixel per cell): its calibration places :attr:`grid` in scan-field nm."""
        return self.__cells

    @property
    def total_electrons(self) -> float:
        return float(sum(e.electrons for e in self.exposures))

    def add_exposure(self, exposure: Exposure) -> None:
        """Count one exposure."""
        on_sample = exposure.on_sample()
        self.exposures.append(on_sample)
        self.__grid += self.__dose_of(on_sample, self.__cell_points)

    def add(self, measurement: Measurement, offset_nm: tuple[float, float] = (0.0, 0.0), label: str = "") -> None:
        """Count what a measurement delivered (nothing for moves and settings)."""
        exposure = exposure_of(measurement, offset_nm, label)
        if exposure is not None:
            self.add_exposure(exposure)

    def dose_at(self, points_nm: numpy.typing.ArrayLike, extra: typing.Sequence[Exposure] = ()) -> _NDArray:
        """Dose (e/nm²) at sample positions (..., 2) in nm, from every exposure so far plus ``extra``."""
        p = numpy.asarray(points_nm, dtype=float)
        if p.shape[-1:] != (2,) or not numpy.all(numpy.isfinite(p)):
            raise ValueError(f"points_nm must be finite (y, x) positions in nm, shape (..., 2), got shape {p.shape}")
        flat = p.reshape(-1, 2)
        total = numpy.zeros(len(flat))
        for exposure in [*self.exposures, *(e.on_sample() for e in extra)]:
            total += self.__dose_of(exposure, flat)
        return typing.cast(_NDArray, total.reshape(p.shape[:-1]))

    def breaches(self, planned: typing.Sequence[Exposure], limits: typing.Sequence[DoseLimit]) -> list[Breach]:
        """Areas the ``planned`` exposures would push past a limit: one (the worst) per limit.

        The dose is checked at every cell centre and at every planned probe
        position, so a parked probe's peak is not missed between cells.
        """
        planned = [e.on_sample() for e in planned]
        spots = [e.position_nm for e in planned if e.position_nm is not None]
        spots += [tuple(p) for e in planned if e.frame is not None and e.frame.shape[0] * e.frame.shape[1] <= POINT_RASTER_MAX_PIXELS
                  for p in e.frame.pixel_grid_nm().reshape(-1, 2)[:: max(1, e.frame.shape[0] * e.frame.shape[1] // 64)]]
        points = numpy.concatenate([self.__cell_points, numpy.asarray(spots, dtype=float).reshape(-1, 2)])
        added = numpy.zeros(len(points))
        for exposure in planned:
            added += self.__dose_of(exposure, points)
        before = numpy.concatenate([self.__grid, self.dose_at(points[len(self.__cell_points):])])
        after = before + added
        out: list[Breach] = []
        for limit in limits:
            inside = limit.contains(points) & (added > 0)
            over = numpy.flatnonzero(inside & (after > limit.e_per_nm2))
            if over.size:
                worst = int(over[numpy.argmax(after[over])])
                out.append(Breach(limit, (float(points[worst, 0]), float(points[worst, 1])), float(after[worst]), float(added[worst])))
        return out

    def __dose_of(self, exposure: Exposure, points: _NDArray) -> _NDArray:
        if exposure.electrons <= 0:
            return numpy.zeros(len(points))
        if exposure.position_nm is not None:
            return _spot(points, numpy.asarray([exposure.position_nm]), numpy.asarray([exposure.electrons]), self.probe_sigma_nm)
        frame = exposure.frame
        assert frame is not None
        pixels = frame.shape[0] * frame.shape[1]
        if pixels <= POINT_RASTER_MAX_PIXELS:
            return _spot(points, frame.pixel_grid_nm().reshape(-1, 2), numpy.full(pixels, exposure.electrons / pixels), self.probe_sigma_nm)
        height, width = frame.size_nm
        uniform: _NDArray = numpy.where(frame.contains_nm(points), exposure.electrons / (height * width), 0.0)
        return uniform


def exposure_of(measurement: Measurement, offset_nm: tuple[float, float] = (0.0, 0.0), label: str = "") -> Exposure | None:
    """The exposure a measurement stands for: its frame (raster) or parked position (point); None if it delivered nothing."""
    if measurement.dose_e <= 0:
        return None
    if measurement.frame is not None and measurement.kind == "survey":
        return Exposure(measurement.dose_e, frame=measurement.frame, offset_nm=offset_nm, label=label or measurement.kind)
    if measurement.position_nm is not None:
        return Exposure(measurement.dose_e, position_nm=measurement.position_nm, offset_nm=offset_nm, label=label or measurement.kind)
    return None


def exposures_of_actions(actions: typing.Iterable[Action], *, beam_current_A: float, scan_frame: ScanFrame) -> list[Exposure]:
    """What planned actions would deliver, at most, for :meth:`DoseMap.breaches` (before they run).

    ``scan_frame`` is the current frame, which a survey without its own frame scans.
    """
    from nion_autoem.actions import Acquire
    from nion_autoem.actions import Dwell
    from nion_autoem.actions import Survey
    from nion_autoem.actions import Verify

    out: list[Exposure] = []
    frame = scan_frame
    for action in actions:
        if isinstance(action, Survey):
            frame = action.frame or frame
            beam_s = frame.shape[0] * frame.shape[1] * (action.pixel_time_us or 1.0) * 1e-6
            out.append(Exposure(electrons(beam_current_A, beam_s), frame=frame, label=action.label))
        elif isinstance(action, Verify):
            frame = ScanFrame(action.shape, action.fov_nm, action.position_nm, frame.rotation_rad)
            beam_s = action.shape[0] * action.shape[1] * (action.pixel_time_us or 1.0) * 1e-6
            out.append(Exposure(electrons(beam_current_A, beam_s), frame=frame, label=action.label))
        elif isinstance(action, (Dwell, Acquire)) and action.position_nm is not None:
            beam_s = action.samples * action.sample_time_us * 1e-6 if isinstance(action, Dwell) else action.exposure_ms * 1e-3
            out.append(Exposure(electrons(beam_current_A, beam_s), position_nm=action.position_nm, label=action.label))
    return out


def from_journal(record: JournalRecord | str | os.PathLike[str], field: ScanFrame | None = None, *, shape: tuple[int, int] = (64, 64),
                 probe_sigma_nm: float = 0.05, offset_key: str = "offset_nm") -> DoseMap:
    """The dose map of a journaled run.

    Every step that delivered dose is counted (the user's own scans too, when
    the recorder journaled them).  A step whose plan report carries the
    drift it had measured (``result[offset_key]``, as beam targeting reports
    it) is placed on the sample with it; a step without one takes the last
    offset reported before it.  ``field`` defaults to the first frame scanned.
    """
    from nion_autoem.journal import read_journal

    if isinstance(record, (str, os.PathLike)):
        record = read_journal(record)
    steps = [s for s in record.steps if float(s.entry.get("dose_e", 0.0)) > 0]
    if field is None:
        frames = [s.entry["frame"] for s in steps if s.entry.get("frame")]
        if not frames:
            raise ValueError(f"the journal at {record.run_dir} has no scanned frame to map; pass field= (the area to map)")
        field = ScanFrame.from_dict(frames[0])
    dose = DoseMap(field, shape, probe_sigma_nm)
    offset = (0.0, 0.0)
    for step in steps:
        entry = step.entry
        reported = entry.get("result", {}).get(offset_key)
        if isinstance(reported, (list, tuple)) and len(reported) == 2:
            offset = (float(reported[0]), float(reported[1]))
        electrons_delivered = float(entry.get("dose_e", 0.0))
        label = str(getattr(step.action, "label", entry.get("measurement_kind", "")))
        if entry.get("frame") and entry.get("measurement_kind") == "survey":
            dose.add_exposure(Exposure(electrons_delivered, frame=ScanFrame.from_dict(entry["frame"]), offset_nm=offset, label=label))
        elif entry.get("position_nm"):
            y, x = entry["position_nm"]
            dose.add_exposure(Exposure(electrons_delivered, position_nm=(float(y), float(x)), offset_nm=offset, label=label))
    return dose


def field_covering(exposures: typing.Sequence[Exposure], *, margin: float = 0.05) -> ScanFrame | None:
    """The smallest square field (unrotated) that holds every exposure, with ``margin`` of its width around; None without exposures.

    Examples
    --------
    >>> field_covering([Exposure(1.0, frame=ScanFrame((64, 64), 10.0)), Exposure(1.0, position_nm=(8.0, 0.0))], margin=0.0).fov_nm
    13.0
    """
    corners: list[tuple[float, float]] = []
    for exposure in exposures:
        if exposure.frame is not None:
            f = exposure.frame
            half_y, half_x = (f.fov_nm * n / max(f.shape) / 2 for n in f.shape)
            if f.rotation_rad:  # a rotated frame fits in the circle around it
                half_y = half_x = math.hypot(half_y, half_x)
            corners += [(f.center_nm[0] - half_y, f.center_nm[1] - half_x), (f.center_nm[0] + half_y, f.center_nm[1] + half_x)]
        elif exposure.position_nm is not None:
            corners.append(exposure.position_nm)
    if not corners:
        return None
    points = numpy.asarray(corners)
    low, high = points.min(axis=0), points.max(axis=0)
    width = float(max(high - low)) or 1.0
    centre = (low + high) / 2
    return ScanFrame((256, 256), width * (1 + 2 * margin), (float(centre[0]), float(centre[1])))


def binned_dose(exposures: typing.Sequence[Exposure], field: ScanFrame, shape: tuple[int, int] = (128, 128)) -> _NDArray:
    """Mean dose (e/nm²) in each cell of ``field``: what an area took, however small the probe.

    Unlike :attr:`DoseMap.grid` (dose at cell centres, right for the field of
    an experiment), this spreads each exposure's electrons over the cells it
    covers: a raster larger than a cell uniformly over its frame, a parked
    probe or a raster smaller than a cell into the cell it falls in.  So a
    session's map over a wide field still shows the columns that were dwelt on.

    Examples
    --------
    >>> field = ScanFrame((4, 4), 4.0)
    >>> grid = binned_dose([Exposure(4e6, frame=ScanFrame((64, 64), 4.0)), Exposure(1e6, position_nm=(0.5, 0.5))], field, (4, 4))
    >>> grid[0, 0], grid[2, 2]  # 4e6 e over 16 nm² everywhere, plus 1e6 e in the 1 nm² cell of the dwell
    (np.float64(250000.0), np.float64(1250000.0))
    """
    cells = ScanFrame((int(shape[0]), int(shape[1])), field.fov_nm, field.center_nm, field.rotation_rad)
    cell_area = (field.fov_nm / max(shape)) ** 2
    centres = cells.pixel_grid_nm().reshape(-1, 2)
    grid = numpy.zeros(len(centres))
    for exposure in (e.on_sample() for e in exposures):
        f = exposure.frame
        if f is not None and f.fov_nm ** 2 * min(f.shape) / max(f.shape) > cell_area:
            inside = f.contains_nm(centres)
            area = f.fov_nm ** 2 * min(f.shape) / max(f.shape)
            grid[inside] += exposure.electrons / area
            continue
        position = f.center_nm if f is not None else exposure.position_nm
        assert position is not None
        row, col = numpy.floor(cells.nm_to_pixel(numpy.asarray([position], dtype=float))[0] + 0.5).astype(int)
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            grid[row * shape[1] + col] += exposure.electrons / cell_area
    return typing.cast(_NDArray, grid.reshape(shape))


def limit_warning(history: typing.Sequence[Exposure], planned: typing.Sequence[Exposure], limit_e_per_nm2: float,
                  shape: tuple[int, int] = (128, 128)) -> str:
    """A sentence if ``planned`` would take some area past ``limit_e_per_nm2`` (mean over the cells of :func:`binned_dose`), else "".

    Examples
    --------
    >>> survey = Exposure(4e8, frame=ScanFrame((64, 64), 4.0))
    >>> limit_warning([survey], [survey], 3e7)  # 2.5e7 e/nm² there already, the plan doubles it
    'this plan would bring (-1.98, -1.98) nm to 5e+07 e/nm² (2.5e+07 of it from earlier exposures), past the limit of 3e+07 e/nm²'
    >>> limit_warning([], [survey], 3e7)
    ''
    """
    if not (math.isfinite(limit_e_per_nm2) and limit_e_per_nm2 > 0):
        raise ValueError(f"limit_e_per_nm2 must be a positive dose in e/nm², got {limit_e_per_nm2!r}")
    field = field_covering([*history, *planned])
    if field is None or not planned:
        return ""
    before = binned_dose(history, field, shape)
    after = before + binned_dose(planned, field, shape)
    worst = int(numpy.argmax(after))
    if after.flat[worst] <= limit_e_per_nm2:
        return ""
    cells = ScanFrame(shape, field.fov_nm, field.center_nm)
    y, x = cells.pixel_to_nm(numpy.asarray([numpy.unravel_index(worst, shape)], dtype=float))[0]
    return (f"this plan would bring ({y:.2f}, {x:.2f}) nm to {after.flat[worst]:.3g} e/nm² ({before.flat[worst]:.3g} of it from earlier exposures), "
            f"past the limit of {limit_e_per_nm2:.3g} e/nm²")
