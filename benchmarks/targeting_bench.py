"""Beam targeting on the MoS2 twin with beam damage and drift, scored against the ground truth.

Each run surveys a 3 nm field of the twin, picks S2 columns along a line with
ELIT, and lets :class:`~nion_autoem.plans.beam_targeting.BeamTargeting`
transform them one by one through the real runner and ``SwiftMicroscope`` on
usim.  A thin wrapper around the microscope notes the twin's clock before every
ADF trace, so each detection can be placed against the true ejection.

Metrics:

- ``success_frac``: targeted columns that lost at least one S atom;
- ``collateral_frac``: untargeted S columns in the field that changed;
- ``false_detection_frac``: alarms raised before the target's true ejection
  (or with none at all);
- ``detect_latency_samples``: median of alarm sample minus true ejection sample;
- ``median_dose_to_event``: median electrons on target up to the detected
  change (``median_dose_to_event_e_per_A2`` gives the twin's areal dose at the
  true event);
- ``emptied_frac``: targets that lost both S atoms (S2 -> empty instead of S1);
- time per target (wall clock, this machine).

Usage: ``python benchmarks/targeting_bench.py [--seeds 4] [--targets 8] [--drift-nm-per-min 0.5]``.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import typing

import numpy

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
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
    """Delegates to a SwiftMicroscope; notes the twin clock at each trace and the truth after the survey."""

    def __init__(self, scope: SwiftMicroscope, configuration: TwinConfiguration) -> None:
        self.scope = scope
        self.configuration = configuration
        self.trace_starts: list[tuple[float, tuple[float, float] | None]] = []
        self.truth_after_survey: AtomGroundTruth | None = None

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self.scope, name)

    def survey(self, *args: typing.Any, **kwargs: typing.Any) -> Measurement:
        m = self.scope.survey(*args, **kwargs)
        if self.truth_after_survey is None:
            self.truth_after_survey = mos2_twin(self.configuration).ground_truth()
        return m

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        self.trace_starts.append((self.configuration.clock.now_s, self.scope.probe_position_nm))
        return self.scope.adf_trace(samples, sample_time_us, channel=channel)


def run_once(seed: int, targets: int, drift_nm_per_min: float) -> dict[str, typing.Any]:
    angle = 2 * math.pi * seed / 7
    drift = (drift_nm_per_min / 60 * math.sin(angle), drift_nm_per_min / 60 * math.cos(angle))
    configuration = create_configuration("mos2", seed=seed, drift_nm_per_s=drift)
    frame = ScanFrame((256, 256), fov_nm=3.0)
    settings = TargetingSettings(frame, line=((0.0, -1.2), (0.0, 1.2), 0.35), max_targets=targets)
    with UsimSession(configuration) as session:
        scope = ClockedMicroscope(session.microscope(), configuration)
        plan = BeamTargeting(settings)
        runner = ExperimentRunner(scope, plan, run_dir=f"/tmp/nion-autoem-targeting-bench/{seed}-{time.time_ns()}", sink=MemorySink())
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
    # Place every alarm against the true ejection of its column, on the trace's own sample clock.
    starts = iter(scope.trace_starts)
    latencies: list[int] = []
    false_alarms = 0
    alarms = 0
    for target, column in zip(plan.targets, targeted, strict=True):
        chunk_starts = [next(starts)[0] for _ in range(math.ceil(len(target.trace) / settings.chunk_samples))] if target.trace else []
        if target.alarm_sample is None:
            continue
        alarms += 1
        first = next((e for e in events if e.column_id == column and e.time_s >= (chunk_starts[0] if chunk_starts else 0.0)), None)
        if first is None:
            false_alarms += 1
            continue
        chunk = max(i for i, t0 in enumerate(chunk_starts) if t0 <= first.time_s + 1e-12)
        event_sample = chunk * settings.chunk_samples + int((first.time_s - chunk_starts[chunk]) / sample_s)
        if target.alarm_sample < event_sample:
            false_alarms += 1
        else:
            latencies.append(target.alarm_sample - event_sample)
    dose_at_event = [e.dose_e_per_A2 for e in events if e.column_id in targeted and e.before == "S2"]
    return {"targets": len(plan.targets), "success": sum(success), "emptied": emptied, "untargeted": int(untargeted.sum()), "collateral": int((changed & untargeted).sum()),
            "alarms": alarms, "false_alarms": false_alarms, "latencies": latencies, "wall_s": wall,
            "dose_to_event_e": [t.dose_to_event_e for t in plan.targets if t.dose_to_event_e is not None], "dose_at_event_e_per_A2": dose_at_event,
            "summary": plan.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--drift-nm-per-min", type=float, default=0.5)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)

    runs = []
    for seed in range(args.seeds):
        result = run_once(seed, args.targets, args.drift_nm_per_min)
        print(f"seed {seed}: {result['success']}/{result['targets']} transformed, collateral {result['collateral']}/{result['untargeted']}, "
              f"false alarms {result['false_alarms']}/{result['alarms']}, latencies {result['latencies']}, {result['wall_s']:.1f} s", flush=True)
        runs.append(result)
    targets = sum(r["targets"] for r in runs)
    latencies = [x for r in runs for x in r["latencies"]]
    doses = [x for r in runs for x in r["dose_to_event_e"]]
    areal = [x for r in runs for x in r["dose_at_event_e_per_A2"]]
    summary = {
        "success_frac": round(sum(r["success"] for r in runs) / max(targets, 1), 4),
        "collateral_frac": round(sum(r["collateral"] for r in runs) / max(sum(r["untargeted"] for r in runs), 1), 4),
        "false_detection_frac": round(sum(r["false_alarms"] for r in runs) / max(sum(r["alarms"] for r in runs), 1), 4),
        "detect_latency_samples": float(statistics.median(latencies)) if latencies else None,
        "median_dose_to_event": float(statistics.median(doses)) if doses else None,
        "median_dose_to_event_e_per_A2": float(statistics.median(areal)) if areal else None,
        "max_latency_samples": max(latencies) if latencies else None,
        "emptied_frac": round(sum(r["emptied"] for r in runs) / max(targets, 1), 4),
        "time_per_target_s": round(sum(r["wall_s"] for r in runs) / max(targets, 1), 3),
        "targets": targets, "seeds": args.seeds, "drift_nm_per_min": args.drift_nm_per_min,
        "untargeted_s_columns": sum(r["untargeted"] for r in runs), "collateral_columns": sum(r["collateral"] for r in runs),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
