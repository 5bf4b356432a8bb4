"""A sample at stage scale: a grid square of tens of µm with many objects, a rare kind, and an imprecise stage.

The twin for montage and search plans.  :class:`StageSample` holds every
object on a square region of carbon film (its ground truth: class, centre,
size) and renders any field of view from tens of µm down to tens of nm:

- **carbon film** with a smooth texture at every scale (plane waves from
  30 nm to 8 µm, each attenuated by the pixel and the probe so nothing
  aliases), which is what registers overlapping tiles on empty film;
- **holes** in the film (vacuum: almost no signal);
- **flakes** of one to three layers with irregular outlines, µm across;
- **round particles** (bright in the middle, as a sphere is thick there)
  and **rods**, tens to hundreds of nm;
- **contamination**: soft, faint hydrocarbon patches;
- the rare kind, **hexagonal platelets** (about 1 % of objects): flat,
  uniformly bright hexagons of 0.6 to 1 µm, larger than the other particles.
  They are a different compound: a spectrum on one shows a Co L2,3 edge at
  779 eV, which is how a plan verifies them.

Atomic resolution is left out: below about 20 nm of field the rendering
shows only the film texture and object edges, not a lattice.

The sample is not flat: its height (the defocus that brings it into focus)
changes across the region by a tilt and a bow of a few hundred nm, so a
defocus set for one place blurs another (``sigma = alpha * |delta_f| / 2``,
as in :mod:`nion_autoem.twin.sample`).

:class:`ImpreciseStage` lands where it was told to only roughly: backlash
when an axis reverses, a random repeatability error per move, and a settling
drift that decays after each move.  :class:`StageMicroscope` is a pure
:class:`~nion_autoem.instrument.Microscope` over both: its
:attr:`~StageMicroscope.stage_position_nm` is the *commanded* position, as a
real stage's readout is; :attr:`~StageMicroscope.true_stage_position_nm` is
the truth a test or benchmark may read.

Coordinates: a scan-field position ``p`` (nm) shows the sample at
``true stage + settling drift + p``, as in :mod:`nion_autoem.twin.insitu`.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import ACQUISITION_CLOCK_KEY
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.instrument import electrons
from nion_autoem.simulated import SimulatedBeam
from nion_autoem.simulated import checked_stage_position
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.sample import CONVERGENCE_SEMI_ANGLE_RAD

_NDArray = numpy.typing.NDArray[typing.Any]

#: Classes of object on the sample, the rare one last.
OBJECT_CLASSES = ("flake", "round particle", "rod", "hole", "contamination", "hexagonal platelet")
#: The kind a search looks for.
RARE_CLASS = "hexagonal platelet"
#: Relative abundance of the common classes (the rare one is drawn separately).
_ABUNDANCE = {"flake": 0.12, "round particle": 0.45, "rod": 0.2, "hole": 0.08, "contamination": 0.15}
#: Radius range (nm) of each class.
_RADIUS_NM = {"flake": (600.0, 1600.0), "round particle": (40.0, 220.0), "rod": (60.0, 250.0), "hole": (250.0, 900.0), "contamination": (200.0, 700.0),
              "hexagonal platelet": (300.0, 500.0)}
#: Where the energy-loss edges sit: carbon film everywhere, Fe in the common particles, Co in the rare platelets.
EDGES_EV = {"C K": 284.0, "Fe L3": 708.0, "Co L3": 779.0}
#: Spectrometer axis of :meth:`StageMicroscope.acquire_spectrum`: (offset eV, eV per channel, channels).
SPECTRUM_AXIS = (200.0, 1.0, 800)
#: Fraction of the probe's electrons the HAADF detector counts on film of intensity 1.
DETECTOR_YIELD = 0.02


@dataclasses.dataclass(frozen=True)
class StageObject:
    """One object on the sample, as the ground truth knows it.

    Parameters
    ----------
    kind : str
        One of :data:`OBJECT_CLASSES`.
    centre_nm : tuple of float
        (y, x) on the sample in nm (stage coordinates).
    radius_nm : float
        Radius (the long half-axis of a rod, the circumradius of a hexagon).
    angle_rad : float
        Orientation.
    aspect : float
        Short over long axis (rods); 1 for the rest.
    intensity : float
        HAADF signal over the film's (a hole's is negative).
    harmonics : tuple of float
        Outline modulation of a flake: amplitude and phase of harmonics 2 to 5.
    """

    kind: str
    centre_nm: tuple[float, float]
    radius_nm: float
    angle_rad: float = 0.0
    aspect: float = 1.0
    intensity: float = 1.0
    harmonics: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, typing.Any]:
        return {"kind": self.kind, "y_nm": self.centre_nm[0], "x_nm": self.centre_nm[1], "radius_nm": self.radius_nm}

    def coverage(self, y: _NDArray, x: _NDArray, pixel_nm: float) -> _NDArray:
        """Fraction (0 to 1) of each pixel at sample (y, x) nm the object covers, or its thickness profile for particles."""
        dy, dx = y - self.centre_nm[0], x - self.centre_nm[1]
        soft = max(pixel_nm, 1e-3)
        if self.kind == "hexagonal platelet":
            apothem = self.radius_nm * math.cos(math.pi / 6)
            reach = numpy.zeros_like(dy)
            for k in range(6):
                a = self.angle_rad + k * math.pi / 3
                reach = numpy.maximum(reach, dy * math.sin(a) + dx * math.cos(a))
            return numpy.clip((apothem - reach) / soft + 0.5, 0.0, 1.0)
        if self.kind == "flake":
            distance = numpy.hypot(dy, dx)
            theta = numpy.arctan2(dy, dx) - self.angle_rad
            outline = numpy.ones_like(distance)
            for k, (amplitude, phase) in enumerate(zip(self.harmonics[0::2], self.harmonics[1::2], strict=True), start=2):
                outline += amplitude * numpy.cos(k * theta + phase)
            return numpy.clip((self.radius_nm * outline - distance) / soft + 0.5, 0.0, 1.0)
        if self.kind == "contamination":
            return numpy.exp(-0.5 * (dy**2 + dx**2) / (0.5 * self.radius_nm) ** 2)
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        along, across = dx * c + dy * s, -dx * s + dy * c
        r = numpy.hypot(along, across / self.aspect)
        edge = numpy.clip((self.radius_nm - r) / soft + 0.5, 0.0, 1.0)
        if self.kind == "hole":
            return edge
        # a sphere or a rod is thickest along its axis: the profile also lets a registration find its centre
        thickness = numpy.sqrt(numpy.clip(1.0 - (r / self.radius_nm) ** 2, 0.0, 1.0))
        return typing.cast(_NDArray, edge * (0.35 + 0.65 * thickness))


@dataclasses.dataclass(frozen=True)
class _Waves:
    """Plane waves of the film's texture: wave vectors (cycles per nm), amplitudes and phases."""

    k: _NDArray
    amplitude: _NDArray
    phase: _NDArray


