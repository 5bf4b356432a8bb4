"""Forecasters of prepared spectra: the EELSTM-style LSTM, and the component forecaster that beats it.

:class:`SpectrumLSTM` is what PNNL's EELSTM does: 8 aligned, cropped spectra
in, 8 spectra ahead out, every channel forecast.  It has to learn the noise
of every channel away and needs the window it was trained on.

:class:`ComponentForecaster` forecasts a few numbers instead of every channel.
The running series is written as a reference spectrum (its first spectra)
plus a few *directions of change* (the leading singular vectors of how the
spectra have moved away from it, refitted as the series grows);
each spectrum's weights on them form short time series, and one small
network (:class:`WeightForecaster`) forecasts any such series 1-8 steps
ahead, as quantiles, in units of its own noise.  The forecast spectrum is the
reference plus the forecast weights times the directions: denoised, on any
window, and with a band.

Weights are saved with :func:`save_model` (a ``.pt`` file plus JSON with
``format_version``, ``name``, ``version``, ``sha256``, ``recipe`` and
``created``) and read back with :func:`load_model`, which checks the checksum.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import pathlib
import typing

import numpy
import numpy.typing
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_checks.shipped import verified_weights

_NDArray = numpy.typing.NDArray[typing.Any]

MODELS_DIR = pathlib.Path(__file__).parent / "models"
FORMAT_VERSION = 1
#: Steps ahead every forecaster gives.
HORIZON = 8
#: Quantile levels the weight forecaster gives: the 90 % band and the median.
QUANTILES = (0.05, 0.5, 0.95)


class ModelIntegrityError(RuntimeError):
    """Shipped weights whose files are missing, malformed or do not match their checksum."""


# --- the reference plus directions of change -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChangeComponents:
    """A series as a reference spectrum plus a few directions of change.

    Parameters
    ----------
    reference : ndarray (channels,)
        Mean of the series' first spectra.
    directions : ndarray (components, channels)
        Orthonormal directions along which the series has moved.

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> a, b = rng.random(50), rng.random(50)
    >>> f = numpy.linspace(0, 1, 40)[:, None]
    >>> c = ChangeComponents.fit((1 - f) * a + f * b, components=1)
    >>> float(numpy.abs(c.reconstruct(c.weights((1 - f) * a + f * b)) - ((1 - f) * a + f * b)).max()) < 1e-9
    True
    """

    reference: _NDArray
    directions: _NDArray

    @classmethod
    def fit(cls, spectra: numpy.typing.ArrayLike, *, components: int = 2, reference_spectra: int = 8, recent: int = 96,
            previous: ChangeComponents | None = None) -> ChangeComponents:
        """Fit to a series of prepared spectra (steps, channels): the reference from the first ``reference_spectra``, the directions from the last ``recent``.

        ``previous`` (the fit one spectrum ago) starts the iteration where it
        ended, so a refit per spectrum costs a few matrix products.
        """
        x = numpy.asarray(spectra, dtype=float)
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"spectra must be (steps, channels) with at least one spectrum, got shape {x.shape}")
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        reference = x[: max(1, reference_spectra)].mean(axis=0)
        moved = x[-recent:] - reference
        k = min(components, max(1, moved.shape[0]), x.shape[1])
        directions = _leading_directions(moved, k, None if previous is None else previous.directions[:k])
        # a stable sign, so a direction does not flip from one refit to the next: the latest spectrum has a positive weight
        signs = numpy.sign(directions @ moved[-1])
        directions = directions * numpy.where(signs == 0, 1.0, signs)[:, numpy.newaxis]
        if k < components:
            directions = numpy.concatenate([directions, numpy.zeros((components - k, x.shape[1]))])
        return cls(reference, directions)

    def weights(self, spectra: numpy.typing.ArrayLike) -> _NDArray:
        """Weights (..., components) of spectra (..., channels) on the directions."""
        return (numpy.asarray(spectra, dtype=float) - self.reference) @ self.directions.T

    def reconstruct(self, weights: numpy.typing.ArrayLike) -> _NDArray:
        """Spectra (..., channels) from weights (..., components)."""
        return typing.cast(_NDArray, self.reference + numpy.asarray(weights, dtype=float) @ self.directions)


def _leading_directions(moved: _NDArray, k: int, start: _NDArray | None, iterations: int = 12) -> _NDArray:
    """The ``k`` leading right singular vectors of ``moved`` by subspace iteration.

    Matrix products and a hand-made Gram-Schmidt only: a threaded LAPACK call
    (SVD, eigh) on a busy machine can take 100 times longer than on a quiet one.
    """
    channels = moved.shape[1]
    if start is None or start.shape != (k, channels) or not numpy.all(numpy.isfinite(start)):
        rng = numpy.random.default_rng(0)
        start = numpy.concatenate([moved[-1:], rng.standard_normal((max(k - 1, 0), channels))])[:k]
    q = numpy.array(start, dtype=float).T  # (channels, k)
    for _ in range(iterations):
        q = moved.T @ (moved @ q)
        for j in range(k):
            for i in range(j):
                q[:, j] -= (q[:, i] @ q[:, j]) * q[:, i]
            norm = math.sqrt(float(q[:, j] @ q[:, j]))
            q[:, j] = q[:, j] / norm if norm > 1e-300 else numpy.eye(channels)[j]
    strength = numpy.sum((moved @ q) ** 2, axis=0)
    return q[:, numpy.argsort(strength)[::-1]].T


def noise_level(series: numpy.typing.ArrayLike, *, floor: float = 1e-9) -> _NDArray:
    """Shot-noise level of each column of ``series`` (steps, k): the robust spread of first differences over sqrt 2.

    Examples
    --------
    >>> rng = numpy.random.default_rng(1)
    >>> round(float(noise_level(rng.normal(0, 2.0, (4000, 1)) + numpy.linspace(0, 5, 4000)[:, None])[0]), 1)
    2.0
    """
    x = numpy.asarray(series, dtype=float)
    if x.ndim == 1:
        x = x[:, numpy.newaxis]
    if x.shape[0] < 3:
        return numpy.full(x.shape[1], 1.0)
    d = numpy.diff(x, axis=0)
    mad = numpy.median(numpy.abs(d - numpy.median(d, axis=0)), axis=0)
    return typing.cast(_NDArray, numpy.maximum(mad / 0.6745 / math.sqrt(2.0), floor))


# --- the weight forecaster ----------------------------------------------------------------------------


class WeightForecaster(torch.nn.Module):
    """A small network that forecasts a noisy scalar series 1..``horizon`` steps ahead, as quantiles.

    Input: the last ``lookback`` values minus the last one, in units of the
    series' noise.  Output: (batch, horizon, quantiles) of the change from the
    last value, in the same units.  Because everything is in noise units, one
    network serves every weight of every series, whatever its scale.

    Examples
    --------
    >>> net = WeightForecaster()
    >>> tuple(net(torch.zeros(3, net.lookback)).shape)
    (3, 8, 3)
    """

    def __init__(self, lookback: int = 16, hidden: int = 64, horizon: int = HORIZON, quantiles: tuple[float, ...] = QUANTILES) -> None:
        super().__init__()
        self.lookback, self.hidden, self.horizon, self.quantiles = lookback, hidden, horizon, tuple(quantiles)
        self.body = torch.nn.Sequential(torch.nn.Linear(lookback, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                        torch.nn.Linear(hidden, horizon * len(self.quantiles)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x).reshape(x.shape[0], self.horizon, len(self.quantiles))
        # quantiles in order: the median, then non-negative gaps below and above it
        median = out[..., 1:2]
        low = median - torch.nn.functional.softplus(out[..., 0:1])
        high = median + torch.nn.functional.softplus(out[..., 2:3])
        return torch.cat([low, median, high], dim=-1)

    def config(self) -> dict[str, typing.Any]:
        return {"lookback": self.lookback, "hidden": self.hidden, "horizon": self.horizon, "quantiles": list(self.quantiles)}


def pinball_loss(predicted: torch.Tensor, target: torch.Tensor, quantiles: typing.Sequence[float] = QUANTILES) -> torch.Tensor:
    """Mean quantile (pinball) loss of ``predicted`` (batch, horizon, quantiles) against ``target`` (batch, horizon)."""
    q = torch.as_tensor(quantiles, dtype=predicted.dtype)
    error = target.unsqueeze(-1) - predicted
    return torch.mean(torch.maximum(q * error, (q - 1) * error))


def normalized_windows(series: _NDArray, lookback: int, horizon: int = HORIZON, *, sigma: _NDArray | None = None) -> tuple[_NDArray, _NDArray]:
    """Training pairs from a series (steps, k): inputs (n, lookback) and targets (n, horizon), in noise units.

    Windows reaching before the start are padded with the first value (a
    series is forecast from its second spectrum on).
    """
    x = numpy.asarray(series, dtype=float)
    if x.ndim == 1:
        x = x[:, numpy.newaxis]
    s = noise_level(x) if sigma is None else sigma
    steps = x.shape[0]
    inputs, targets = [], []
    padded = numpy.concatenate([numpy.repeat(x[:1], lookback - 1, axis=0), x])
    for t in range(1, steps - horizon):
        window = padded[t: t + lookback]  # ends at x[t]
        last = x[t]
        inputs.append(((window - last) / s).T)
        targets.append(((x[t + 1: t + 1 + horizon] - last) / s).T)
    if not inputs:
        return numpy.zeros((0, lookback)), numpy.zeros((0, horizon))
    return numpy.concatenate(inputs), numpy.concatenate(targets)


def forecast_weights(net: WeightForecaster, history: _NDArray, sigma: _NDArray) -> _NDArray:
    """Quantile forecasts (k, horizon, quantiles) of each weight series in ``history`` (steps, k), in the weights' own units."""
    x = numpy.asarray(history, dtype=float)
    lookback = net.lookback
    window = x[-lookback:]
    if window.shape[0] < lookback:
        window = numpy.concatenate([numpy.repeat(window[:1], lookback - window.shape[0], axis=0), window])
    last = x[-1]
    inputs = torch.as_tensor(((window - last) / sigma).T, dtype=torch.float32)
    with torch.no_grad():
        out = net(inputs).numpy().astype(float)
    return typing.cast(_NDArray, last[:, numpy.newaxis, numpy.newaxis] + out * sigma[:, numpy.newaxis, numpy.newaxis])


