"""Search and go-to-target on the stage-scale twin: a support set from another sample, candidates visited, stage errors corrected, targets verified."""

from __future__ import annotations

import math
import pathlib

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.plans.search import Visit
from nion_autoem.plans.search import search_plan
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin.stage_sample import EDGES_EV
from nion_autoem.twin.stage_sample import RARE_CLASS
from nion_autoem_fewshot import SupportSet
from tests.montage.helpers import OVERVIEW
from tests.montage.helpers import SIZE_NM
from tests.montage.helpers import landing_errors_nm
from tests.montage.helpers import montage_offset
from tests.montage.helpers import run_montage
from tests.montage.helpers import support_from_truth
from tests.montage.helpers import twin


@pytest.fixture(scope="module")
def support(tmp_path_factory: pytest.TempPathFactory) -> SupportSet:
    scope = twin(101, min_rare=8)  # another sample than the one searched
    montage, _ = run_montage(scope, tmp_path_factory.mktemp("support"))
    return support_from_truth(scope, montage)


def test_the_search_finds_rare_platelets_far_better_than_a_random_pick(tmp_path: pathlib.Path, support: SupportSet) -> None:
    scope = twin(7, min_rare=6)
    sink = MemorySink()
    plan = search_plan((0.0, 0.0), (SIZE_NM - 1000.0, SIZE_NM - 1000.0), support, RARE_CLASS, wanted=3, max_visits=10,
                       verify_edge_eV=EDGES_EV["Co L3"], limits=scope.stage_limits_nm)
    runner = ExperimentRunner(scope, plan, run_dir=tmp_path / "run", sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    hits = [b is not None and b.kind == RARE_CLASS for _, b in scope.spectra]
    assert sum(hits) >= 3 and progress.message.startswith("3 of 3")
    # a random pick lands on a platelet about as often as platelets cover the region
    platelet_area = sum(math.pi * o.radius_nm**2 for o in scope.sample.objects if o.kind == RARE_CLASS) / SIZE_NM**2
    assert sum(hits) / len(hits) > 5 * platelet_area
    # every verified target is truly a platelet: no false targets
    table = sink.products["visits"].table
    assert table is not None
    verified = [row[-1] for row in table.rows if row[-2] is not None]  # visits that took a spectrum, in order
    assert all(h for h, v in zip(hits, verified, strict=True) if v)
    assert len({id(b) for _, b in scope.spectra if b is not None and b.kind == RARE_CLASS}) >= 3  # three different platelets
    assert {"montage", "montage-tile_classes", "target-1", "target-3"} <= set(sink.products)


def test_registration_on_the_montage_puts_the_beam_within_5_nm(tmp_path: pathlib.Path, support: SupportSet) -> None:
    from nion_autoem.plan import PlanGenerator
    from nion_autoem.plan import plan
    from nion_autoem.plans.search import search_montage

    scope = twin(7, min_rare=6)
    montage, _ = run_montage(scope, tmp_path / "montage", tile=OVERVIEW)
    tiles = len(scope.surveys)
    box: dict[str, list[Visit]] = {}

    @plan("visit")
    def visit() -> PlanGenerator:
        box["visits"] = yield from search_montage(montage, support, RARE_CLASS, wanted=4, max_visits=4)

    assert ExperimentRunner(scope, visit(), run_dir=tmp_path / "run", sink=MemorySink()).run().state is RunState.FINISHED
    raw, corrected = landing_errors_nm(scope, montage, box["visits"], tiles)
    print("beam landing error raw", numpy.round(raw, 1), "after registration", numpy.round(corrected, 1))
    assert len(corrected) == 4 and numpy.median(raw) > 50.0 and numpy.median(corrected) < 5.0, (raw, corrected)  # the 5 nm
    assert corrected.max() < 0.5 * OVERVIEW.pixel_size_nm


def test_a_target_kind_without_examples_is_refused_before_the_beam(tmp_path: pathlib.Path, support: SupportSet) -> None:
    scope = twin(3)
    runner = ExperimentRunner(scope, search_plan((0.0, 0.0), (8000.0, 8000.0), support, "nanotube"), run_dir=tmp_path / "run", sink=MemorySink())
    progress = runner.run()
    assert progress.state is RunState.FAILED and "no examples" in progress.message and scope.surveys == []


def test_autofocus_at_each_target_finds_the_local_height(tmp_path: pathlib.Path) -> None:
    from nion_autoem.plan import PlanGenerator
    from nion_autoem.plan import plan
    from nion_autoem.plans.search import visit_candidates

    scope = twin(8)
    montage, _ = run_montage(scope, tmp_path / "montage")
    platelet = next(o for o in scope.sample.objects if o.kind == RARE_CLASS)
    candidate = tuple(numpy.asarray(platelet.centre_nm) - montage_offset(scope, montage))

    @plan("focus")
    def focus() -> PlanGenerator:
        yield from visit_candidates(montage, [(float(candidate[0]), float(candidate[1]))], wanted=1, max_visits=1, zoom=ScanFrame((128, 128), 1500.0),
                                    focus_half_range_nm=300.0, pixel_time_us=10.0)

    scope.set_defocus(float(scope.sample.height_nm(platelet.centre_nm)) + 250.0)  # far out of focus: blur ~4 nm
    before = abs(scope.defocus_nm - float(scope.sample.height_nm(platelet.centre_nm)))
    assert ExperimentRunner(scope, focus(), run_dir=tmp_path / "run", sink=MemorySink()).run().state is RunState.FINISHED
    after = abs(scope.defocus_nm - float(scope.sample.height_nm(platelet.centre_nm)))
    print("defocus error before", round(before, 1), "after", round(after, 1))
    assert after < 0.5 * before and after <= 100.0  # within one step of the focus series