class StageSample:
    """A square region of carbon film with objects on it, rendered at any field of view.

    Parameters
    ----------
    seed : int
        Draws every object, the film texture and the height map.
    size_nm : float
        Side of the region (stage coordinates from ``-size/2`` to ``+size/2``).
    objects : int
        Number of objects drawn, the rare ones included (placed first); a solid
        object that finds no free place on a crowded region is left out.
    rare_fraction : float
        Fraction of the objects of the rare kind (:data:`RARE_CLASS`); at least ``min_rare`` are placed.
    min_rare : int
        Fewest rare objects, so a small region still has something to find.
    height_range_nm : float
        Peak-to-peak height (focus) change across the region.

    Examples
    --------
    >>> sample = StageSample(seed=0, size_nm=10_000.0, objects=60)
    >>> len(sample.objects) <= 60, sum(o.kind == RARE_CLASS for o in sample.objects)
    (True, 3)
    >>> image = sample.render(ScanFrame((64, 64), 4000.0))
    >>> image.shape, bool(image.min() >= 0.0)
    ((64, 64), True)
    """

    def __init__(self, seed: int = 0, *, size_nm: float = 40_000.0, objects: int = 800, rare_fraction: float = 0.01, min_rare: int = 3,
                 height_range_nm: float = 400.0) -> None:
        if not (math.isfinite(size_nm) and size_nm >= 1000.0):
            raise ValueError(f"size_nm must be a region of at least 1000 nm (a grid square is tens of µm), got {size_nm!r}")
        if isinstance(objects, bool) or not isinstance(objects, int) or objects < 1:
            raise ValueError(f"objects must be a whole number >= 1, got {objects!r}")
        if not 0.0 <= rare_fraction < 1.0:
            raise ValueError(f"rare_fraction must be a fraction in [0, 1), e.g. 0.01; got {rare_fraction!r}")
        self.seed = int(seed)
        self.size_nm = float(size_nm)
        self.height_range_nm = float(height_range_nm)
        rng = numpy.random.default_rng(20_000 + self.seed)
        rare = min(objects, max(int(round(rare_fraction * objects)), int(min_rare)))
        kinds = [RARE_CLASS] * rare + [str(k) for k in rng.choice(list(_ABUNDANCE), size=objects - rare, p=list(_ABUNDANCE.values()))]
        self.objects: tuple[StageObject, ...] = self.__place(kinds, rng)
        self.__waves = self.__texture(rng)
        self.__tilt = rng.normal(0.0, 1.0, 2)
        self.__tilt *= 0.35 * self.height_range_nm / (numpy.abs(self.__tilt).sum() + 1e-9)
        self.__bow = float(rng.choice([-1.0, 1.0]) * 0.3 * self.height_range_nm)

    @property
    def extent_nm(self) -> tuple[float, float]:
        """(low, high) of the region along each axis, in nm."""
        return -0.5 * self.size_nm, 0.5 * self.size_nm

    def __place(self, kinds: list[str], rng: numpy.random.Generator) -> tuple[StageObject, ...]:
        placed: list[StageObject] = []
        margin = 0.02 * self.size_nm
        for kind in kinds:
            low, high = _RADIUS_NM[kind]
            solid = kind not in ("contamination", "hole")
            for _ in range(100):
                radius = float(math.exp(rng.uniform(math.log(low), math.log(high))))
                centre = rng.uniform(-0.5 * self.size_nm + margin + radius, 0.5 * self.size_nm - margin - radius, 2)
                # particles and flakes do not pile up, so every object's class is its own; contamination and holes may overlap them
                if not solid or all(other.kind in ("contamination", "hole") or
                                    math.dist(centre, other.centre_nm) > radius + other.radius_nm + 100.0 for other in placed):
                    break
            else:
                continue  # no free place on a crowded region: the object is left out
            harmonics: tuple[float, ...] = ()
            if kind == "flake":
                harmonics = tuple(float(v) for pair in zip(rng.uniform(0.02, 0.12, 4), rng.uniform(0, 2 * math.pi, 4), strict=True) for v in pair)
            intensity = {"flake": float(rng.integers(1, 4)) * 0.7, "round particle": 3.0, "rod": 2.5, "hole": -0.95, "contamination": 0.5,
                         RARE_CLASS: 1.8}[kind]
            placed.append(StageObject(kind, (float(centre[0]), float(centre[1])), radius, float(rng.uniform(0, math.pi)),
                                      float(rng.uniform(0.25, 0.45)) if kind == "rod" else 1.0, intensity, harmonics))
        return tuple(placed)

    @staticmethod
    def __texture(rng: numpy.random.Generator, count: int = 28) -> _Waves:
        wavelengths = numpy.exp(rng.uniform(math.log(30.0), math.log(8000.0), count))
        angles = rng.uniform(0, 2 * math.pi, count)
        k = numpy.stack([numpy.sin(angles), numpy.cos(angles)], axis=1) / wavelengths[:, numpy.newaxis]
        # amorphous carbon keeps some contrast down to nm scales: what an autofocus on bare film sharpens
        amplitude = (wavelengths / 8000.0) ** 0.25 * 0.08
        return _Waves(k, amplitude, rng.uniform(0, 2 * math.pi, count))

    def height_nm(self, position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """The defocus (nm) that brings the sample into focus at stage position(s) (..., 2): a tilt and a bow.

        Examples
        --------
        >>> sample = StageSample(seed=1, size_nm=20_000.0, objects=10)
        >>> h = sample.height_nm([[0.0, 0.0], [9_000.0, 9_000.0]])
        >>> bool(abs(h[1] - h[0]) > 10.0)
        True
        """
        p = numpy.asarray(position_nm, dtype=float) / (0.5 * self.size_nm)
        return typing.cast(_NDArray, p @ self.__tilt + self.__bow * (p**2).sum(axis=-1))

    def objects_in(self, centre_nm: Position, half_size_nm: float, kind: str | None = None) -> list[StageObject]:
        """The objects whose centres lie in the square of half side ``half_size_nm`` about ``centre_nm``, optionally of one kind."""
        return [o for o in self.objects if (kind is None or o.kind == kind) and
                abs(o.centre_nm[0] - centre_nm[0]) <= half_size_nm and abs(o.centre_nm[1] - centre_nm[1]) <= half_size_nm]

    def object_at(self, position_nm: Position) -> StageObject | None:
        """The particle, platelet or flake at a stage position (the smallest containing it), or None on bare film.

        Examples
        --------
        >>> sample = StageSample(seed=0, size_nm=10_000.0, objects=60)
        >>> platelet = next(o for o in sample.objects if o.kind == RARE_CLASS)
        >>> sample.object_at(platelet.centre_nm) is platelet
        True
        """
        hits = [o for o in self.objects if o.kind not in ("contamination", "hole") and
                float(o.coverage(numpy.array([position_nm[0]]), numpy.array([position_nm[1]]), 1.0)[0]) > 0.5]
        return min(hits, key=lambda o: o.radius_nm) if hits else None

    def tile_label(self, centre_nm: Position, tile_nm: float) -> str:
        """The ground-truth class of a square tile: the largest particle, platelet or flake centred in its middle half, else "hole" or "film".

        Examples
        --------
        >>> sample = StageSample(seed=0, size_nm=10_000.0, objects=60)
        >>> platelet = next(o for o in sample.objects if o.kind == RARE_CLASS)
        >>> sample.tile_label(platelet.centre_nm, 1500.0)
        'hexagonal platelet'
        """
        inside = [o for o in self.objects_in(centre_nm, 0.25 * tile_nm) if o.kind not in ("contamination", "hole")]
        if inside:
            return max(inside, key=lambda o: o.radius_nm).kind
        holes = [o for o in self.objects if o.kind == "hole" and math.dist(o.centre_nm, centre_nm) < o.radius_nm]
        return "hole" if holes else "film"

    def examples_nm(self, kind: str, count: int, *, tile_nm: float = 1000.0, seed: int = 0) -> list[Position]:
        """Where to cut ``count`` example tiles of a class, as a person would click them: centres of objects of ``kind``, or bare-film points for ``"film"``.

        Examples
        --------
        >>> sample = StageSample(seed=0, size_nm=10_000.0, objects=60)
        >>> len(sample.examples_nm(RARE_CLASS, 2)), len(sample.examples_nm("film", 3))
        (2, 3)
        """
        if kind == "film":
            rng = numpy.random.default_rng(seed)
            points = [(float(y), float(x)) for y, x in rng.uniform(-0.45, 0.45, (50 * count, 2)) * self.size_nm]
            return [p for p in points if self.tile_label(p, tile_nm) == "film"][:count]
        if kind not in OBJECT_CLASSES:
            raise ValueError(f"kind must be one of {OBJECT_CLASSES} or 'film', got {kind!r}")
        return [o.centre_nm for o in self.objects if o.kind == kind][:count]

    def render(self, frame: ScanFrame, *, offset_nm: Position = (0.0, 0.0), blur_nm: float = 0.0) -> _NDArray:
        """The noise-free HAADF signal of a scan frame (film = 1, vacuum = 0.05).

        Parameters
        ----------
        frame : ScanFrame
            The scan; its pixel positions (scan-field nm) plus ``offset_nm`` are sample positions.
        offset_nm : tuple of float
            Where the scan field's origin sits on the sample (true stage plus drift).
        blur_nm : float
            Gaussian blur of the probe (defocus), in nm.

        Examples
        --------
        >>> sample = StageSample(seed=0, size_nm=10_000.0, objects=60)
        >>> hole = next(o for o in sample.objects if o.kind == "hole" and sample.object_at(o.centre_nm) is None)
        >>> float(sample.render(ScanFrame((8, 8), 20.0), offset_nm=hole.centre_nm).mean()) < 0.2  # vacuum in an empty hole
        True
        """
        grid = frame.pixel_grid_nm() + numpy.asarray(offset_nm, dtype=float)
        y, x = grid[..., 0], grid[..., 1]
        pixel = frame.pixel_size_nm
        # the texture is band-limited by the pixel and the probe, so a coarse frame shows the low-pass of a fine one, as a real scan does
        sigma = math.hypot(0.5 * pixel, blur_nm)
        w = self.__waves
        attenuation = w.amplitude * numpy.exp(-2.0 * (math.pi * sigma * numpy.hypot(w.k[:, 0], w.k[:, 1])) ** 2)
        keep = attenuation > 1e-4
        phases = (grid @ w.k[keep].T) * 2 * math.pi + w.phase[keep]
        film = 1.0 + (numpy.cos(phases) * attenuation[keep]).sum(axis=-1)
        signal = film.copy()
        rows, cols = frame.shape
        origin = numpy.asarray(offset_nm, dtype=float)
        for o in self.objects:
            # only the pixels near the object: a frame of hundreds of objects stays fast
            reach = o.radius_nm * (2.0 if o.kind == "contamination" else 1.25) + pixel
            corners = numpy.array([[dy, dx] for dy in (-reach, reach) for dx in (-reach, reach)]) + numpy.asarray(o.centre_nm) - origin
            box = frame.nm_to_pixel(corners)
            r0, c0 = numpy.floor(box.min(axis=0)).astype(int)
            r1, c1 = numpy.ceil(box.max(axis=0)).astype(int) + 1
            r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, rows), min(c1, cols)
            if r0 >= r1 or c0 >= c1:
                continue
            cover = o.coverage(y[r0:r1, c0:c1], x[r0:r1, c0:c1], pixel)
            if o.kind == "hole":
                signal[r0:r1, c0:c1] -= cover * (film[r0:r1, c0:c1] - 0.05)
            else:
                signal[r0:r1, c0:c1] += cover * o.intensity
        if blur_nm > 0.3 * pixel:
            signal = scipy.ndimage.gaussian_filter(signal, blur_nm / pixel, mode="nearest")
        return typing.cast(_NDArray, numpy.clip(signal, 0.0, None))

    def truth_rows(self) -> list[dict[str, typing.Any]]:
        """Every object as a row: kind, centre (nm), radius (nm)."""
        return [o.to_dict() for o in self.objects]


