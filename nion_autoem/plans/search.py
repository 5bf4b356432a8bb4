"""Search and go-to-target: classify a montage, visit the likeliest candidates of a kind, verify each.

After a montage (:mod:`nion_autoem.plans.montage`), the search

1. classifies the montage's tiles with a few-shot support set
   (:func:`~nion_autoem.plans.tile_classification.classify_tiles_in`);
2. takes every bright object near a tile of the wanted class as a
   candidate (:func:`rank_candidates`), with the class's probability and
   the object's shape on the montage (:func:`object_shape`: size, border,
   contrast, flatness, outline);
3. ranks them by that probability times a :class:`ShapeModel` of the
   support set's examples, which learns from every verified and rejected
   visit, and visits next the one with the most targets expected per second
   of instrument time, stage travel included (:func:`next_candidate`);
4. at each: moves the stage there, surveys a *registration* frame at the
   montage's pixel size and registers it on the montage (both band-passed),
   which measures where the stage really went; the error is corrected with
   the scan offset (a frame centred off the axis), not with another stage
   move, because a second move would land with a new error of its own;
5. optionally autofocuses there (the sample's height changes across it);
6. surveys a zoomed frame on the target and, to verify it, records a
   spectrum at the object and looks for the wanted kind's edge.

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
from nion_autoem.plans.montage import band_pass
from nion_autoem.plans.sample_map import map_montage
from nion_autoem.plans.subplans import autofocus
from nion_autoem.plans.tile_classification import ClassifiedTiles
from nion_autoem.plans.tile_classification import classify_tiles_in
from nion_autoem.products import Product

if typing.TYPE_CHECKING:
    from nion_autoem_fewshot.support import SupportSet

_NDArray = numpy.typing.NDArray[typing.Any]

#: The zoomed survey a search takes of each candidate by default: 1.5 µm, 128 × 128 pixels (12 nm per pixel).
DEFAULT_ZOOM = ScanFrame((128, 128), 1500.0)
#: Tile side (px of the montage) of the sample map a search publishes with its montage.
MAP_TILE_PX = 64

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
    reference = band_pass(montage.image[low[0]:high[0], low[1]:high[1]])
    part = band_pass(survey[low[0] - corner[0]:high[0] - corner[0], low[1] - corner[1]:high[1] - corner[1]])
    dy, dx = measure_shift(reference, part, montage.pixel_size_nm, upsample=20)
    # the crop starts on a whole montage pixel, the commanded field a fraction of one away: a perfect stage would show that fraction as a shift
    fy, fx = (corner - exact) * montage.pixel_size_nm
    # a stage that went too far shows the sample moved back: the error is minus the features' shift
    return -(dy - fy), -(dx - fx)


def object_centre(image: _NDArray, frame: ScanFrame, *, min_area_px: int = 20, choose: typing.Literal["nearest", "largest"] = "nearest") -> Position | None:
    """Scan-field (y, x) nm of the bright object nearest the frame's centre (or the largest in it), or None if there is none.

    The film is the frame's median; an object is a connected region brighter
    than it by 4 robust standard deviations after a light smoothing.  The
    nearest is the object under the frame's centre where there is one.

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
    # the object under the frame's centre is the one aimed at, though a smaller one beside it may have its centre nearer
    under = int(labels[tuple(numpy.round(middle).astype(int))])
    if under:
        distance[under - 1] = 0.0
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


#: What :func:`object_shape` measures of the object at a candidate.
SHAPE_COLUMNS = ("size", "border", "contrast", "spread", "solidity", "elongation")


def film_level(image: numpy.typing.ArrayLike) -> float:
    """The film's signal in a survey or montage: the median of the lightly smoothed image (bare film covers most of a sample).

    Examples
    --------
    >>> image = numpy.full((40, 40), 12.0); image[:8, :8] = 40.0
    >>> film_level(image)
    12.0
    """
    import scipy.ndimage

    return float(numpy.median(scipy.ndimage.gaussian_filter(numpy.asarray(image, dtype=float), 1.0, mode="nearest")))


