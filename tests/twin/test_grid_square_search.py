"""The search plan on usim: montage, classify, go to a candidate through usim's own stage control, correct the stage's error, verify by its edge."""

from __future__ import annotations

import pathlib
import typing

import numpy

from nion_autoem.plans.search import search_plan
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin.stage_sample import EDGES_EV
from nion_autoem.twin.stage_sample import RARE_CLASS
from nion_autoem.twin.stage_twin import GridSquareSample
from tests.montage.helpers import run_montage
from tests.montage.helpers import support_from_truth
from tests.montage.helpers import twin

CORE_LOSS = {"eels_energy_offset_eV": 200.0, "eels_dispersion_eV": 1.0}


def test_a_search_on_usims_stage_finds_and_verifies_a_platelet(twin_harness: typing.Any, tmp_path: pathlib.Path) -> None:
    pure = twin(101, min_rare=8)  # the examples come from another sample, as a person's clicks on yesterday's montage would
    examples, _ = run_montage(pure, tmp_path / "examples")
    support = support_from_truth(pure, examples)
    harness = twin_harness("grid-square", seed=0, **CORE_LOSS)
    grid = harness.configuration.twin
    assert isinstance(grid, GridSquareSample)
    platelet = next(o for o in grid.sample.objects if o.kind == RARE_CLASS)
    centre = (round(platelet.centre_nm[0] / 1000.0) * 1000.0, round(platelet.centre_nm[1] / 1000.0) * 1000.0)
    sink = MemorySink()
    plan = search_plan(centre, (7000.0, 7000.0), support, RARE_CLASS, wanted=1, max_visits=4, tile_fov_nm=4000.0, tile_px=128,
                       verify_edge_eV=EDGES_EV["Co L3"])
    runner = ExperimentRunner(harness.microscope(), plan, run_dir=tmp_path / "search", sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    assert progress.message.startswith("1 of 1"), progress.message
    table = sink.products["visits"].table
    assert table is not None and len(table.rows) >= 1
    # the spectrum that verified it was taken on a platelet (the twin's truth), and no spectrum on anything else passed
    assert grid.spectra and grid.spectra[-1][1] is not None and grid.spectra[-1][1].kind == RARE_CLASS, grid.spectra
    # every stage move landed off target (usim's control plus the twin's imprecise stage), and the plan saw it
    errors = [numpy.hypot(*numpy.subtract(landed, commanded)) for commanded, landed in grid.moves]
    assert max(errors) > 60.0, errors
    assert harness.microscope().is_blanked
