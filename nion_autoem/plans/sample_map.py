"""A map of the sample (Nanocartographer): per tile of a montage, the lattice and the quality, as signposts a plan can go to.

For each square tile of a montage (or of any calibrated survey):

- **lattice** from the tile's power spectrum: the strongest peak outside the
  slow texture, its ``lattice_strength`` (peak power over the median power
  at the same spatial frequency: a crystal shows tens to thousands, film or
  noise a few), ``spacing_nm`` (the period of that peak) and
  ``orientation_deg`` (the direction of the peak's wave vector, modulo 180°),
  and ``lattice`` (strength at least ``min_strength``);
- ``orientation_change_deg``: the largest difference of orientation to a
  neighbouring tile that also shows a lattice (a grain boundary or a fold);
- **quality**: ``focus`` (the share of the signal's power, shot noise
  removed, at the finest quarter of the frequencies: blur takes it first)
  and ``contamination`` (the fraction of the tile covered by faint haze: a
  smoothed signal 30 to 65 % above the film's, away from the rims of
  brighter flakes and particles).  A weak proxy: on the stage-scale twin,
  tiles it scores over 0.1 hold contamination about 2.5 times as often as
  tiles at large (64 % against 25 %), and the film's slow texture fools it.

:class:`SampleMap` holds the table (a product), and
:meth:`SampleMap.where` picks the tiles whose value satisfies a rule
(``"lattice_strength >= 20"``, ``"orientation_change_deg > 10"``,
``"contamination < 0.1"``); :func:`go_to_tiles` is the plan step "go to the
tiles whose <value> satisfies <rule>", registering on the montage at each.

On the stage-scale twin (31 nm pixels, no atomic lattice rendered) every
tile answers "no lattice"; the lattice values matter at atomic-resolution
pixels, on a real sample or the MoS2 twin.  Pure code: no Swift.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import views
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import SubPlan
from nion_autoem.plan import plan
from nion_autoem.plans.montage import Montage
from nion_autoem.products import Product

_NDArray = numpy.typing.NDArray[typing.Any]

#: The values of every tile, in the table's order.
MAP_COLUMNS = ("tile", "row", "col", "y_nm", "x_nm", "lattice", "lattice_strength", "spacing_nm", "orientation_deg", "orientation_change_deg",
               "focus", "contamination")
#: The zoomed survey at each signposted tile.
SIGNPOST_ZOOM = ScanFrame((128, 128), 1500.0)
#: The values a rule may test.
RULE_VALUES = MAP_COLUMNS[5:]
_OPERATORS: dict[str, typing.Callable[[typing.Any, typing.Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}


@dataclasses.dataclass(frozen=True)
class Lattice:
    """What a tile's power spectrum says about a lattice in it.

    Attributes
    ----------
    strength : float
        Peak power over the median power at the same spatial frequency.
    spacing_nm : float
        Period of the strongest peak.
    orientation_deg : float
        Direction of its wave vector, 0 to 180° (0: along x, the columns; 90: along y).
    """

    strength: float
    spacing_nm: float
    orientation_deg: float


def tile_lattice(tile: numpy.typing.ArrayLike, pixel_size_nm: float, *, min_period_px: float = 2.5, max_period_fraction: float = 0.25) -> Lattice:
    """The strongest periodicity of a tile, from its power spectrum.

    Parameters
    ----------
    tile : array, shape (n, n)
    pixel_size_nm : float
    min_period_px : float
        Shortest period looked for, in pixels (2 is the Nyquist limit, where a peak is poorly placed).
    max_period_fraction : float
        Longest period looked for, as a fraction of the tile (slower texture is not a lattice).

    Notes
    -----
    The tile's mean is removed and a Hann window applied, so its edges make
    no streaks.  The peak's position is refined by the centroid of the 3 × 3
    power about it.  A tile with no lattice still has a strongest peak; its
    strength is what tells.

    Examples
    --------
    >>> yy, xx = numpy.mgrid[0:64, 0:64] * 0.05  # 0.05 nm pixels
    >>> stripes = numpy.cos(2 * numpy.pi * yy / 0.4)  # a period of 0.4 nm along y
    >>> found = tile_lattice(stripes, 0.05)
    >>> round(found.spacing_nm, 2), round(found.orientation_deg), found.strength > 100
    (0.4, 90, True)
    """
    data = numpy.asarray(tile, dtype=float)
    if data.ndim != 2 or data.shape[0] != data.shape[1] or data.shape[0] < 16:
        raise ValueError(f"tile must be a square image of at least 16 × 16 pixels, got shape {data.shape}")
    if not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a finite size > 0 nm, got {pixel_size_nm!r}")
    n = data.shape[0]
    window = numpy.outer(numpy.hanning(n), numpy.hanning(n))
    power = numpy.abs(numpy.fft.fftshift(numpy.fft.fft2((data - data.mean()) * window))) ** 2
    k = numpy.arange(n) - n // 2
    ky, kx = numpy.meshgrid(k, k, indexing="ij")
    radius = numpy.hypot(ky, kx)  # cycles per tile
    band = (radius >= 1.0 / max_period_fraction) & (radius <= n / min_period_px) & (ky >= 0)  # half the plane: the spectrum is symmetric
    if not band.any() or not power[band].max() > 0:
        return Lattice(0.0, math.nan, math.nan)  # no band, or a flat tile (a blanked beam, a dry run): no lattice
    masked = numpy.where(band, power, -1.0)
    r, c = numpy.unravel_index(int(masked.argmax()), power.shape)
    ring = band & (numpy.abs(radius - radius[r, c]) <= 1.0)
    strength = float(power[r, c] / max(float(numpy.median(power[ring])), 1e-12))
    # sub-pixel place of the peak: the centroid of its 3 × 3 neighbourhood
    r0, r1, c0, c1 = max(r - 1, 0), min(r + 2, n), max(c - 1, 0), min(c + 2, n)
    patch = power[r0:r1, c0:c1]
    py = float((ky[r0:r1, c0:c1] * patch).sum() / patch.sum())
    px = float((kx[r0:r1, c0:c1] * patch).sum() / patch.sum())
    cycles = math.hypot(py, px)
    return Lattice(strength, n * pixel_size_nm / cycles, math.degrees(math.atan2(py, px)) % 180.0)


def tile_focus(tile: numpy.typing.ArrayLike) -> float:
    """Share of a tile's signal power (shot noise removed) in the finest quarter of the spatial frequencies: lower is blurrier.

    The shot noise is white, so its level is read at the highest
    frequencies (the corners of the spectrum, beyond the Nyquist circle's
    0.9) and taken off every frequency.  Compare tiles of the same pixel size
    and dwell: the share depends on what the tile shows as well as on focus.

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> sharp = scipy.ndimage.gaussian_filter(rng.normal(size=(64, 64)), 0.7)
    >>> tile_focus(sharp) > tile_focus(scipy.ndimage.gaussian_filter(sharp, 2.0))
    True
    """
    data = numpy.asarray(tile, dtype=float)
    n = data.shape[0]
    power = numpy.abs(numpy.fft.fftshift(numpy.fft.fft2(data - data.mean()))) ** 2
    k = (numpy.arange(n) - n // 2) / n
    ky, kx = numpy.meshgrid(k, k, indexing="ij")
    radius = numpy.hypot(ky, kx)  # cycles per pixel
    corner = radius > 0.5  # beyond the Nyquist circle: only the corners, where the sample's signal is gone
    noise = float(numpy.median(power[corner])) if corner.any() else 0.0
    signal = numpy.clip(power - noise, 0.0, None)
    fine = (radius >= 0.25) & (radius < 0.5)
    useful = (radius >= 1.0 / n) & (radius < 0.5)
    total = float(signal[useful].sum())
    return float(signal[fine].sum() / total) if total > 0 else 0.0


def tile_contamination(tile: numpy.typing.ArrayLike, film: float, *, faint: tuple[float, float] = (0.3, 0.65), smooth_px: float = 2.0) -> float:
    """Fraction of a tile under faint haze: smoothed signal ``faint`` (fractions) above the film's, away from the rims of brighter objects.

    Examples
    --------
    >>> tile = numpy.full((32, 32), 10.0); tile[:, :8] = 14.5  # a quarter 45 % above the film; its smoothed edge is not counted
    >>> round(tile_contamination(tile, 10.0), 2)
    0.22
    """
    smooth = scipy.ndimage.gaussian_filter(numpy.asarray(tile, dtype=float), smooth_px, mode="nearest") / film - 1.0
    # the blurred rims of brighter objects pass through the faint band too: they are not haze
    rims = scipy.ndimage.binary_dilation(smooth > faint[1], iterations=int(math.ceil(2 * smooth_px)))
    return float(((smooth >= faint[0]) & (smooth <= faint[1]) & ~rims).mean())


@dataclasses.dataclass(frozen=True)
class Rule:
    """A test on one map value: ``value op threshold``, e.g. ``Rule("lattice_strength", ">=", 20.0)``.

    Examples
    --------
    >>> rule = Rule.parse("orientation_change_deg > 10")
    >>> rule, rule.holds({"orientation_change_deg": 12.0}), rule.holds({"orientation_change_deg": float("nan")})
    (Rule(value='orientation_change_deg', op='>', threshold=10.0), True, False)
    >>> Rule.parse("colour is blue")
    Traceback (most recent call last):
    ...
    ValueError: rule must read '<value> <op> <number>' with a value of ('lattice', 'lattice_strength', 'spacing_nm', 'orientation_deg', 'orientation_change_deg', 'focus', 'contamination') and an op of ['<=', '>=', '==', '!=', '<', '>'], e.g. 'lattice_strength >= 20'; got 'colour is blue'
    """

    value: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.value not in RULE_VALUES or self.op not in _OPERATORS or not math.isfinite(self.threshold):
            raise ValueError(f"a rule needs a value of {RULE_VALUES}, an op of {list(_OPERATORS)} and a finite threshold; got {self!r}")

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = re.fullmatch(r"\s*(\w+)\s*(<=|>=|==|!=|<|>)\s*([-+0-9.eE]+)\s*", text)
        if match is None or match.group(1) not in RULE_VALUES:
            raise ValueError(f"rule must read '<value> <op> <number>' with a value of {RULE_VALUES} and an op of {list(_OPERATORS)}, "
                             f"e.g. 'lattice_strength >= 20'; got {text!r}")
        return cls(match.group(1), match.group(2), float(match.group(3)))

    def holds(self, row: typing.Mapping[str, typing.Any]) -> bool:
        """Whether a tile's values satisfy the rule (a missing value, NaN, never does)."""
        value = float(row[self.value])
        return math.isfinite(value) and bool(_OPERATORS[self.op](value, self.threshold))


