"""Remake the shipped forecasters: ``python -m nion_autoem_forecast.train [--quick]``.

Both networks learn from the in-situ twin (:mod:`nion_autoem.twin.insitu`),
series of seeds :data:`TRAIN_SEEDS` (the benchmark and tests use other seeds):

- ``weights_v1`` (:class:`~nion_autoem_forecast.models.WeightForecaster`): the
  weights of each twin series on its directions of change, plus synthetic
  noisy curves (logistic steps of any width and height, ramps, saturating
  approaches, flat series), all in units of their own noise;
- ``lstm_v1`` (:class:`~nion_autoem_forecast.models.SpectrumLSTM`): the
  EELSTM baseline, 8 prepared spectra of the default window in, 8 out.

About 3-5 minutes on 2 cores with 2 torch threads.  ``--quick`` makes a small
set for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import typing

import numpy
import numpy.typing
import torch

from nion_autoem.twin.insitu import parked_probe_series
from nion_autoem_forecast.models import HORIZON
from nion_autoem_forecast.models import MODELS_DIR
from nion_autoem_forecast.models import ChangeComponents
from nion_autoem_forecast.models import SpectrumLSTM
from nion_autoem_forecast.models import WeightForecaster
from nion_autoem_forecast.models import normalized_windows
from nion_autoem_forecast.models import pinball_loss
from nion_autoem_forecast.models import save_model
from nion_autoem_forecast.preprocess import Preprocessor

_NDArray = numpy.typing.NDArray[typing.Any]

#: Twin seeds the shipped networks were trained on; evaluations use seeds outside this range.
TRAIN_SEEDS = range(1000, 1160)


def prepared_twin_series(seeds: typing.Iterable[int], steps: int = 150) -> list[_NDArray]:
    """Prepared spectra (steps, channels) of twin series at a parked probe, one per seed."""
    out = []
    for seed in seeds:
        series = parked_probe_series(seed, steps=steps)
        preprocessor = Preprocessor()
        out.append(numpy.stack([preprocessor.prepare(c, series["energies_eV"]).values for c in series["spectra"]]))
    return out


def synthetic_weight_series(count: int, rng: numpy.random.Generator, steps: int = 160) -> list[_NDArray]:
    """Noisy scalar series (noise 1) with logistic steps, ramps, saturating approaches or nothing."""
    t = numpy.arange(steps, dtype=float)
    out = []
    for _ in range(count):
        kind = rng.choice(["logistic", "logistic", "logistic", "ramp", "saturating", "flat"])
        amplitude = float(numpy.exp(rng.uniform(numpy.log(0.5), numpy.log(80.0)))) * float(rng.choice([-1.0, 1.0]))
        if kind == "logistic":
            center, width = rng.uniform(-20, steps + 20), numpy.exp(rng.uniform(numpy.log(1.5), numpy.log(40.0)))
            shape = 1.0 / (1.0 + numpy.exp(-(t - center) / width))
        elif kind == "ramp":
            shape = (t - rng.uniform(0, steps)) / steps
        elif kind == "saturating":
            start = rng.uniform(0, steps)
            shape = numpy.where(t > start, 1.0 - numpy.exp(-(t - start) / numpy.exp(rng.uniform(numpy.log(2.0), numpy.log(50.0)))), 0.0)
        else:
            shape = numpy.zeros(steps)
        out.append((amplitude * shape + rng.standard_normal(steps))[:, numpy.newaxis])
    return out


def train_weight_forecaster(series: list[_NDArray], *, lookback: int = 16, steps: int = 4000, batch: int = 512, learning_rate: float = 2e-3,
                            seed: int = 0) -> WeightForecaster:
    """Fit a :class:`WeightForecaster` (pinball loss) to windows of ``series`` (each (steps, k))."""
    torch.manual_seed(seed)
    pairs = [normalized_windows(s, lookback, HORIZON) for s in series]
    x = torch.as_tensor(numpy.concatenate([p[0] for p in pairs]), dtype=torch.float32)
    y = torch.as_tensor(numpy.concatenate([p[1] for p in pairs]), dtype=torch.float32)
    net = WeightForecaster(lookback)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, x.shape[0], (batch,), generator=generator)
        optimizer.zero_grad()
        loss = pinball_loss(net(x[index]), y[index])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
    net.eval()
    return net


def lstm_windows(series: list[_NDArray], lookback: int = 8, horizon: int = HORIZON) -> tuple[_NDArray, _NDArray]:
    """EELSTM pairs: ``lookback`` spectra in, the next ``horizon`` out."""
    xs, ys = [], []
    for s in series:
        for t in range(lookback, s.shape[0] - horizon + 1):
            xs.append(s[t - lookback: t])
            ys.append(s[t: t + horizon])
    return numpy.stack(xs), numpy.stack(ys)


def train_lstm(series: list[_NDArray], *, steps: int = 1500, batch: int = 64, learning_rate: float = 2e-3, hidden: int = 64, seed: int = 0) -> SpectrumLSTM:
    """Fit the EELSTM-style :class:`SpectrumLSTM` (mean squared error, as EELSTM) to prepared twin series."""
    torch.manual_seed(seed)
    x_np, y_np = lstm_windows(series)
    x, y = torch.as_tensor(x_np, dtype=torch.float32), torch.as_tensor(y_np, dtype=torch.float32)
    net = SpectrumLSTM(x.shape[-1], hidden=hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, x.shape[0], (batch,), generator=generator)
        optimizer.zero_grad()
        loss = torch.mean((net(x[index]) - y[index]) ** 2) * net.scale ** 2
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
    net.eval()
    return net


def main(argv: typing.Sequence[str] | None = None) -> dict[str, typing.Any]:
    """Train both networks and write them (with JSON) into ``--out`` (default: the package's models folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=MODELS_DIR)
    parser.add_argument("--quick", action="store_true", help="a small run for a smoke test")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = bool(args.quick)
    started = time.time()
    seeds = list(TRAIN_SEEDS)[: 6 if quick else None]
    twin = prepared_twin_series(seeds)
    prepared_s = time.time() - started
    rng = numpy.random.default_rng(0)
    weight_series = [ChangeComponents.fit(s, components=2).weights(s) for s in twin] + synthetic_weight_series(60 if quick else 3000, rng)
    weight_recipe = {"twin_seeds": [seeds[0], seeds[-1]], "twin_steps": 150, "synthetic_series": 60 if quick else 3000, "lookback": 16,
                     "steps": 200 if quick else 4000, "batch": 512, "learning_rate": 2e-3, "loss": "pinball 0.05/0.5/0.95", "seed": 0,
                     "command": "python -m nion_autoem_forecast.train"}
    net = train_weight_forecaster(weight_series, steps=200 if quick else 4000)
    weights_s = time.time() - started - prepared_s
    lstm_recipe = {"twin_seeds": [seeds[0], seeds[-1]], "window_eV": [520.0, 740.0], "step_eV": 1.0, "lookback": 8, "horizon": HORIZON,
                   "steps": 100 if quick else 1500, "batch": 64, "hidden": 64, "learning_rate": 2e-3, "loss": "mean squared error", "seed": 0,
                   "command": "python -m nion_autoem_forecast.train"}
    lstm = train_lstm(twin, steps=100 if quick else 1500, hidden=64)
    lstm_s = time.time() - started - prepared_s - weights_s
    save_model(net, "weights_v1", "1.0", weight_recipe, args.out)
    save_model(lstm, "lstm_v1", "1.0", lstm_recipe, args.out, extra={"window_eV": [520.0, 740.0], "step_eV": 1.0})
    summary = {"prepare_s": round(prepared_s, 1), "weights_s": round(weights_s, 1), "lstm_s": round(lstm_s, 1), "out": str(args.out)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
