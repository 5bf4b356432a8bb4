"""The online forecaster on twin series: better than persistence, a calibrated band, gaps, too few spectra, its time per update."""

from __future__ import annotations

import numpy
import pytest
import torch

from nion_autoem.twin.insitu import parked_probe_series
from nion_autoem_forecast.conditions import WhiteLineRatio
from nion_autoem_forecast.evaluation import prepared_truth
from nion_autoem_forecast.evaluation import score_series
from nion_autoem_forecast.online import OnlineForecaster
from nion_autoem_forecast.preprocess import SeriesError


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_on_a_transforming_twin_series_the_forecast_beats_persistence_and_the_band_is_calibrated() -> None:
    series = parked_probe_series(5, steps=100)  # seeds below 1000 were not trained on
    forecaster = OnlineForecaster(WhiteLineRatio())
    truth = prepared_truth(series["truth"], series["energies_eV"], forecaster.preprocessor)
    score = score_series(forecaster, series["spectra"], series["energies_eV"], series["times_s"], truth, WhiteLineRatio())
    ratio = score.channels["model"] / score.channels["persistence"]
    assert ratio[0] < 0.8 and ratio[3] < 0.7 and ratio[7] < 0.7
    quantity = score.quantity["model"] / score.quantity["persistence"]
    assert quantity[3] < 0.8
    hits, checked = score.coverage_measured
    assert checked > 500 and 0.8 < hits / checked < 0.97
    assert numpy.median(score.update_ms) < 60.0  # generous: the benchmark times it on a quiet machine


def test_a_gap_is_filled_with_a_note_and_bad_series_are_refused() -> None:
    series = parked_probe_series(6, steps=14)
    forecaster = OnlineForecaster(WhiteLineRatio(), min_spectra=4)
    with pytest.raises(SeriesError, match="too few spectra to forecast: 0 of the 4"):
        forecaster.forecast()
    keep = [i for i in range(14) if i not in (8, 9, 10)]
    for i in keep:
        forecaster.update(series["spectra"][i], series["energies_eV"], float(series["times_s"][i]))
    assert any("gap of" in note and "3 spectra interpolated" in note for note in forecaster.notes)
    assert len(forecaster.values) == 14 and forecaster.filled.count(True) == 3
    assert forecaster.forecast().spectra.shape == (8, 221)
    with pytest.raises(SeriesError, match="time_s must increase"):
        forecaster.update(series["spectra"][0], series["energies_eV"], 1.0)
