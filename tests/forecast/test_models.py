"""Components, the weight forecaster, the shipped weights and their checksums, the training script."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy
import pytest
import torch

from nion_autoem_forecast.models import MODELS_DIR
from nion_autoem_forecast.models import ChangeComponents
from nion_autoem_forecast.models import ModelIntegrityError
from nion_autoem_forecast.models import SpectrumLSTM
from nion_autoem_forecast.models import WeightForecaster
from nion_autoem_forecast.models import load_model
from nion_autoem_forecast.models import read_metadata
from nion_autoem_forecast.train import synthetic_weight_series
from nion_autoem_forecast.train import train_weight_forecaster


def test_the_components_of_a_three_state_series_describe_it_with_two_directions() -> None:
    rng = numpy.random.default_rng(0)
    a, b, c = rng.random((3, 80))
    t = numpy.linspace(0, 1, 60)[:, numpy.newaxis]
    series = (1 - t) * a + t * numpy.where(t < 0.5, b, c)
    components = ChangeComponents.fit(series, components=2)
    residual = series - components.reconstruct(components.weights(series))
    assert numpy.abs(residual).max() < 0.05 * numpy.abs(series - components.reference).max()
    refit = ChangeComponents.fit(series, components=2, previous=components)
    assert numpy.allclose(numpy.abs(refit.directions @ components.directions.T), numpy.eye(2), atol=1e-6)


def test_the_shipped_weights_load_with_their_recipe_and_are_small() -> None:
    for name, kind in (("weights_v1", WeightForecaster), ("lstm_v1", SpectrumLSTM)):
        metadata = read_metadata(name)
        assert {"format_version", "name", "version", "sha256", "recipe", "created"} <= set(metadata)
        assert (MODELS_DIR / metadata["weights_file"]).stat().st_size < 2_000_000
        assert isinstance(load_model(name), kind)
    net = load_model("weights_v1")
    assert isinstance(net, WeightForecaster)
    with torch.no_grad():
        out = net(torch.randn(5, net.lookback))
    assert torch.all(out[..., 0] <= out[..., 1]) and torch.all(out[..., 1] <= out[..., 2])


def test_damaged_weights_are_refused(tmp_path: pathlib.Path) -> None:
    for suffix in (".json", ".pt"):
        shutil.copy(MODELS_DIR / f"weights_v1{suffix}", tmp_path / f"weights_v1{suffix}")
    with open(tmp_path / "weights_v1.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        load_model(tmp_path / "weights_v1.json")
    metadata = json.loads((tmp_path / "weights_v1.json").read_text())
    del metadata["recipe"]
    (tmp_path / "weights_v1.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelIntegrityError, match="lacks 'recipe'"):
        load_model(tmp_path / "weights_v1.json")
    with pytest.raises(FileNotFoundError, match="shipped models"):
        load_model("no_such_model")


def test_a_little_training_learns_to_extrapolate_a_rising_series() -> None:
    torch.set_num_threads(1)
    series = synthetic_weight_series(200, numpy.random.default_rng(1))
    net = train_weight_forecaster(series, steps=150, batch=256)
    ramp = torch.as_tensor(numpy.arange(-15.0, 1.0) * 2.0, dtype=torch.float32)[None, :] - 0.0  # rising 2 noise units per step, last value 0
    with torch.no_grad():
        median = net(ramp - ramp[:, -1:])[0, :, 1]
    assert median[-1] > 4.0  # it carries the rise on (persistence would say 0)