@dataclasses.dataclass(frozen=True)
class SampleMap:
    """Per tile of a montage: where it lies and its lattice and quality values (:data:`MAP_COLUMNS`)."""

    rows: tuple[dict[str, typing.Any], ...]
    tile_px: int
    pixel_size_nm: float

    def where(self, rule: Rule | str) -> list[Position]:
        """Stage (y, x) nm of the centres of the tiles that satisfy ``rule``, strongest lattice first."""
        chosen = Rule.parse(rule) if isinstance(rule, str) else rule
        picked = sorted((r for r in self.rows if chosen.holds(r)), key=lambda r: -r["lattice_strength"])
        return [(float(r["y_nm"]), float(r["x_nm"])) for r in picked]

    def product(self, *, key: str = "montage-map") -> Product:
        """The map as a table product: one row per tile."""
        table = tuple(tuple(r[c] for c in MAP_COLUMNS) for r in self.rows)
        values = numpy.asarray([[float(r[c]) for c in MAP_COLUMNS] for r in self.rows] or numpy.zeros((0, len(MAP_COLUMNS))), dtype=float)
        xdata = DataAndMetadata.new_data_and_metadata(values, intensity_calibration=Calibration.Calibration(),
                                                      metadata={"nion_autoem": {"columns": list(MAP_COLUMNS), "tile_px": self.tile_px,
                                                                                "tile_nm": self.tile_px * self.pixel_size_nm}})
        lattice = sum(bool(r["lattice"]) for r in self.rows)
        return Product(key, "Sample map (lattice, quality)", xdata, caption=f"{len(self.rows)} tiles of {self.tile_px * self.pixel_size_nm:g} nm; "
                       f"{lattice} show a lattice", table=views.Table(MAP_COLUMNS, table))


