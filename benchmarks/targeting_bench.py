"""Beam targeting on the MoS2 twin with beam damage and drift, scored against the ground truth.

Each run surveys a 3 nm field of the twin, picks S2 columns along a line with
ELIT, and lets :class:`~nion_autoem.plans.beam_targeting.BeamTargeting`
transform them one by one through the real runner and ``SwiftMicroscope`` on
usim.  Every survey and trace is stamped with the twin's clock (the journal
keeps the stamps), so each detection is placed against the true ejection, and
the run's journal becomes a dose map compared with the twin's own dose record.
Each seed runs at 0.5 nm/min and at 30 nm/min of stage drift.

Metrics (``_30`` suffix: at 30 nm/min; without: at 0.5 nm/min, or over both
where said):

- ``success_frac``: targeted columns that lost at least one S atom;
- ``collateral_frac``: untargeted S columns in the field that changed after
  the first survey (both rates);
- ``false_detection_frac``: events the plan counted (alarms it checked and
  kept) with no true ejection of that column before them (both rates);
- ``slide_alarms``: alarms the excursion showed to be the probe sliding off an
  intact column (not counted as events);
- ``detect_latency_samples`` / ``_max``: samples from the true ejection to the
  alarm sample (median / largest, both rates); ``stop_latency_samples_max``:
  to the moment the beam left the column;
- ``emptied_frac``: targets that lost both S atoms (both rates);
- ``dose_map_error_frac``: sum over the field's columns of
  ``|dose map - twin's dose record|`` over the sum of the twin's record;
- ``median_dose_to_event``: median electrons on target up to the detected change;
- time per target (wall clock, this machine).

Usage: ``python benchmarks/targeting_bench.py [--seeds 8] [--targets 8] [--drift-nm-per-min 0.5 30]``.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import time
import typing

import numpy

from nion_autoem import dose_map
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import ACQUISITION_CLOCK_KEY
from nion_autoem.instrument import Measurement
from nion_autoem.journal import JournalStep
from nion_autoem.journal import read_journal
from nion_autoem.plans.beam_targeting import BeamTargeting
from nion_autoem.plans.beam_targeting import TargetingSettings
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.swift.microscope import SwiftMicroscope
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import TwinConfiguration
from nion_autoem.swift.usim_twin import create_configuration
from nion_autoem.twin import lattice
from nion_autoem.twin.mos2 import AtomGroundTruth
from nion_autoem.twin.mos2 import MoS2Sample


def mos2_twin(configuration: TwinConfiguration) -> MoS2Sample:
    """The configuration's selected twin, which must be the MoS2 sample."""
    twin = configuration.twin
    if not isinstance(twin, MoS2Sample):
        raise RuntimeError(f"the configuration's selected sample is {twin!r}, not the MoS2 twin")
    return twin


class ClockedMicroscope:
    """Delegates to a SwiftMicroscope; notes the ground truth right after the first survey."""

    def __init__(self, scope: SwiftMicroscope, configuration: TwinConfiguration) -> None:
        self.scope = scope
        self.configuration = configuration
        self.truth_after_survey: AtomGroundTruth | None = None

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self.scope, name)

    def survey(self, *args: typing.Any, **kwargs: typing.Any) -> Measurement:
        m = self.scope.survey(*args, **kwargs)
        if self.truth_after_survey is None:
            self.truth_after_survey = mos2_twin(self.configuration).ground_truth()
        return m


def _clock(step: JournalStep) -> tuple[float, float]:
    for info in step.entry.get("data", {}).values():
        stamp = info.get("metadata", {}).get(ACQUISITION_CLOCK_KEY)
        if stamp:
            return float(stamp[0]), float(stamp[1])
    raise RuntimeError(f"step {step.step} ({step.action.label}) carries no twin clock stamp; is the twin's acquisition clock registered?")


