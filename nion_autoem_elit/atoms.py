"""From per-pixel ensemble probabilities to a list of atom columns.

Each column is a blob of foreground probability. Its position is the
probability-weighted centroid (sub-pixel), its class the probability-weighted
vote inside the blob. Running the same recipe on every member separately gives
the member-to-member spread of position and class, which is what the ensemble
does not know.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage
import scipy.special
import skimage.feature
import skimage.segmentation
import torch

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


@dataclasses.dataclass(frozen=True)
class AtomFindingResult:
    """Atom columns found in one frame.

    Attributes
    ----------
    positions : (N, 2) ndarray
        Sub-pixel positions ``(row, col)``.
    classes : (N,) ndarray of int
        Class index of each column (1-based; 0 is background).
    class_names : tuple of str
        Class names, background first.
    class_probabilities : (N,) ndarray
        Ensemble-mean probability of the assigned class.
    class_distributions : (N, C - 1) ndarray
        Ensemble-mean probability of every non-background class.
    class_disagreement : (N,) ndarray
        Fraction of members whose own vote differs from the ensemble's class.
    position_spread_px : (N,) ndarray
        RMS distance of the members' positions from the ensemble position.
    uncertainties : (N,) ndarray
        Calibrated probability that the column is wrong (spurious or
        misclassified), from the features above.
    mean_probabilities : (C, H, W) ndarray
        Ensemble-mean class probability per pixel.
    variance : (C, H, W) ndarray
        Member-to-member variance of the class probabilities per pixel.
    pixel_size_nm : float or None
        Sampling of the input frame as given by the caller (None: not given).
    model_pixel_size_nm : float or None
        Sampling of the frame the network saw after resampling.
    resampled_by : float
        Network pixels per input pixel (1.0: the frame was used as it is).
        Positions and maps are always in the input frame's pixels.
    in_trained_range : bool or None
        Whether the input sampling lies inside the model's trained range
        (None: unknown, e.g. no ``pixel_size_nm`` given).
    trained_ranges : dict
        The model's trained ``pixel_size_nm``, ``probe_fwhm_nm`` and
        ``dose_e_per_nm2`` ranges, as far as it records them.
    out_of_distribution : bool
        The frame shows no atomic lattice the model knows (noise, vacuum,
        amorphous material, a map at the wrong scale): no columns are reported.
    reason : str
        Why the frame is out of distribution (empty otherwise).
    warnings : tuple of str
        What the caller should know (sampling not checked, resampled, ...).
    """

    positions: _NDArray
    classes: _NDArray
    class_names: tuple[str, ...]
    class_probabilities: _NDArray
    class_distributions: _NDArray
    class_disagreement: _NDArray
    position_spread_px: _NDArray
    uncertainties: _NDArray
    mean_probabilities: _NDArray
    variance: _NDArray
    pixel_size_nm: float | None = None
    model_pixel_size_nm: float | None = None
    resampled_by: float = 1.0
    in_trained_range: bool | None = None
    trained_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    out_of_distribution: bool = False
    reason: str = ""
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def labels(self) -> list[str]:
        """Class name of every column."""
        return [self.class_names[int(k)] for k in self.classes]

    def counts(self) -> dict[str, int]:
        """Number of columns per class name (every non-background class listed)."""
        return {name: int((self.classes == k).sum()) for k, name in enumerate(self.class_names) if k > 0}

    def without_columns(self, reason: str) -> AtomFindingResult:
        """The same frame reported as holding no columns, out of distribution for ``reason``."""
        classes = len(self.class_names)
        return dataclasses.replace(
            self, positions=numpy.zeros((0, 2)), classes=numpy.zeros(0, dtype=numpy.int64), class_probabilities=numpy.zeros(0),
            class_distributions=numpy.zeros((0, classes - 1)), class_disagreement=numpy.zeros(0), position_spread_px=numpy.zeros(0),
            uncertainties=numpy.zeros(0), out_of_distribution=True, reason=reason)


@dataclasses.dataclass(frozen=True)
class UncertaintyCalibration:
    """Logistic map from disagreement features to the probability of an error.

    Fitted on simulated frames where the truth is known (see
    :func:`fit_calibration`); the defaults are a sensible uncalibrated guess.
    """

    intercept: float = -4.0
    weights: tuple[float, float, float] = (6.0, 4.0, 2.0)

    def __post_init__(self) -> None:
        _checks.number(self.intercept, "intercept", "a finite number")
        weights = self.weights
        if not isinstance(weights, (tuple, list)) or len(weights) != 3 or not all(_checks.is_number(w) and math.isfinite(float(w)) for w in weights):
            raise ValueError(f"weights must be three finite numbers, got {_checks.describe(weights)}")

    def __call__(self, features: _NDArray) -> _NDArray:
        z = self.intercept + features @ numpy.asarray(self.weights)
        return typing.cast(_NDArray, scipy.special.expit(z))

    def as_dict(self) -> dict[str, typing.Any]:
        """Plain dictionary for model metadata."""
        return {"intercept": self.intercept, "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict[str, typing.Any]) -> UncertaintyCalibration:
        """Inverse of :meth:`as_dict`."""
        expected = "{'intercept': number, 'weights': [three numbers]}"
        try:
            intercept, weights = data["intercept"], list(data["weights"])
            if len(weights) != 3 or not _checks.is_number(intercept) or not all(_checks.is_number(w) for w in weights):
                raise ValueError
            return cls(float(intercept), (float(weights[0]), float(weights[1]), float(weights[2])))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"uncertainty calibration must be {expected}, got {_checks.describe(data)}") from None


def uncertainty_features(class_probability: _NDArray, disagreement: _NDArray, spread_px: _NDArray) -> _NDArray:
    """Features for calibration: class doubt, member disagreement, position spread (pixels, capped)."""
    return numpy.stack([1.0 - class_probability, disagreement, numpy.minimum(spread_px, 3.0)], axis=-1)


def extract_atoms(
    member_probabilities: _NDArray,
    class_names: typing.Sequence[str],
    *,
    threshold: float = 0.5,
    calibration: UncertaintyCalibration | None = None,
) -> AtomFindingResult:
    """Find atom columns in per-member class probability maps.

    Parameters
    ----------
    member_probabilities : (M, C, H, W) ndarray
        Softmax output of each member; class 0 is background.
    class_names : sequence of str
        ``C`` class names, background first.
    threshold : float
        Mean foreground probability above which a pixel belongs to a column.
    calibration : UncertaintyCalibration, optional
        Maps disagreement to a probability of error; default uncalibrated guess.

    Returns
    -------
    AtomFindingResult

    Examples
    --------
    >>> p = numpy.zeros((2, 2, 32, 32)); p[:, 0] = 1.0
    >>> p[:, 1, 10:15, 20:25] = 1.0; p[:, 0, 10:15, 20:25] = 0.0
    >>> result = extract_atoms(p, ("background", "Mo"))
    >>> result.positions.round(2).tolist(), result.labels
    ([[12.0, 22.0]], ['Mo'])
    """
    threshold = _checks.number(threshold, "threshold", "strictly between 0 and 1", lambda v: 0.0 < v < 1.0)
    probabilities = numpy.asarray(member_probabilities)
    if probabilities.dtype.kind not in "biuf":
        raise TypeError(f"member_probabilities must be finite probabilities, got an array of dtype {probabilities.dtype}")
    probabilities = probabilities.astype(numpy.float32, copy=False)
    if probabilities.ndim != 4:
        raise ValueError(f"member_probabilities must be (members, classes, rows, cols), got shape {probabilities.shape}")
    finite = numpy.isfinite(probabilities)
    if not finite.all():
        bad = int(probabilities.size - numpy.count_nonzero(finite))
        raise ValueError(f"member_probabilities must be finite probabilities, got {bad} NaN or infinite value{'s' if bad != 1 else ''}")
    classes = probabilities.shape[1]
    if isinstance(class_names, str) or len(class_names) != classes:
        raise ValueError(f"class_names must give {classes} class names, one per class of member_probabilities, got {len(class_names)}")
    if calibration is not None and not isinstance(calibration, UncertaintyCalibration):
        raise TypeError(f"calibration must be an UncertaintyCalibration or None, got {type(calibration).__name__}")
    return atoms_from_maps(maps_from_members(probabilities, threshold), class_names, calibration=calibration)


@dataclasses.dataclass(frozen=True)
class ProbabilityMaps:
    """What atom extraction needs of the members' per-pixel class probabilities.

    The members' own maps are only needed where a column may be, so they are
    kept only there: a full ``(M, C, H, W)`` stack is ``M`` times the memory
    traffic of the maps that are reported.

    Attributes
    ----------
    mean : (C, H, W) ndarray of float32
        Ensemble-mean class probability per pixel.
    variance : (C, H, W) ndarray of float32
        Member-to-member variance of the class probabilities per pixel.
    threshold : float
        Foreground probability the mask was taken at.
    mask : (H, W) ndarray of bool
        Pixels whose mean foreground probability ``1 - mean[0]`` exceeds ``threshold``.
    inside : (M, C, P) ndarray of float32
        Every member's class probabilities at the ``P`` mask pixels, in row-major order.
    """

    mean: _NDArray
    variance: _NDArray
    threshold: float
    mask: _NDArray
    inside: _NDArray


def mean_and_variance(
    probabilities: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None, scratch: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) variance over the first axis of a float32 tensor, two-pass.

    ``out`` receives them if given; ``scratch`` (the shape of ``probabilities``) is
    used for the deviations if given. A handful of whole-array torch operations:
    numpy's ``var`` and torch's ``var_mean`` over a short leading axis are several
    times slower, and few operations keep the cost of each parallel region (which
    is large on a machine whose cores are busy with other work) low.
    """
    mean = torch.mean(probabilities, 0) if out is None else torch.mean(probabilities, 0, out=out[0])
    deviation = (torch.sub(probabilities, mean) if scratch is None else torch.sub(probabilities, mean, out=scratch)).square_()
    variance = torch.mean(deviation, 0) if out is None else torch.mean(deviation, 0, out=out[1])
    return mean, variance


