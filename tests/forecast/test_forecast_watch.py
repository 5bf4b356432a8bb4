"""The forecast watch on the in-situ twin: it acts before the change, stays quiet when nothing happens, and runs in the engine."""

from __future__ import annotations

import pathlib

import numpy
import pytest
import torch

from nion_autoem.journal import read_journal
from nion_autoem.plans.forecast_watch import ForecastWatch
from nion_autoem.plans.forecast_watch import WatchSettings
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin.insitu import InSituMicroscope
from nion_autoem.twin.insitu import InSituOxide
from nion_autoem.twin.insitu import ReductionKinetics
from nion_autoem.twin.insitu import oxide_spectrum
from nion_autoem.twin.insitu import run_on_twin
from nion_autoem_forecast.conditions import Condition
from nion_autoem_forecast.conditions import WhiteLineRatio
from nion_autoem_forecast.preprocess import Preprocessor

CONDITION = Condition("white-line ratio", "below", 2.1, within_s=8.0)
KINETICS = ReductionKinetics(rate_per_s=0.12, threshold_dose_rate=0.35, seed_fraction=0.005)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def crossing_fraction() -> float:
    e = numpy.arange(480.0, 780.0, 0.5)
    p = Preprocessor(align="none")
    fractions = numpy.linspace(0.0, 1.0, 101)
    ratios = numpy.array([float(WhiteLineRatio()(p.prepare(oxide_spectrum(e, x), e).values, p.axis_eV)) for x in fractions])
    return float(fractions[numpy.flatnonzero(ratios < CONDITION.threshold)[0]])


def test_the_watch_moves_to_a_fresh_area_before_the_white_line_ratio_crosses() -> None:
    oxide = InSituOxide(KINETICS, seed=11)
    scope = InSituMicroscope(oxide, beam_current_A=70e-12)
    plan = ForecastWatch(WatchSettings(condition=CONDITION, response="fresh_area", max_responses=1, max_spectra=150))
    states: list[float] = []
    run = run_on_twin(plan, scope, on_report=lambda r: states.append(oxide.reduced_fraction((0.0, 0.0))) if "response" not in r else None)
    assert len(plan.responses) == 1, run.outcome
    response = plan.responses[0]
    x_star = crossing_fraction()
    assert states[-1] < x_star  # when it acted the area had not crossed yet ...
    future = oxide.future((0.0, 0.0), numpy.arange(0.05, 30.0, 0.05), beam_current_A=70e-12, duty=1 / 1.05)
    lead = 0.05 * (numpy.flatnonzero(future >= x_star)[0] + 1) if numpy.any(future >= x_star) else numpy.inf
    # ... but it would have within the condition's time (plus a period), had the probe stayed
    assert lead <= CONDITION.within_s + 1.05
    assert "move_stage" in run.actions and scope.stage_position_nm == (0.0, 50.0)
    assert response["reward"]["dose_saved_e"] > 0
    assert {"series", "forecast", "quantity"} <= set(run.products)
    series = run.products["series"].xdata
    assert [c.units for c in series.dimensional_calibrations] == ["s", "eV"]
    assert "white-line ratio below 2.1 within 8 s" in run.products["quantity"].caption and "moved 50 nm" in run.products["quantity"].caption


def test_below_the_threshold_dose_rate_the_watch_does_not_act() -> None:
    scope = InSituMicroscope(InSituOxide(KINETICS, seed=12), beam_current_A=12e-12)
    plan = ForecastWatch(WatchSettings(condition=CONDITION, max_spectra=60))
    run = run_on_twin(plan, scope)
    assert plan.responses == [] and "never said" in run.outcome
    assert len([a for a in run.actions if a == "acquire"]) == 60


def test_lowering_the_dose_rate_delays_the_transition() -> None:
    runs = {}
    for response in ("lower_dose_rate", None):
        oxide = InSituOxide(KINETICS, seed=13)
        scope = InSituMicroscope(oxide, beam_current_A=90e-12)
        settings = WatchSettings(condition=CONDITION, response="lower_dose_rate", max_spectra=70, dose_factor=0.25)
        if response is None:  # the same run, never acting
            settings = WatchSettings(condition=Condition("white-line ratio", "below", -10.0), max_spectra=70)
        plan = ForecastWatch(settings)
        run = run_on_twin(plan, scope)
        runs[response] = (oxide.reduced_fraction((0.0, 0.0)), run.dose_e, plan.responses)
    acted_x, acted_dose, responses = runs["lower_dose_rate"]
    plain_x, plain_dose, _ = runs[None]
    assert len(responses) == 1 and acted_dose < 0.8 * plain_dose and acted_x < plain_x


def test_in_the_engine_the_watch_journals_its_reward_and_publishes(tmp_path: pathlib.Path) -> None:
    oxide = InSituOxide(KINETICS, seed=14)
    scope = InSituMicroscope(oxide, beam_current_A=110e-12)
    settings = WatchSettings(condition=CONDITION, response="capture", max_responses=1, max_spectra=80, exposure_ms=1000.0, capture_grid=2,
                             capture_exposure_ms=1500.0, publish_every=20)
    sink = MemorySink()
    runner = ExperimentRunner(scope, ForecastWatch(settings), run_dir=tmp_path / "run", sink=sink, on_measurement=[scope.observe])
    runner.run()
    assert runner.state is RunState.FINISHED, runner.progress.message
    record = read_journal(tmp_path / "run")
    rewarded = [s for s in record.steps if "reward" in (s.entry.get("result") or {})]
    assert len(rewarded) == 1
    assert {"capture-1", "series", "forecast", "quantity", "reward-transitions captured"} <= set(sink.products)
    assert sink.products["capture-1"].xdata.data_shape == (2, 2, 600)


def test_a_repeated_small_spectrum_image_is_watched_and_blank_and_wait_lets_time_pass() -> None:
    scope = InSituMicroscope(InSituOxide(KINETICS, seed=15), beam_current_A=90e-12)
    settings = WatchSettings(condition=CONDITION, response="blank_and_wait", wait_s=20.0, max_responses=1, max_spectra=60, spectrum_image=2,
                             position_nm=(0.5, 0.5))  # the 2 x 2 pixels, 0.25 nm apart, share one 1-nm area of the twin
    plan = ForecastWatch(settings)
    run = run_on_twin(plan, scope)
    assert len(plan.responses) == 1, run.outcome
    assert run.actions[1:5] == ["acquire"] * 4  # every step is a 2 x 2 spectrum image
    blank = run.actions.index("blank")
    assert run.actions[blank: blank + 3] == ["blank", "wait", "unblank"]
    assert scope.now_s > 20.0 + (run.actions.count("acquire") * 0.3)  # the wait passed on the twin's clock
