"""Montage: tile a region of the sample with overlapping surveys, register them, stitch them in stage coordinates.

A stage lands tens to hundreds of nm away from where it was sent (backlash,
repeatability, settling drift), which at a montage's pixel size is several
pixels.  Placing tiles where the stage was *told* to go therefore tears
every edge.  The montage instead:

1. moves the stage to each tile of a serpentine raster (so it reverses, and
   shows its backlash, once a row) and surveys it;
2. registers every pair of neighbours on their commanded overlap
   (:func:`nion_autoem_targeting.drift.measure_shift`, cross-correlation
   with a window, of the band-passed tiles: :func:`band_pass`), and scores
   each pair by the normalised correlation after the shift; featureless or
   contradictory pairs are dropped and reported;
3. fits all tile positions at once (least squares on the pair shifts, with
   a weak pull towards the commanded positions so a tile with no good
   neighbour stays where it was sent), so errors do not pile up along a path;
4. stitches the tiles, feathered, into one image calibrated in stage µm, and
   publishes it, row by row while it runs.

The fitted error of each move (fitted minus commanded position) is recorded
in the montage and reported; an error beyond ``max_stage_error_nm`` is a
stage that landed far from where it should, and stops the plan.

Positions are relative: the montage cannot know where the first tile
*really* was, only where every tile was relative to the others.  The fit
fixes the mean error over all tiles at zero.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import xdata as xdata_builders
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
from nion_autoem.products import Product

_NDArray = numpy.typing.NDArray[typing.Any]

#: Pairs whose overlaps correlate less than this after registration are not trusted (bare film, or a wrong peak).
MIN_PAIR_CORRELATION = 0.25
#: A pair whose measured shift disagrees with the global fit by more than this many pixels is dropped as an outlier.
OUTLIER_PX = 1.5
#: Band of the registrations (Gaussian sigmas in pixels): detail finer than ``[0]`` is shot noise, coarser than ``[1]`` is the film's
#: slow texture, whose broad correlation peak a few counts of noise shift by pixels.
BAND_PX = (0.7, 6.0)


def band_pass(image: numpy.typing.ArrayLike, band_px: tuple[float, float] = BAND_PX) -> _NDArray:
    """The image between two scales (a difference of Gaussians): what registers a frame to a fraction of a pixel.

    Plain cross-correlation of shot-noisy frames is dominated by the slow
    texture of the film, whose peak is as broad as the texture is slow: a
    little noise moves it by pixels.  Edges and small objects give a sharp
    peak.  Measured on the stage-scale twin (31 nm pixels, 12 counts per
    pixel on film): the median error of neighbouring tiles' shifts fell
    from 0.17 to 0.10 px, and the RMS from 0.7 to 0.2 px (fewer wrong peaks).

    Examples
    --------
    >>> image = numpy.ones((32, 32)); image[10:20, 10:20] = 3.0
    >>> flat = band_pass(numpy.ones((32, 32)))
    >>> bool(numpy.allclose(flat, 0.0)), bool(band_pass(image)[15, 15] > 0.5)
    (True, True)
    """
    low, high = band_px
    if not 0.0 <= low < high:
        raise ValueError(f"band_px must be (fine, coarse) Gaussian sigmas with 0 <= fine < coarse pixels, e.g. {BAND_PX}; got {band_px!r}")
    data = numpy.asarray(image, dtype=float)
    fine = scipy.ndimage.gaussian_filter(data, low, mode="nearest") if low > 0 else data
    return typing.cast(_NDArray, fine - scipy.ndimage.gaussian_filter(data, high, mode="nearest"))


@dataclasses.dataclass(frozen=True)
class MontageLayout:
    """Where the tiles of a montage go: a serpentine raster over a region.

    Parameters
    ----------
    centre_nm : tuple of float
        Centre of the region, stage (y, x) nm.
    size_nm : tuple of float
        Height and width of the region, nm.
    tile : ScanFrame
        The survey of one tile (its centre must be (0, 0): the stage, not the scan, moves).
    overlap : float
        Fraction of a tile shared with each neighbour, 0.1 to 0.6.

    Examples
    --------
    >>> layout = MontageLayout((0.0, 0.0), (9600.0, 9600.0), ScanFrame((128, 128), 4000.0), 0.3)
    >>> layout.grid_shape, layout.step_px, round(layout.step_nm, 1)
    ((3, 3), 90, 2812.5)
    >>> layout.positions_nm()[:4].tolist()  # the second row runs back: serpentine
    [[-2812.5, -2812.5], [-2812.5, 0.0], [-2812.5, 2812.5], [0.0, 2812.5]]
    """

    centre_nm: tuple[float, float]
    size_nm: tuple[float, float]
    tile: ScanFrame
    overlap: float = 0.3

    def __post_init__(self) -> None:
        if not 0.1 <= self.overlap <= 0.6:
            raise ValueError(f"overlap must be a fraction of a tile from 0.1 to 0.6 (0.3 is usual), got {self.overlap!r}")
        if self.tile.center_nm != (0.0, 0.0) or self.tile.rotation_rad != 0.0 or self.tile.shape[0] != self.tile.shape[1]:
            raise ValueError(f"tile must be a square, unrotated scan centred on the optical axis (the stage moves, not the scan), got {self.tile}")
        if min(self.tile.shape) < 64:
            raise ValueError(f"tile must have at least 64 × 64 pixels for the overlaps to register, got {self.tile.shape}")
        size = tuple(float(v) for v in self.size_nm)
        if len(size) != 2 or not all(math.isfinite(v) and v >= self.tile.fov_nm for v in size):
            raise ValueError(f"size_nm must be a (height, width) in nm of at least one tile's field ({self.tile.fov_nm:g} nm), got {self.size_nm!r}")

    @property
    def step_px(self) -> int:
        """Stage step between neighbours, in whole tile pixels (so overlaps line up with pixels)."""
        return int(round(self.tile.shape[0] * (1.0 - self.overlap)))

    @property
    def step_nm(self) -> float:
        return self.step_px * self.tile.pixel_size_nm

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Tiles (rows, columns) needed to cover the region."""
        return (max(1, math.ceil((self.size_nm[0] - self.tile.fov_nm) / self.step_nm) + 1),
                max(1, math.ceil((self.size_nm[1] - self.tile.fov_nm) / self.step_nm) + 1))

    def grid_indices(self) -> _NDArray:
        """(row, column) of each tile in the order they are taken: left to right, then right to left."""
        rows, cols = self.grid_shape
        order = [(r, c if r % 2 == 0 else cols - 1 - c) for r in range(rows) for c in range(cols)]
        return numpy.asarray(order, dtype=int)

    def positions_nm(self) -> _NDArray:
        """Commanded stage (y, x) nm of each tile, in the order they are taken."""
        index = self.grid_indices().astype(float)
        rows, cols = self.grid_shape
        offset = (index - 0.5 * (numpy.array([rows, cols]) - 1)) * self.step_nm
        return typing.cast(_NDArray, offset + numpy.asarray(self.centre_nm, dtype=float))

    def check_limits(self, limits: StageLimits) -> None:
        """Raise ValueError, naming the region, if any tile lies beyond the stage's travel."""
        p = self.positions_nm()
        for axis, name in enumerate(("y", "x")):
            low, high = limits[axis]
            if p[:, axis].min() < low or p[:, axis].max() > high:
                raise ValueError(f"the montage region {self.size_nm} nm about {self.centre_nm} nm needs the stage {name} from {p[:, axis].min():.6g} to "
                                 f"{p[:, axis].max():.6g} nm, beyond its travel [{low:.6g}, {high:.6g}] nm; choose a smaller region or move its centre")