def maps_from_members(member_probabilities: _NDArray, threshold: float) -> ProbabilityMaps:
    """:class:`ProbabilityMaps` of a full ``(M, C, H, W)`` float32 stack of member probabilities."""
    members, classes, rows, cols = member_probabilities.shape
    stack = torch.from_numpy(numpy.ascontiguousarray(member_probabilities, dtype=numpy.float32))
    with torch.inference_mode():
        mean, variance = mean_and_variance(stack)
        mask = torch.rsub(mean[0], 1.0) > threshold
        where = torch.flatten(mask).nonzero().squeeze(1)
        inside = stack.reshape(members, classes, rows * cols).index_select(2, where)
    return ProbabilityMaps(mean.numpy(), variance.numpy(), threshold, mask.numpy(), inside.numpy())


def atoms_from_maps(
    maps: ProbabilityMaps,
    class_names: typing.Sequence[str],
    *,
    calibration: UncertaintyCalibration | None = None,
) -> AtomFindingResult:
    """Atom columns from :class:`ProbabilityMaps` (see :func:`extract_atoms`, which checks its inputs)."""
    threshold = maps.threshold
    inside_all = maps.inside
    members, classes = inside_all.shape[:2]
    regions = _column_regions(maps.mean, maps.mask, threshold)
    count = int(regions.max()) if regions.size else 0
    # Work only on pixels inside columns (a small part of the frame): the mask pixels,
    # row-major like ``inside``, less any the watershed left unassigned.
    rr, cc = numpy.nonzero(maps.mask)
    label = regions[rr, cc] - 1
    if label.size and label.min() < 0:
        keep = label >= 0
        rr, cc, label, inside_all = rr[keep], cc[keep], label[keep], inside_all[:, :, keep]
    inside = inside_all

    def region_sums(values: _NDArray) -> _NDArray:
        """Per-region sums of each row of ``values`` (rows, pixels) -> (rows, count), in float64."""
        return numpy.stack([numpy.bincount(label, weights=row, minlength=count) for row in values]) if count else numpy.zeros((len(values), 0))

    # Weights that fall continuously to zero at the threshold: the pixelated
    # region edge then cannot pull the centroid off the true centre.
    member_foreground = 1.0 - inside[:, 0]  # (members, pixels)
    inside_foreground = member_foreground.mean(axis=0)
    excess = numpy.clip(inside_foreground - threshold, 0.0, None)
    centroid = region_sums(numpy.stack([excess, excess * rr, excess * cc]))
    weight = centroid[0] + 1e-12
    positions = numpy.stack([centroid[1] / weight, centroid[2] / weight], axis=1)
    distribution = region_sums(inside[:, 1:].mean(axis=0) * inside_foreground).T.copy()
    distribution /= distribution.sum(axis=1, keepdims=True) + 1e-12
    assigned = distribution.argmax(axis=1) if count else numpy.zeros(0, dtype=int)
    member_excess = numpy.clip(member_foreground - threshold, 0.0, None)
    member_weights = region_sums(member_excess)
    member_rows = region_sums(member_excess * rr)
    member_cols = region_sums(member_excess * cc)
    votes = region_sums((inside[:, 1:] * member_foreground[:, None]).reshape(members * (classes - 1), -1)).reshape(members, classes - 1, count)

    disagreement = numpy.zeros(count)
    spread = numpy.zeros(count)
    for m in range(members):
        member_weight = member_weights[m]
        found = member_weight > 1e-9
        # A member that sees nothing here keeps the ensemble position (its doubt shows in the class vote).
        row = numpy.where(found, member_rows[m] / (member_weight + 1e-12), positions[:, 0])
        col = numpy.where(found, member_cols[m] / (member_weight + 1e-12), positions[:, 1])
        spread += (row - positions[:, 0]) ** 2 + (col - positions[:, 1]) ** 2
        disagreement += votes[m].argmax(axis=0) != assigned if count else 0.0
    disagreement /= members
    spread = numpy.sqrt(spread / members)

    class_probability = distribution[numpy.arange(count), assigned] if count else numpy.zeros(0)
    # The blob's own foreground certainty caps the class confidence: a faint blob
    # is as likely to be noise as a column of the winning class.
    peak_foreground = (
        torch.zeros(count, dtype=torch.float32)
        .scatter_reduce_(0, torch.from_numpy(label.astype(numpy.int64)), torch.from_numpy(numpy.ascontiguousarray(inside_foreground, dtype=numpy.float32)), "amax")
        .numpy()
        .astype(float)
    )
    class_probability = class_probability * numpy.clip(peak_foreground, 0.0, 1.0)
    features = uncertainty_features(class_probability, disagreement, spread)
    uncertainties = (calibration or UncertaintyCalibration())(features) if count else numpy.zeros(0)
    return AtomFindingResult(
        positions=positions.reshape(count, 2),
        classes=(assigned + 1).astype(numpy.int64),
        class_names=tuple(class_names),
        class_probabilities=class_probability,
        class_distributions=distribution.reshape(count, classes - 1),
        class_disagreement=disagreement,
        position_spread_px=spread,
        uncertainties=uncertainties,
        mean_probabilities=maps.mean,
        variance=maps.variance,
    )


def _column_regions(mean: _NDArray, mask: _NDArray, threshold: float) -> _NDArray:
    """Label image with one region per column; touching columns are split by watershed."""
    components, count = scipy.ndimage.label(mask)
    if count == 0:
        return typing.cast(_NDArray, components)
    areas = numpy.bincount(components.ravel())[1:]
    typical_radius = math.sqrt(float(numpy.median(areas)) / math.pi)
    if areas.max() < 2.0 * numpy.median(areas):
        return typing.cast(_NDArray, components)
    # Only merged blobs are split; two columns are never closer than about two blob radii.
    smoothed = scipy.ndimage.gaussian_filter(1.0 - mean[0], 1.0)
    peaks = skimage.feature.peak_local_max(  # type: ignore[no-untyped-call]
        smoothed, min_distance=max(2, int(1.5 * typical_radius)), threshold_abs=threshold, labels=components
    )
    markers = numpy.zeros_like(components)
    markers[tuple(peaks.T)] = numpy.arange(1, len(peaks) + 1)
    split = skimage.segmentation.watershed(-smoothed, markers, mask=mask)  # type: ignore[no-untyped-call]
    return typing.cast(_NDArray, split)
