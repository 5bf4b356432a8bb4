"""An ensemble of atom-column segmenters and its per-pixel prediction.

The ensemble turns a frame into class probabilities from every member at once
(one vectorised pass, see :mod:`nion_autoem_elit.model`). Disagreement between
members is the uncertainty that drives both the per-atom confidence and the
choice of pseudo-labels in iterative training.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import torch
import torch.nn.functional as F

import nion_autoem_checks as _checks
from nion_autoem_elit import atoms
from nion_autoem_elit import model

_NDArray = numpy.typing.NDArray[typing.Any]

# The network halves the resolution three times.
_SIZE_MULTIPLE = 16
MIN_FRAME_SIZE = 32


@dataclasses.dataclass
class Ensemble:
    """Trained members, the classes they know and how they were made.

    Parameters
    ----------
    network : EnsembleUNet
        All members packed into one network.
    class_names : tuple of str
        Class names, background first.
    metadata : dict
        Training parameters, metrics, uncertainty calibration and version.
    """

    network: model.EnsembleUNet
    class_names: tuple[str, ...]
    metadata: dict[str, typing.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.network, model.EnsembleUNet):
            raise TypeError(f"network must be an EnsembleUNet, got {type(self.network).__name__}")
        names = self.class_names
        if isinstance(names, str) or not isinstance(names, typing.Sequence) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"class_names must be a sequence of class-name strings, background first, got {_checks.describe(names)}")
        if len(names) != self.network.classes:
            raise ValueError(f"class_names must give one name per network class ({self.network.classes}), got {len(names)}: {tuple(names)}")
        self.class_names = tuple(names)
        if not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")

    @property
    def members(self) -> int:
        """Number of members."""
        return self.network.members

    def member_probabilities(self, image: _NDArray, *, test_time_augmentation: bool = False) -> _NDArray:
        """Class probabilities of every member for one frame.

        Parameters
        ----------
        image : (H, W) array_like
            ADF frame (counts or any linear intensity).
        test_time_augmentation : bool
            Also evaluate the mirrored and 180-degree-rotated frame and average;
            four times the cost for a smoother, slightly better estimate.

        Returns
        -------
        (M, C, H, W) ndarray of float32
            Probabilities per member and class.

        Examples
        --------
        >>> from nion_autoem_elit import model
        >>> ens = Ensemble(model.EnsembleUNet(2, 3), ("background", "A", "B"))
        >>> ens.member_probabilities(numpy.random.rand(40, 40)).shape
        (2, 3, 40, 40)
        """
        test_time_augmentation = _checks.flag(test_time_augmentation, "test_time_augmentation")
        frame = validate_frame(image)
        views = self._half_logits(frame, test_time_augmentation)
        stack = torch.empty((self.members, self.network.classes) + frame.shape)
        with torch.inference_mode():
            _probability_tiles(views, self.members, frame.shape, frame.shape, 0.5, stack)
        return stack.numpy()

    def probability_maps(
        self,
        image: _NDArray,
        *,
        threshold: float = 0.5,
        output_shape: tuple[int, int] | None = None,
        test_time_augmentation: bool = False,
    ) -> atoms.ProbabilityMaps:
        """What :func:`~nion_autoem_elit.atoms.atoms_from_maps` needs of one frame, without the full member stack.

        The same probabilities as :meth:`member_probabilities`, reduced on the fly
        to their ensemble mean and variance, plus every member's probabilities on
        the pixels whose mean foreground probability exceeds ``threshold``.

        Parameters
        ----------
        image : (H, W) array_like
            ADF frame.
        threshold : float
            Foreground probability of the column mask, in (0, 1).
        output_shape : (int, int), optional
            Grid the maps are computed on: the frame's own pixels by default.
            Another shape samples the same field (pixel centres mapped as in
            :func:`nion_autoem_elit.sampling.to_input_pixels`), e.g. the pixels of
            the frame that ``image`` was resampled from; the network's logits are
            interpolated straight onto it.
        test_time_augmentation : bool
            As in :meth:`member_probabilities`.

        Examples
        --------
        >>> from nion_autoem_elit import model
        >>> ens = Ensemble(model.EnsembleUNet(2, 3), ("background", "A", "B"))
        >>> maps = ens.probability_maps(numpy.random.rand(40, 40), output_shape=(60, 50))
        >>> maps.mean.shape, maps.variance.shape, maps.mask.shape, maps.inside.shape[:2]
        ((3, 60, 50), (3, 60, 50), (60, 50), (2, 3))
        """
        threshold = _checks.number(threshold, "threshold", "strictly between 0 and 1", lambda v: 0.0 < v < 1.0)
        test_time_augmentation = _checks.flag(test_time_augmentation, "test_time_augmentation")
        frame = validate_frame(image)
        if output_shape is None:
            shape = (int(frame.shape[0]), int(frame.shape[1]))
        else:
            if (
                not isinstance(output_shape, typing.Sequence)
                or len(output_shape) != 2
                or not all(_checks.is_number(n) and float(n) == int(n) and int(n) >= 1 for n in output_shape)
            ):
                raise ValueError(f"output_shape must be (rows, cols), two whole numbers >= 1, got {_checks.describe(output_shape)}")
            shape = (int(output_shape[0]), int(output_shape[1]))
        views = self._half_logits(frame, test_time_augmentation)
        with torch.inference_mode():
            return _probability_tiles(views, self.members, frame.shape, shape, threshold, None)

    def _half_logits(self, frame: _NDArray, test_time_augmentation: bool) -> list[torch.Tensor]:
        """Half-resolution logits of every view of a validated frame, each flipped back onto the frame."""
        x = torch.from_numpy(pad_to_multiple(normalise_frame(frame), _SIZE_MULTIPLE))
        views = [x]
        if test_time_augmentation:
            views += [x.flip(-1), x.flip(-2), x.flip(-1, -2)]
        # One channel: every member sees the same frame (the network then folds its stem into one convolution).
        batch = torch.stack(views)[:, None]
        self.network.eval()
        with torch.inference_mode():
            logits = self.network.half_logits(batch)
            # A view's half-resolution pixel i covers its rows 2i and 2i + 1, so flipping
            # the logits back puts them on the frame's own half-resolution grid.
            return [logits[i].flip(dims) if dims else logits[i] for i, dims in enumerate(_FLIPS[: len(views)])]


_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-1, -2))
#: Output pixels per tile: softmax, mean and variance of a tile stay in cache.
_TILE_PIXELS = 32768


class _Scratch:
    """Named float32 work buffers, reused at any shape up to the largest asked for."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers[name] = torch.empty(size)
        return buffer[:size].view(shape)


