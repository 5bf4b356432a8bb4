"""Sampling (nm per pixel) in, sampling respected: resample a frame into a model's trained range.

The packaged ensembles were trained on a narrow band of pixel sizes (MoS2:
0.008-0.016 nm/pixel, neighbouring columns 11-23 pixels apart). A frame taken
coarser is resampled to the middle of that band before the network sees it; a
finer one, and one in the finer part of the band, is downsampled to a sampling
near the band's coarse end (:data:`PROCESSING_POSITION`): fewer pixels, the same
accuracy. Positions and maps are always reported in the frame's own pixels.

This module also holds the "is there a lattice at all?" check: the columns a
network reports on noise, vacuum or amorphous material are not spaced like the
lattice it was trained on and have no common bond orientation.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.spatial
import torch
import torch.nn.functional as F

from nion_autoem_elit import ensemble
from nion_autoem_elit import lattices

_NDArray = numpy.typing.NDArray[typing.Any]

#: Neighbouring columns must be at least this many pixels apart in the input frame.
MIN_NEIGHBOUR_PX = 2.5
#: Fewer columns than this cannot show a lattice.
MIN_LATTICE_COLUMNS = 6
#: Fraction of columns whose nearest neighbour sits at the lattice spacing (within tolerance).
MIN_SPACING_FRACTION = 0.6
#: Bond-orientational order (|<exp(i n theta)>| over nearest-neighbour bonds) of a crystal.
MIN_ORIENTATIONAL_ORDER = 0.4
_SPACING_TOLERANCE = (0.75, 1.3)
#: Where in the trained sampling range (0: fine end, 1: coarse end) frames finer than it are
#: processed: a quarter of the pixels of the fine end, a third fewer than the middle,
#: and on the twin frames of ``benchmarks/elit_bench.py`` as accurate as the middle.
#: (The coarse end itself loses half-visible columns at the frame edge.)
PROCESSING_POSITION = 0.875
#: Frames within this factor of the processing sampling are used as they are: resampling
#: by less would cost an interpolation for little time.
MIN_ZOOM_TO_RESAMPLE = 0.9
#: Frames are only downsampled to the processing sampling if at least this many pixels
#: remain on their short side; smaller ones are fast anyway, and downsampling them leaves
#: few columns for the lattice check (more chance lattices on noise) and more at the edge.
MIN_FAST_SIZE = 128

_LATTICES: dict[str, typing.Callable[[], lattices.LatticeSpec]] = {
    "mos2": lattices.mos2_lattice,
    "graphene": lattices.graphene_lattice,
}


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """How a frame is resampled before the network sees it.

    Attributes
    ----------
    pixel_size_nm : float or None
        Sampling of the input frame (None: not given).
    model_pixel_size_nm : float or None
        Sampling of the frame the network sees.
    zoom : float
        Network pixels per input pixel (1.0: not resampled).
    in_trained_range : bool or None
        Whether ``pixel_size_nm`` lies inside the model's trained range (None: unknown).
    trained_range_nm : (float, float) or None
        The model's trained sampling range.
    nearest_neighbour_nm : float or None
        Nearest-neighbour column distance of the model's lattice.
    warnings : tuple of str
    """

    pixel_size_nm: float | None
    model_pixel_size_nm: float | None
    zoom: float
    in_trained_range: bool | None
    trained_range_nm: tuple[float, float] | None
    nearest_neighbour_nm: float | None
    warnings: tuple[str, ...] = ()


def trained_range_nm(metadata: typing.Mapping[str, typing.Any]) -> tuple[float, float] | None:
    """The trained sampling range of a model in nm/pixel, from its ``imaging_ranges`` (stored in Å)."""
    ranges = metadata.get("imaging_ranges")
    if not isinstance(ranges, typing.Mapping) or "pixel_size_A" not in ranges:
        return None
    low, high = (float(v) for v in ranges["pixel_size_A"])
    return low / 10.0, high / 10.0


def trained_ranges(metadata: typing.Mapping[str, typing.Any]) -> dict[str, tuple[float, float]]:
    """Trained sampling (nm/pixel), probe FWHM (nm) and dose (e/nm^2) ranges of a model; empty if not recorded."""
    ranges = metadata.get("imaging_ranges")
    if not isinstance(ranges, typing.Mapping):
        return {}
    out: dict[str, tuple[float, float]] = {}
    for key, name, factor in (("pixel_size_A", "pixel_size_nm", 0.1), ("probe_fwhm_A", "probe_fwhm_nm", 0.1), ("dose_e_per_A2", "dose_e_per_nm2", 100.0)):
        if key in ranges:
            low, high = ranges[key]
            out[name] = (float(low) * factor, float(high) * factor)
    return out


def lattice_of(metadata: typing.Mapping[str, typing.Any]) -> lattices.LatticeSpec | None:
    """The lattice a model was trained on, if it is a known one."""
    name = metadata.get("lattice")
    factory = _LATTICES.get(str(name).lower()) if isinstance(name, str) else None
    return factory() if factory else None


def plan_sampling(shape: tuple[int, int], pixel_size_nm: float | None, metadata: typing.Mapping[str, typing.Any]) -> SamplingPlan:
    """Decide how to resample a frame of ``shape`` at ``pixel_size_nm`` for a model with ``metadata``.

    Raises
    ------
    ValueError
        If ``pixel_size_nm`` is not a positive finite number, or no resampling
        can rescue the frame: columns closer than :data:`MIN_NEIGHBOUR_PX`
        pixels, or a field too small to hold a network-sized frame.
    """
    trained = trained_range_nm(metadata)
    lattice = lattice_of(metadata)
    nn_nm = lattice.nearest_neighbour_A / 10.0 if lattice else None
    needs = f"{trained[0]:.3g}-{trained[1]:.3g} nm/pixel" if trained else "an unrecorded sampling"
    if pixel_size_nm is None:
        return SamplingPlan(None, None, 1.0, None, trained, nn_nm, (
            f"sampling not checked: pass pixel_size_nm (this model was trained on {needs}); the frame is used as it is",))
    if isinstance(pixel_size_nm, bool) or not isinstance(pixel_size_nm, (int, float, numpy.floating, numpy.integer)) or not (
            math.isfinite(float(pixel_size_nm)) and float(pixel_size_nm) > 0):
        raise ValueError(f"pixel_size_nm must be a positive finite pixel size in nm, got {pixel_size_nm!r}")
    pixel = float(pixel_size_nm)
    if trained is None:
        return SamplingPlan(pixel, pixel, 1.0, None, None, nn_nm, (
            "the model records no trained sampling; the frame is used as it is",))
    low, high = trained
    inside = low * (1 - 1e-9) <= pixel <= high * (1 + 1e-9)
    coarsest = nn_nm / MIN_NEIGHBOUR_PX if nn_nm else 2.0 * high
    if pixel > coarsest:
        raise ValueError(
            f"this model needs {needs}; this image is {pixel:.3g} nm/pixel, too coarse to resolve atom columns "
            f"(resampling rescues at most {coarsest:.3g} nm/pixel): take it with a smaller field or more pixels")
    # Coarser frames are upsampled to the middle of the range (the coarse end loses S1
    # vacancies), finer ones downsampled to the processing sampling near its coarse end,
    # unless that leaves a small frame (fast anyway, and the edge columns and the lattice
    # check would suffer): those keep the old choice, as they are or the middle of the range.
    processing = low + PROCESSING_POSITION * (high - low)
    middle = 0.5 * (low + high)
    fast = pixel < processing * MIN_ZOOM_TO_RESAMPLE and min(shape) * pixel / processing >= MIN_FAST_SIZE
    if inside and not fast:
        return SamplingPlan(pixel, pixel, 1.0, True, trained, nn_nm)
    target = processing if fast else middle
    zoom = pixel / target
    smallest = min(shape) * zoom
    if smallest < ensemble.MIN_FRAME_SIZE:
        raise ValueError(
            f"this model needs {needs}; this image is {pixel:.3g} nm/pixel and its field ({min(shape) * pixel:.3g} nm) is too small to hold "
            f"{ensemble.MIN_FRAME_SIZE} pixels at {target:.3g} nm/pixel: take a field of at least {ensemble.MIN_FRAME_SIZE * target:.3g} nm")
    if inside:
        return SamplingPlan(pixel, target, zoom, True, trained, nn_nm)
    kind = "upsampled" if zoom > 1 else "downsampled"
    return SamplingPlan(pixel, target, zoom, False, trained, nn_nm, (
        f"this image is {pixel:.3g} nm/pixel, outside the model's trained {needs}: {kind} by {zoom:.3g} to {target:.3g} nm/pixel",))


def resample(image: _NDArray, zoom: float) -> _NDArray:
    """Linear resampling by ``zoom`` with pixel centres mapped as in :func:`to_input_pixels` (edges clamped)."""
    if zoom == 1.0:
        return image
    shape = (max(1, int(round(image.shape[0] * zoom))), max(1, int(round(image.shape[1] * zoom))))
    resampled: _NDArray = _linear(numpy.asarray(image, dtype=numpy.float32)[None], shape)[0]
    return resampled


def to_input_pixels(positions: _NDArray, input_shape: tuple[int, int], model_shape: tuple[int, int]) -> _NDArray:
    """Sub-pixel positions in the resampled frame mapped back to the input frame's pixels."""
    scale = numpy.asarray(input_shape, dtype=float) / numpy.asarray(model_shape, dtype=float)
    return typing.cast(_NDArray, (numpy.asarray(positions, dtype=float) + 0.5) * scale - 0.5)