def object_shape(window: numpy.typing.ArrayLike, film: float, *, min_contrast: float = 0.5) -> _NDArray | None:
    """What the bright object at the centre of a window looks like, or None where there is none.

    The window is a support tile's size (what a person clicked to show the
    kind); the object is the connected region brighter than the film by
    ``min_contrast`` of it that covers the window's centre (or comes nearest,
    within a quarter of the window).

    Returns
    -------
    ndarray of :data:`SHAPE_COLUMNS`
        ``size``: fraction of the window it covers; ``border``: fraction of the window's edge it touches (a flake
        larger than the window: 1); ``contrast``: its mean signal over the film's, minus 1; ``spread``: its standard
        deviation over its mean (a flat platelet: low, a sphere: high); ``solidity``: area over convex hull;
        ``elongation``: 1 minus minor over major axis.

    Examples
    --------
    >>> window = numpy.full((32, 32), 10.0); window[10:22, 12:20] = 25.0
    >>> object_shape(window, 10.0).round(2).tolist()  # a 12 × 8 px block: its smoothed edge lowers the contrast and adds spread
    [0.09, 0.0, 1.28, 0.1, 1.0, 0.34]
    >>> object_shape(numpy.full((32, 32), 10.0), 10.0) is None
    True
    """
    import scipy.ndimage
    import skimage.measure

    data = numpy.asarray(window, dtype=float)
    if data.ndim != 2 or min(data.shape) < 8:
        raise ValueError(f"window must be a 2-D image of at least 8 × 8 pixels, got shape {data.shape}")
    if not (math.isfinite(film) and film > 0):
        raise ValueError(f"film must be the film's signal, a finite number > 0 (see film_level), got {film!r}")
    smooth = scipy.ndimage.gaussian_filter(data, 1.0, mode="nearest")
    labels, count = scipy.ndimage.label(smooth > film * (1.0 + min_contrast))
    if count == 0:
        return None
    cy, cx = data.shape[0] // 2, data.shape[1] // 2
    k = int(labels[cy, cx])
    if k == 0:
        rows, cols = numpy.nonzero(labels)
        distance = numpy.hypot(rows - cy, cols - cx)
        j = int(distance.argmin())
        if distance[j] > 0.25 * min(data.shape):
            return None
        k = int(labels[rows[j], cols[j]])
    region = labels == k
    edge = numpy.ones_like(region)
    edge[1:-1, 1:-1] = False
    props = skimage.measure.regionprops(region.astype(int))[0]  # type: ignore[no-untyped-call]
    inside = smooth[region]
    major = max(float(props.axis_major_length), 1e-9)
    return numpy.array([region.mean(), region[edge].mean(), inside.mean() / film - 1.0, inside.std() / inside.mean(), float(props.solidity),
                        1.0 - float(props.axis_minor_length) / major])


