from __future__ import annotations

import math
import time

import numpy
import pytest

from nion_autoem_targeting.changepoint import Detection
from nion_autoem_targeting.changepoint import PoissonCusum
from nion_autoem_targeting.changepoint import detect_drop
from nion_autoem_targeting.changepoint import estimate_rate
from nion_autoem_targeting.changepoint import false_alarm_probability
from nion_autoem_targeting.changepoint import threshold_for_false_alarm

BEFORE, AFTER = 400.0, 250.0  # counts per sample over S2, then S1


def _drop_trace(seed: int, change: int = 300, length: int = 600) -> numpy.typing.NDArray[numpy.int64]:
    rng = numpy.random.default_rng(seed)
    return numpy.concatenate([rng.poisson(BEFORE, change), rng.poisson(AFTER, length - change)])


def _reference_cusum(trace: numpy.typing.ArrayLike, before: float, after: float, threshold: float) -> tuple[int, int, float] | None:
    # The textbook per-sample recursion, to check the vectorised one against.
    w, last_zero = 0.0, -1
    for i, x in enumerate(numpy.asarray(trace, dtype=float)):
        w = max(0.0, w + x * math.log(after / before) + (before - after))
        if w >= threshold:
            return i, last_zero + 1, w
        if w <= 0.0:
            last_zero = i
    return None


@pytest.fixture(scope="module")
def threshold() -> float:
    return threshold_for_false_alarm(BEFORE, AFTER, 2000, 0.01)


@pytest.mark.parametrize("method", ["markov", "siegmund", "bound"])
def test_drop_is_caught_within_three_samples(method: str) -> None:
    h = threshold_for_false_alarm(BEFORE, AFTER, 2000, 0.01, method=method)
    for seed in range(20):
        detection = detect_drop(_drop_trace(seed), BEFORE, AFTER, h)
        assert detection is not None
        assert 300 <= detection.alarm_index <= 302
        assert abs(detection.change_index - 300) <= 2
        assert detection.statistic >= h


def test_stationary_traces_rarely_alarm(threshold: float) -> None:
    rng = numpy.random.default_rng(1234)
    alarms = sum(detect_drop(rng.poisson(BEFORE, 2000), BEFORE, AFTER, threshold) is not None for _ in range(100))
    assert alarms <= 2


@pytest.mark.parametrize(("before", "after", "samples", "probability"), [(BEFORE, AFTER, 2000, 0.01), (40.0, 25.0, 500, 0.1), (10.0, 6.0, 500, 0.1), (4.0, 2.0, 500, 0.1)])
def test_false_alarm_probability_matches_monte_carlo(before: float, after: float, samples: int, probability: float) -> None:
    h = threshold_for_false_alarm(before, after, samples, probability)
    predicted = false_alarm_probability(before, after, h, samples)
    assert predicted <= probability
    traces_count = 3000
    rng = numpy.random.default_rng(7)
    traces = rng.poisson(before, (traces_count, samples)).astype(float)
    c = numpy.cumsum(traces * math.log(after / before) + (before - after), axis=1)
    w = c - numpy.minimum(numpy.minimum.accumulate(c, axis=1), 0.0)
    observed = float(numpy.mean(w.max(axis=1) >= h))
    standard_error = math.sqrt(predicted * (1 - predicted) / traces_count)
    assert abs(observed - predicted) <= 3.5 * standard_error + 0.1 * predicted


def test_threshold_methods_are_ordered_and_consistent() -> None:
    markov = threshold_for_false_alarm(BEFORE, AFTER, 2000, 0.01)
    siegmund = threshold_for_false_alarm(BEFORE, AFTER, 2000, 0.01, method="siegmund")
    bound = threshold_for_false_alarm(BEFORE, AFTER, 2000, 0.01, method="bound")
    assert bound == pytest.approx(math.log(2000 / 0.01))
    assert markov < siegmund < bound
    # the smallest threshold that meets the requirement, to 1e-3 nats
    assert false_alarm_probability(BEFORE, AFTER, markov, 2000) <= 0.01
    assert false_alarm_probability(BEFORE, AFTER, markov - 2e-3, 2000) > 0.01
    # a lax requirement is met by any positive threshold at this contrast
    assert threshold_for_false_alarm(BEFORE, AFTER, 500, 0.1) == 1e-9
    # a stricter requirement or a longer dwell needs a higher threshold
    assert threshold_for_false_alarm(BEFORE, AFTER, 2000, 0.001) > markov
    assert threshold_for_false_alarm(BEFORE, AFTER, 20000, 0.01) > markov
    # for a weak contrast Siegmund's approximation and the Markov chain agree
    weak_markov = threshold_for_false_alarm(100.0, 95.0, 2000, 0.1)
    weak_siegmund = threshold_for_false_alarm(100.0, 95.0, 2000, 0.1, method="siegmund")
    assert weak_markov == pytest.approx(weak_siegmund, abs=0.15)