@dataclasses.dataclass(frozen=True)
class PairShift:
    """The registration of two neighbouring tiles: tile ``second``'s position error minus tile ``first``'s, in nm."""

    first: int
    second: int
    shift_nm: tuple[float, float]
    correlation: float
    used: bool = True


def overlap_strips(first: _NDArray, second: _NDArray, offset_px: tuple[int, int]) -> tuple[_NDArray, _NDArray]:
    """The parts of two tiles that a commanded offset of ``offset_px`` (rows, columns; one of them 0) makes the same area.

    Examples
    --------
    >>> a, b = numpy.arange(16.0).reshape(4, 4), numpy.zeros((4, 4))
    >>> [s.shape for s in overlap_strips(a, b, (0, 3))]
    [(4, 1), (4, 1)]
    """
    dy, dx = offset_px
    rows, cols = first.shape
    if dy < 0 or dx < 0 or (dy and dx) or dy >= rows or dx >= cols:
        raise ValueError(f"offset_px must step down or right by less than a tile, got {offset_px}")
    return first[dy:, dx:], second[: rows - dy, : cols - dx]


def register_pair(first: _NDArray, second: _NDArray, offset_px: tuple[int, int], pixel_size_nm: float, *,
                  band_px: tuple[float, float] | None = BAND_PX) -> tuple[tuple[float, float], float]:
    """How far ``second`` really lies from ``first`` beyond the commanded ``offset_px``, in nm, and how well the overlaps then agree.

    Both tiles are band-passed first (:func:`band_pass`; ``band_px=None``: as they are).

    Returns
    -------
    shift_nm : (dy, dx)
        Position error of ``second`` minus that of ``first``.
    correlation : float
        Normalised cross-correlation of the overlaps after the shift (1: identical, ~0: unrelated).

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> field = scipy.ndimage.gaussian_filter(rng.normal(size=(200, 300)), 3)
    >>> a, b = field[20:148, 20:148], field[23:151, 110:238]  # b sits 3 px lower and 2 px further right than a step of 88 px
    >>> shift, score = register_pair(a, b, (0, 88), 10.0)
    >>> [round(v) for v in shift], score > 0.9
    ([30, 20], True)
    """
    from nion_autoem_targeting.drift import measure_shift

    if band_px is not None:
        first, second = band_pass(first, band_px), band_pass(second, band_px)
    a, b = overlap_strips(numpy.asarray(first, dtype=float), numpy.asarray(second, dtype=float), offset_px)
    if not (numpy.ptp(a) > 0 and numpy.ptp(b) > 0):
        return (0.0, 0.0), 0.0  # a flat overlap (a blanked beam, a dry run) holds nothing to register: the pair scores 0 and is dropped
    dy, dx = measure_shift(a, b, pixel_size_nm, upsample=10)
    # features move by minus the second tile's extra offset: a stage that went too far shows the sample shifted back
    sy, sx = -dy / pixel_size_nm, -dx / pixel_size_nm
    iy, ix = int(round(sy)), int(round(sx))
    rows, cols = a.shape
    ya, yb = (iy, 0) if iy >= 0 else (0, -iy)
    xa, xb = (ix, 0) if ix >= 0 else (0, -ix)
    h, w = rows - abs(iy), cols - abs(ix)
    if h < 8 or w < 8:
        return (-dy, -dx), 0.0
    pa, pb = a[ya:ya + h, xa:xa + w], b[yb:yb + h, xb:xb + w]
    # a second pass on the common area only: on a narrow strip the first pass's window and the non-overlapping border bias the sub-pixel part
    ry, rx = measure_shift(pa, pb, pixel_size_nm, upsample=20)
    dy, dx = -iy * pixel_size_nm + ry, -ix * pixel_size_nm + rx
    pa, pb = pa - pa.mean(), pb - pb.mean()
    norm = float(numpy.sqrt((pa**2).sum() * (pb**2).sum()))
    return (-dy, -dx), float((pa * pb).sum() / norm) if norm > 0 else 0.0


