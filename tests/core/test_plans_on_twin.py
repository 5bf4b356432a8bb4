"""Plans on the MoS2 twin: the README's composition, a crash mid-dwell that resumes without dose twice, dry runs of every experiment."""

from __future__ import annotations

import pathlib
import typing

import numpy
import pytest

from nion_autoem.actions import Survey
from nion_autoem.dry_run import dry_run
from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plan import Plan
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.plans.atom_finding import AtomFinding
from nion_autoem.plans.beam_targeting import BeamTargeting
from nion_autoem.plans.beam_targeting import TargetingSettings
from nion_autoem.plans.dkl_spectroscopy import DKLSettings
from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
from nion_autoem.plans.dkl_spectroscopy import band_integral
from nion_autoem.plans.subplans import find_atoms
from nion_autoem.plans.subplans import spectra_at
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration
from nion_autoem.twin import lattice
from tests.core.plans import dwell_series
from tests.core.test_journal import crash_a_run
from tests.twins import mos2_twin

ROOT = pathlib.Path(__file__).resolve().parents[2]


# The composition the README shows, verbatim apart from the test's own names.
@plan("s1-spectra")
def s1_spectra(field_nm: float = 3.0, exposure_ms: float = 10.0, most: int = 6) -> PlanGenerator:
    frame = yield Survey(ScanFrame((256, 256), field_nm), label="survey")
    atoms = yield from find_atoms(frame)
    spectra = yield from spectra_at(atoms.positions_nm("S1")[:most], exposure_ms)
    return f"{len(spectra)} spectra on S1 columns ({atoms.counts()['S1']} S1 found)"


def test_the_readme_composition_runs_on_the_twin(tmp_path: pathlib.Path) -> None:
    configuration = create_configuration("mos2", seed=5, s_cross_section_barn=0.0)
    with UsimSession(configuration) as session:
        truth = mos2_twin(configuration).ground_truth()
        sink = MemorySink()
        runner = ExperimentRunner(session.microscope(), s1_spectra(), run_dir=tmp_path / "run", sink=sink)
        session.run_until_done(runner, timeout=120)
    assert runner.state is RunState.FINISHED, runner.progress.message
    record = read_journal(tmp_path / "run")
    spectra = [s for s in record.steps if s.action.kind == "acquire"]
    assert 1 <= len(spectra) <= 6 and runner.progress.message.startswith(f"{len(spectra)} spectra on S1 columns")
    # every spectrum was taken on a column the twin says is S1
    s1 = truth.position_nm[truth.column_class == lattice.S1]
    for step in spectra:
        assert numpy.min(numpy.linalg.norm(s1 - numpy.asarray(step.entry["position_nm"]), axis=1)) < 0.05
    assert {"frame", "atoms", "uncertainty"} <= set(sink.products)


def test_a_run_killed_mid_dwell_resumes_without_delivering_any_dose_twice(tmp_path: pathlib.Path) -> None:
    run_dir = tmp_path / "run"
    crash_a_run(run_dir, 5, module="tests.core.crashing_twin_run", counting='"kind":"dwell"', into_next_s=0.005, timeout_s=120)
    crashed = read_journal(run_dir)
    assert not crashed.is_complete and len(crashed.steps) >= 6
    done_before = len(crashed.steps)
    # A fresh twin in this process: everything it receives, it receives from the resumed run.
    configuration = create_configuration("mos2", seed=3)
    with UsimSession(configuration) as session:
        twin = mos2_twin(configuration)
        before = twin.electrons_received
        runner = ExperimentRunner(session.microscope(), dwell_series(dwells=12, samples=2000, sample_time_us=10.0), run_dir=run_dir, resume=True)
        session.run_until_done(runner, timeout=120)
        received = twin.electrons_received - before
    assert runner.state is RunState.FINISHED, runner.progress.message
    record = read_journal(run_dir)
    assert [s.step for s in record.steps] == list(range(13))  # survey + 12 dwells, each journaled once
    live = [s for s in record.steps if s.step >= done_before]
    assert len(live) == 13 - done_before
    # the twin's own record: only the live steps reached the sample, none of the replayed ones
    assert received == pytest.approx(sum(s.entry["dose_e"] for s in live), rel=0.02)
    assert record.header["run_id"] and any(e["event"] == "replay complete; continuing live" for e in record.events)


@pytest.mark.parametrize("experiment", ["point", "dkl", "atoms", "targeting"])
def test_the_dry_run_reports_steps_dose_and_path_for_every_experiment(experiment: str) -> None:
    experiments: dict[str, typing.Callable[[], Plan]] = {
        "point": lambda: PointSpectroscopy(points=5, refine_points=2, exposure_ms=20.0),
        "dkl": lambda: DKLSpectroscopy(band_integral((1.0, 2.0)), DKLSettings(patch_size=16, stride=16, max_measurements=6)),
        "atoms": lambda: AtomFinding(frames=2, survey_frame=ScanFrame((128, 128), 3.0)),
        "targeting": lambda: BeamTargeting(TargetingSettings(ScanFrame((128, 128), 3.0), max_targets=2)),
    }
    report = dry_run(experiments[experiment]())
    assert report.ok, report.message
    assert report.steps >= 2 and report.dose_e > 0 and report.beam_on_s > 0 and report.surveyed_frames
    assert numpy.isclose(report.dose_per_region(report.surveyed_frames[0]).sum(), report.dose_e, rtol=0.05)
    if experiment != "atoms":
        assert report.probe_path_nm, "a point experiment plans a probe path"
    assert "steps" in report.summary() and "beam on" in report.summary()
