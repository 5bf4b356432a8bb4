"""Small policies for exercising the runner."""

from __future__ import annotations

import time
import typing

import numpy

from nion_autoem.actions import Acquire
from nion_autoem.actions import Action
from nion_autoem.actions import Observation
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.products import RunContext
from nion_autoem.replay import ReplayMicroscope


def replay_scope(seed: int = 0) -> ReplayMicroscope:
    rng = numpy.random.default_rng(seed)
    frame = ScanFrame((32, 32), fov_nm=8.0)
    survey = rng.uniform(10, 100, frame.shape)
    si = rng.poisson(20, (16, 16, 64)).astype(float)
    return ReplayMicroscope(survey, frame, spectrum_image=si, energy_axis=(-5.0, 0.5), seed=seed)


class WalkPolicy:
    """Survey, then spectra along a diagonal; optional delay, failure and seeded randomness."""

    name = "walk"
    model_version = "walk/1"

    def __init__(self, points: int = 10, *, delay_s: float = 0.0, fail_at: int | None = None, exposure_ms: float = 10.0, seed: int = 1) -> None:
        self.points, self.delay_s, self.fail_at, self.exposure_ms, self.seed = points, delay_s, fail_at, exposure_ms, seed
        self.frame: ScanFrame | None = None
        self.spectra: list[numpy.ndarray[typing.Any, typing.Any]] = []
        self.decisions = 0
        self.rng = numpy.random.default_rng(seed)

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"points": self.points, "exposure_ms": self.exposure_ms, "seed": self.seed}

    def fraction_done(self) -> float | None:
        return len(self.spectra) / self.points

    def decide(self, context: RunContext) -> typing.Sequence[Action]:
        self.decisions += 1
        if self.fail_at is not None and len(self.spectra) == self.fail_at:
            raise RuntimeError("policy exploded on purpose")
        if self.frame is None:
            return [Survey()]
        if len(self.spectra) >= self.points:
            return []
        pixel = self.rng.uniform(0, 31, 2)
        return [Acquire(tuple(float(v) for v in self.frame.pixel_to_nm(pixel)), self.exposure_ms)]  # type: ignore[arg-type]

    def observe(self, observation: Observation, context: RunContext) -> dict[str, typing.Any]:
        if self.delay_s:
            time.sleep(self.delay_s)
        if observation.measurement.kind == "survey":
            self.frame = observation.measurement.frame
            return {"survey": True}
        self.spectra.append(numpy.asarray(observation.measurement.xdata.data))
        return {"total": float(self.spectra[-1].sum())}