def fit_positions(commanded_nm: _NDArray, pairs: typing.Sequence[PairShift], *, prior_weight: float = 1e-3) -> _NDArray:
    """Each tile's position error (n, 2) nm that best explains the pair shifts, mean error zero.

    Parameters
    ----------
    commanded_nm : ndarray, shape (n, 2)
        Where each tile was sent.
    pairs : sequence of PairShift
        The registrations; only those with ``used`` count, weighted by their correlation.
    prior_weight : float
        Pull of every error towards zero, relative to a pair of correlation 1:
        it keeps a tile with no trusted neighbour where it was sent.

    Examples
    --------
    >>> pairs = [PairShift(0, 1, (10.0, 0.0), 1.0), PairShift(1, 2, (0.0, -5.0), 1.0)]
    >>> fit_positions(numpy.zeros((3, 2)), pairs).round(1).tolist()
    [[-6.7, 1.7], [3.3, 1.7], [3.3, -3.3]]
    """
    n = len(commanded_nm)
    used = [p for p in pairs if p.used]
    rows = len(used) + n + 1
    matrix = numpy.zeros((rows, n))
    target = numpy.zeros((rows, 2))
    for k, p in enumerate(used):
        w = max(p.correlation, 0.0)
        matrix[k, p.second], matrix[k, p.first] = w, -w
        target[k] = w * numpy.asarray(p.shift_nm)
    matrix[len(used):len(used) + n] = numpy.eye(n) * prior_weight
    # the absolute position of the whole montage is unobservable: fix the mean error at zero
    matrix[-1] = 1.0
    solution, *_ = numpy.linalg.lstsq(matrix, target, rcond=None)
    return typing.cast(_NDArray, solution)