#: Which edges each kind of object adds to the film's C K edge.
EDGES_OF_KIND = {"round particle": ("Fe L3",), "rod": ("Fe L3",), RARE_CLASS: ("Co L3",)}


def core_loss_counts(below: StageObject | None, energies_eV: _NDArray, incident_electrons: float) -> _NDArray:
    """Expected EELS counts per channel: a power-law background, the film's C K edge and the edges of the object under the probe.

    Parameters
    ----------
    below : StageObject or None
        What lies under the probe (None: bare film).
    energies_eV : ndarray
        The spectrometer's energy axis, any range; edges outside it do not show.
    incident_electrons : float
        Electrons that reached the sample during the exposure.

    Examples
    --------
    >>> energies = numpy.arange(600.0, 900.0)
    >>> film = core_loss_counts(None, energies, 1e6)
    >>> platelet = core_loss_counts(StageObject("hexagonal platelet", (0.0, 0.0), 300.0, 0.0, 1.0, 1.0), energies, 1e6)
    >>> round(float(platelet[energies > 780].sum() / film[energies > 780].sum()), 2)  # the Co L3 edge adds about 15 % past its onset
    1.15
    """
    energies = numpy.clip(numpy.asarray(energies_eV, dtype=float), 1.0, None)
    reference = 200.0
    counts = 2e3 * (energies / reference) ** -3.0
    for edge in ("C K", *EDGES_OF_KIND.get(below.kind if below is not None else "", ())):
        onset = EDGES_EV[edge]
        counts += numpy.where(energies >= onset, 0.25 * 2e3 * (onset / reference) ** -3.0 * (energies / onset) ** -2.0, 0.0)
    return typing.cast(_NDArray, counts * (incident_electrons * 1e-6))