def map_sample(image: numpy.typing.ArrayLike, frame: ScanFrame, tile_px: int, *, min_strength: float = 20.0, symmetry_deg: float = 180.0) -> SampleMap:
    """Cut a calibrated image (a montage, a survey) into square tiles of ``tile_px`` and measure each: the sample's map.

    Parameters
    ----------
    image : array, shape (rows, cols)
    frame : ScanFrame
        The image's frame: its ``pixel_to_nm`` gives each tile's centre (stage nm for a montage's :attr:`Montage.frame`).
    tile_px : int
        Side of a tile in pixels (16 or more); the tiles do not overlap, and a partial tile at the edge is left out.
    min_strength : float
        Lattice strength from which a tile counts as showing a lattice.
    symmetry_deg : float
        The lattice looks the same turned by this: orientations are given modulo it (60 for a hexagonal lattice such as
        MoS2, whose three strongest peaks are equal, 90 for a square one, 180 for stripes or when unknown).

    Examples
    --------
    >>> yy, xx = numpy.mgrid[0:64, 0:128] * 0.05
    >>> angle = numpy.where(xx < 3.2, 0.0, numpy.pi / 6)  # two grains: the right one turned by 30°
    >>> image = 5 + numpy.cos(2 * numpy.pi * (xx * numpy.cos(angle) + yy * numpy.sin(angle)) / 0.3)
    >>> found = map_sample(image, ScanFrame((64, 128), 6.4), 32)
    >>> [(r["lattice"], round(r["orientation_deg"]), round(r["orientation_change_deg"])) for r in found.rows if r["row"] == 0]
    [(True, 0, 0), (True, 0, 30), (True, 30, 30), (True, 30, 0)]
    >>> len(found.where("orientation_change_deg > 10"))
    4
    """
    data = numpy.asarray(image, dtype=float)
    if isinstance(tile_px, bool) or not isinstance(tile_px, int) or tile_px < 16 or tile_px > min(data.shape):
        raise ValueError(f"tile_px must be a whole number of pixels from 16 to the image's smaller side {min(data.shape)}, got {tile_px!r}")
    if not (math.isfinite(symmetry_deg) and 0 < symmetry_deg <= 180.0):
        raise ValueError(f"symmetry_deg must be the angle from 0 to 180° that turns the lattice onto itself (60: hexagonal), got {symmetry_deg!r}")
    pixel = frame.pixel_size_nm
    film = float(numpy.median(data))
    rows_n, cols_n = data.shape[0] // tile_px, data.shape[1] // tile_px
    rows: list[dict[str, typing.Any]] = []
    for r in range(rows_n):
        for c in range(cols_n):
            tile = data[r * tile_px:(r + 1) * tile_px, c * tile_px:(c + 1) * tile_px]
            lattice = tile_lattice(tile, pixel)
            y, x = frame.pixel_to_nm(((r + 0.5) * tile_px - 0.5, (c + 0.5) * tile_px - 0.5))
            rows.append({"tile": len(rows), "row": r, "col": c, "y_nm": round(float(y), 2), "x_nm": round(float(x), 2),
                         "lattice": lattice.strength >= min_strength, "lattice_strength": round(lattice.strength, 3),
                         "spacing_nm": round(lattice.spacing_nm, 5), "orientation_deg": round(lattice.orientation_deg % symmetry_deg, 2),
                         "orientation_change_deg": math.nan, "focus": round(tile_focus(tile), 5),
                         "contamination": round(tile_contamination(tile, film) if film > 0 else 0.0, 4)})
    at = {(row["row"], row["col"]): row for row in rows}
    for row in rows:
        if not row["lattice"]:
            continue
        changes = [_angle_between(row["orientation_deg"], other["orientation_deg"], symmetry_deg)
                   for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)) if (other := at.get((row["row"] + dr, row["col"] + dc))) is not None and other["lattice"]]
        row["orientation_change_deg"] = round(max(changes), 2) if changes else math.nan
    return SampleMap(tuple(rows), tile_px, pixel)