@dataclasses.dataclass
class Montage:
    """A stitched montage and how it was made.

    Attributes
    ----------
    layout : MontageLayout
    tiles : list of ndarray
        The surveys, in the order they were taken.
    commanded_nm : ndarray, shape (n, 2)
        Where the stage was sent for each tile.
    errors_nm : ndarray, shape (n, 2)
        Fitted position error of each tile (fitted minus commanded).
    pairs : list of PairShift
    image : ndarray
        The stitched montage.
    origin_nm : tuple of float
        Stage (y, x) nm of the centre of the montage's first pixel.
    """

    layout: MontageLayout
    tiles: list[_NDArray]
    commanded_nm: _NDArray
    errors_nm: _NDArray
    pairs: list[PairShift]
    image: _NDArray
    origin_nm: tuple[float, float]

    @property
    def pixel_size_nm(self) -> float:
        return self.layout.tile.pixel_size_nm

    @property
    def fitted_nm(self) -> _NDArray:
        """Where each tile really was, as the montage sees it (stage nm)."""
        return self.commanded_nm + self.errors_nm

    @property
    def frame(self) -> ScanFrame:
        """The montage as a scan frame in stage nm: its ``pixel_to_nm`` gives stage positions."""
        rows, cols = self.image.shape
        p = self.pixel_size_nm
        fov = max(rows, cols) * p
        return ScanFrame((rows, cols), fov, (self.origin_nm[0] + 0.5 * (rows - 1) * p, self.origin_nm[1] + 0.5 * (cols - 1) * p))

    def stage_nm_of_pixel(self, pixel: numpy.typing.ArrayLike) -> _NDArray:
        """Stage (y, x) nm of montage pixel(s) (row, column)."""
        return typing.cast(_NDArray, numpy.asarray(pixel, dtype=float) * self.pixel_size_nm + numpy.asarray(self.origin_nm))

    def crop(self, centre_nm: Position, size_px: int) -> _NDArray | None:
        """The square of ``size_px`` montage pixels about a stage position, or None where it leaves the montage."""
        r, c = ((numpy.asarray(centre_nm) - numpy.asarray(self.origin_nm)) / self.pixel_size_nm).round().astype(int) - size_px // 2
        if r < 0 or c < 0 or r + size_px > self.image.shape[0] or c + size_px > self.image.shape[1]:
            return None
        return self.image[r:r + size_px, c:c + size_px]

    def xdata(self) -> DataAndMetadata.DataAndMetadata:
        """The montage calibrated in stage µm, with the tile positions and errors in its metadata."""
        p = self.pixel_size_nm * 1e-3
        calibrations = [Calibration.Calibration(self.origin_nm[0] * 1e-3 - 0.5 * p, p, "µm"), Calibration.Calibration(self.origin_nm[1] * 1e-3 - 0.5 * p, p, "µm")]
        metadata = {"nion_autoem": {"montage": {"tile": self.layout.tile.to_dict(), "overlap": self.layout.overlap, "grid_shape": list(self.layout.grid_shape),
                                                "commanded_nm": self.commanded_nm.round(2).tolist(), "errors_nm": self.errors_nm.round(2).tolist(),
                                                "pairs_used": sum(q.used for q in self.pairs), "pairs": len(self.pairs)}}}
        return DataAndMetadata.new_data_and_metadata(self.image.astype(numpy.float32), intensity_calibration=Calibration.Calibration(units="counts"),
                                                     dimensional_calibrations=calibrations, metadata=metadata)

    def measurement(self) -> Measurement:
        """The montage as a survey measurement (no dose of its own), for sub-plans that read surveys, e.g. tile classification."""
        frame = self.frame
        return Measurement({"HAADF": xdata_builders.image_xdata(self.image, frame)}, "survey", frame=frame)