@dataclasses.dataclass(frozen=True)
class StageErrors:
    """How imprecise the stage is.

    Parameters
    ----------
    backlash_nm : float
        Lost motion when an axis reverses direction.
    repeatability_nm : float
        Standard deviation, per axis, of where a move lands about its target.
    settling_nm : float
        Standard deviation, per axis, of the drift that follows a move.
    settling_time_s : float
        Time constant with which that drift dies away.
    speed_nm_per_s : float
        Travel speed; a move also costs ``overhead_s``.
    overhead_s : float
        Time of a move besides the travel (command, acceleration, settling wait).

    Examples
    --------
    >>> StageErrors(backlash_nm=0.0, repeatability_nm=0.0, settling_nm=0.0).repeatability_nm  # a perfect stage
    0.0
    >>> StageErrors(repeatability_nm=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: StageErrors.repeatability_nm must be a finite number >= 0, got -1.0
    """

    backlash_nm: float = 150.0
    repeatability_nm: float = 60.0
    settling_nm: float = 25.0
    settling_time_s: float = 6.0
    speed_nm_per_s: float = 20_000.0
    overhead_s: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StageErrors.{field.name} must be a finite number >= 0, got {value!r}")
        if self.speed_nm_per_s <= 0 or self.settling_time_s <= 0:
            raise ValueError(f"speed_nm_per_s and settling_time_s must be > 0, got {self.speed_nm_per_s!r} and {self.settling_time_s!r}")