def maps_to_input(maps: _NDArray, input_shape: tuple[int, int]) -> _NDArray:
    """(C, h, w) per-pixel maps of the resampled frame brought back onto the input's (C, H, W) grid."""
    if maps.shape[-2:] == tuple(input_shape):
        return maps
    return _linear(numpy.asarray(maps, dtype=numpy.float32), (int(input_shape[0]), int(input_shape[1])))


def _linear(stack: _NDArray, shape: tuple[int, int]) -> _NDArray:
    """(C, h, w) float32 maps resampled linearly onto ``shape``, pixel centres as in :func:`to_input_pixels`.

    Without antialiasing, as ``scipy.ndimage.zoom(..., order=1, grid_mode=True, mode="nearest")``
    (which is 20 times slower).
    """
    with torch.inference_mode():
        out = F.interpolate(torch.from_numpy(numpy.ascontiguousarray(stack))[None], size=shape, mode="bilinear", align_corners=False)
    resampled: _NDArray = out[0].numpy()
    return resampled


@dataclasses.dataclass(frozen=True)
class LatticeCheck:
    """Whether the columns found look like a crystal lattice.

    Attributes
    ----------
    is_lattice : bool
    reason : str
        Why not (empty when it is a lattice).
    spacing_fraction : float
        Fraction of columns whose nearest neighbour lies at the expected spacing.
    orientational_order : float
        Bond-orientational order, 0 (random) to 1 (one perfect crystal).
    """

    is_lattice: bool
    reason: str
    spacing_fraction: float
    orientational_order: float