def stitch(tiles: typing.Sequence[_NDArray], positions_nm: _NDArray, pixel_size_nm: float) -> tuple[_NDArray, tuple[float, float]]:
    """Blend tiles placed at stage positions (their centres) into one image, feathered towards each tile's edges.

    Returns the image and the stage (y, x) nm of its first pixel's centre.

    Examples
    --------
    >>> image, origin = stitch([numpy.ones((4, 4)), 3 * numpy.ones((4, 4))], numpy.array([[0.5, 0.5], [0.5, 2.5]]), 1.0)
    >>> image.shape, origin, image[1].round(2).tolist()
    ((4, 6), (-1.0, -1.0), [1.0, 1.0, 1.67, 2.33, 3.0, 3.0])
    """
    n = tiles[0].shape[0]
    corner = numpy.asarray(positions_nm, dtype=float) / pixel_size_nm - 0.5 * (n - 1)
    low = numpy.floor(corner.min(axis=0))
    shape = (numpy.ceil(corner.max(axis=0) - low).astype(int) + n)
    total = numpy.zeros(shape)
    weight = numpy.zeros(shape)
    ramp = numpy.minimum(numpy.arange(n) + 1.0, n - numpy.arange(n)) / (0.5 * n)
    feather = numpy.outer(ramp, ramp)
    for tile, c in zip(tiles, corner - low, strict=True):
        whole = numpy.floor(c).astype(int)
        fraction = c - whole
        # the sub-pixel part is a shift of the tile itself; its border, where the shift has no data, gets no weight
        shifted = scipy.ndimage.shift(numpy.asarray(tile, dtype=float), fraction, order=1, mode="nearest")
        w = scipy.ndimage.shift(feather, fraction, order=1, mode="constant", cval=0.0)
        r0, c0 = int(whole[0]), int(whole[1])
        h = min(n + 1, shape[0] - r0)
        v = min(n + 1, shape[1] - c0)
        padded, padded_w = numpy.zeros((n + 1, n + 1)), numpy.zeros((n + 1, n + 1))
        padded[:n, :n], padded_w[:n, :n] = shifted, w
        total[r0:r0 + h, c0:c0 + v] += (padded * padded_w)[:h, :v]
        weight[r0:r0 + h, c0:c0 + v] += padded_w[:h, :v]
    image = numpy.divide(total, weight, out=numpy.zeros(shape), where=weight > 0)
    origin = low * pixel_size_nm
    return image, (float(origin[0]), float(origin[1]))


