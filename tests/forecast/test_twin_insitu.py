"""The in-situ oxide twin: dose-rate threshold, blanking, fresh areas, its ground-truth future, and its microscope."""

from __future__ import annotations

import pytest

from nion_autoem.actions import Acquire
from nion_autoem.actions import Blank
from nion_autoem.actions import Wait
from nion_autoem.instrument import InstrumentError
from nion_autoem.twin.insitu import InSituMicroscope
from nion_autoem.twin.insitu import InSituOxide
from nion_autoem.twin.insitu import ReductionKinetics


def test_below_the_threshold_dose_rate_nothing_happens_above_it_the_oxide_is_reduced() -> None:
    kinetics = ReductionKinetics(threshold_dose_rate=0.5)
    low, high = InSituOxide(kinetics, seed=0), InSituOxide(kinetics, seed=0)
    low.illuminate((0.0, 0.0), 120.0, beam_current_A=20e-12)
    high.illuminate((0.0, 0.0), 120.0, beam_current_A=100e-12)
    assert low.reduced_fraction((0.0, 0.0)) < 0.01
    assert high.reduced_fraction((0.0, 0.0)) > 0.9
    assert high.reduced_fraction((5.0, 5.0)) == 0.0  # another area is fresh


def test_the_future_is_what_then_happens_and_blanking_stops_the_reduction() -> None:
    oxide = InSituOxide(seed=1)
    oxide.illuminate((0.0, 0.0), 20.0, beam_current_A=80e-12)
    future = oxide.future((0.0, 0.0), [10.0, 20.0], beam_current_A=80e-12)
    oxide.illuminate((0.0, 0.0), 10.0, beam_current_A=80e-12)
    assert oxide.reduced_fraction((0.0, 0.0)) == pytest.approx(future[0], abs=1e-9)
    beam_on = oxide.future((0.0, 0.0), [30.0], beam_current_A=80e-12)[0]
    oxide.illuminate((0.0, 0.0), 10.0, beam_current_A=0.0)  # blanked: the dose-rate memory fades within seconds ...
    after_blanking = oxide.reduced_fraction((0.0, 0.0))
    oxide.illuminate((0.0, 0.0), 20.0, beam_current_A=0.0)  # ... then the gas re-oxidises a little
    assert oxide.reduced_fraction((0.0, 0.0)) < after_blanking < beam_on - 0.2


def test_the_microscope_counts_dose_stamps_time_and_lets_a_wait_pass() -> None:
    scope = InSituMicroscope(InSituOxide(seed=2), beam_current_A=80e-12)
    with pytest.raises(InstrumentError, match="not parked"):
        scope.acquire_spectrum(100.0)
    scope.unblank()
    m = Acquire((0.0, 0.0), 500.0).perform(scope)
    assert m.dose_e == pytest.approx(80e-12 * 0.5 / 1.602176634e-19)
    assert m.xdata.metadata["acquisition_clock_s"] == [0.0, 0.5]
    assert m.xdata.dimensional_calibrations[-1].units == "eV"
    x = scope.sample.reduced_fraction(scope.sample_position_nm())
    Blank().perform(scope)
    scope.observe(Wait(10.0).perform(scope))
    assert scope.now_s == pytest.approx(10.55)
    assert scope.sample.reduced_fraction(scope.sample_position_nm()) <= x
    blanked = scope.acquire_spectrum(500.0)
    assert blanked.dose_e == 0.0 and blanked.xdata.data.sum() == 0.0