class ImpreciseStage:
    """A stage that lands near, not on, its target: backlash, repeatability, settling drift.

    Examples
    --------
    >>> stage = ImpreciseStage(StageErrors(), seed=0)
    >>> duration = stage.move((0.0, 5_000.0), now_s=0.0)
    >>> error = numpy.subtract(stage.true_position_nm(duration), (0.0, 5_000.0))
    >>> bool(numpy.all(numpy.abs(error) < 1000.0)), stage.commanded_nm
    (True, (0.0, 5000.0))
    """

    def __init__(self, errors: StageErrors = StageErrors(), *, seed: int = 0) -> None:
        self.errors = errors
        self.__rng = numpy.random.default_rng(30_000 + seed)
        self.commanded_nm: Position = (0.0, 0.0)
        self.__landed = numpy.zeros(2)
        self.__direction = numpy.ones(2)
        self.__settle = numpy.zeros(2)
        self.__moved_at_s = -1e9

    def move(self, target_nm: Position, *, now_s: float) -> float:
        """Move towards ``target_nm`` starting at ``now_s``; returns how long the move takes (s)."""
        target = numpy.asarray(target_nm, dtype=float)
        step = target - numpy.asarray(self.commanded_nm)
        moving = numpy.abs(step) > 1e-6
        self.__direction = numpy.where(moving, numpy.sign(step), self.__direction)
        e = self.errors
        # backlash: the axis lags behind in the direction it last moved, so reversing an axis shifts the landing by the full backlash
        self.__landed = target - 0.5 * e.backlash_nm * self.__direction + self.__rng.normal(0.0, e.repeatability_nm, 2) * moving.any()
        if moving.any():
            self.__settle = self.__rng.normal(0.0, e.settling_nm, 2)
        duration = e.overhead_s + float(numpy.abs(step).max()) / e.speed_nm_per_s
        self.__moved_at_s = now_s + duration
        self.commanded_nm = (float(target[0]), float(target[1]))
        return duration

    def true_position_nm(self, now_s: float) -> _NDArray:
        """Where the stage really is at ``now_s``: the landing point plus the settling drift so far."""
        elapsed = max(0.0, now_s - self.__moved_at_s)
        return typing.cast(_NDArray, self.__landed + self.__settle * (1.0 - math.exp(-elapsed / self.errors.settling_time_s)))