def _taps(out_size: int, half_size: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps (as ``F.interpolate(..., align_corners=False)``) from a half-resolution axis onto ``out_size`` pixels.

    ``scale`` is half-resolution pixels per output pixel; coordinates below the
    first pixel centre are clamped to it, as are those beyond the last.
    """
    source = numpy.maximum((numpy.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    first = numpy.minimum(numpy.floor(source).astype(numpy.int64), half_size - 1)
    second = numpy.minimum(first + 1, half_size - 1)
    weight = (source - first).astype(numpy.float32)
    return torch.from_numpy(first), torch.from_numpy(second), torch.from_numpy(weight)


def _probability_tiles(
    views: list[torch.Tensor],
    members: int,
    frame_shape: tuple[int, ...],
    output_shape: tuple[int, int],
    threshold: float,
    stack: torch.Tensor | None,
) -> atoms.ProbabilityMaps:
    """Member probabilities on ``output_shape`` from half-resolution logits, one band of rows at a time.

    Each band is upsampled (bilinear, like the network's own :meth:`forward`),
    soft-maxed, averaged over views and reduced to mean and variance while it is
    in cache; the full member stack is written only if ``stack`` is given.
    """
    channels, half_rows, half_cols = views[0].shape
    classes = channels // members
    out_rows, out_cols = output_shape
    # Frame pixel centre r + 0.5 sits at half-resolution coordinate (r + 0.5) / 2.
    row_first, row_second, row_weight = _taps(out_rows, half_rows, frame_shape[0] / (2.0 * out_rows))
    # Along rows a band is interpolated by hand (the taps above); along columns by
    # F.interpolate with the exact scale (a gather along the last axis is slow). Its
    # output is floor(half_cols * scale) wide; one replicated column guarantees
    # out_cols of them without moving any tap.
    col_scale = 2.0 * out_cols / frame_shape[1]
    pad_cols = int(math.floor(half_cols * col_scale)) < out_cols
    mean = torch.empty((classes, out_rows, out_cols))
    variance = torch.empty((classes, out_rows, out_cols))
    mask = torch.empty((out_rows, out_cols), dtype=torch.bool)
    inside: list[_NDArray] = []
    band_rows = max(1, _TILE_PIXELS // out_cols)
    # Work buffers shared by all bands: fresh memory costs a page fault per 4 kB page on first touch.
    scratch = _Scratch()
    for top in range(0, out_rows, band_rows):
        bottom = min(top + band_rows, out_rows)
        lowest, highest = int(row_first[top]), int(row_second[bottom - 1]) + 1
        first, second, weight = row_first[top:bottom] - lowest, row_second[top:bottom] - lowest, row_weight[top:bottom, None]
        shape = (members, classes, bottom - top, out_cols)
        probabilities = scratch.get("probabilities", shape)
        for index, logits in enumerate(views):
            band = logits[None, :, lowest:highest]
            if pad_cols:
                band = F.pad(band, (0, 1), mode="replicate")
            band = F.interpolate(band, scale_factor=(1.0, col_scale), mode="bilinear", align_corners=False)[0]
            picked = (channels, bottom - top, band.shape[-1])
            upper = torch.index_select(band, 1, first, out=scratch.get("upper", picked))
            upper.lerp_(torch.index_select(band, 1, second, out=scratch.get("lower", picked)), weight)
            if upper.shape[-1] != out_cols:
                # Cropped only now: index_select is a gather (slow) on a cropped, non-contiguous band.
                upper = scratch.get("cropped", (channels, bottom - top, out_cols)).copy_(upper[:, :, :out_cols])
            if index == 0:
                torch.softmax(upper.view(shape), dim=1, out=probabilities)
            else:
                probabilities.add_(torch.softmax(upper.view(shape), dim=1, out=scratch.get("view", shape)))
        if len(views) > 1:
            probabilities.mul_(1.0 / len(views))
        band_mean, _ = atoms.mean_and_variance(probabilities, out=(mean[:, top:bottom], variance[:, top:bottom]), scratch=scratch.get("deviation", shape))
        band_mask = torch.rsub(band_mean[0], 1.0) > threshold
        mask[top:bottom] = band_mask
        # numpy's take gathers along the last axis several times faster than index_select.
        inside.append(numpy.take(probabilities.view(members, classes, -1).numpy(), numpy.flatnonzero(band_mask.numpy()), axis=2))
        if stack is not None:
            stack[:, :, top:bottom] = probabilities
    return atoms.ProbabilityMaps(mean.numpy(), variance.numpy(), threshold, mask.numpy(), numpy.concatenate(inside, axis=2))


def validate_frame(image: typing.Any) -> _NDArray:
    """Check that ``image`` is a usable 2D frame and return it as float32.

    Raises
    ------
    ValueError
        If the frame is not 2D, is smaller than 32 pixels on a side, contains
        NaN or infinity, or is constant.
    """
    try:
        raw = numpy.asarray(image)
    except (TypeError, ValueError) as error:
        raise ValueError(f"image must be a 2D numeric array; could not convert it ({error})") from error
    if raw.dtype.kind not in "biuf":
        # Kept a ValueError (not a TypeError) for callers that catch ValueError for every bad frame.
        raise ValueError(f"image must be a 2D numeric array of real intensities, got dtype {raw.dtype}")
    frame = raw.astype(numpy.float32, copy=False)
    if frame.ndim != 2:
        hint = " (for an RGB or multi-channel image pass one channel, e.g. image[..., 0])" if frame.ndim == 3 else ""
        raise ValueError(f"image must be 2D (rows, cols), got {frame.ndim}D with shape {frame.shape}{hint}")
    if min(frame.shape) < MIN_FRAME_SIZE:
        raise ValueError(
            f"image must be at least {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE} pixels to see atom columns with their neighbours, "
            f"got {frame.shape[0]}x{frame.shape[1]}"
        )
    finite = numpy.isfinite(frame)
    if not finite.all():
        raise ValueError(
            f"image must be finite, got {int((~finite).sum())} NaN or infinite pixels; replace them "
            "(e.g. numpy.nan_to_num or inpainting) before finding atoms"
        )
    if float(frame.max() - frame.min()) <= 0.0:
        raise ValueError("image must have contrast to find atoms in, got a constant image")
    return frame


def normalise_frame(frame: _NDArray) -> _NDArray:
    """Map detector counts to roughly [0, 1] by robust percentiles.

    Percentiles rather than min/max keep hot pixels and contamination from
    setting the scale; the relative brightness of columns, which encodes Z, is kept.
    """
    low, high = numpy.percentile(frame, (1.0, 99.0))
    scale = max(float(high - low), 1e-6)
    return typing.cast(_NDArray, ((frame - low) / scale).astype(numpy.float32))


def pad_to_multiple(frame: _NDArray, multiple: int) -> _NDArray:
    """Reflect-pad the bottom and right edges so both sizes divide by ``multiple``."""
    rows, cols = frame.shape
    pad_rows = (-rows) % multiple
    pad_cols = (-cols) % multiple
    if pad_rows == 0 and pad_cols == 0:
        return frame
    return numpy.pad(frame, ((0, pad_rows), (0, pad_cols)), mode="reflect")
