"""An ensemble of atom-column segmenters and its per-pixel prediction.

The ensemble turns a frame into class probabilities from every member at once
(one vectorised pass, see :mod:`nion_autoem_elit.model`). Disagreement between
members is the uncertainty that drives both the per-atom confidence and the
choice of pseudo-labels in iterative training.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing
import torch

import nion_autoem_checks as _checks
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
        x = torch.from_numpy(pad_to_multiple(normalise_frame(frame), _SIZE_MULTIPLE))
        views = [x]
        if test_time_augmentation:
            views += [x.flip(-1), x.flip(-2), x.flip(-1, -2)]
        batch = torch.stack(views)[:, None].expand(-1, self.members, -1, -1)
        self.network.eval()
        with torch.inference_mode():
            probabilities = torch.softmax(self.network(batch), dim=2)
        if test_time_augmentation:
            probabilities = torch.stack(
                [
                    probabilities[0],
                    probabilities[1].flip(-1),
                    probabilities[2].flip(-2),
                    probabilities[3].flip(-1, -2),
                ]
            ).mean(0, keepdim=True)
        rows, cols = frame.shape
        return probabilities[0, :, :, :rows, :cols].numpy()


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
