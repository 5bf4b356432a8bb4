"""Search and go-to-target: classify a montage, visit the likeliest candidates of a kind, verify each.

After a montage (:mod:`nion_autoem.plans.montage`), the search

1. classifies the montage's tiles with a few-shot support set
   (:func:`~nion_autoem.plans.tile_classification.classify_tiles_in`) and
   takes the tiles of the wanted class, surest first, one per object (a
   candidate within a tile of a surer one is the same object);
2. for each candidate: moves the stage there, surveys a *registration*
   frame at the montage's pixel size and registers it on the montage, which
   measures where the stage really went; the error is corrected with the
   scan offset (a frame centred off the axis), not with another stage move,
   because a second move would land with a new error of its own;
3. optionally autofocuses there (the sample's height changes across it);
4. surveys a zoomed frame on the target and, to verify it, records a
   spectrum at its centre and looks for the wanted kind's edge.

The search stops once ``wanted`` targets are verified or ``max_visits``
candidates have been visited.  Each verified target is a
:class:`Visit` (returned, reported and published as a table); what a plan
does with it next (ELIT, spectra, a vacancy line) is the caller's
``yield from``.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import views
from nion_autoem.actions import Acquire
from nion_autoem.actions import MoveStage
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import SubPlan
from nion_autoem.plan import plan
from nion_autoem.plans.montage import Montage
from nion_autoem.plans.montage import MontageLayout
from nion_autoem.plans.montage import acquire_montage
from nion_autoem.plans.subplans import autofocus
from nion_autoem.plans.tile_classification import classify_tiles_in
from nion_autoem.products import Product

if typing.TYPE_CHECKING:
    from nion_autoem_fewshot.support import SupportSet

_NDArray = numpy.typing.NDArray[typing.Any]

#: The zoomed survey a search takes of each candidate by default: 1.5 µm, 128 × 128 pixels (12 nm per pixel).
DEFAULT_ZOOM = ScanFrame((128, 128), 1500.0)

VISIT_COLUMNS = ("visit", "candidate_y_nm", "candidate_x_nm", "stage_error_y_nm", "stage_error_x_nm", "edge_jump", "verified")


@dataclasses.dataclass(frozen=True)
class Visit:
    """One candidate visited.

    Attributes
    ----------
    candidate_nm : (y, x)
        Where the montage put it (montage stage coordinates).
    stage_error_nm : (y, x)
        How far the stage landed from where it was sent, measured by registration on the montage.
    scan_offset_nm : (y, x)
        The scan-field position of the candidate after the move: the zoomed frame's centre.
    target_nm : (y, x)
        Scan-field position of the object the zoom showed nearest its centre (where the spectrum was taken).
    edge_jump : float or None
        The verifying edge's jump over the extrapolated background (None without a spectrum).
    verified : bool
    zoom : Measurement
        The zoomed survey.
    """

    candidate_nm: Position
    stage_error_nm: Position
    scan_offset_nm: Position
    target_nm: Position
    edge_jump: float | None
    verified: bool
    zoom: Measurement

    def row(self, index: int) -> tuple[typing.Any, ...]:
        return (index, round(self.candidate_nm[0], 1), round(self.candidate_nm[1], 1), round(self.stage_error_nm[0], 1), round(self.stage_error_nm[1], 1),
                None if self.edge_jump is None else round(self.edge_jump, 4), self.verified)


def edge_jump(spectrum: DataAndMetadata.DataAndMetadata, onset_eV: float, *, pre_eV: float = 50.0, post_eV: float = 30.0) -> float:
    """The relative jump of the counts at an edge over the power-law background extrapolated from before it.

    Examples
    --------
    >>> e = numpy.arange(600.0, 900.0)
    >>> counts = 1e12 * e ** -3.0 * numpy.where(e >= 779.0, 1.5, 1.0)
    >>> from nion_autoem import xdata
    >>> round(edge_jump(xdata.spectrum_xdata(counts, 600.0, 1.0), 779.0), 2)
    0.5
    >>> abs(round(edge_jump(xdata.spectrum_xdata(1e12 * e ** -3.0, 600.0, 1.0), 779.0), 2))
    0.0
    """
    calibration = spectrum.dimensional_calibrations[-1]
    counts = numpy.asarray(spectrum.data, dtype=float).reshape(-1)
    energy = calibration.offset + calibration.scale * numpy.arange(counts.size)
    pre = (energy >= onset_eV - pre_eV) & (energy < onset_eV - 3.0)
    post = (energy >= onset_eV + 3.0) & (energy < onset_eV + post_eV)
    if pre.sum() < 5 or post.sum() < 3:
        raise ValueError(f"onset_eV={onset_eV:g} eV needs {pre_eV:g} eV before and {post_eV:g} eV after it on the spectrum's axis "
                         f"({energy[0]:.6g} to {energy[-1]:.6g} eV)")
    slope, intercept = numpy.polyfit(numpy.log(energy[pre]), numpy.log(numpy.maximum(counts[pre], 0.5)), 1)
    background = numpy.exp(intercept + slope * numpy.log(energy[post])).sum()
    return float(counts[post].sum() / background - 1.0)


def distinct_candidates(centres_nm: typing.Sequence[Position], min_distance_nm: float) -> list[Position]:
    """Candidates in the order given, without any within ``min_distance_nm`` of one kept before it (the same object, seen by overlapping tiles).

    Examples
    --------
    >>> distinct_candidates([(0.0, 0.0), (100.0, 0.0), (2000.0, 0.0)], 500.0)
    [(0.0, 0.0), (2000.0, 0.0)]
    """
    kept: list[Position] = []
    for c in centres_nm:
        if all(math.dist(c, k) >= min_distance_nm for k in kept):
            kept.append((float(c[0]), float(c[1])))
    return kept


def register_on_montage(montage: Montage, survey: _NDArray, commanded_nm: Position, *, min_px: int = 48) -> Position | None:
    """How far the stage landed from ``commanded_nm`` (montage stage nm), from a survey at the montage's pixel size; None where too little of it lies on the montage.

    Near the montage's edge only the part of the survey that the montage covers is registered.
    """
    from nion_autoem_targeting.drift import measure_shift

    n = survey.shape[0]
    exact = (numpy.asarray(commanded_nm) - numpy.asarray(montage.origin_nm)) / montage.pixel_size_nm - 0.5 * (n - 1)
    corner = numpy.round(exact).astype(int)
    low = numpy.maximum(corner, 0)
    high = numpy.minimum(corner + n, montage.image.shape)
    if numpy.any(high - low < min_px):
        return None
    reference = montage.image[low[0]:high[0], low[1]:high[1]]
    part = survey[low[0] - corner[0]:high[0] - corner[0], low[1] - corner[1]:high[1] - corner[1]]
    dy, dx = measure_shift(reference, part, montage.pixel_size_nm, upsample=10)
    # the crop starts on a whole montage pixel, the commanded field a fraction of one away: a perfect stage would show that fraction as a shift
    fy, fx = (corner - exact) * montage.pixel_size_nm
    # a stage that went too far shows the sample moved back: the error is minus the features' shift
    return -(dy - fy), -(dx - fx)


def object_centre(image: _NDArray, frame: ScanFrame, *, min_area_px: int = 20, choose: typing.Literal["nearest", "largest"] = "nearest") -> Position | None:
    """Scan-field (y, x) nm of the bright object nearest the frame's centre (or the largest in it), or None if there is none.

    The film is the frame's median; an object is a connected region brighter
    than it by 4 robust standard deviations after a light smoothing.

    Examples
    --------
    >>> frame = ScanFrame((64, 64), 640.0)
    >>> image = numpy.ones((64, 64)); image[40:50, 10:20] = 5.0
    >>> [round(v) for v in object_centre(image, frame)]
    [130, -170]
    """
    import scipy.ndimage

    smooth = scipy.ndimage.gaussian_filter(numpy.asarray(image, dtype=float), 1.5)
    film = numpy.median(smooth)
    spread = 1.4826 * numpy.median(numpy.abs(smooth - film)) or 1e-9
    labels, count = scipy.ndimage.label(smooth > film + 4.0 * spread)
    if count == 0:
        return None
    index = numpy.arange(1, count + 1)
    areas = scipy.ndimage.sum_labels(numpy.ones_like(smooth), labels, index)
    centres = numpy.asarray(scipy.ndimage.center_of_mass(smooth - film, labels, index), dtype=float).reshape(-1, 2)
    middle = 0.5 * (numpy.asarray(frame.shape) - 1)
    distance = numpy.hypot(*(centres - middle).T)
    distance[areas < min_area_px] = numpy.inf
    if not numpy.isfinite(distance).any():
        return None
    best = int(distance.argmin()) if choose == "nearest" else int(numpy.where(numpy.isfinite(distance), areas, -1.0).argmax())
    y, x = frame.pixel_to_nm(centres[best])
    return float(y), float(x)


def refine_on_montage(montage: Montage, candidate_nm: Position, tile_px: int) -> Position:
    """The centre of the largest bright object in the montage's tile about a candidate (a tile's centre), or the candidate itself if it shows none.

    A tile is classified as a whole: the object that made it a candidate may
    sit anywhere in it, and a zoomed frame should be centred on that object.
    """
    n = tile_px
    corner = numpy.round((numpy.asarray(candidate_nm) - numpy.asarray(montage.origin_nm)) / montage.pixel_size_nm).astype(int) - n // 2
    low = numpy.maximum(corner, 0)
    high = numpy.minimum(corner + n, montage.image.shape)
    if numpy.any(high - low < 8):
        return candidate_nm
    crop = montage.image[low[0]:high[0], low[1]:high[1]]
    rows, cols = crop.shape
    p = montage.pixel_size_nm
    centre = montage.stage_nm_of_pixel(0.5 * (numpy.asarray(low) + numpy.asarray(high) - 1))
    frame = ScanFrame((rows, cols), max(rows, cols) * p, (float(centre[0]), float(centre[1])))
    found = object_centre(crop, frame, min_area_px=8, choose="largest")
    return found if found is not None else candidate_nm


def visit_candidates(montage: Montage, candidates: typing.Sequence[Position], *, wanted: int, max_visits: int, zoom: ScanFrame,
                     register_px: int = 128, pixel_time_us: float | None = 2.0, verify_edge_eV: float | None = None, min_jump: float = 0.1,
                     exposure_ms: float = 100.0, focus_half_range_nm: float | None = None, same_target_nm: float = 1000.0, key_prefix: str = "") -> SubPlan:
    """Sub-plan: go to each candidate, correct the stage error by registration, zoom in and verify; returns the :class:`Visit` list.

    Parameters
    ----------
    montage : Montage
        The map the candidates were found on (and registrations are made against).
    candidates : sequence of (y, x)
        Montage stage nm, likeliest first.
    wanted : int
        Stop after this many verified targets.
    max_visits : int
        Visit at most this many candidates.
    zoom : ScanFrame
        The zoomed survey's pixels and field (its centre is replaced by the corrected target position).
    register_px : int
        Side of the registration survey, at the montage's pixel size.
    pixel_time_us : float or None
    verify_edge_eV : float or None
        Verify with a spectrum at the target: the edge at this energy must jump by at least ``min_jump``.
        None verifies nothing (every visit counts as a target).
    exposure_ms : float
        Exposure of the verifying spectrum.
    focus_half_range_nm : float or None
        Autofocus (±range, 7 steps, on a 200 nm field at the target) before the zoomed survey; None keeps the focus.
    same_target_nm : float
        A candidate, or the object its zoom shows, this close to a target already verified is that target again (seen from
        another tile): it is skipped, or not verified again (no spectrum).
    """
    if wanted < 1 or max_visits < 1:
        raise ValueError(f"wanted and max_visits must be at least 1, got {wanted!r} and {max_visits!r}")
    if zoom.fov_nm >= register_px * montage.pixel_size_nm:
        raise ValueError(f"the zoomed field ({zoom.fov_nm:g} nm) must be smaller than the registration field ({register_px * montage.pixel_size_nm:g} nm)")
    register_frame = ScanFrame((register_px, register_px), register_px * montage.pixel_size_nm)
    visits: list[Visit] = []
    verified_at: list[Position] = []
    for index, candidate in enumerate(candidates):
        if len(visits) >= max_visits:
            break
        if any(math.dist(candidate, v) < same_target_nm for v in verified_at):
            continue
        yield Checkpoint()
        yield MoveStage.to(y=candidate[0], x=candidate[1], label=f"candidate {index + 1}: stage")
        check = yield Survey(register_frame, pixel_time_us=pixel_time_us, label=f"candidate {index + 1}: registration")
        error = register_on_montage(montage, numpy.asarray(check.xdata.data, dtype=float), candidate)
        if error is None:
            error = (0.0, 0.0)  # too close to the montage's edge to register: trust the stage, and say so
            yield Report({"unregistered_candidate": index + 1})
        offset = (-error[0], -error[1])
        frame = ScanFrame(zoom.shape, zoom.fov_nm, offset, zoom.rotation_rad)
        if focus_half_range_nm is not None:
            # focus on a small field at the target: at the zoom's pixel size a few nm of blur would not show
            small = ScanFrame((64, 64), min(zoom.fov_nm, 200.0), offset)
            yield from autofocus(focus_half_range_nm, 7, frame=small, pixel_time_us=pixel_time_us)
        image = yield Survey(frame, pixel_time_us=pixel_time_us, label=f"candidate {index + 1}: zoom")
        jump = None
        verified = True
        # the candidate is a tile's centre: the object may sit anywhere in that tile, so the probe goes to the object the zoom shows
        target = object_centre(numpy.asarray(image.xdata.data, dtype=float), frame) or offset
        # where the object really is, in the montage's coordinates: where the stage went, plus where in the field it showed
        where = (candidate[0] + error[0] + target[0], candidate[1] + error[1] + target[1])
        if any(math.dist(where, v) < same_target_nm for v in verified_at):
            visits.append(Visit(candidate, (float(error[0]), float(error[1])), offset, target, None, False, image))
            yield Report({"visit": index + 1, "candidate_nm": list(candidate), "duplicate_of_verified": True, "found": len(verified_at)})
            continue
        if verify_edge_eV is not None:
            spectrum = yield Acquire(target, exposure_ms, "eels", label=f"candidate {index + 1}: verify")
            jump = edge_jump(spectrum.xdata, verify_edge_eV)
            verified = jump >= min_jump
        visit = Visit(candidate, (float(error[0]), float(error[1])), offset, target, jump, verified, image)
        visits.append(visit)
        if verified:
            verified_at.append(where)
        found = sum(v.verified for v in visits)
        yield Report({"visit": index + 1, "candidate_nm": list(candidate), "stage_error_nm": [round(e, 1) for e in error], "edge_jump": jump,
                      "verified": verified, "found": found})
        if verified:
            yield Publish(Product(f"{key_prefix}target-{found}", f"Target {found}", image.xdata,
                                  caption=f"candidate {index + 1} at stage ({candidate[0]:.0f}, {candidate[1]:.0f}) nm; stage error "
                                          f"({error[0]:.0f}, {error[1]:.0f}) nm corrected by the scan offset"))
        if found >= wanted:
            break
    rows = tuple(v.row(i + 1) for i, v in enumerate(visits))
    table = DataAndMetadata.new_data_and_metadata(numpy.asarray([[r[1], r[2]] for r in rows] or numpy.zeros((0, 2)), dtype=float),
                                                  intensity_calibration=Calibration.Calibration(units="nm"),
                                                  metadata={"nion_autoem": {"columns": list(VISIT_COLUMNS)}})
    verified_count = sum(v.verified for v in visits)
    yield Publish(Product(f"{key_prefix}visits", "Visited candidates", table, caption=f"{len(visits)} visited, {verified_count} verified",
                          table=views.Table(VISIT_COLUMNS, rows)))
    return visits


def search_montage(montage: Montage, support: SupportSet | str | pathlib.Path, target_class: str, *, wanted: int = 3, max_visits: int = 10,
                   zoom: ScanFrame = DEFAULT_ZOOM, overlap: float = 0.75, verify_edge_eV: float | None = None,
                   pixel_time_us: float | None = 2.0, focus_half_range_nm: float | None = None) -> SubPlan:
    """Sub-plan: classify a montage's tiles, then visit and verify the surest candidates of ``target_class``; returns the :class:`Visit` list.

    ``overlap`` is that of the classified tiles: 0.75 puts some tile's centre
    within an eighth of a tile of every object, which matters when the
    support set's examples are centred on their objects.

    Raises
    ------
    ValueError
        If the support set has no example of ``target_class`` (before anything is acquired).
    """
    from nion_autoem.plans.tile_classification import resolve_support

    chosen = resolve_support(support)
    if target_class not in chosen.class_names:
        raise ValueError(f"target_class {target_class!r} has no examples in the support set; its classes are {list(chosen.class_names)}")
    tiles = yield from classify_tiles_in(montage.measurement(), chosen, overlap=overlap, key_prefix="montage-")
    tile_nm = tiles.tile_map.grid.tile_px * montage.pixel_size_nm
    candidates = distinct_candidates([refine_on_montage(montage, c, tiles.tile_map.grid.tile_px) for c in tiles.centres_nm(target_class)], 0.75 * tile_nm)
    yield Report({"candidates": len(candidates), "target_class": target_class})
    visits = yield from visit_candidates(montage, candidates, wanted=wanted, max_visits=max_visits, zoom=zoom, pixel_time_us=pixel_time_us,
                                         verify_edge_eV=verify_edge_eV, focus_half_range_nm=focus_half_range_nm)
    return visits


@plan("search")
def search_plan(centre_nm: tuple[float, float], size_nm: tuple[float, float], support: SupportSet | str | pathlib.Path, target_class: str, *,
                wanted: int = 3, max_visits: int = 10, tile_fov_nm: float = 4000.0, tile_px: int = 128, overlap: float = 0.3,
                zoom: ScanFrame = DEFAULT_ZOOM, verify_edge_eV: float | None = None, pixel_time_us: float | None = 2.0,
                limits: StageLimits | None = None, focus_half_range_nm: float | None = None) -> PlanGenerator:
    """Montage a region, classify it, then visit and verify candidates of ``target_class`` until ``wanted`` are found.

    Everything that can be checked without the beam (the support set has the
    class, the region fits the stage) is checked before the first action.

    Examples
    --------
    >>> p = search_plan((0.0, 0.0), (8000.0, 8000.0), "supports/particles", "hexagonal platelet")
    >>> p.name, p.parameters["wanted"]
    ('search', 3)
    """
    from nion_autoem.plans.tile_classification import resolve_support

    chosen = resolve_support(support)
    if target_class not in chosen.class_names:
        raise ValueError(f"target_class {target_class!r} has no examples in the support set; its classes are {list(chosen.class_names)}")
    layout = MontageLayout((float(centre_nm[0]), float(centre_nm[1])), (float(size_nm[0]), float(size_nm[1])), ScanFrame((tile_px, tile_px), tile_fov_nm),
                           overlap)
    montage = yield from acquire_montage(layout, pixel_time_us=pixel_time_us, limits=limits)
    visits = yield from search_montage(montage, chosen, target_class, wanted=wanted, max_visits=max_visits, zoom=zoom, verify_edge_eV=verify_edge_eV,
                                       pixel_time_us=pixel_time_us, focus_half_range_nm=focus_half_range_nm)
    found = sum(v.verified for v in visits)
    return f"{found} of {wanted} {target_class} target(s) verified in {len(visits)} visit(s)"