def _angle_between(a_deg: float, b_deg: float, period_deg: float) -> float:
    """The smaller angle between two orientations known modulo ``period_deg``."""
    d = abs(a_deg - b_deg) % period_deg
    return min(d, period_deg - d)


def map_montage(montage: Montage, tile_px: int, *, min_strength: float = 20.0, symmetry_deg: float = 180.0) -> SampleMap:
    """The map of a stitched montage, tile centres in stage nm (see :func:`map_sample`)."""
    return map_sample(montage.image, montage.frame, tile_px, min_strength=min_strength, symmetry_deg=symmetry_deg)


def go_to_tiles(montage: Montage, sample_map: SampleMap, rule: Rule | str, *, zoom: ScanFrame, max_visits: int = 10,
                pixel_time_us: float | None = 2.0, key_prefix: str = "signpost-", then: typing.Callable[[typing.Any], SubPlan] | None = None) -> SubPlan:
    """Sub-plan: go to the tiles whose map value satisfies ``rule`` (strongest lattice first), correct the stage by registration, and zoom in.

    Each visit is :func:`~nion_autoem.plans.search.visit_candidates` without
    a verifying spectrum: every visit is a target, a zoomed survey published
    as ``<key_prefix>target-<n>``, handed to ``then(visit)`` if given.
    Returns the visits (an empty list, and no action, where no tile
    satisfies the rule).
    """
    from nion_autoem.plans.search import visit_candidates

    positions = sample_map.where(rule)
    if not positions:
        return []
    visits = yield from visit_candidates(montage, positions, wanted=min(max_visits, len(positions)), max_visits=max_visits, zoom=zoom,
                                         pixel_time_us=pixel_time_us, same_target_nm=0.5 * sample_map.tile_px * sample_map.pixel_size_nm,
                                         key_prefix=key_prefix, then=then)
    return typing.cast(list[typing.Any], visits)


