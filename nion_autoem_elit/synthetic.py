"""Simulated ADF-STEM frames of 2D crystals with per-pixel and per-atom labels.

Image formation is incoherent Z-contrast: each column scatters a fraction of the
probe proportional to the sum of Z^1.7 of its atoms, blurred by a Gaussian probe
and counted with Poisson statistics for the chosen dose. On top come what makes
real frames hard: random pixel size and rotation, linear drift (shear/scale),
line-to-line scan jitter, a background level and bright contamination blobs.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage

import nion_autoem_checks as _checks
from nion_autoem_elit import lattices

_NDArray = numpy.typing.NDArray[typing.Any]

# Probe FWHM at which a column's peak scattering fraction equals its nominal value.
_REFERENCE_PROBE_FWHM_A = 0.8
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclasses.dataclass(frozen=True)
class ImagingConditions:
    """The microscope state and artefacts for one frame.

    Parameters
    ----------
    pixel_size_A : float
        Sampling in ångström per pixel.
    probe_fwhm_A : float
        Full width at half maximum of the (Gaussian) probe.
    dose_e_per_A2 : float
        Electron dose in e/Å^2; sets the Poisson noise.
    scattering_fraction : float
        Fraction of the probe scattered onto the ADF detector when centred on a
        Mo-like column (Z^1.7 = 42^1.7); other columns scale by their contrast.
    rotation_rad : float
        In-plane rotation of the crystal.
    drift_shear : float
        Linear drift during the frame expressed as shear of the fast axis.
    drift_scale : float
        Relative stretch of the slow axis from drift along it.
    line_jitter_px : float
        Standard deviation of the random shift of each scan line.
    background_fraction : float
        Constant background (amorphous support, detector offset) relative to an
        S2-column peak.
    contamination_blobs : int
        Number of smooth bright hydrocarbon contamination blobs.
    """

    pixel_size_A: float = 0.12
    probe_fwhm_A: float = 0.8
    dose_e_per_A2: float = 2.0e5
    scattering_fraction: float = 0.035
    rotation_rad: float = 0.0
    drift_shear: float = 0.0
    drift_scale: float = 0.0
    line_jitter_px: float = 0.0
    background_fraction: float = 0.1
    contamination_blobs: int = 0

    def __post_init__(self) -> None:
        _checks.number(self.pixel_size_A, "pixel_size_A", "a positive finite number of ångström per pixel", lambda v: v > 0)
        _checks.number(self.probe_fwhm_A, "probe_fwhm_A", "a positive finite width in ångström", lambda v: v > 0)
        _checks.number(self.dose_e_per_A2, "dose_e_per_A2", "a positive finite dose in e/Å^2", lambda v: v > 0)
        _checks.number(self.scattering_fraction, "scattering_fraction", "a fraction in (0, 1]", lambda v: 0 < v <= 1)
        _checks.number(self.rotation_rad, "rotation_rad", "a finite angle in radians")
        _checks.number(self.drift_shear, "drift_shear", "a finite shear")
        _checks.number(self.drift_scale, "drift_scale", "a finite relative stretch > -1", lambda v: v > -1)
        _checks.number(self.line_jitter_px, "line_jitter_px", "a finite number of pixels >= 0", lambda v: v >= 0)
        _checks.number(self.background_fraction, "background_fraction", "a finite fraction >= 0", lambda v: v >= 0)
        _checks.whole(self.contamination_blobs, "contamination_blobs", 0)


@dataclasses.dataclass(frozen=True)
class ImagingRanges:
    """Ranges from which :func:`generate_frame` draws conditions for each frame.

    Scalars given as ``(low, high)``; dose is drawn log-uniformly.
    """

    pixel_size_A: tuple[float, float] = (0.08, 0.16)
    probe_fwhm_A: tuple[float, float] = (0.6, 1.05)
    dose_e_per_A2: tuple[float, float] = (5.0e4, 1.0e6)
    scattering_fraction: tuple[float, float] = (0.025, 0.05)
    drift_shear: tuple[float, float] = (-0.03, 0.03)
    drift_scale: tuple[float, float] = (-0.03, 0.03)
    line_jitter_px: tuple[float, float] = (0.0, 0.4)
    background_fraction: tuple[float, float] = (0.0, 0.5)
    contamination_blobs: tuple[int, int] = (0, 3)

    def __post_init__(self) -> None:
        positive = "a (low, high) range with 0 < low <= high"
        _range(self.pixel_size_A, "pixel_size_A", positive, lambda lo, hi: 0 < lo <= hi)
        _range(self.probe_fwhm_A, "probe_fwhm_A", positive, lambda lo, hi: 0 < lo <= hi)
        _range(self.dose_e_per_A2, "dose_e_per_A2", positive, lambda lo, hi: 0 < lo <= hi)
        _range(self.scattering_fraction, "scattering_fraction", "a (low, high) range with 0 < low <= high <= 1", lambda lo, hi: 0 < lo <= hi <= 1)
        _range(self.drift_shear, "drift_shear", "a finite (low, high) range with low <= high", lambda lo, hi: lo <= hi)
        _range(self.drift_scale, "drift_scale", "a finite (low, high) range with -1 < low <= high", lambda lo, hi: -1 < lo <= hi)
        _range(self.line_jitter_px, "line_jitter_px", "a (low, high) range with 0 <= low <= high", lambda lo, hi: 0 <= lo <= hi)
        _range(self.background_fraction, "background_fraction", "a (low, high) range with 0 <= low <= high", lambda lo, hi: 0 <= lo <= hi)
        blobs = "a (low, high) range of whole numbers with 0 <= low <= high"
        low, high = _range(self.contamination_blobs, "contamination_blobs", blobs, lambda lo, hi: float(lo).is_integer() and float(hi).is_integer() and 0 <= lo <= hi)
        object.__setattr__(self, "contamination_blobs", (int(low), int(high)))

    def sample(self, rng: numpy.random.Generator) -> ImagingConditions:
        """Draw one frame's conditions."""
        lo, hi = self.dose_e_per_A2
        return ImagingConditions(
            pixel_size_A=float(rng.uniform(*self.pixel_size_A)),
            probe_fwhm_A=float(rng.uniform(*self.probe_fwhm_A)),
            dose_e_per_A2=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))),
            scattering_fraction=float(rng.uniform(*self.scattering_fraction)),
            rotation_rad=float(rng.uniform(0.0, 2.0 * math.pi)),
            drift_shear=float(rng.uniform(*self.drift_shear)),
            drift_scale=float(rng.uniform(*self.drift_scale)),
            line_jitter_px=float(rng.uniform(*self.line_jitter_px)),
            background_fraction=float(rng.uniform(*self.background_fraction)),
            contamination_blobs=int(rng.integers(self.contamination_blobs[0], self.contamination_blobs[1] + 1)),
        )

    def as_dict(self) -> dict[str, typing.Any]:
        """Plain dictionary for model metadata."""
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, typing.Any]) -> ImagingRanges:
        """Inverse of :meth:`as_dict`; unknown keys are ignored."""
        if not isinstance(data, typing.Mapping):
            raise TypeError(f"data must be a mapping of range names to (low, high) pairs, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        ranges = {}
        for key, value in data.items():
            if key in names:
                ranges[key] = _checks.pair(value, key, "a (low, high) pair")
        return cls(**ranges)  # type: ignore[arg-type]


def _range(value: tuple[float, float], name: str, expected: str, ok: typing.Callable[[float, float], bool]) -> tuple[float, float]:
    low, high = _checks.pair(value, name, expected)
    if not (math.isfinite(low) and math.isfinite(high) and ok(low, high)):
        raise ValueError(f"{name} must be {expected}, got {_checks.describe(value)}")
    return low, high


@dataclasses.dataclass(frozen=True)
class SyntheticFrame:
    """A simulated frame with its ground truth.

    Attributes
    ----------
    image : (H, W) ndarray of float32
        Detector counts.
    label_mask : (H, W) ndarray of uint8
        Class per pixel: 0 background, ``k`` inside a disk around a column of class ``k``.
    positions : (N, 2) ndarray of float
        Column positions ``(row, col)`` in pixels.
    classes : (N,) ndarray of int
        Column classes (1-based, see ``class_names``).
    class_names : tuple of str
        Names of the classes, background first.
    conditions : ImagingConditions
        The conditions used.
    nearest_neighbour_px : float
        Nominal column spacing in pixels (before drift), used for matching.
    """

    image: _NDArray
    label_mask: _NDArray
    positions: _NDArray
    classes: _NDArray
    class_names: tuple[str, ...]
    conditions: ImagingConditions
    nearest_neighbour_px: float


def generate_frame(
    lattice: lattices.LatticeSpec | str,
    shape: tuple[int, int] = (256, 256),
    *,
    seed: int | numpy.random.Generator | None = None,
    ranges: ImagingRanges | None = None,
    conditions: ImagingConditions | None = None,
    label_radius_A: float = 0.4,
) -> SyntheticFrame:
    """Simulate one ADF-STEM frame of ``lattice`` with labels.

    Parameters
    ----------
    lattice : LatticeSpec or str
        The material, e.g. :func:`nion_autoem_elit.lattices.mos2_lattice`, or
        its name in :data:`nion_autoem_elit.lattices.LATTICES` (``"mos2"``).
    shape : tuple of int
        Frame size ``(rows, cols)`` in pixels.
    seed : int, Generator or None
        Seed for reproducibility; the same seed gives the same frame.
    ranges : ImagingRanges, optional
        Ranges to draw conditions from; defaults to :class:`ImagingRanges`.
    conditions : ImagingConditions, optional
        Fixed conditions (the rotation is still random); overrides ``ranges``.
    label_radius_A : float
        Radius of the labelled disk at each column in ångström.

    Returns
    -------
    SyntheticFrame
        Image, label mask and atom list.

    Examples
    --------
    >>> from nion_autoem_elit import lattices
    >>> frame = generate_frame(lattices.mos2_lattice(), (128, 128), seed=0)
    >>> frame.image.shape, frame.label_mask.dtype.name
    ((128, 128), 'uint8')
    """
    lattice = lattices.resolve_lattice(lattice)
    rows, cols = _frame_shape(shape, 16)
    rng = _generator(seed)
    if ranges is not None and not isinstance(ranges, ImagingRanges):
        raise TypeError(f"ranges must be ImagingRanges or None, got {type(ranges).__name__}")
    if conditions is not None and not isinstance(conditions, ImagingConditions):
        raise TypeError(f"conditions must be ImagingConditions or None, got {type(conditions).__name__}")
    label_radius_A = _checks.number(label_radius_A, "label_radius_A", "a positive finite radius in ångström", lambda v: v > 0)
    if conditions is None:
        conditions = (ranges or ImagingRanges()).sample(rng)
    else:
        conditions = dataclasses.replace(conditions, rotation_rad=float(rng.uniform(0.0, 2.0 * math.pi)))
    px = conditions.pixel_size_A

    # Columns in the sample, then mapped into image pixels through rotation and drift.
    half_diagonal_A = 0.5 * math.hypot(rows, cols) * px * 1.1 + 3.0
    sites_A, kinds = lattice.site_positions_A(half_diagonal_A)
    sites_A = sites_A + rng.uniform(-0.5, 0.5, size=2) * numpy.asarray(lattice.cell_A[0])
    species_names = _occupy_sites(lattice, kinds, rng)
    occupied = numpy.array([name is not None for name in species_names])
    sites_A = sites_A[occupied]
    names = [n for n in species_names if n is not None]
    c, s = math.cos(conditions.rotation_rad), math.sin(conditions.rotation_rad)
    x = (c * sites_A[:, 0] - s * sites_A[:, 1]) / px
    y = (s * sites_A[:, 0] + c * sites_A[:, 1]) / px
    row = y * (1.0 + conditions.drift_scale) + 0.5 * (rows - 1)
    col = x + conditions.drift_shear * y + 0.5 * (cols - 1)
    jitter = rng.normal(0.0, conditions.line_jitter_px, size=rows) if conditions.line_jitter_px > 0 else numpy.zeros(rows)
    # A scan line shifted by j shows every column it crosses shifted by j.
    col = col + jitter[numpy.clip(numpy.round(row).astype(int), 0, rows - 1)]

    contrast = {sp.name: sp.contrast() for sp in lattice.species}
    reference_contrast = lattices.ColumnSpecies("ref", (42,)).contrast()
    weights = numpy.array([contrast[n] / reference_contrast for n in names])
    class_of = {sp.name: lattice.class_index(sp.name) for sp in lattice.species}
    classes = numpy.array([class_of[n] for n in names], dtype=numpy.int64)

    sigma_px = conditions.probe_fwhm_A / _FWHM_PER_SIGMA / px
    scattered = _render_columns(row, col, weights, (rows, cols), sigma_px)
    # A wider probe spreads the same scattered intensity over a larger area.
    scattered *= (_REFERENCE_PROBE_FWHM_A / conditions.probe_fwhm_A) ** 2
    s2_peak = lattices.ColumnSpecies("S2", (16, 16)).contrast() / reference_contrast
    background = conditions.background_fraction * s2_peak * _smooth_field(rng, (rows, cols), 0.3)
    for _ in range(conditions.contamination_blobs):
        background += _contamination_blob(rng, (rows, cols), amplitude=rng.uniform(0.1, 0.6) * s2_peak)
    electrons_per_pixel = conditions.dose_e_per_A2 * px * px
    expected = electrons_per_pixel * conditions.scattering_fraction * (scattered + background)
    image = rng.poisson(numpy.clip(expected, 0.0, None)).astype(numpy.float32)

    inside = (row >= -0.5) & (row <= rows - 0.5) & (col >= -0.5) & (col <= cols - 0.5)
    positions = numpy.stack([row, col], axis=1)
    label_mask = _label_disks(positions, classes, (rows, cols), label_radius_A / px)
    return SyntheticFrame(
        image=image,
        label_mask=label_mask,
        positions=positions[inside],
        classes=classes[inside],
        class_names=lattice.class_names,
        conditions=conditions,
        nearest_neighbour_px=lattice.nearest_neighbour_A / px,
    )


def _frame_shape(shape: tuple[int, int], minimum: int) -> tuple[int, int]:
    expected = f"two whole pixel counts >= {minimum}"
    if not isinstance(shape, (tuple, list, numpy.ndarray)) or len(shape) != 2 or not all(_checks.is_number(v) for v in shape):
        raise TypeError(f"shape must be {expected}, got {_checks.describe(shape)}")
    try:
        return _checks.whole(shape[0], "shape", minimum), _checks.whole(shape[1], "shape", minimum)
    except ValueError:
        raise ValueError(f"shape must be {expected}, got {_checks.describe(shape)}") from None


def _generator(seed: int | numpy.random.Generator | None) -> numpy.random.Generator:
    if isinstance(seed, numpy.random.Generator):
        return seed
    if seed is None:
        return numpy.random.default_rng()
    try:
        return numpy.random.default_rng(_checks.whole(seed, "seed", 0))
    except (TypeError, ValueError) as error:
        raise type(error)(f"seed must be None, a numpy.random.Generator or a whole number >= 0, got {_checks.describe(seed)}") from None


def dose_for_peak_counts(
    peak_counts: float,
    species: lattices.ColumnSpecies,
    pixel_size_A: float,
    probe_fwhm_A: float,
    scattering_fraction: float,
) -> float:
    """Dose (e/Å^2) at which a column of ``species`` peaks at ``peak_counts`` above background.

    The inverse of the image formation in :func:`generate_frame`, used to
    simulate frames at the dose of an experimental frame.

    Examples
    --------
    >>> mo = lattices.ColumnSpecies("Mo", (42,))
    >>> round(dose_for_peak_counts(35.0, mo, 0.1, 0.8, 0.035))
    100000
    """
    peak_counts = _checks.number(peak_counts, "peak_counts", "a positive finite number of counts", lambda v: v > 0)
    if not isinstance(species, lattices.ColumnSpecies):
        raise TypeError(f"species must be a ColumnSpecies, got {type(species).__name__}")
    pixel_size_A = _checks.number(pixel_size_A, "pixel_size_A", "a positive finite number of ångström per pixel", lambda v: v > 0)
    probe_fwhm_A = _checks.number(probe_fwhm_A, "probe_fwhm_A", "a positive finite width in ångström", lambda v: v > 0)
    scattering_fraction = _checks.number(scattering_fraction, "scattering_fraction", "a fraction in (0, 1]", lambda v: 0 < v <= 1)
    relative = species.contrast() / lattices.ColumnSpecies("ref", (42,)).contrast()
    per_electron = pixel_size_A**2 * scattering_fraction * relative * (_REFERENCE_PROBE_FWHM_A / probe_fwhm_A) ** 2
    return float(peak_counts / per_electron)


def _occupy_sites(lattice: lattices.LatticeSpec, kinds: list[str], rng: numpy.random.Generator) -> list[str | None]:
    names: list[str | None] = [lattice.hosts[k] for k in kinds]
    kind_array = numpy.array(kinds)
    for kind, substitutions in lattice.substitutions.items():
        sites = numpy.flatnonzero(kind_array == kind)
        rng.shuffle(sites)
        start = 0
        for sub in substitutions:
            count = int(rng.binomial(len(sites), rng.uniform(*sub.concentration)))
            for index in sites[start : start + count]:
                names[int(index)] = sub.species
            start += count
    return names


def _render_columns(row: _NDArray, col: _NDArray, weights: _NDArray, shape: tuple[int, int], sigma_px: float) -> _NDArray:
    """Sum of Gaussian probes at sub-pixel column positions, peak height = weight."""
    rows, cols = shape
    radius = int(math.ceil(4.0 * sigma_px))
    out = numpy.zeros((rows + 4 * radius, cols + 4 * radius))
    offsets = numpy.arange(-radius, radius + 1)
    inside = (row > -radius) & (row < rows + radius - 1) & (col > -radius) & (col < cols + radius - 1)
    for r, c, w in zip(row[inside], col[inside], weights[inside]):
        r0 = int(math.floor(r))
        c0 = int(math.floor(c))
        gr = numpy.exp(-0.5 * ((r0 + offsets - r) / sigma_px) ** 2)
        gc = numpy.exp(-0.5 * ((c0 + offsets - c) / sigma_px) ** 2)
        out[r0 + radius : r0 + 3 * radius + 1, c0 + radius : c0 + 3 * radius + 1] += w * numpy.outer(gr, gc)
    return out[2 * radius : 2 * radius + rows, 2 * radius : 2 * radius + cols]


def _smooth_field(rng: numpy.random.Generator, shape: tuple[int, int], variation: float) -> _NDArray:
    """A background level of 1 with a gentle random gradient."""
    rows, cols = shape
    gy, gx = rng.uniform(-variation, variation, size=2)
    r = numpy.linspace(-0.5, 0.5, rows)[:, None]
    c = numpy.linspace(-0.5, 0.5, cols)[None, :]
    return typing.cast(_NDArray, numpy.clip(1.0 + gy * r + gx * c, 0.0, None))


def _contamination_blob(rng: numpy.random.Generator, shape: tuple[int, int], amplitude: float) -> _NDArray:
    rows, cols = shape
    seeds = numpy.zeros(shape)
    seeds[rng.integers(0, rows), rng.integers(0, cols)] = 1.0
    width = rng.uniform(0.05, 0.2) * min(rows, cols)
    blob = scipy.ndimage.gaussian_filter(seeds, width, mode="constant")
    peak = blob.max()
    return typing.cast(_NDArray, amplitude * blob / peak) if peak > 0 else blob


def _label_disks(positions: _NDArray, classes: _NDArray, shape: tuple[int, int], radius_px: float) -> _NDArray:
    """Class map with a disk of ``radius_px`` at each column; nearest column wins overlaps."""
    rows, cols = shape
    mask = numpy.zeros(shape, dtype=numpy.uint8)
    best = numpy.full(shape, numpy.inf)
    reach = int(math.ceil(radius_px))
    offsets = numpy.arange(-reach, reach + 1)
    for (r, c), k in zip(positions, classes):
        r0, c0 = int(round(r)), int(round(c))
        rr = r0 + offsets
        cc = c0 + offsets
        valid_r = (rr >= 0) & (rr < rows)
        valid_c = (cc >= 0) & (cc < cols)
        if not valid_r.any() or not valid_c.any():
            continue
        rr = rr[valid_r]
        cc = cc[valid_c]
        d2 = (rr[:, None] - r) ** 2 + (cc[None, :] - c) ** 2
        window = best[numpy.ix_(rr, cc)]
        take = (d2 <= radius_px * radius_px) & (d2 < window)
        window[take] = d2[take]
        best[numpy.ix_(rr, cc)] = window
        sub = mask[numpy.ix_(rr, cc)]
        sub[take] = k
        mask[numpy.ix_(rr, cc)] = sub
    return mask
