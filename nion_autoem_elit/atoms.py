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
    members, classes, rows, cols = probabilities.shape
    if isinstance(class_names, str) or len(class_names) != classes:
        raise ValueError(f"class_names must give {classes} class names, one per class of member_probabilities, got {len(class_names)}")
    if calibration is not None and not isinstance(calibration, UncertaintyCalibration):
        raise TypeError(f"calibration must be an UncertaintyCalibration or None, got {type(calibration).__name__}")
    mean = probabilities.mean(axis=0)
    variance = probabilities.var(axis=0)
    foreground = 1.0 - mean[0]
    regions = _column_regions(foreground, threshold)
    count = int(regions.max())
    # Work only on pixels inside columns (a small part of the frame), gathered once.
    rr, cc = numpy.nonzero(regions)
    label = regions[rr, cc] - 1
    inside = probabilities[:, :, rr, cc]  # (members, classes, pixels)

    def region_sum(values: _NDArray) -> _NDArray:
        return numpy.bincount(label, weights=values, minlength=count).astype(float)

    # Weights that fall continuously to zero at the threshold: the pixelated
    # region edge then cannot pull the centroid off the true centre.
    inside_foreground = 1.0 - inside[:, 0].mean(axis=0)
    excess = numpy.clip(inside_foreground - threshold, 0.0, None)
    weight = region_sum(excess) + 1e-12
    positions = numpy.stack([region_sum(excess * rr) / weight, region_sum(excess * cc) / weight], axis=1)
    mean_inside = inside.mean(axis=0)
    distribution = numpy.stack([region_sum(mean_inside[k] * inside_foreground) for k in range(1, classes)], axis=1)
    distribution /= distribution.sum(axis=1, keepdims=True) + 1e-12
    assigned = distribution.argmax(axis=1) if count else numpy.zeros(0, dtype=int)

    disagreement = numpy.zeros(count)
    spread = numpy.zeros(count)
    for m in range(members):
        member_foreground = 1.0 - inside[m, 0]
        member_excess = numpy.clip(member_foreground - threshold, 0.0, None)
        member_weight = region_sum(member_excess)
        found = member_weight > 1e-9
        # A member that sees nothing here keeps the ensemble position (its doubt shows in the class vote).
        member_rows = numpy.where(found, region_sum(member_excess * rr) / (member_weight + 1e-12), positions[:, 0])
        member_cols = numpy.where(found, region_sum(member_excess * cc) / (member_weight + 1e-12), positions[:, 1])
        spread += (member_rows - positions[:, 0]) ** 2 + (member_cols - positions[:, 1]) ** 2
        votes = numpy.stack([region_sum(inside[m, k] * member_foreground) for k in range(1, classes)], axis=1)
        disagreement += votes.argmax(axis=1) != assigned if count else 0.0
    disagreement /= members
    spread = numpy.sqrt(spread / members)

    class_probability = distribution[numpy.arange(count), assigned] if count else numpy.zeros(0)
    # The blob's own foreground certainty caps the class confidence: a faint blob
    # is as likely to be noise as a column of the winning class.
    peak_foreground = numpy.zeros(count)
    numpy.maximum.at(peak_foreground, label, inside_foreground)
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
        mean_probabilities=mean,
        variance=variance,
    )


def _column_regions(foreground: _NDArray, threshold: float) -> _NDArray:
    """Label image with one region per column; touching columns are split by watershed."""
    mask = foreground > threshold
    components, count = scipy.ndimage.label(mask)
    if count == 0:
        return typing.cast(_NDArray, components)
    areas = numpy.bincount(components.ravel())[1:]
    typical_radius = math.sqrt(float(numpy.median(areas)) / math.pi)
    if areas.max() < 2.0 * numpy.median(areas):
        return typing.cast(_NDArray, components)
    # Only merged blobs are split; two columns are never closer than about two blob radii.
    smoothed = scipy.ndimage.gaussian_filter(foreground, 1.0)
    peaks = skimage.feature.peak_local_max(  # type: ignore[no-untyped-call]
        smoothed, min_distance=max(2, int(1.5 * typical_radius)), threshold_abs=threshold, labels=components
    )
    markers = numpy.zeros_like(components)
    markers[tuple(peaks.T)] = numpy.arange(1, len(peaks) + 1)
    split = skimage.segmentation.watershed(-smoothed, markers, mask=mask)  # type: ignore[no-untyped-call]
    return typing.cast(_NDArray, split)