class StageMicroscope(SimulatedBeam):
    """A :class:`~nion_autoem.instrument.Microscope` over a :class:`StageSample` and an :class:`ImpreciseStage`.

    Surveys render the sample where the stage really is (Poisson noise, the
    blur of the defocus error there), at any field of view; spectra show the
    edges of what is under the probe.  Time is the twin's simulated clock:
    a survey costs its pixels' dwell plus 20 ms of flyback, a move its
    travel plus overhead.

    Parameters
    ----------
    sample : StageSample
    errors : StageErrors
        The stage's imprecision (``StageErrors(0, 0, 0)`` for a perfect stage).
    seed : int
        Seeds the stage's errors and the shot noise.
    beam_current_A : float
        Probe current.
    frame : ScanFrame or None
        The scan at start; default a 4 µm field of 128 × 128 pixels.

    Examples
    --------
    >>> scope = StageMicroscope(StageSample(seed=0, size_nm=10_000.0, objects=40))
    >>> scope.move_stage((1_000.0, -1_000.0)); scope.unblank()
    >>> m = scope.survey(ScanFrame((64, 64), 2_000.0), pixel_time_us=2.0)
    >>> m.xdata.data_shape, scope.stage_position_nm, bool(m.dose_e > 0)
    ((64, 64), (1000.0, -1000.0), True)
    >>> bool(numpy.hypot(*numpy.subtract(scope.true_stage_position_nm, (1_000.0, -1_000.0))) > 1.0)
    True
    """

    FLYBACK_S = 0.02

    def __init__(self, sample: StageSample, *, errors: StageErrors = StageErrors(), seed: int = 0, beam_current_A: float = 50e-12,
                 frame: ScanFrame | None = None) -> None:
        if not (math.isfinite(beam_current_A) and beam_current_A > 0):
            raise ValueError(f"beam_current_A must be a finite current > 0 A (e.g. 50e-12), got {beam_current_A!r}")
        super().__init__(frame or ScanFrame((128, 128), 4000.0), beam_current_A)
        self.sample = sample
        self.stage = ImpreciseStage(errors, seed=seed)
        self.clock = SimulatedClock()
        self.__noise = numpy.random.default_rng(40_000 + seed)
        low, high = sample.extent_nm
        self.__limits: StageLimits = ((low, high), (low, high))
        self.__defocus_nm = 0.0
        #: Every move: commanded and true landing position (nm), for tests and benchmarks.
        self.moves: list[tuple[Position, Position]] = []
        #: Every survey: commanded stage and true stage at mid-frame (nm), the truth a montage is scored against.
        self.surveys: list[tuple[Position, Position]] = []
        #: Every spectrum: the sample position of the probe (nm) and the object under it (None: bare film).
        self.spectra: list[tuple[Position, StageObject | None]] = []

    # --- state -----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"Stage-scale twin (seed {self.sample.seed})"

    @property
    def now_s(self) -> float:
        """The simulated instrument time (s)."""
        return self.clock.now_s

    @property
    def true_stage_position_nm(self) -> Position:
        """Where the stage really is now, drift included: the truth the readout does not show."""
        p = self.stage.true_position_nm(self.now_s)
        return float(p[0]), float(p[1])

    def sample_position_nm(self, scan_nm: Position = (0.0, 0.0)) -> Position:
        """Where on the sample a scan-field position lies now (true stage plus the position)."""
        t = self.true_stage_position_nm
        return t[0] + scan_nm[0], t[1] + scan_nm[1]

    def blur_nm(self, scan_nm: Position = (0.0, 0.0)) -> float:
        """Probe blur (nm) from the defocus error at a scan-field position."""
        height = float(self.sample.height_nm(self.sample_position_nm(scan_nm)))
        return 0.5 * CONVERGENCE_SEMI_ANGLE_RAD * abs(self.__defocus_nm - height)

    def observe(self, measurement: Measurement) -> None:
        """Let a plan's ``Wait`` pass on the twin's clock; pass as ``on_measurement``."""
        if measurement.kind == "none" and measurement.duration_s > 0:
            self.clock.advance(measurement.duration_s)

    # --- acquisitions ------------------------------------------------------------------------------

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        used = frame or self._frame
        pixel = 1.0 if pixel_time_us is None else float(pixel_time_us)
        if not (math.isfinite(pixel) and pixel > 0):
            raise ValueError(f"pixel_time_us must be a finite time > 0 µs, got {pixel_time_us!r}")
        with self._lock:
            self._frame = used
            dwell = used.shape[0] * used.shape[1] * pixel * 1e-6
            start = self.clock.advance(dwell + self.FLYBACK_S)
            # the sample seen at mid-frame: settling drift during one frame is left out (no shear within a frame)
            middle = self.stage.true_position_nm(start + 0.5 * dwell)
            centre = (float(middle[0] + used.center_nm[0]), float(middle[1] + used.center_nm[1]))
            blur = 0.5 * CONVERGENCE_SEMI_ANGLE_RAD * abs(self.__defocus_nm - float(self.sample.height_nm(centre)))
            signal = self.sample.render(used, offset_nm=(float(middle[0]), float(middle[1])), blur_nm=blur)
            per_pixel = 0.0 if self._blanked else electrons(self._beam_current_A, pixel * 1e-6) * DETECTOR_YIELD
            counts = self.__noise.poisson(signal * per_pixel).astype(float)
            self.surveys.append((self.stage.commanded_nm, (float(middle[0]), float(middle[1]))))
        metadata = {ACQUISITION_CLOCK_KEY: [start, start + dwell],
                    "nion_autoem": {"stage_nm": list(self.stage.commanded_nm), "defocus_nm": self.__defocus_nm, "pixel_time_us": pixel}}
        data = {c: xdata_builders.image_xdata(counts, used, channel=c, metadata=metadata) for c in channels}
        return Measurement.of(data, "survey", dwell_s=dwell, beam_current_A=self._beam_current_A, blanked=self._blanked, frame=used, started_at=start,
                              duration_s=dwell + self.FLYBACK_S)

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        """An EELS spectrum at the parked probe: a power-law background and the edges of what lies under it (C K on film, Fe L on particles, Co L on platelets)."""
        if isinstance(exposure_ms, bool) or not isinstance(exposure_ms, (int, float)) or not math.isfinite(exposure_ms) or exposure_ms <= 0:
            raise ValueError(f"exposure_ms must be a finite EELS exposure > 0 ms, e.g. 100; got {exposure_ms!r}")
        with self._lock:
            if self._probe is None:
                raise InstrumentError("the probe is not parked: park it (ParkProbe, or Acquire at a position) before recording a spectrum")
            exposure_s = exposure_ms * 1e-3
            start = self.clock.advance(exposure_s)
            where = self.sample_position_nm(self._probe)
            below = self.sample.object_at(where)
            self.spectra.append((where, below))
            offset, scale, channels = SPECTRUM_AXIS
            reaching = 0.0 if self._blanked else electrons(self._beam_current_A, exposure_s)
            counts = self.__noise.poisson(core_loss_counts(below, offset + scale * numpy.arange(channels), reaching)).astype(float)
        metadata = {ACQUISITION_CLOCK_KEY: [start, start + exposure_s], "nion_autoem": {"position_nm": list(self._probe), "exposure_ms": exposure_ms}}
        spectrum = xdata_builders.spectrum_xdata(counts, offset, scale, metadata=metadata)
        return Measurement.of({"eels": spectrum}, "spectrum", dwell_s=exposure_s, beam_current_A=self._beam_current_A, blanked=self._blanked,
                              position_nm=self._probe, started_at=start, duration_s=exposure_s)

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        raise InstrumentError("the stage-scale twin has no camera; record surveys or spectra")

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        with self._lock:
            if self._probe is None:
                raise InstrumentError("the probe is not parked: park it before recording an ADF trace")
            dwell = samples * sample_time_us * 1e-6
            start = self.clock.advance(dwell)
            y, x = self.sample_position_nm(self._probe)
            level = float(self.sample.render(ScanFrame((1, 1), 1.0), offset_nm=(y, x))[0, 0])
            per_sample = 0.0 if self._blanked else electrons(self._beam_current_A, sample_time_us * 1e-6) * DETECTOR_YIELD
            trace = self.__noise.poisson(level * per_sample, samples).astype(float)
        return Measurement.of({channel: xdata_builders.trace_xdata(trace, sample_time_us, channel=channel)}, "adf_trace", dwell_s=dwell,
                              beam_current_A=self._beam_current_A, blanked=self._blanked, position_nm=self._probe, started_at=start, duration_s=dwell)

    def adf_trace_until(self, samples: int, sample_time_us: float, until: DropAlarm, *, channel: str = "HAADF") -> Measurement:
        return self._cut_trace(self.adf_trace(samples, sample_time_us, channel=channel), until, sample_time_us, channel)

    # --- probe, beam, field, stage, focus --------------------------------------------------------

    @property
    def stage_position_nm(self) -> Position:
        return self.stage.commanded_nm

    @property
    def stage_limits_nm(self) -> StageLimits:
        return self.__limits

    def move_stage(self, position_nm: Position) -> None:
        y, x = checked_stage_position(position_nm, self.__limits)
        with self._lock:
            self._probe = None
            duration = self.stage.move((y, x), now_s=self.now_s)
            self.clock.advance(duration)
            self.moves.append(((y, x), self.true_stage_position_nm))

    @property
    def defocus_nm(self) -> float:
        return self.__defocus_nm

    def set_defocus(self, defocus_nm: float) -> None:
        if not math.isfinite(defocus_nm):
            raise ValueError(f"defocus_nm must be a finite defocus in nm, got {defocus_nm!r}")
        self.__defocus_nm = float(defocus_nm)
