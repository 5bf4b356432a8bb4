"""Reliability of the engine: stops, kills, resumes, bad inputs, hangs, and a long soak.

Everything runs through the real engine (``ExperimentRunner``) and real
microscopes: recorded data served by ``ReplayMicroscope`` whose acquisitions
take their real dwell time (and end early when the beam is made safe), and
the MoS2 twin on usim for the soak.

Metrics:

- ``stop_to_safe_ms_max``: over ``--stops`` stops at random moments (mid
  survey, mid exposure, mid dwell, while paused), the time from ``stop()`` to
  the beam blanked and the probe unparked; each stop is also checked to have
  left the beam safe *before* ``stop()`` returned;
- ``sigkill_steps_lost_max``: over ``--kills`` SIGKILLs of a run at random
  moments, the steps the run had reported done that its journal lacks (0 means
  nothing but the step in flight is ever lost);
- ``resume_success_frac``: those runs resumed to the end, with a contiguous
  journal and the same decisions as an uninterrupted run;
- ``bad_inputs_clear_frac``: the bad-input table of ``tests/test_bad_inputs.py``
  (each case must raise the expected error with a message that says what was
  wrong and what would be right);
- ``hangs``: runs above that did not end within their time limit;
- ``rss_mb_growth``: resident memory after a soak of ``--soak-hours`` of
  simulated beam time (DKL on recorded data and beam targeting on the twin,
  alternating, at compressed time) minus after its first run.

Usage: ``python benchmarks/reliability_bench.py [--stops 200] [--kills 30] [--soak-hours 2]``.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing

import numpy

from nion_autoem.actions import Acquire
from nion_autoem.actions import Dwell
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.journal import read_journal
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Report
from nion_autoem.plan import plan
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState

ROOT = pathlib.Path(__file__).resolve().parents[1]


class TimedReplay(ReplayMicroscope):
    """Recorded data whose acquisitions take their dwell time, cut short when the beam is made safe."""

    def __init__(self, seed: int = 0) -> None:
        rng = numpy.random.default_rng(seed)
        super().__init__(rng.uniform(10, 100, (32, 32)), ScanFrame((32, 32), 8.0), spectrum_image=rng.poisson(20, (16, 16, 64)).astype(float),
                         energy_axis=(-5.0, 0.5), seed=seed)
        self.safe = threading.Event()
        self.safe_at = 0.0

    def __take(self, seconds: float) -> None:
        self.safe.clear()
        self.safe.wait(seconds)

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        self.__take(32 * 32 * (pixel_time_us or 1.0) * 1e-6)
        return super().survey(frame, channels=channels, pixel_time_us=pixel_time_us)

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        self.__take(exposure_ms * 1e-3)
        return super().acquire_spectrum(exposure_ms)

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        self.__take(samples * sample_time_us * 1e-6)
        return super().adf_trace(samples, sample_time_us, channel=channel)

    def make_safe(self) -> None:
        super().make_safe()
        self.safe_at = time.perf_counter()
        self.safe.set()


@plan("reliability-walk")
def walk(points: int = 40, *, seed: int = 1, exposure_ms: float = 20.0, dwell_samples: int = 200, survey_pixel_time_us: float = 100.0,
         report_to: str = "") -> PlanGenerator:
    """Survey, then spectra and dwells at seeded random positions, each after a checkpoint."""
    rng = numpy.random.default_rng(seed)
    survey = yield Survey(pixel_time_us=survey_pixel_time_us)
    assert survey.frame is not None
    for index in range(points):
        yield Checkpoint()
        position = tuple(float(v) for v in survey.frame.pixel_to_nm(rng.uniform(1, 30, 2)))
        if index % 2:
            measurement = yield Dwell(position, dwell_samples, 100.0, label=f"dwell {index + 1}")  # type: ignore[arg-type]
        else:
            measurement = yield Acquire(position, exposure_ms, label=f"spectrum {index + 1}")  # type: ignore[arg-type]
        yield Report({"total": float(numpy.asarray(measurement.xdata.data).sum())})
        if report_to:
            print(f"done {index + 1}", file=sys.stdout, flush=True)
    return f"{points} points"


def random_stops(count: int) -> tuple[list[float], int, int]:
    """Stop runs at random moments; returns the stop-to-safe times (ms), unsafe returns and hangs."""
    times: list[float] = []
    unsafe = hangs = 0
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        for trial in range(count):
            scope = TimedReplay(trial)
            runner = ExperimentRunner(scope, walk(points=20, seed=trial), run_dir=f"{folder}/{trial}")
            runner.start()
            time.sleep(rng.uniform(0.0, 0.4))
            if trial % 5 == 4:
                runner.pause(immediate=rng.random() < 0.5)
                time.sleep(rng.uniform(0.0, 0.1))
            already_over = runner.state.is_final  # a run may have finished before the stop came
            t0 = time.perf_counter()
            runner.stop()
            if not (scope.is_blanked and scope.probe_position_nm is None):
                unsafe += 1
            if not already_over:
                times.append((scope.safe_at - t0) * 1e3)
            try:
                runner.wait(5.0)
            except TimeoutError:
                hangs += 1
    return times, unsafe, hangs


def kill_and_resume(count: int) -> tuple[list[int], list[bool], int]:
    """SIGKILL child runs at random moments, then resume each; returns steps lost, resume successes and hangs."""
    lost: list[int] = []
    resumed: list[bool] = []
    hangs = 0
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as folder:
        reference = ExperimentRunner(TimedReplay(0), walk(points=30, exposure_ms=5.0, dwell_samples=50, survey_pixel_time_us=1.0),
                                     run_dir=f"{folder}/reference")
        reference.run()
        expected = [s.action for s in read_journal(f"{folder}/reference").steps]
        for trial in range(count):
            run_dir = pathlib.Path(folder) / f"kill-{trial}"
            child = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--child", str(run_dir)], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert child.stdout is not None
            target = rng.randint(1, 25)
            done = 0
            deadline = time.time() + 60
            while done < target and time.time() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                if match := re.match(r"done (\d+)", line):
                    done = int(match.group(1))
            time.sleep(rng.uniform(0.0, 0.02))  # somewhere inside the next step
            child.send_signal(signal.SIGKILL)
            rest = child.stdout.read()
            done = max([done] + [int(m) for m in re.findall(r"done (\d+)", rest)])
            child.wait()
            journaled = read_journal(run_dir)
            # the survey is step 0; point k is step k
            lost.append(max(done - (len(journaled.steps) - 1), 0))
            runner = ExperimentRunner(TimedReplay(0), walk(points=30, exposure_ms=5.0, dwell_samples=50, survey_pixel_time_us=1.0), run_dir=run_dir, resume=True)
            runner.start()
            try:
                progress = runner.wait(60.0)
            except TimeoutError:
                hangs += 1
                resumed.append(False)
                continue
            record = read_journal(run_dir)
            resumed.append(progress.state is RunState.FINISHED and [s.action for s in record.steps] == expected
                           and [s.step for s in record.steps] == list(range(len(expected))))
    return lost, resumed, hangs


def bad_inputs() -> tuple[int, int]:
    """(clear, total) over the bad-input table of the tests."""
    import importlib

    sys.path.insert(0, str(ROOT))
    cases: list[typing.Any] = list(importlib.import_module("tests.test_bad_inputs").CASES)
    clear = 0
    with tempfile.TemporaryDirectory() as folder:
        for case in cases:
            clear += _clear(case, pathlib.Path(folder))
    return clear, len(cases)


def _clear(case: typing.Any, folder: pathlib.Path) -> int:
    """1 when the bad input is refused with the expected error and a message that says what is right."""
    try:
        case.call(folder)
    except case.error as e:
        return int(bool(re.search(case.message, str(e))))
    except Exception:  # the wrong kind of error is an unclear error
        return 0
    return 0


def rss_mb() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def soak(hours: float) -> tuple[float, float, int]:
    """Alternate DKL on recorded data and beam targeting on the twin until ``hours`` of simulated beam time; (rss growth MB, beam hours, runs)."""
    from nion_autoem.plans.beam_targeting import BeamTargeting
    from nion_autoem.plans.beam_targeting import TargetingSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem.plans.dkl_spectroscopy import band_integral
    from nion_autoem.products import MemorySink
    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.usim_twin import create_configuration

    rng = numpy.random.default_rng(3)
    rows, cols = numpy.mgrid[0:128, 0:128]
    survey = 50 + 20 * numpy.cos(rows * 0.7) * numpy.cos(cols * 0.7) + rng.normal(0, 2, (128, 128))
    spectra = rng.poisson(50, (128, 128, 64)).astype(float)
    beam_s, runs, first = 0.0, 0, None
    with tempfile.TemporaryDirectory() as folder, UsimSession(create_configuration("mos2", seed=0)) as session:
        while beam_s < hours * 3600:
            scope = ReplayMicroscope(survey, ScanFrame((128, 128), 40.0), spectrum_image=spectra, energy_axis=(0.0, 0.1), seed=runs)
            dkl = DKLSpectroscopy(band_integral((1.0, 3.0)), DKLSettings(patch_size=16, stride=4, max_measurements=200, exposure_ms=1000.0))
            progress = ExperimentRunner(scope, dkl, run_dir=f"{folder}/dkl-{runs}", sink=MemorySink()).run()
            beam_s += sum(s.entry["dwell_s"] for s in read_journal(f"{folder}/dkl-{runs}").steps)
            targeting = BeamTargeting(TargetingSettings(ScanFrame((128, 128), 2.0, (runs % 5 * 3.0, 0.0)), max_targets=2))
            runner = ExperimentRunner(session.microscope(), targeting, run_dir=f"{folder}/targeting-{runs}", sink=MemorySink())
            session.run_until_done(runner, timeout=300)
            beam_s += sum(s.entry["dwell_s"] for s in read_journal(f"{folder}/targeting-{runs}").steps)
            runs += 1
            if first is None:
                first = rss_mb()
            print(f"soak: run {runs}, {beam_s / 3600:.2f} h of beam, rss {rss_mb():.0f} MB, {progress.message}", flush=True)
    return rss_mb() - (first or rss_mb()), beam_s / 3600, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--soak-hours", type=float, default=2.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ExperimentRunner(TimedReplay(0), walk(points=30, exposure_ms=5.0, dwell_samples=50, survey_pixel_time_us=1.0, report_to="stdout"), run_dir=args.child).run()
        return
    started = time.time()
    stops, unsafe, stop_hangs = random_stops(args.stops)
    print(f"{len(stops)} stops: stop to a safe beam median {statistics.median(stops):.2f} ms, max {max(stops):.2f} ms; "
          f"{unsafe} left the beam unsafe when stop() returned; {stop_hangs} hangs")
    lost, resumed, kill_hangs = kill_and_resume(args.kills)
    print(f"{len(lost)} kills: steps lost beyond the one in flight, max {max(lost)}; resumes that finished with the reference decisions {sum(resumed)}/{len(resumed)}")
    try:
        clear, total = bad_inputs()
    except (ImportError, AttributeError) as e:
        print(f"bad inputs: the table of tests/test_bad_inputs.py is not there ({e})")
        clear, total = 0, 0
    print(f"bad inputs: {clear}/{total} refused with a clear error")
    growth, beam_hours, runs = soak(args.soak_hours)
    print(f"soak: {runs} DKL + {runs} targeting runs, {beam_hours:.2f} h of simulated beam, rss growth {growth:.1f} MB")
    print(json.dumps({"stop_to_safe_ms_max": round(max(stops), 3), "stop_to_safe_ms_median": round(statistics.median(stops), 3), "stops": len(stops),
                      "stops_unsafe_on_return": unsafe, "sigkill_steps_lost_max": max(lost), "kills": len(lost),
                      "resume_success_frac": round(sum(resumed) / len(resumed), 3), "bad_inputs_clear_frac": round(clear / total, 3) if total else None, "bad_inputs": total,
                      "hangs": stop_hangs + kill_hangs, "rss_mb_growth": round(growth, 1), "soak_beam_hours": round(beam_hours, 2), "soak_runs": runs,
                      "wall_s": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