class ShapeModel:
    """How likely an object is of the wanted kind, from the shapes of labelled examples: the support set's, then every visit's.

    A soft nearest neighbour on :func:`object_shape` descriptors: the
    probability is ``exp(-d_w^2 / 2) / (exp(-d_w^2 / 2) + exp(-d_o^2 / 2))`` with
    ``d_w`` and ``d_o`` the distances to the nearest example of the wanted
    kind and of any other, in units of each descriptor's spread over all
    examples.  A verified visit adds an example of the wanted kind, a rejected
    one an example of the others, so a kind of look that fooled the
    classifier once is ranked down.

    Examples
    --------
    >>> model = ShapeModel([numpy.array([0.5, 0.0, 1.4, 0.1, 0.95, 0.0])], [numpy.array([1.0, 1.0, 1.3, 0.1, 1.0, 0.0])])
    >>> p = model.probability([numpy.array([0.45, 0.0, 1.3, 0.1, 0.95, 0.05]), numpy.array([0.95, 0.9, 1.2, 0.1, 1.0, 0.0])])
    >>> bool(p[0] > 0.9 and p[1] < 0.1)
    True
    >>> model.learn(numpy.array([0.95, 0.9, 1.2, 0.1, 1.0, 0.0]), verified=True); model.counts
    (2, 1)
    """

    #: Smallest spread of a descriptor (its units): two examples alike in one descriptor do not make it infinitely decisive.
    MIN_SPREAD = numpy.array([0.05, 0.1, 0.1, 0.02, 0.03, 0.05])

    def __init__(self, wanted: typing.Sequence[_NDArray], others: typing.Sequence[_NDArray]) -> None:
        if not wanted or not others:
            raise ValueError(f"a shape model needs examples of the wanted kind and of others, got {len(wanted)} and {len(others)}")
        self.__wanted = [numpy.asarray(w, dtype=float) for w in wanted]
        self.__others = [numpy.asarray(o, dtype=float) for o in others]
        pooled = numpy.asarray(self.__wanted + self.__others)
        self.__scale = numpy.maximum(pooled.std(axis=0), self.MIN_SPREAD)

    @classmethod
    def from_support(cls, support: SupportSet, target_class: str) -> ShapeModel:
        """The shapes of a support set's examples: those of ``target_class`` against all others (examples with no object count as others)."""
        film = film_level(numpy.concatenate([support.tiles(c).reshape(-1) for c in support.class_names]).reshape(1, -1))
        wanted: list[_NDArray] = []
        others: list[_NDArray] = []
        for name in support.class_names:
            for tile in support.tiles(name):
                shape = object_shape(tile, film)
                if shape is not None:
                    (wanted if name == target_class else others).append(shape)
        if not wanted:
            raise ValueError(f"no example of {target_class!r} in the support set shows an object brighter than the film; the shape model cannot learn it")
        return cls(wanted, others or [numpy.zeros(len(SHAPE_COLUMNS))])

    @property
    def counts(self) -> tuple[int, int]:
        """Examples of the wanted kind and of others."""
        return len(self.__wanted), len(self.__others)

    def learn(self, shape: _NDArray | None, *, verified: bool) -> None:
        """Add a visited object's shape as an example of the wanted kind (verified) or of the others."""
        if shape is not None:
            (self.__wanted if verified else self.__others).append(numpy.asarray(shape, dtype=float))

    def probability(self, shapes: typing.Sequence[_NDArray | None]) -> _NDArray:
        """Probability of the wanted kind for each shape; 0 where there is no object (None)."""
        result = numpy.zeros(len(shapes))
        known = [k for k, v in enumerate(shapes) if v is not None]
        if not known:
            return result
        query = numpy.asarray([shapes[k] for k in known], dtype=float) / self.__scale
        nearest = [numpy.min(((query[:, numpy.newaxis, :] - numpy.asarray(group) / self.__scale) ** 2).sum(axis=-1), axis=1)
                   for group in (self.__wanted, self.__others)]
        # exp(-a/2) / (exp(-a/2) + exp(-b/2)), written so neither exponent overflows
        result[known] = 1.0 / (1.0 + numpy.exp(numpy.clip(0.5 * (nearest[0] - nearest[1]), -50.0, 50.0)))
        return result


def next_candidate(scores: numpy.typing.ArrayLike, positions_nm: numpy.typing.ArrayLike, here_nm: Position | None, *, visit_s: float = 1.5,
                   stage_speed_nm_per_s: float = 20_000.0) -> int:
    """The candidate to visit next: the most targets expected per second, its score over the visit's time plus the stage travel to it.

    ``here_nm`` None (the stage's place unknown) leaves the travel out.

    Examples
    --------
    >>> next_candidate([0.5, 0.55], [[0.0, 20_000.0], [0.0, 1_000.0]], (0.0, 0.0))  # nearly as likely, far nearer
    1
    >>> next_candidate([0.9, 0.3], [[0.0, 20_000.0], [0.0, 1_000.0]], (0.0, 0.0))
    0
    """
    p = numpy.asarray(positions_nm, dtype=float).reshape(-1, 2)
    if here_nm is None:
        return int(numpy.argmax(numpy.asarray(scores, dtype=float)))
    travel = numpy.abs(p - numpy.asarray(here_nm, dtype=float)).max(axis=1) / stage_speed_nm_per_s
    return int(numpy.argmax(numpy.asarray(scores, dtype=float) / (visit_s + travel)))