@plan("signposts")
def signpost_plan(centre_nm: tuple[float, float], size_nm: tuple[float, float], rule: Rule | str, *, wanted: int = 3, tile_fov_nm: float = 8000.0,
                  tile_px: int = 256, overlap: float = 0.3, map_tile_px: int = 64, zoom: ScanFrame = SIGNPOST_ZOOM,
                  pixel_time_us: float | None = 2.0, limits: StageLimits | None = None, symmetry_deg: float = 180.0,
                  then: typing.Callable[[typing.Any], SubPlan] | None = None) -> PlanGenerator:
    """Montage a region, map it, and go to the tiles whose map value satisfies ``rule`` ("go where the lattice turns").

    The rule is checked before anything is acquired.

    Examples
    --------
    >>> p = signpost_plan((0.0, 0.0), (16000.0, 16000.0), "orientation_change_deg > 10")
    >>> p.name, p.parameters["wanted"]
    ('signposts', 3)
    """
    from nion_autoem.plans.montage import MontageLayout
    from nion_autoem.plans.montage import acquire_montage

    chosen = Rule.parse(rule) if isinstance(rule, str) else rule
    layout = MontageLayout((float(centre_nm[0]), float(centre_nm[1])), (float(size_nm[0]), float(size_nm[1])), ScanFrame((tile_px, tile_px), tile_fov_nm),
                           overlap)
    montage = yield from acquire_montage(layout, pixel_time_us=pixel_time_us, limits=limits)
    sample_map = map_montage(montage, map_tile_px, symmetry_deg=symmetry_deg)
    yield Publish(sample_map.product())
    visits = yield from go_to_tiles(montage, sample_map, chosen, zoom=zoom, max_visits=wanted, pixel_time_us=pixel_time_us, then=then)
    return f"{len(visits)} tile(s) where {chosen.value} {chosen.op} {chosen.threshold:g}, of {len(sample_map.rows)} mapped"