# --- the EELSTM-style LSTM ---------------------------------------------------------------------------------


class SpectrumLSTM(torch.nn.Module):
    """EELSTM as PNNL describes it: an LSTM reads 8 prepared spectra and gives the next 8, channel by channel.

    The output is the change from the last input spectrum (so an untrained
    network is persistence).  Inputs are scaled by ``scale`` (a prepared
    spectrum has unit area, so single channels are small numbers).

    Examples
    --------
    >>> net = SpectrumLSTM(channels=32)
    >>> tuple(net(torch.zeros(2, 8, 32)).shape)
    (2, 8, 32)
    """

    def __init__(self, channels: int, hidden: int = 128, horizon: int = HORIZON, scale: float = 100.0) -> None:
        super().__init__()
        self.channels, self.hidden, self.horizon, self.scale = channels, hidden, horizon, scale
        self.lstm = torch.nn.LSTM(channels, hidden, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(hidden, horizon * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x * self.scale)
        delta = self.head(out[:, -1]).reshape(x.shape[0], self.horizon, self.channels) / self.scale
        return typing.cast(torch.Tensor, x[:, -1:, :] + delta)

    def config(self) -> dict[str, typing.Any]:
        return {"channels": self.channels, "hidden": self.hidden, "horizon": self.horizon, "scale": self.scale}


# --- storage -----------------------------------------------------------------------------------------


def save_model(net: WeightForecaster | SpectrumLSTM, name: str, version: str, recipe: typing.Mapping[str, typing.Any], directory: pathlib.Path = MODELS_DIR,
               *, extra: typing.Mapping[str, typing.Any] | None = None) -> pathlib.Path:
    """Write ``<name>.pt`` and ``<name>.json`` (format_version, name, version, sha256, recipe, created, config) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / f"{name}.pt"
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, weights_path)
    metadata = {"format_version": FORMAT_VERSION, "name": name, "version": version, "kind": type(net).__name__, "config": net.config(),
                "weights_file": weights_path.name, "sha256": sha256_of(weights_path), "recipe": dict(recipe),
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **dict(extra or {})}
    json_path = directory / f"{name}.json"
    json_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return json_path


def read_metadata(name_or_path: str | pathlib.Path) -> dict[str, typing.Any]:
    """The JSON of a shipped model (by name, e.g. ``"weights_v1"``) or of a JSON file."""
    path = pathlib.Path(name_or_path)
    json_path = path if path.suffix == ".json" else MODELS_DIR / f"{name_or_path}.json"
    if not json_path.is_file():
        shipped = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
        raise FileNotFoundError(f"no forecast model {name_or_path!r}: {json_path} does not exist; shipped models: {shipped}")
    try:
        metadata = dict(json.loads(json_path.read_text()))
    except json.JSONDecodeError as e:
        raise ModelIntegrityError(f"{json_path} is not valid JSON: {e}") from e
    for key in ("format_version", "name", "version", "sha256", "recipe", "created", "kind", "config", "weights_file"):
        if key not in metadata:
            raise ModelIntegrityError(f"{json_path} lacks {key!r}; remake it with python -m nion_autoem_forecast.train")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ModelIntegrityError(f"{json_path} has format_version {metadata['format_version']!r}; this code reads {FORMAT_VERSION}")
    metadata["json_path"] = str(json_path)
    return metadata


def load_model(name_or_path: str | pathlib.Path = "weights_v1") -> WeightForecaster | SpectrumLSTM:
    """A shipped network, its checksum verified (``torch.load(weights_only=True)``).

    Examples
    --------
    >>> net = load_model("weights_v1")
    >>> type(net).__name__, net.horizon
    ('WeightForecaster', 8)
    """
    metadata = read_metadata(name_or_path)
    weights_path, _ = verified_weights(pathlib.Path(metadata["json_path"]), metadata, error=ModelIntegrityError, checksum_key="sha256",
                                       remedy="remake it with python -m nion_autoem_forecast.train")
    config = dict(metadata["config"])
    net: WeightForecaster | SpectrumLSTM
    if metadata["kind"] == "WeightForecaster":
        net = WeightForecaster(config["lookback"], config["hidden"], config["horizon"], tuple(config["quantiles"]))
    elif metadata["kind"] == "SpectrumLSTM":
        net = SpectrumLSTM(config["channels"], config["hidden"], config["horizon"], config["scale"])
    else:
        raise ModelIntegrityError(f"{metadata['json_path']}: unknown kind {metadata['kind']!r}")
    state = torch.load(weights_path, weights_only=True, map_location="cpu")
    net.load_state_dict(state)
    net.eval()
    return net