def visit_candidates(montage: Montage, candidates: typing.Sequence[Position], *, wanted: int, max_visits: int, zoom: ScanFrame,
                     register_px: int = 192, pixel_time_us: float | None = 2.0, verify_edge_eV: float | None = None, min_jump: float = 0.1,
                     exposure_ms: float = 100.0, focus_half_range_nm: float | None = None, same_target_nm: float = 1000.0, key_prefix: str = "",
                     scores: typing.Sequence[float] | None = None, shapes: typing.Sequence[_NDArray | None] | None = None,
                     model: ShapeModel | None = None, stage_speed_nm_per_s: float = 20_000.0,
                     then: typing.Callable[[Visit], SubPlan] | None = None) -> SubPlan:
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
        another tile): it is skipped, or not verified again (no spectrum).  A candidate within half of it of an object
        rejected before is that object again, and is skipped.
    scores : sequence of float or None
        Each candidate's prior score (e.g. the few-shot probability of the wanted class).  Given (or with ``model``), the
        visits are *adaptive*: each next candidate is the one with the most targets expected per second of instrument
        time, its score over the visit plus the stage travel (:func:`next_candidate`), so a nearly as likely candidate
        nearby goes before one across the region.  None (and no model): the order given.
    shapes, model : optional
        Each candidate's :func:`object_shape` on the montage, and a :class:`ShapeModel`; the score is multiplied by the
        model's probability, and every verified or rejected visit teaches the model.  A candidate with a shape is an
        object's centre: the spectrum is taken at the zoom's centre, where registration put it; one without (a tile's
        centre) takes it on the object the zoom shows nearest its centre (:func:`object_centre`).
    stage_speed_nm_per_s : float
        The stage's travel speed, for the travel part of the order.
    then : callable, optional
        ``then(visit)``, a sub-plan run at each verified target while the
        stage is still there (the zoom's field centred on it): ELIT and
        spectra, a vacancy line, a higher-magnification series.  What it
        returns is not kept; it publishes its own products.
    """
    if wanted < 1 or max_visits < 1:
        raise ValueError(f"wanted and max_visits must be at least 1, got {wanted!r} and {max_visits!r}")
    if zoom.fov_nm >= register_px * montage.pixel_size_nm:
        raise ValueError(f"the zoomed field ({zoom.fov_nm:g} nm) must be smaller than the registration field ({register_px * montage.pixel_size_nm:g} nm)")
    if model is not None and (shapes is None or len(shapes) != len(candidates)):
        raise ValueError(f"a shape model needs one shape (or None) per candidate: {len(candidates)} candidates, "
                         f"{'no' if shapes is None else len(shapes)} shapes")
    if scores is not None and len(scores) != len(candidates):
        raise ValueError(f"scores must hold one score per candidate: {len(candidates)} candidates, {len(scores)} scores")
    register_frame = ScanFrame((register_px, register_px), register_px * montage.pixel_size_nm)
    positions = numpy.asarray(candidates, dtype=float).reshape(-1, 2)
    prior = numpy.ones(len(positions)) if scores is None else numpy.asarray(scores, dtype=float)
    adaptive = scores is not None or model is not None
    remaining = list(range(len(positions)))
    here: Position | None = None
    visits: list[Visit] = []
    verified_at: list[Position] = []
    rejected_at: list[Position] = []
    while remaining and len(visits) < max_visits:
        if adaptive:
            rank = prior[remaining] * (model.probability([shapes[k] for k in remaining]) if model is not None and shapes is not None else 1.0)
            index = remaining[next_candidate(rank, positions[remaining], here, stage_speed_nm_per_s=stage_speed_nm_per_s)]
            score: float | None = float(rank[remaining.index(index)])
        else:
            index, score = remaining[0], None
        remaining.remove(index)
        candidate = (float(positions[index][0]), float(positions[index][1]))
        if any(math.dist(candidate, v) < same_target_nm for v in verified_at) or any(math.dist(candidate, v) < 0.5 * same_target_nm for v in rejected_at):
            continue
        yield Checkpoint()
        yield MoveStage.to(y=candidate[0], x=candidate[1], label=f"candidate {index + 1}: stage")
        here = candidate
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
        if shapes is not None and shapes[index] is not None:
            # the candidate is an object's centre on the montage, and registration put the frame's centre on it within nm
            target = offset
        else:
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
        (verified_at if verified else rejected_at).append(where)
        if model is not None and shapes is not None and verify_edge_eV is not None:
            model.learn(shapes[index], verified=verified)
        found = sum(v.verified for v in visits)
        yield Report({"visit": index + 1, "candidate_nm": list(candidate), "score": None if score is None else round(score, 4),
                      "stage_error_nm": [round(e, 1) for e in error], "edge_jump": jump, "verified": verified, "found": found})
        if verified:
            yield Publish(Product(f"{key_prefix}target-{found}", f"Target {found}", image.xdata,
                                  caption=f"candidate {index + 1} at stage ({candidate[0]:.0f}, {candidate[1]:.0f}) nm; stage error "
                                          f"({error[0]:.0f}, {error[1]:.0f}) nm corrected by the scan offset"))
            if then is not None:
                yield from then(visit)  # the hand-off: the stage is at the target, the zoom's field centred on it
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


def bright_objects(image: numpy.typing.ArrayLike, film: float, *, min_contrast: float = 0.5, min_area_px: int = 8) -> _NDArray:
    """Centres (row, column) of the connected regions brighter than the film by ``min_contrast`` of it, of ``min_area_px`` pixels or more.

    Examples
    --------
    >>> image = numpy.full((40, 40), 10.0); image[5:10, 5:10] = 30.0; image[30:32, 30:32] = 30.0
    >>> bright_objects(image, 10.0).round(1).tolist()  # the 2 × 2 speck is too small
    [[7.0, 7.0]]
    """
    import scipy.ndimage

    smooth = scipy.ndimage.gaussian_filter(numpy.asarray(image, dtype=float), 1.0, mode="nearest")
    labels, count = scipy.ndimage.label(smooth > film * (1.0 + min_contrast))
    if count == 0:
        return numpy.zeros((0, 2))
    index = numpy.arange(1, count + 1)
    areas = scipy.ndimage.sum_labels(numpy.ones_like(smooth), labels, index)
    centres = numpy.asarray(scipy.ndimage.center_of_mass(numpy.ones_like(smooth), labels, index), dtype=float).reshape(-1, 2)
    return typing.cast(_NDArray, centres[areas >= min_area_px])


def _window(montage: Montage, centre_nm: numpy.typing.ArrayLike, size_px: int, fill: float) -> _NDArray:
    """The square of ``size_px`` montage pixels about a stage position; what lies beyond the montage is ``fill`` (the film)."""
    corner = numpy.round((numpy.asarray(centre_nm, dtype=float) - numpy.asarray(montage.origin_nm)) / montage.pixel_size_nm).astype(int) - size_px // 2
    window = numpy.full((size_px, size_px), float(fill))
    low = numpy.maximum(corner, 0)
    high = numpy.minimum(corner + size_px, montage.image.shape)
    if numpy.all(high > low):
        window[low[0] - corner[0]:high[0] - corner[0], low[1] - corner[1]:high[1] - corner[1]] = montage.image[low[0]:high[0], low[1]:high[1]]
    return window


def rank_candidates(montage: Montage, tiles: ClassifiedTiles, target_class: str) -> tuple[list[Position], list[float], list[_NDArray | None]]:
    """The candidates of a classified montage: one per bright object, with the few-shot probability of ``target_class`` and its shape.

    Every bright object on the montage (:func:`bright_objects`) is a
    candidate, at its own centre; so two objects that share a tile are two
    candidates, and an object seen by several overlapping tiles is one.  A
    candidate's score is the highest probability of the class among the
    tiles whose centres lie within half a tile of it, whatever class they
    were given (so an object the classifier put elsewhere still comes, later);
    its shape is :func:`object_shape` in a window of one tile about it.
    Tiles of the class with no bright object near them are candidates too,
    at their centres, after the rest (score 0: a kind that is not brighter
    than the film is still found, by the few-shot class alone).
    """
    tile_px = tiles.tile_map.grid.tile_px
    tile_nm = tile_px * montage.pixel_size_nm
    k = tiles.tile_map.class_names.index(target_class)
    of_class = tiles.tile_map.classes == k
    centres = tiles.frame.pixel_to_nm(tiles.tile_map.grid.centres_px).reshape(-1, 2)
    wanted = tiles.tile_map.probabilities[:, k]
    film = film_level(montage.image)
    # a blank montage (the beam blanked, or a dry run's planning microscope) shows no objects, only the classified tiles
    objects = montage.stage_nm_of_pixel(bright_objects(montage.image, film)).reshape(-1, 2) if film > 0 else numpy.zeros((0, 2))
    positions: list[Position] = []
    scores: list[float] = []
    shapes: list[_NDArray | None] = []
    covered = numpy.zeros(len(centres), dtype=bool)
    for c in objects:
        near = numpy.abs(centres - c).max(axis=1) <= 0.5 * tile_nm
        if not near.any():
            continue
        # every object is a candidate, scored by its likeliest tile: one the classifier put in another class (or "unknown")
        # still comes, later, and the shape model may lift it
        covered |= near
        positions.append((float(c[0]), float(c[1])))
        scores.append(float(wanted[near].max()))
        shapes.append(object_shape(_window(montage, c, tile_px, film), film))
    rest = [(float(y), float(x)) for (y, x), p in sorted(zip(centres[of_class & ~covered].tolist(), wanted[of_class & ~covered], strict=True),
                                                         key=lambda t: -t[1])]
    for kept in distinct_candidates(rest, 0.75 * tile_nm):
        positions.append(kept)
        scores.append(0.0)
        shapes.append(None)
    return positions, scores, shapes


def search_montage(montage: Montage, support: SupportSet | str | pathlib.Path, target_class: str, *, wanted: int = 3, max_visits: int = 10,
                   zoom: ScanFrame = DEFAULT_ZOOM, overlap: float = 0.75, verify_edge_eV: float | None = None,
                   pixel_time_us: float | None = 2.0, focus_half_range_nm: float | None = None, adaptive: bool = True,
                   then: typing.Callable[[Visit], SubPlan] | None = None) -> SubPlan:
    """Sub-plan: classify a montage's tiles, then visit and verify the likeliest candidates of ``target_class``; returns the :class:`Visit` list.

    ``overlap`` is that of the classified tiles: 0.75 puts some tile's centre
    within an eighth of a tile of every object, which matters when the
    support set's examples are centred on their objects.

    ``adaptive`` (the default) ranks the candidates by their few-shot
    probability times a :class:`ShapeModel` of the support set's examples
    (size, contrast, flatness, outline of the object on the montage), learns
    from every verified and rejected visit, and orders the visits by targets
    expected per second, stage travel included (:func:`visit_candidates`).
    False, or a wanted kind whose examples show nothing brighter than the
    film (the shape model cannot learn it), visits the tiles surest first,
    as classified, each centred on the largest bright object in it.

    Raises
    ------
    ValueError
        If the support set has no example of ``target_class`` (before anything is acquired).
    """
    from nion_autoem.plans.tile_classification import resolve_support

    chosen = resolve_support(support)
    if target_class not in chosen.class_names:
        raise ValueError(f"target_class {target_class!r} has no examples in the support set; its classes are {list(chosen.class_names)}")
    model: ShapeModel | None = None
    if adaptive:
        try:
            model = ShapeModel.from_support(chosen, target_class)
        except ValueError:
            model = None  # the wanted kind is no brighter than the film: its tiles, not objects, are the candidates
    tiles = yield from classify_tiles_in(montage.measurement(), chosen, overlap=overlap, key_prefix="montage-")
    if model is not None:
        candidates, scores, shapes = rank_candidates(montage, tiles, target_class)
        yield Report({"candidates": len(candidates), "target_class": target_class, "with_object": sum(s is not None for s in shapes),
                      "order": "adaptive"})
        visits = yield from visit_candidates(montage, candidates, wanted=wanted, max_visits=max_visits, zoom=zoom, pixel_time_us=pixel_time_us,
                                             verify_edge_eV=verify_edge_eV, focus_half_range_nm=focus_half_range_nm, scores=scores, shapes=shapes,
                                             model=model, then=then)
        return visits
    tile_nm = tiles.tile_map.grid.tile_px * montage.pixel_size_nm
    candidates = distinct_candidates([refine_on_montage(montage, c, tiles.tile_map.grid.tile_px) for c in tiles.centres_nm(target_class)], 0.75 * tile_nm)
    yield Report({"candidates": len(candidates), "target_class": target_class, "order": "surest first"})
    visits = yield from visit_candidates(montage, candidates, wanted=wanted, max_visits=max_visits, zoom=zoom, pixel_time_us=pixel_time_us,
                                         verify_edge_eV=verify_edge_eV, focus_half_range_nm=focus_half_range_nm, then=then)
    return visits


def closer_look(visit: Visit, *, fov_nm: float = 300.0, shape: tuple[int, int] = (128, 128), pixel_time_us: float | None = 4.0) -> SubPlan:
    """A ``then`` for a search: a smaller, slower field centred on the target; returns the survey."""
    look = yield Survey(ScanFrame(shape, fov_nm, visit.target_nm), pixel_time_us=pixel_time_us, label="closer look")
    return look


def spectra_across(visit: Visit, *, count: int = 5, span_nm: float = 400.0, exposure_ms: float = 100.0) -> SubPlan:
    """A ``then`` for a search: ``count`` spectra on a line across the target (its edge to its centre to its other edge); returns them."""
    from nion_autoem.plans.subplans import spectra_at

    y, x = visit.target_nm
    line = [(y, x + offset) for offset in numpy.linspace(-0.5 * span_nm, 0.5 * span_nm, count)]
    spectra = yield from spectra_at(line, exposure_ms, label="across the target")
    return spectra


#: What a search can hand each verified target to, by name (the panel's choice).
HAND_OFFS: dict[str, typing.Callable[[Visit], SubPlan] | None] = {"nothing": None, "closer look": closer_look, "spectra across it": spectra_across}


@plan("search")
def search_plan(centre_nm: tuple[float, float], size_nm: tuple[float, float], support: SupportSet | str | pathlib.Path, target_class: str, *,
                wanted: int = 3, max_visits: int = 10, tile_fov_nm: float = 8000.0, tile_px: int = 256, overlap: float = 0.3,
                zoom: ScanFrame = DEFAULT_ZOOM, verify_edge_eV: float | None = None, pixel_time_us: float | None = 2.0,
                limits: StageLimits | None = None, focus_half_range_nm: float | None = None,
                then: typing.Callable[[Visit], SubPlan] | None = None) -> PlanGenerator:
    """Montage a region, classify it, then visit and verify candidates of ``target_class`` until ``wanted`` are found.

    ``then(visit)`` is a sub-plan handed each verified target (see :func:`visit_candidates`).

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
    # the map of the sample (lattice, orientation, focus, contamination per 64 px tile), for signposts and for the record
    yield Publish(map_montage(montage, MAP_TILE_PX).product())
    visits = yield from search_montage(montage, chosen, target_class, wanted=wanted, max_visits=max_visits, zoom=zoom, verify_edge_eV=verify_edge_eV,
                                       pixel_time_us=pixel_time_us, focus_half_range_nm=focus_half_range_nm, then=then)
    found = sum(v.verified for v in visits)
    return f"{found} of {wanted} {target_class} target(s) verified in {len(visits)} visit(s)"
