"""The scale of the reported intervals, set by the run's own predictions made before each measurement."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.calibration import IntervalScale
from nion_autoem_dkl.calibration import ProspectiveCoverage


@pytest.mark.parametrize("true_sd", [0.5, 1.0, 2.0])
def test_the_scale_makes_too_wide_or_too_narrow_intervals_hold_95_percent_of_the_next_measurements(true_sd: float) -> None:
    rng = numpy.random.default_rng(int(10 * true_sd))
    scale = IntervalScale(window=200, min_records=30)
    held = ProspectiveCoverage(window=2000)
    assert scale.factor == 1.0
    for step in range(2000):
        value = rng.normal(0.0, true_sd)
        held.record(value, 0.0, scale.factor**2)  # the interval of the moment, before the measurement is known
        scale.record(value, 0.0, 1.0)  # the model claims sd 1
        if step < 29:
            assert scale.factor == 1.0
    assert scale.factor == pytest.approx(true_sd, rel=0.15)
    assert 0.93 <= held.coverage <= 0.97


def test_the_scale_ignores_predictions_without_a_spread_and_stays_within_bounds() -> None:
    scale = IntervalScale(window=10, min_records=2)
    scale.record(1.0, 0.0, 0.0)
    scale.record(1.0, 0.0, float("inf"))
    assert scale.factor == 1.0
    for _ in range(10):
        scale.record(1000.0, 0.0, 1.0)
    assert scale.factor == 4.0
    with pytest.raises(ValueError, match="level"):
        IntervalScale(level=1.5)


def test_the_agent_reports_scaled_intervals_and_acquires_on_its_own_posterior() -> None:
    rng = numpy.random.default_rng(3)
    x = rng.uniform(-2.0, 2.0, (300, 2))
    truth = numpy.sin(1.5 * x[:, 0]) + 0.5 * numpy.cos(x[:, 1])
    agent = DKLAgent(numpy.zeros((300, 4, 4)), rng.uniform(0.0, 100.0, (300, 2)), AgentConfig(n_initial=5, calibration_window=40), latent=x)
    for _ in range(80):
        chosen = agent.suggest(1)
        agent.observe(chosen, truth[chosen] + rng.normal(0.0, 0.05, 1))
    assert agent.interval_scale != 1.0
    _, std = agent.predict()
    numpy.testing.assert_allclose(std, agent.posterior().std * agent.interval_scale)
    assert 0.8 <= agent.prospective_coverage95 <= 1.0
    with pytest.raises(ValueError, match="calibration_window"):
        AgentConfig(calibration_window=0)