def detections(steps: typing.Sequence[JournalStep], sample_s: float) -> list[dict[str, typing.Any]]:
    """The events the plan counted for one target, from its journaled steps: when, and how (trace alarm or excursion)."""
    found: list[dict[str, typing.Any]] = []
    pending: dict[str, typing.Any] | None = None
    for step in steps:
        result = step.entry.get("result", {})
        start, end = _clock(step)
        if step.action.kind == "dwell" and result.get("alarm_in_step") is not None:
            index = int(result["alarm_in_step"])
            samples = int(next(iter(step.entry["data"].values()))["shape"][0])
            pending = {"time_s": start + (index + 1) * sample_s, "beam_off_s": end, "overrun": samples - index - 1, "by": "trace"}
        elif step.action.label.startswith("centre"):
            if "event" in result:
                found.append(pending if pending is not None else {"time_s": end, "beam_off_s": end, "overrun": 0, "by": "excursion"})
                pending = None
            elif "slide" in result and pending is not None:
                found.append({**pending, "by": "slide"})
                pending = None
    if pending is not None:  # an alarm counted without an excursion (tracking off)
        found.append(pending)
    return found


def run_once(seed: int, targets: int, drift_nm_per_min: float) -> dict[str, typing.Any]:
    angle = 2 * math.pi * seed / 7
    drift = (drift_nm_per_min / 60 * math.sin(angle), drift_nm_per_min / 60 * math.cos(angle))
    configuration = create_configuration("mos2", seed=seed, drift_nm_per_s=drift)
    frame = ScanFrame((256, 256), fov_nm=3.0)
    settings = TargetingSettings(frame, line=((0.0, -1.2), (0.0, 1.2), 0.35), max_targets=targets)
    run_dir = pathlib.Path(f"/tmp/nion-autoem-targeting-bench/{seed}-{drift_nm_per_min:g}-{time.time_ns()}")
    with UsimSession(configuration) as session:
        scope = ClockedMicroscope(session.microscope(), configuration)
        plan = BeamTargeting(settings)
        runner = ExperimentRunner(scope, plan, run_dir=run_dir, sink=MemorySink())
        started = time.perf_counter()
        runner.run()
        wall = time.perf_counter() - started
        twin = mos2_twin(configuration)
        before = scope.truth_after_survey
        after = twin.ground_truth()
        events = list(twin.damage_events)
    if runner.error is not None:
        raise RuntimeError(f"seed {seed}: {runner.progress.message}")
    assert before is not None, "the plan never surveyed"
    sample_s = settings.sample_time_us * 1e-6
    # Each target's column is the intact S2 nearest to where the plan aimed at survey time.
    targeted: list[int] = []
    for target in plan.targets:
        d = numpy.linalg.norm(before.position_nm - numpy.asarray(target.position_nm), axis=1)
        targeted.append(int(before.column_id[int(numpy.argmin(d))]))
    is_s = numpy.isin(before.column_class, (lattice.S2, lattice.S1))
    in_field = frame.contains_nm(before.position_nm, margin=0.02)
    changed = after.column_class != before.column_class
    rows = [int(numpy.flatnonzero(before.column_id == c)[0]) for c in targeted]
    success = [bool(changed[r]) for r in rows]
    emptied = sum(int(after.column_class[r] == lattice.EMPTY) for r in rows)
    untargeted = is_s & in_field & ~numpy.isin(before.column_id, targeted)
    # Place every counted event against the true ejection of its column, on the twin's clock.
    record = read_journal(run_dir)
    latencies: list[int] = []
    stop_latencies: list[int] = []
    overruns: list[int] = []
    counted = false_counted = slides = false_slides = 0
    for target, column in zip(plan.targets, targeted, strict=True):
        steps = [s for s in record.steps if s.action.label.endswith(f"target {target.index + 1}")]
        for found in detections(steps, sample_s):
            first = next((e for e in events if e.column_id == column and e.kind == "ejection" and e.time_s <= found["time_s"]), None)
            if found["by"] == "slide":
                slides += 1
                false_slides += first is not None and first.time_s >= _clock(steps[0])[0]
                continue
            counted += 1
            if first is None:
                false_counted += 1
                continue
            latencies.append(int(math.floor((found["time_s"] - first.time_s) / sample_s + 1e-9)))
            stop_latencies.append(int(math.floor((found["beam_off_s"] - first.time_s) / sample_s + 1e-9)))
            overruns.append(int(found["overrun"]))
    # The dose map from the journal against the twin's own record, at the columns in the field (where they were at t = 0).
    dose = dose_map.from_journal(record, frame)
    at_start = after.position_nm - numpy.asarray(twin.drift.offset_nm(after.time_s))
    inside = frame.contains_nm(at_start, margin=0.05)
    mapped = dose.dose_at(at_start[inside]) / 100.0  # e/Å², as the twin records it
    recorded = after.dose_e_per_A2[inside]
    return {"targets": len(plan.targets), "success": sum(success), "emptied": emptied, "untargeted": int(untargeted.sum()), "collateral": int((changed & untargeted).sum()),
            "counted": counted, "false_counted": false_counted, "slides": slides, "false_slides": int(false_slides), "latencies": latencies,
            "stop_latencies": stop_latencies, "overruns": overruns, "wall_s": wall,
            "dose_map_abs_error": float(numpy.abs(mapped - recorded).sum()), "dose_recorded": float(recorded.sum()),
            "dose_to_event_e": [t.dose_to_event_e for t in plan.targets if t.dose_to_event_e is not None],
            "summary": plan.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--drift-nm-per-min", type=float, nargs="+", default=[0.5, 30.0])
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)

    started = time.perf_counter()
    by_rate: dict[float, list[dict[str, typing.Any]]] = {}
    for rate in args.drift_nm_per_min:
        for seed in range(args.seeds):
            result = run_once(seed, args.targets, rate)
            print(f"{rate:g} nm/min seed {seed}: {result['success']}/{result['targets']} transformed, collateral {result['collateral']}/{result['untargeted']}, "
                  f"false events {result['false_counted']}/{result['counted']}, slides {result['slides']}, latencies {result['latencies']}, "
                  f"stop {result['stop_latencies']}, {result['summary']}, {result['wall_s']:.1f} s", flush=True)
            by_rate.setdefault(rate, []).append(result)
    runs = [r for rs in by_rate.values() for r in rs]

    def frac(key: str, of: str, rs: list[dict[str, typing.Any]]) -> float:
        return round(float(sum(r[key] for r in rs)) / max(float(sum(r[of] for r in rs)), 1.0), 4)

    latencies = [x for r in runs for x in r["latencies"]]
    stops = [x for r in runs for x in r["stop_latencies"]]
    doses = [x for r in runs for x in r["dose_to_event_e"]]
    summary: dict[str, typing.Any] = {}
    for rate, rs in by_rate.items():
        suffix = "" if rate == 0.5 else "_30" if rate == 30.0 else f"_{rate:g}"
        summary[f"success_frac{suffix}"] = frac("success", "targets", rs)
        summary[f"false_detection_frac{suffix}"] = frac("false_counted", "counted", rs)
        summary[f"collateral_frac{suffix}"] = frac("collateral", "untargeted", rs)
        summary[f"emptied_frac{suffix}"] = frac("emptied", "targets", rs)
    summary.update({
        "false_detection_frac_all": frac("false_counted", "counted", runs),
        "collateral_frac_all": frac("collateral", "untargeted", runs),
        "emptied_frac_all": frac("emptied", "targets", runs),
        "detect_latency_samples": float(statistics.median(latencies)) if latencies else None,
        "detect_latency_samples_max": max(latencies) if latencies else None,
        "stop_latency_samples_max": max(stops) if stops else None,
        "stop_overrun_samples_max": max((x for r in runs for x in r["overruns"]), default=None),
        "slide_alarms": sum(r["slides"] for r in runs), "slide_alarms_on_real_events": sum(r["false_slides"] for r in runs),
        "dose_map_error_frac": round(sum(r["dose_map_abs_error"] for r in runs) / max(sum(r["dose_recorded"] for r in runs), 1e-30), 4),
        "median_dose_to_event": float(statistics.median(doses)) if doses else None,
        "time_per_target_s": round(sum(r["wall_s"] for r in runs) / max(sum(r["targets"] for r in runs), 1), 3),
        "targets": sum(r["targets"] for r in runs), "seeds": args.seeds, "drift_nm_per_min": list(args.drift_nm_per_min),
        "untargeted_s_columns": sum(r["untargeted"] for r in runs), "collateral_columns": sum(r["collateral"] for r in runs),
        "bench_wall_s": round(time.perf_counter() - started, 1),
    })
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
