from __future__ import annotations

import numpy

from nion_autoem_elit import calibration
from nion_autoem_elit import evaluation


def test_matching_is_one_to_one_within_radius() -> None:
    true = numpy.array([[10.0, 10.0], [10.0, 20.0]])
    found = numpy.array([[10.2, 10.1], [10.1, 10.0], [30.0, 30.0]])
    scores = evaluation.score_frame(found, numpy.array([1, 1, 1]), true, numpy.array([1, 2]), 10.0, ["bg", "A", "B"])
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 2, 1)
    assert scores["A_tp"] == 1 and scores["B_fn"] == 1
    assert scores["rmse_px"] < 0.15


def test_logistic_calibration_matches_observed_error_rate() -> None:
    rng = numpy.random.default_rng(0)
    features = rng.random((5000, 3))
    truth = 1.0 / (1.0 + numpy.exp(-(-4.0 + 5.0 * features[:, 0] + 2.0 * features[:, 1])))
    errors = rng.random(5000) < truth
    fitted = calibration.fit_logistic(features, errors)
    assert calibration.expected_calibration_error(fitted(features), errors) < 0.02
    assert abs(fitted.weights[0] - 5.0) < 1.0


def test_calibration_never_rewards_disagreement() -> None:
    rng = numpy.random.default_rng(1)
    doubt = rng.random(4000)
    features = numpy.stack([doubt, doubt + 0.05 * rng.random(4000), numpy.zeros(4000)], axis=1)
    errors = rng.random(4000) < 1.0 / (1.0 + numpy.exp(-(-4.0 + 6.0 * doubt)))
    fitted = calibration.fit_logistic(features, errors)
    assert min(fitted.weights) >= 0.0
    assert fitted(numpy.array([[0.9, 0.9, 0.0]]))[0] > fitted(numpy.array([[0.1, 0.1, 0.0]]))[0]
