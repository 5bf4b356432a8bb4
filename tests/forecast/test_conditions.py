"""Conditions in the user's words, and the quantities they are written in."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem.twin.insitu import oxide_spectrum
from nion_autoem_forecast.conditions import Condition
from nion_autoem_forecast.conditions import PrePeak
from nion_autoem_forecast.conditions import WhiteLineRatio
from nion_autoem_forecast.conditions import parse_condition
from nion_autoem_forecast.preprocess import Preprocessor


def test_the_white_line_ratio_and_pre_peak_fall_as_the_oxide_is_reduced() -> None:
    e = numpy.arange(480.0, 780.0, 0.5)
    p = Preprocessor(align="none")
    prepared = numpy.stack([p.prepare(oxide_spectrum(e, x), e).values for x in numpy.linspace(0, 1, 6)])
    ratio, pre_peak = WhiteLineRatio()(prepared, p.axis_eV), PrePeak()(prepared, p.axis_eV)
    assert numpy.all(numpy.diff(ratio) < 0) and ratio[0] > 2.5 and ratio[-1] < 1.8
    assert numpy.all(numpy.diff(pre_peak) < 0) and pre_peak[-1] < 0.05 < pre_peak[0]


def test_sentences_become_conditions_and_bad_ones_are_refused() -> None:
    c = parse_condition("White-line ratio below 2.1 within 10 s")
    assert (c.quantity, c.comparison, c.threshold, c.within_s) == ("white-line ratio", "below", 2.1, 10.0)
    assert c.met([2.2, 2.0]).tolist() == [False, True]
    gone = parse_condition("pre-peak gone within 5 s")
    assert (gone.quantity, gone.threshold, gone.within_s) == ("pre-peak", 0.05, 5.0)
    with pytest.raises(ValueError, match="cannot read the condition"):
        parse_condition("ratio drops soon")
    with pytest.raises(ValueError, match="within_s must be a time > 0"):
        Condition(within_s=0.0)
    with pytest.raises(ValueError, match="quantity must be one of"):
        Condition(quantity="thickness")