def test_chunked_updates_match_one_call_and_the_plain_recursion(threshold: float) -> None:
    for seed in range(5):
        trace = _drop_trace(seed, change=700, length=1000)
        whole = PoissonCusum(BEFORE, AFTER, threshold)
        alarm = whole.update(trace)
        expected = _reference_cusum(trace, BEFORE, AFTER, threshold)
        assert expected is not None
        assert (alarm, whole.change_index) == expected[:2]
        assert whole.statistic == pytest.approx(expected[2])
        chunked = PoissonCusum(BEFORE, AFTER, threshold)
        edges = numpy.sort(numpy.random.default_rng(seed).choice(numpy.arange(1, 1000), 30, replace=False))
        results = [chunked.update(chunk) for chunk in numpy.split(trace, edges)]
        first = next(r for r in results if r is not None)
        assert first == alarm
        assert results[-1] == alarm
        assert chunked.change_index == whole.change_index
        assert chunked.statistic == pytest.approx(whole.statistic)
        assert chunked.samples_seen == 1000


def test_weak_contrast_matches_plain_recursion_sample_by_sample() -> None:
    # With a weak drop the statistic wanders above zero for long stretches before
    # the alarm, which exercises the carried statistic and the change estimate.
    rng = numpy.random.default_rng(3)
    trace = numpy.concatenate([rng.poisson(100, 400), rng.poisson(90, 400)])
    expected = _reference_cusum(trace, 100, 90, 6.0)
    assert expected is not None and expected[0] > 400
    cusum = PoissonCusum(100, 90, 6.0)
    alarms = [cusum.update(x) for x in trace[: expected[0] + 1]]
    assert alarms[-1] == expected[0] and all(a is None for a in alarms[:-1])
    assert cusum.change_index == expected[1]
    detection = cusum.detection
    assert isinstance(detection, Detection)
    assert (detection.alarm_index, detection.change_index) == expected[:2]
    assert detection.statistic == pytest.approx(expected[2])


def test_alarm_latches_until_reset(threshold: float) -> None:
    cusum = PoissonCusum(BEFORE, AFTER, threshold)
    assert cusum.update(numpy.full(10, 400.0)) is None
    assert cusum.detection is None
    assert cusum.update([250.0, 400.0]) == 10
    assert cusum.update(numpy.full(5, 250.0)) == 10
    assert cusum.samples_seen == 17
    cusum.reset()
    assert (cusum.alarm_index, cusum.change_index, cusum.statistic, cusum.samples_seen) == (None, None, 0.0, 0)
    assert cusum.update([]) is None
    assert cusum.update(250.0) == 0


def test_update_of_1000_samples_takes_under_a_millisecond(threshold: float) -> None:
    chunk = numpy.random.default_rng(0).poisson(BEFORE, 1000)
    cusum = PoissonCusum(BEFORE, AFTER, threshold)
    best = math.inf
    for _ in range(20):
        cusum.reset()
        t = time.perf_counter()
        cusum.update(chunk)
        best = min(best, time.perf_counter() - t)
    assert best < 1e-3


def test_estimate_rate_ignores_outliers() -> None:
    rng = numpy.random.default_rng(0)
    trace = rng.poisson(BEFORE, 900).astype(float)
    trace[[10, 400, 800]] = 20000.0  # e.g. cosmic-ray-like spikes
    assert abs(numpy.mean(trace) - BEFORE) > 40
    assert estimate_rate(trace) == pytest.approx(BEFORE, rel=0.01)
    assert estimate_rate([5.0]) == 5.0
    assert estimate_rate(trace, blocks=1) == pytest.approx(numpy.mean(trace))


@pytest.mark.parametrize(
    ("before", "after", "threshold"),
    [(250.0, 400.0, 5.0), (400.0, 400.0, 5.0), (0.0, -1.0, 5.0), (400.0, 0.0, 5.0), (math.nan, 250.0, 5.0), (400.0, 250.0, 0.0), (400.0, 250.0, math.inf)],
)
def test_bad_parameters_raise(before: float, after: float, threshold: float) -> None:
    with pytest.raises(ValueError, match="rate_before|rate_after|threshold"):
        PoissonCusum(before, after, threshold)


def test_bad_inputs_raise() -> None:
    cusum = PoissonCusum(BEFORE, AFTER, 5.0)
    with pytest.raises(ValueError, match="NaN"):
        cusum.update([400.0, math.nan])
    with pytest.raises(ValueError, match="1-D"):
        cusum.update(numpy.ones((2, 2)))
    with pytest.raises(ValueError, match="rate_after must be smaller"):
        threshold_for_false_alarm(BEFORE, BEFORE, 100, 0.01)
    with pytest.raises(ValueError, match="probability"):
        threshold_for_false_alarm(BEFORE, AFTER, 100, 1.5)
    with pytest.raises(ValueError, match="samples"):
        threshold_for_false_alarm(BEFORE, AFTER, 0, 0.01)
    with pytest.raises(ValueError, match="method"):
        threshold_for_false_alarm(BEFORE, AFTER, 100, 0.01, method="guess")
    with pytest.raises(ValueError, match="non-empty"):
        estimate_rate([])
    with pytest.raises(ValueError, match="blocks"):
        estimate_rate([1.0, 2.0], blocks=3)
