"""A dwell ends within a few samples of the alarm, on every microscope, and only the samples dwelt count as dose."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem.actions import Dwell
from nion_autoem.actions import action_from_dict
from nion_autoem.actions import action_to_dict
from nion_autoem.dry_run import PlanningMicroscope
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import acquisition_time_s
from nion_autoem.instrument import electrons
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration
from nion_autoem.twin import lattice
from nion_autoem_targeting.changepoint import PoissonCusum
from tests.twins import mos2_twin


def test_the_alarm_agrees_with_the_plan_s_cusum_sample_for_sample() -> None:
    rng = numpy.random.default_rng(3)
    trace = numpy.concatenate([rng.poisson(3000, 237), rng.poisson(1950, 40)]).astype(float)
    alarm = DropAlarm(3000.0, 1950.0, 14.0)
    cusum = PoissonCusum(3000.0, 1950.0, 14.0)
    expected = cusum.update(trace)
    assert expected is not None and 237 <= expected <= 239
    assert alarm.first_alarm(trace) == expected
    # carried over piece by piece, as an instrument streaming short spot scans evaluates it
    statistic, found = 0.0, None
    for start in range(0, len(trace), 2):
        w = alarm.statistics(trace[start:start + 2], statistic)
        hits = numpy.flatnonzero(w >= alarm.threshold)
        if hits.size:
            found = start + int(hits[0])
            break
        statistic = float(w[-1])
    assert found == expected


def test_bad_alarms_are_explained() -> None:
    with pytest.raises(ValueError, match="rate_after < rate_before"):
        DropAlarm(100.0, 200.0, 10.0)
    with pytest.raises(ValueError, match="within_samples"):
        DropAlarm(300.0, 200.0, 10.0, within_samples=5)
    with pytest.raises(ValueError, match="threshold"):
        DropAlarm(300.0, 200.0, -1.0)
    with pytest.raises(ValueError, match="until must be a DropAlarm"):
        Dwell((0.0, 0.0), 10, 100.0, until="stop early")  # type: ignore[arg-type]


def test_a_dwell_with_an_alarm_is_journaled_and_replayed_unchanged() -> None:
    dwell = Dwell((0.1, -0.2), 500, 100.0, label="dwell on target 1", until=DropAlarm(3000.0, 1950.0, 14.5, 3.25, 1))
    assert action_from_dict(action_to_dict(dwell)) == dwell
    assert action_to_dict(dwell)["until"]["within_samples"] == 1
    plain = Dwell((0.1, -0.2), 500, 100.0)
    assert action_from_dict(action_to_dict(plain)) == plain and plain.until is None


def test_replay_stops_at_the_alarm_and_counts_only_the_samples_dwelt() -> None:
    survey = numpy.full((32, 32), 100.0)
    scope = ReplayMicroscope(survey, ScanFrame((32, 32), 2.0), seed=1)
    scope.unblank()
    scope.park_probe((0.0, 0.0))
    # a column the alarm thinks gave 1000 counts and now gives 100: the very first sample fires
    m = Dwell(None, 400, 100.0, until=DropAlarm(1000.0, 650.0, 10.0)).perform(scope)
    assert m.xdata.data.shape == (1,) and m.dwell_s == pytest.approx(100e-6)
    assert m.dose_e == pytest.approx(electrons(scope.beam_current_A, 100e-6))
    # a level the alarm expects never fires: the whole dwell
    quiet = Dwell(None, 400, 100.0, until=DropAlarm(100.0, 65.0, 12.0)).perform(scope)
    assert quiet.xdata.data.shape == (400,) and quiet.dwell_s == pytest.approx(0.04)


def test_dry_run_counts_only_the_samples_dwelt() -> None:
    scope = PlanningMicroscope()
    scope.unblank()
    scope.park_probe((0.0, 0.0))
    m = Dwell(None, 400, 100.0, until=DropAlarm(1000.0, 650.0, 12.0)).perform(scope)
    # the placeholder trace drops half-way; the alarm fires on the first low sample
    assert m.xdata.data.shape == (201,)
    assert scope.ledger[-1].dwell_s == pytest.approx(201 * 100e-6)


def test_on_the_twin_the_beam_leaves_the_column_within_the_promised_samples() -> None:
    configuration = create_configuration("mos2", seed=4)
    with UsimSession(configuration) as session:
        scope = session.microscope()
        frame = ScanFrame((64, 64), fov_nm=1.0)
        scope.survey(frame, pixel_time_us=0.25)
        twin = mos2_twin(configuration)
        truth = twin.ground_truth()
        s2 = numpy.flatnonzero((truth.column_class == lattice.S2) & (numpy.linalg.norm(truth.position_nm, axis=1) < 0.3))
        column = int(s2[0])
        position = (float(truth.position_nm[column, 0]), float(truth.position_nm[column, 1]))
        scope.park_probe(position)
        level = float(numpy.max(scope.adf_trace(3, 100.0).xdata.data))
        clock_before = configuration.clock.now_s
        alarm = DropAlarm(level, 0.65 * level, 14.0, within_samples=1)
        m = Dwell(None, 20_000, 100.0, until=alarm).perform(scope)
        trace = numpy.asarray(m.xdata.data)
        events = [e for e in twin.damage_events if e.column_id == column]
    assert 0 < len(trace) < 20_000, "an S2 column under a parked probe loses an atom well within 2 s"
    assert events and events[0].before == "S2"
    found = alarm.first_alarm(trace)
    assert found is not None
    assert len(trace) - 1 - found <= alarm.within_samples
    # the twin's clock, the stamp and the dose all count only the samples dwelt
    dwelt_s = len(trace) * 100e-6
    assert configuration.clock.now_s - clock_before == pytest.approx(dwelt_s, rel=1e-9)
    assert acquisition_time_s(m) == pytest.approx(configuration.clock.now_s)
    assert m.dwell_s == pytest.approx(dwelt_s) and m.dose_e == pytest.approx(electrons(scope.beam_current_A, dwelt_s))
    # the alarm came within 3 samples of the true ejection
    event_sample = int((events[0].time_s - clock_before) / 100e-6)
    assert 0 <= found - event_sample <= 3
