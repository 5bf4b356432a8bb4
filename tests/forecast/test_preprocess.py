"""Preprocessing a live series: drift alignment, background, window, common axis, and what it refuses."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem.twin.insitu import oxide_spectrum
from nion_autoem.twin.insitu import parked_probe_series
from nion_autoem_forecast.preprocess import Preprocessor
from nion_autoem_forecast.preprocess import SeriesError
from nion_autoem_forecast.preprocess import crop
from nion_autoem_forecast.preprocess import edge_shift_eV
from nion_autoem_forecast.preprocess import fill_nan_channels
from nion_autoem_forecast.preprocess import remove_power_law_background
from nion_autoem_forecast.preprocess import resample
from nion_autoem_forecast.preprocess import zero_loss_shift_eV


def test_the_edge_alignment_follows_the_spectrometer_drift_of_the_twin() -> None:
    series = parked_probe_series(3, steps=60)
    preprocessor = Preprocessor()
    shifts = numpy.array([preprocessor.prepare(c, series["energies_eV"]).shift_eV for c in series["spectra"]])
    drift = series["energy_offset_eV"] - series["energy_offset_eV"][0]
    assert numpy.ptp(drift) > 0.5  # the twin did drift
    assert numpy.median(numpy.abs(shifts - drift)) < 0.12


def test_the_edge_alignment_is_not_fooled_by_the_chemical_change() -> None:
    e = numpy.arange(480.0, 780.0, 0.5)
    assert abs(edge_shift_eV(oxide_spectrum(e, 1.0), oxide_spectrum(e, 0.0), e, (534.0, 560.0))) < 0.1
    assert edge_shift_eV(oxide_spectrum(e - 0.8, 1.0), oxide_spectrum(e, 0.0), e, (534.0, 560.0)) == pytest.approx(0.8, abs=0.1)


def test_zero_loss_alignment_and_background_removal() -> None:
    e = numpy.arange(-5.0, 50.0, 0.05)
    assert zero_loss_shift_eV(numpy.exp(-0.5 * ((e + 0.42) / 0.15) ** 2), e) == pytest.approx(-0.42, abs=0.01)
    e = numpy.arange(400.0, 700.0)
    spectrum = 3e8 * e ** -2.7 + numpy.where(e > 532, 50.0, 0.0)
    out = remove_power_law_background(spectrum, e, (450.0, 525.0))
    assert numpy.abs(out[e < 525]).max() < 0.5 and out[e > 540].mean() == pytest.approx(50.0, rel=0.02)


def test_crop_and_resample_keep_the_counts() -> None:
    e = numpy.arange(0.0, 100.0, 0.25)
    values, axis = crop(numpy.ones_like(e), e, (10.0, 20.0))
    assert axis[0] == 10.0 and axis[-1] == 20.0 and values.sum() == 41
    assert resample(numpy.ones_like(e), e, numpy.arange(10.0, 20.0)).sum() == pytest.approx(40.0)


def test_nan_channels_are_filled_with_a_note_or_refused() -> None:
    series = parked_probe_series(1, steps=2)
    spectrum = series["spectra"][0].copy()
    spectrum[[100, 300]] = numpy.nan
    prepared = Preprocessor().prepare(spectrum, series["energies_eV"])
    assert numpy.all(numpy.isfinite(prepared.values)) and "2 NaN channel(s) filled" in prepared.notes[0]
    spectrum[:200] = numpy.nan
    with pytest.raises(SeriesError, match="201 of 600 channels"):
        fill_nan_channels(spectrum)


def test_another_energy_axis_is_resampled_with_a_note() -> None:
    series = parked_probe_series(2, steps=3)
    preprocessor = Preprocessor()
    first = preprocessor.prepare(series["spectra"][0], series["energies_eV"])
    coarse = series["spectra"][1].reshape(-1, 2).sum(axis=1)
    second = preprocessor.prepare(coarse, series["energies_eV"].reshape(-1, 2).mean(axis=1))
    assert any("energy axis changed" in note for note in second.notes)
    assert second.values.shape == first.values.shape
    assert numpy.abs(second.values - first.values).mean() < 3 * numpy.abs(first.values).mean()


def test_a_window_outside_the_axis_is_refused_with_the_axis_named() -> None:
    series = parked_probe_series(2, steps=1)
    with pytest.raises(SeriesError, match="outside the recorded axis 480-779.5 eV"):
        Preprocessor(window_eV=(700.0, 900.0)).prepare(series["spectra"][0], series["energies_eV"])
    with pytest.raises(SeriesError, match="low < high"):
        Preprocessor(window_eV=(700.0, 600.0))
    with pytest.raises(SeriesError, match="increasing"):
        Preprocessor().prepare(series["spectra"][0], series["energies_eV"][::-1])
