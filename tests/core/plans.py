"""Small plans for exercising the engine."""

from __future__ import annotations

import time
import typing

import numpy

from nion_autoem.actions import Acquire
from nion_autoem.actions import Dwell
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Report
from nion_autoem.plan import plan
from nion_autoem.replay import ReplayMicroscope


def replay_data(seed: int = 0) -> tuple[numpy.ndarray[typing.Any, typing.Any], ScanFrame, numpy.ndarray[typing.Any, typing.Any]]:
    """A small recorded survey and spectrum image."""
    rng = numpy.random.default_rng(seed)
    frame = ScanFrame((32, 32), fov_nm=8.0)
    return rng.uniform(10, 100, frame.shape), frame, rng.poisson(20, (16, 16, 64)).astype(float)


def replay_scope(seed: int = 0) -> ReplayMicroscope:
    survey, frame, si = replay_data(seed)
    return ReplayMicroscope(survey, frame, spectrum_image=si, energy_axis=(-5.0, 0.5), seed=seed)


class WalkPlan:
    """Survey, then spectra at seeded random positions; optional delay and failure."""

    name = "walk"
    model_version = "walk/1"

    def __init__(self, points: int = 10, *, delay_s: float = 0.0, fail_at: int | None = None, exposure_ms: float = 10.0, seed: int = 1) -> None:
        self.points, self.delay_s, self.fail_at, self.exposure_ms, self.seed = points, delay_s, fail_at, exposure_ms, seed
        self.frame: ScanFrame | None = None
        self.spectra: list[numpy.ndarray[typing.Any, typing.Any]] = []
        self.decisions = 0

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"points": self.points, "exposure_ms": self.exposure_ms, "seed": self.seed}

    def messages(self) -> PlanGenerator:
        self.frame, self.spectra, self.decisions = None, [], 0
        rng = numpy.random.default_rng(self.seed)
        survey = yield Survey()
        self.decisions += 1
        self.frame = survey.frame
        assert self.frame is not None
        yield Report({"survey": True})
        while len(self.spectra) < self.points:
            if self.fail_at is not None and len(self.spectra) == self.fail_at:
                raise RuntimeError("plan exploded on purpose")
            yield Checkpoint()
            pixel = rng.uniform(0, 31, 2)
            spectrum = yield Acquire(tuple(float(v) for v in self.frame.pixel_to_nm(pixel)), self.exposure_ms)  # type: ignore[arg-type]
            self.decisions += 1
            if self.delay_s:
                time.sleep(self.delay_s)
            self.spectra.append(numpy.asarray(spectrum.xdata.data))
            yield Report({"total": float(self.spectra[-1].sum())}, fraction=len(self.spectra) / self.points)
        return f"{len(self.spectra)} spectra"


@plan("dwell-series")
def dwell_series(dwells: int = 100, *, field_nm: float = 2.0, samples: int = 10, sample_time_us: float = 100.0, delay_s: float = 0.0) -> PlanGenerator:
    """Survey a small field, then dwell on its centre again and again (a stand-in for a long dose-delivering experiment)."""
    yield Survey(ScanFrame((64, 64), field_nm), label="survey")
    for index in range(dwells):
        yield Checkpoint()
        trace = yield Dwell((0.0, 0.0), samples, sample_time_us, label=f"dwell {index + 1}")
        yield Report({"mean": float(numpy.mean(trace.xdata.data))})
        if delay_s:
            time.sleep(delay_s)
    return f"{dwells} dwells"
