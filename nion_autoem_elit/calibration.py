"""Turning ensemble disagreement into an honest probability of error.

Disagreement between members ranks columns well but is not itself a
probability. On simulated frames, where every column is known, a logistic
regression maps the disagreement features to the observed rate of mistakes
(spurious columns and wrong classes). Frames are drawn from wider ranges than
training (lower dose, blurrier probe) so there are mistakes to learn from.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing
import scipy.optimize
import scipy.special

import nion_autoem_checks as _checks
from nion_autoem_elit import atoms
from nion_autoem_elit import ensemble
from nion_autoem_elit import evaluation
from nion_autoem_elit import lattices
from nion_autoem_elit import synthetic

_NDArray = numpy.typing.NDArray[typing.Any]


def fit_logistic(features: _NDArray, errors: _NDArray, ridge: float = 1e-3) -> atoms.UncertaintyCalibration:
    """Logistic regression with non-negative feature weights.

    More doubt, more disagreement or more spread must never make a column look
    safer; the features are correlated, so an unconstrained fit can give one a
    negative weight. The weights are therefore bounded below by zero
    (L-BFGS-B on the log-likelihood with a small ridge).

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> x = rng.random((2000, 3))
    >>> y = rng.random(2000) < 1 / (1 + numpy.exp(-(-3 + 6 * x[:, 0])))
    >>> round(fit_logistic(x, y).weights[0])
    6
    """
    feature_array = _checks.real_array(features, "features", "finite (n, 3) uncertainty features")
    if feature_array.ndim != 2 or feature_array.shape[1] != 3:
        raise ValueError(f"features must be finite (n, 3) uncertainty features, got shape {feature_array.shape}")
    y = numpy.asarray(errors)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"errors must be booleans (or 0/1), one per feature row, got an array of dtype {y.dtype}")
    y = y.astype(float).reshape(-1)
    if y.shape != (feature_array.shape[0],) or not numpy.all((y == 0) | (y == 1)):
        raise ValueError(f"errors must be booleans (or 0/1), one per feature row ({feature_array.shape[0]}), got {_checks.describe(numpy.asarray(errors))}")
    ridge = _checks.number(ridge, "ridge", "a finite number >= 0", lambda v: v >= 0)
    x = numpy.concatenate([numpy.ones((len(feature_array), 1)), feature_array], axis=1)

    def loss(w: _NDArray) -> tuple[float, _NDArray]:
        z = x @ w
        # log(1 + e^z) - y z, written to stay finite for large |z|.
        value = float((numpy.logaddexp(0.0, z) - y * z).sum() + 0.5 * ridge * (w[1:] ** 2).sum())
        gradient = x.T @ (scipy.special.expit(z) - y)
        gradient[1:] += ridge * w[1:]
        return value, gradient

    start = numpy.zeros(x.shape[1])
    start[0] = float(scipy.special.logit(numpy.clip(y.mean(), 1e-3, 1.0 - 1e-3)))
    bounds = [(None, None)] + [(0.0, None)] * (x.shape[1] - 1)
    fitted = scipy.optimize.minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    w = fitted.x
    return atoms.UncertaintyCalibration(float(w[0]), (float(w[1]), float(w[2]), float(w[3])))


@dataclasses.dataclass(frozen=True)
class CalibrationData:
    """Per-column features and whether the column was a mistake."""

    features: _NDArray
    errors: _NDArray


def collect(
    ens: ensemble.Ensemble,
    lattice: lattices.LatticeSpec,
    frames: int,
    shape: tuple[int, int],
    *,
    ranges: synthetic.ImagingRanges,
    seed: int,
) -> CalibrationData:
    """Find atoms in simulated frames and mark each found column right or wrong."""
    rng = numpy.random.default_rng(seed)
    features = []
    errors = []
    for _ in range(frames):
        frame = synthetic.generate_frame(lattice, shape, seed=rng, ranges=ranges)
        result = atoms.extract_atoms(ens.member_probabilities(frame.image), ens.class_names)
        matching = evaluation.match_columns(result.positions, frame.positions, 0.3 * frame.nearest_neighbour_px)
        wrong = numpy.ones(len(result), dtype=bool)
        right_class = result.classes[matching.found_index] == frame.classes[matching.true_index]
        wrong[matching.found_index[right_class]] = False
        features.append(atoms.uncertainty_features(result.class_probabilities, result.class_disagreement, result.position_spread_px))
        errors.append(wrong)
    return CalibrationData(numpy.concatenate(features), numpy.concatenate(errors))


def expected_calibration_error(probabilities: _NDArray, errors: _NDArray, bins: int = 10) -> float:
    """Mean |predicted error rate - observed error rate| over equal-count bins, weighted by bin size.

    Examples
    --------
    >>> p = numpy.repeat([0.0, 0.5, 1.0], 10)
    >>> errors = numpy.repeat([False, True, True], 10) & (numpy.arange(30) % 2 == 0) | (p == 1.0)
    >>> expected_calibration_error(p, errors, bins=3)
    0.0
    """
    bins = _checks.whole(bins, "bins", 1)
    probabilities = _checks.real_array(probabilities, "probabilities", "finite probabilities in [0, 1]")
    if probabilities.ndim != 1 or ((probabilities < 0) | (probabilities > 1)).any():
        raise ValueError(f"probabilities must be a 1-D array of finite probabilities in [0, 1], got {_checks.describe(probabilities)}")
    errors = numpy.asarray(errors).reshape(-1)
    if errors.shape != probabilities.shape:
        raise ValueError(f"errors must have one entry per probability ({probabilities.size}), got {errors.size}")
    order = numpy.argsort(probabilities)
    total = 0.0
    for chunk in numpy.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs(float(probabilities[chunk].mean()) - float(numpy.mean(errors[chunk])))
    return round(total / max(len(probabilities), 1), 6)
