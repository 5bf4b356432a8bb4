"""The crossing probability the watch acts on: paths, not independent steps, and not before the series says anything."""

from __future__ import annotations

import typing

import numpy
import pytest
import torch

from nion_autoem.plans.forecast_watch import ForecastWatch
from nion_autoem.plans.forecast_watch import WatchSettings
from nion_autoem.twin.insitu import InSituMicroscope
from nion_autoem.twin.insitu import InSituOxide
from nion_autoem.twin.insitu import draw_conditions
from nion_autoem.twin.insitu import oxide_spectrum
from nion_autoem.twin.insitu import run_on_twin
from nion_autoem_forecast.conditions import Condition
from nion_autoem_forecast.conditions import WhiteLineRatio
from nion_autoem_forecast.online import Forecast
from nion_autoem_forecast.online import OnlineForecaster
from nion_autoem_forecast.online import path_normals
from nion_autoem_forecast.online import weight_paths
from nion_autoem_forecast.preprocess import Preprocessor

PERIOD_S = 1.05


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def forecast_of(median: numpy.ndarray, correlation: float) -> Forecast:
    """A forecast of one quantity whose 90 % spread is +-0.25 about ``median`` (8 steps), drawn with ``correlation`` between steps."""
    q = numpy.stack([median - 0.25, median, median + 0.25], axis=-1)[numpy.newaxis]  # (1 weight, 8 steps, 3 quantiles)
    paths = weight_paths(q, numpy.array([0.0]), path_normals(numpy.random.default_rng(1), (4000, 1, 8), correlation))[:, 0, :]
    times = 10.0 + PERIOD_S * numpy.arange(1, 9)
    empty = numpy.zeros(8)
    return Forecast(0, times, numpy.zeros((8, 3)), numpy.arange(3.0), median, empty, empty, paths, 0.0, 0.0, 0.0)


def test_a_forecast_hovering_above_the_threshold_is_no_crossing_and_one_going_through_it_is() -> None:
    condition = Condition("white-line ratio", "below", 0.0, within_s=8.0, confidence=0.5)
    hovering = numpy.full(8, 0.15)  # each step below 0 with a probability of about 16 %
    independent = forecast_of(hovering, 0.0).crossing_probability(condition)
    paths = forecast_of(hovering, 1.0).crossing_probability(condition)
    # steps drawn independently: 7 steps due within 8 s at 16 % each add up to about 70 %, and the old rule acted
    assert independent > 0.6 > condition.confidence
    assert 0.1 < paths < 0.25 < condition.confidence
    falling = numpy.linspace(0.3, -0.4, 8)  # the median goes through the threshold at the fourth step
    assert forecast_of(falling, 1.0).crossing_probability(condition) > 0.95
    # only the steps due within the condition's time count: a crossing at the eighth step (8.4 s) is beyond "within 8 s"
    late = numpy.r_[numpy.full(7, 0.5), -1.0]
    assert forecast_of(late, 1.0).crossing_probability(condition) < 0.05
    assert forecast_of(late, 1.0).crossing_probability(Condition("white-line ratio", "below", 0.0, within_s=8.5)) > 0.95


def true_lead_s(oxide: InSituOxide, current: float, x_star: float, history: list[tuple[float, float]]) -> float:
    """How long after the action the area would have crossed, had the probe stayed (from the state at the deciding spectrum)."""
    kinetics = oxide.kinetics
    x, j = history[-1]
    t = 0.0
    while x < x_star and t < 120.0:
        x, j = kinetics.step(x, j, current / 50e-12, 0.05)
        t += 0.05
    return t


def crossing_fraction() -> float:
    e = numpy.arange(480.0, 780.0, 0.5)
    p = Preprocessor(align="none")
    fractions = numpy.linspace(0.0, 1.0, 201)
    ratios = numpy.array([float(WhiteLineRatio()(p.prepare(oxide_spectrum(e, x), e).values, p.axis_eV)) for x in fractions])
    return float(fractions[numpy.flatnonzero(ratios < 2.1)[0]])


def watch(seed: int, settings: WatchSettings, forecaster: OnlineForecaster | None = None) -> tuple[float, float]:
    """Run the watch on twin run ``seed`` until it acts: (time of the action, true lead in s)."""
    kinetics, current = draw_conditions(seed)
    oxide = InSituOxide(kinetics, seed=seed)
    scope = InSituMicroscope(oxide, beam_current_A=current)
    history: list[tuple[float, float]] = []

    def snapshot(result: typing.Mapping[str, typing.Any]) -> None:
        if "measured" in result and "response" not in result and result.get("area", 0) == 0:
            position = scope.sample_position_nm()
            history.append((oxide.reduced_fraction(position), oxide.effective_dose_rate(position)))

    plan = ForecastWatch(settings, forecaster)
    run_on_twin(plan, scope, on_report=snapshot)
    assert len(plan.responses) == 1
    return float(plan.responses[0]["time_s"]), true_lead_s(oxide, current, crossing_fraction(), history)


def test_on_a_twin_run_where_the_old_rule_acted_26_s_early_the_watch_no_longer_acts_early() -> None:
    # twin run 314 (a development seed): 60 pA, the white-line ratio crosses 2.1 about 39 s in
    condition = Condition("white-line ratio", "below", 2.1, within_s=8.0)
    new = WatchSettings(condition=condition, response="fresh_area", max_responses=1, max_spectra=60)
    acted_s, lead_s = watch(314, new)
    # it acts when the transition shows (here as the ratio crosses: 7 spectra from its first sign), not 26 s before;
    # that it acts ahead of a crossing in time is test_forecast_watch's first test
    assert lead_s <= condition.within_s + PERIOD_S and acted_s > 30.0
    # the old rule: steps drawn independently, acting at 0.7 from the 8th spectrum on
    old_condition = Condition("white-line ratio", "below", 2.1, within_s=8.0, confidence=0.7)
    old = WatchSettings(condition=old_condition, response="fresh_area", max_responses=1, max_spectra=60, min_spectra_before_acting=8)
    forecaster = OnlineForecaster(old_condition.measure(), preprocessor=old.preprocessor(), fine_tune_ms=old.fine_tune_ms, horizon_correlation=0.0)
    acted_s, lead_s = watch(314, old, forecaster)
    assert acted_s < 15.0 and lead_s > 20.0


def test_a_correlation_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="horizon_correlation must be between 0"):
        OnlineForecaster(WhiteLineRatio(), horizon_correlation=1.5)
