"""The autofocus sub-plan finds the focus of the MoS2 twin from a through-focus series."""

from __future__ import annotations

import pathlib

from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.subplans import autofocus
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration


@plan("refocus")
def refocus() -> PlanGenerator:
    best = yield from autofocus(20.0, 9, frame=ScanFrame((128, 128), 8.0), pixel_time_us=4.0)
    return f"focus moved by {best:+.3g} nm"


def test_autofocus_brings_a_defocused_probe_back_to_focus(tmp_path: pathlib.Path) -> None:
    with UsimSession(create_configuration("mos2", seed=2, s_cross_section_barn=0.0)) as session:
        scope = session.microscope()
        in_focus = scope.defocus_nm  # the twin is in focus at the instrument's starting C10
        scope.set_defocus(in_focus + 12.0)
        runner = ExperimentRunner(scope, refocus(), run_dir=tmp_path / "run")
        session.run_until_done(runner, timeout=120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        assert abs(scope.defocus_nm - in_focus) <= 2.5, (scope.defocus_nm, in_focus)
    steps = read_journal(tmp_path / "run").steps
    assert [s.action.kind for s in steps].count("survey") == 9 and steps[-1].action.kind == "set_defocus"
    assert abs(steps[-1].entry["result"]["autofocus_nm"] + 12.0) <= 2.5  # journaled with the step that set it
