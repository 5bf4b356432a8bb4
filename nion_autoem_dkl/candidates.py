"""Candidate probe positions and the survey patches around them.

A candidate is a place the beam could be parked for a spectrum. The model
only ever sees the survey patch centred on it, so this module turns a survey
image into ``(patches, positions)`` and nothing else.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]

Normalization = typing.Literal["none", "patch", "global"]
_NORMALIZATIONS = ("none", "patch", "global")


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Survey patches and the pixel positions of their centres.

    Attributes
    ----------
    patches : (N, P, P) float64 ndarray
        One survey patch per candidate.
    positions : (N, 2) float64 ndarray
        Centre pixel of each patch, as ``(row, column)``: the pixel at index
        ``(P // 2, P // 2)`` of the patch.
    """

    patches: _NDArray
    positions: _NDArray

    def __len__(self) -> int:
        return int(self.patches.shape[0])


def _check_survey(image: _NDArray, patch_size: int) -> tuple[_NDArray, int]:
    survey = numpy.asarray(image)
    if survey.ndim != 2:
        raise ValueError(
            f"image must be a 2D array (rows, columns), got ndim={survey.ndim} "
            f"with shape {survey.shape}; pass one frame, e.g. image[0] for a stack"
        )
    if survey.dtype.kind not in "iuf":
        raise TypeError(f"image must be a real-valued array, got dtype {survey.dtype}")
    survey = survey.astype(numpy.float64, copy=False)
    finite = numpy.isfinite(survey)
    if not finite.all():
        bad = int(survey.size - numpy.count_nonzero(finite))
        raise ValueError(
            f"image must be finite, got {bad} NaN or infinite pixels; replace them "
            "(e.g. numpy.nan_to_num or inpainting) before extracting patches"
        )
    size = _checks.whole(patch_size, "patch_size", 2)
    if size > min(survey.shape):
        raise ValueError(
            f"patch_size must be at most the survey image's smaller side ({min(survey.shape)}), got {size}: "
            f"it is larger than the survey image {survey.shape}"
        )
    return survey, size


def _normalize(patches: _NDArray, survey: _NDArray, normalization: str) -> _NDArray:
    if normalization == "none":
        return patches
    if normalization == "global":
        # One scale for the whole survey keeps brightness differences (Z-contrast)
        # between patches, which is often exactly what the property depends on.
        scale = float(survey.std())
        return (patches - float(survey.mean())) / (scale if scale > 0 else 1.0)
    mean = patches.mean(axis=(1, 2), keepdims=True)
    std = patches.std(axis=(1, 2), keepdims=True)
    normalized: _NDArray = (patches - mean) / numpy.where(std > 0, std, 1.0)
    return normalized


def extract_patches(
    image: _NDArray,
    patch_size: int,
    *,
    stride: int | None = None,
    positions: _NDArray | None = None,
    normalization: Normalization = "global",
) -> Candidates:
    """Cut survey patches around candidate probe positions.

    Parameters
    ----------
    image : (M, N) ndarray
        Survey image (e.g. HAADF), finite real values.
    patch_size : int
        Side length of the square patch in pixels.
    stride : int, optional
        Grid spacing in pixels. Used when ``positions`` is not given; defaults
        to ``patch_size // 4``.
    positions : (K, 2) array_like, optional
        Candidate centres as ``(row, column)`` pixels, e.g. atom columns found
        by another tool. Rounded to the nearest pixel. Every patch must fit
        inside the image.
    normalization : {'global', 'patch', 'none'}
        ``'global'`` standardises with the survey mean and standard deviation,
        ``'patch'`` z-scores every patch on its own (removes brightness),
        ``'none'`` keeps raw counts.

    Returns
    -------
    candidates : Candidates
        ``patches`` of shape (K, patch_size, patch_size) and ``positions`` of
        shape (K, 2), the patch centres in pixels.

    Raises
    ------
    ValueError
        If the image is not 2D or not finite, the patch does not fit, the
        stride is not positive, or a position lies too close to the edge.

    Examples
    --------
    >>> import numpy
    >>> c = extract_patches(numpy.zeros((64, 64)), 16, stride=8)
    >>> c.patches.shape, c.positions.shape
    ((49, 16, 16), (49, 2))
    """
    survey, patch_size = _check_survey(image, patch_size)
    if not isinstance(normalization, str) or normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    half = patch_size // 2
    if positions is None:
        step = max(patch_size // 4, 1) if stride is None else _checks.whole(stride, "stride", 1)
        rows = numpy.arange(0, survey.shape[0] - patch_size + 1, step)
        cols = numpy.arange(0, survey.shape[1] - patch_size + 1, step)
        corners = numpy.stack(numpy.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    else:
        centres = _checks.real_array(positions, "positions", "finite (row, column) pixel positions of shape (K, 2)")
        if centres.ndim != 2 or centres.shape[1] != 2:
            raise ValueError(f"positions must have shape (K, 2) as (row, column), got {centres.shape}")
        corners = numpy.rint(centres).astype(numpy.int64) - half
        outside = (corners < 0).any(axis=1) | (corners + patch_size > numpy.array(survey.shape)).any(axis=1)
        if outside.any():
            first = int(numpy.flatnonzero(outside)[0])
            count = int(outside.sum())
            raise ValueError(
                f"positions must lie at least half a patch from the image edge: centres in rows "
                f"[{half}, {survey.shape[0] - patch_size + half}] and columns [{half}, {survey.shape[1] - patch_size + half}] "
                f"for patch_size={patch_size}, got {count} position{'s' if count != 1 else ''} too close to the image edge "
                f"(first: index {first} at {_checks.describe(tuple(centres[first].tolist()))})"
            )
    windows = numpy.lib.stride_tricks.sliding_window_view(survey, (patch_size, patch_size))
    patches = numpy.ascontiguousarray(windows[corners[:, 0], corners[:, 1]], dtype=numpy.float64)
    return Candidates(
        patches=_normalize(patches, survey, normalization),
        positions=corners.astype(numpy.float64) + half,
    )