def register_and_stitch(layout: MontageLayout, tiles: typing.Sequence[_NDArray], commanded_nm: _NDArray, *, register: bool = True) -> Montage:
    """Register neighbouring tiles, fit their positions and stitch them (``register=False``: trust the commanded positions).

    Examples
    --------
    >>> rng = numpy.random.default_rng(1)
    >>> field = scipy.ndimage.gaussian_filter(rng.normal(size=(300, 300)), 2)
    >>> layout = MontageLayout((0.0, 0.0), (960.0, 960.0), ScanFrame((64, 64), 640.0), 0.5)  # 2 × 2 tiles of 10 nm pixels
    >>> commanded = layout.positions_nm()
    >>> true_px = numpy.round(commanded / 10.0).astype(int) + [[0, 0], [2, 0], [0, -1], [1, 1]]
    >>> tiles = [field[100 + y:164 + y, 100 + x:164 + x] for y, x in true_px]
    >>> montage = register_and_stitch(layout, tiles, commanded)
    >>> errors = montage.errors_nm - montage.errors_nm[0]
    >>> numpy.round(errors / 10.0).astype(int).tolist()
    [[0, 0], [2, 0], [0, -1], [1, 1]]
    """
    index = layout.grid_indices()[: len(tiles)]
    at = {(int(r), int(c)): k for k, (r, c) in enumerate(index)}
    pixel = layout.tile.pixel_size_nm
    pairs: list[PairShift] = []
    if register:
        for (r, c), k in at.items():
            for (dr, dc), offset in (((0, 1), (0, layout.step_px)), ((1, 0), (layout.step_px, 0))):
                other = at.get((r + dr, c + dc))
                if other is not None:
                    shift, score = register_pair(tiles[k], tiles[other], offset, pixel)
                    pairs.append(PairShift(k, other, shift, score, score >= MIN_PAIR_CORRELATION))
    errors = fit_positions(commanded_nm, pairs)
    for _ in range(max(2, len(pairs) // 10)):
        residual = [numpy.hypot(*(errors[p.second] - errors[p.first] - numpy.asarray(p.shift_nm))) / pixel for p in pairs]
        outliers = {i for i, (p, r) in enumerate(zip(pairs, residual, strict=True)) if p.used and r > OUTLIER_PX}
        if not outliers:
            break
        worst = max(outliers, key=lambda i: residual[i])
        pairs[worst] = dataclasses.replace(pairs[worst], used=False)
        errors = fit_positions(commanded_nm, pairs)
    # stage coordinates: the tile at stage position s shows the sample at s + scan position; positions of tile centres equal stage positions
    image, origin = stitch(tiles, commanded_nm + errors, pixel)
    return Montage(layout, list(tiles), numpy.asarray(commanded_nm, dtype=float), errors, pairs, image, origin)


def montage_product(montage: Montage, *, key: str = "montage", done: int | None = None) -> Product:
    """The stitched montage as a product, its caption saying how many tiles and how far the stage erred."""
    errors = numpy.hypot(montage.errors_nm[:, 0], montage.errors_nm[:, 1])
    used = sum(p.used for p in montage.pairs)
    total = len(montage.layout.grid_indices())
    count = f"{done if done is not None else len(montage.tiles)} of {total} tiles"
    caption = (f"{count} of {montage.layout.tile.fov_nm:g} nm, {montage.layout.overlap:.0%} overlap; {used} of {len(montage.pairs)} overlaps registered; "
               f"stage error per move (fitted) median {numpy.median(errors):.0f} nm, max {errors.max():.0f} nm")
    return Product(key, "Montage (stage µm)", montage.xdata(), caption=caption)


def acquire_montage(layout: MontageLayout, *, pixel_time_us: float | None = None, limits: StageLimits | None = None, register: bool = True,
                    max_stage_error_nm: float = 1000.0, publish_every_row: bool = True, key: str = "montage") -> SubPlan:
    """Sub-plan: survey every tile of ``layout``, register and stitch them, publish the montage; returns :class:`Montage`.

    Parameters
    ----------
    layout : MontageLayout
    pixel_time_us : float or None
        Pixel time of each tile's survey.
    limits : StageLimits or None
        The stage's travel; given, the whole region is checked before the first move (and so before the beam is unblanked).
    register : bool
        False places tiles where the stage was sent (a baseline).
    max_stage_error_nm : float
        A fitted move error beyond this stops the plan: the stage did not go where it was sent.
    publish_every_row : bool
        Publish the growing montage after each row, so it can be watched.
    """
    if limits is not None:
        layout.check_limits(limits)
    positions = layout.positions_nm()
    index = layout.grid_indices()
    tiles: list[_NDArray] = []
    montage: Montage | None = None
    for k, (y, x) in enumerate(positions):
        yield Checkpoint()
        yield MoveStage.to(y=float(y), x=float(x), label=f"tile {k + 1}: stage")
        survey = yield Survey(layout.tile, pixel_time_us=pixel_time_us, label=f"tile {k + 1} of {len(positions)}")
        tiles.append(numpy.asarray(survey.xdata.data, dtype=float))
        last_of_row = k + 1 == len(positions) or index[k + 1][0] != index[k][0]
        yield Report(fraction=(k + 1) / len(positions))
        if last_of_row and publish_every_row and k + 1 < len(positions):
            montage = register_and_stitch(layout, tiles, positions[: k + 1], register=register)
            yield Publish(montage_product(montage, key=key))
    montage = register_and_stitch(layout, tiles, positions, register=register)
    errors = numpy.hypot(montage.errors_nm[:, 0], montage.errors_nm[:, 1])
    yield Report({"montage_tiles": len(tiles), "pairs_used": sum(p.used for p in montage.pairs), "pairs": len(montage.pairs),
                  "stage_error_nm": montage.errors_nm.round(1).tolist(), "stage_error_median_nm": float(numpy.median(errors)),
                  "dropped_pairs": [[p.first, p.second, round(p.correlation, 3)] for p in montage.pairs if not p.used]})
    yield Publish(montage_product(montage, key=key))
    if errors.max() > max_stage_error_nm:
        worst = int(errors.argmax())
        raise RuntimeError(f"tile {worst + 1} lies {errors[worst]:.0f} nm from where the stage was sent, more than max_stage_error_nm={max_stage_error_nm:g}; "
                           "the stage did not go where it was told: check it before trusting positions")
    return montage


@plan("montage")
def montage_plan(centre_nm: tuple[float, float], size_nm: tuple[float, float], tile_fov_nm: float = 4000.0, tile_px: int = 128, overlap: float = 0.3,
                 pixel_time_us: float | None = 2.0, limits: StageLimits | None = None) -> PlanGenerator:
    """Montage a region of the sample: the plan form of :func:`acquire_montage`.

    Examples
    --------
    >>> p = montage_plan((0.0, 0.0), (8000.0, 8000.0))
    >>> p.name, p.parameters["tile_fov_nm"]
    ('montage', 4000.0)
    """
    layout = MontageLayout((float(centre_nm[0]), float(centre_nm[1])), (float(size_nm[0]), float(size_nm[1])), ScanFrame((tile_px, tile_px), tile_fov_nm),
                           overlap)
    montage = yield from acquire_montage(layout, pixel_time_us=pixel_time_us, limits=limits)
    rows, cols = layout.grid_shape
    return f"montage of {rows} × {cols} tiles, {montage.image.shape[0]} × {montage.image.shape[1]} px at {montage.pixel_size_nm:.3g} nm per pixel"