def check_lattice(positions: _NDArray, expected_neighbour_px: float | None) -> LatticeCheck:
    """Do the columns at ``positions`` (model pixels) form a lattice?

    Two cheap tests on the columns' geometry: most nearest-neighbour distances
    must equal the lattice spacing (``expected_neighbour_px`` when the sampling
    is known, else their own median), and the bonds must share an orientation
    (hexagonal or square order). Columns invented in noise, vacuum or
    amorphous material are packed densely but without either.
    """
    count = len(positions)
    if count < MIN_LATTICE_COLUMNS:
        return LatticeCheck(False, f"only {count} column-like spots, too few to show a lattice (at least {MIN_LATTICE_COLUMNS} needed)", 0.0, 0.0)
    tree = scipy.spatial.cKDTree(positions)
    distances, _ = tree.query(positions, k=2)
    nearest = distances[:, 1]
    spacing = float(expected_neighbour_px) if expected_neighbour_px else float(numpy.median(nearest))
    low, high = _SPACING_TOLERANCE
    fraction = float(numpy.mean((nearest > low * spacing) & (nearest < high * spacing)))
    pairs = tree.query_pairs(high * spacing, output_type="ndarray")
    if len(pairs):
        delta = positions[pairs[:, 1]] - positions[pairs[:, 0]]
        keep = numpy.hypot(delta[:, 0], delta[:, 1]) > low * spacing
        theta = numpy.arctan2(delta[keep, 0], delta[keep, 1])
        order = max(float(numpy.abs(numpy.mean(numpy.exp(1j * n * theta)))) for n in (4, 6)) if keep.any() else 0.0
    else:
        order = 0.0
    where = f"at the lattice spacing ({spacing:.3g} px)" if expected_neighbour_px else "at a common spacing"
    if fraction < MIN_SPACING_FRACTION:
        return LatticeCheck(False, f"no atomic lattice: only {fraction:.0%} of {count} column-like spots have their nearest neighbour {where} "
                                   f"(a lattice has over {MIN_SPACING_FRACTION:.0%}); noise, vacuum, amorphous material or a wrong pixel size?",
                            fraction, order)
    if order < MIN_ORIENTATIONAL_ORDER:
        return LatticeCheck(False, f"no atomic lattice: the {count} column-like spots share no bond orientation (order {order:.2f}, "
                                   f"a crystal has over {MIN_ORIENTATIONAL_ORDER}); noise, vacuum or amorphous material?", fraction, order)
    return LatticeCheck(True, "", fraction, order)
