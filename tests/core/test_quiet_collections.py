"""Full garbage collections stay off while nion-autoem works in Swift, and come back when it is done."""

from __future__ import annotations

import gc
import pathlib
import time
import typing
import weakref

import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.runner import RunState
from nion_autoem.swift import quiet_collections
from nion_autoem.swift.console import start_experiment


def test_holds_nest_and_the_last_release_gives_the_objects_back() -> None:
    base = quiet_collections.holders()  # a run of an earlier test may still be waiting for its results to be shown
    quiet_collections.hold()
    frozen = gc.get_freeze_count()
    assert quiet_collections.holders() == base + 1 and frozen > 1000  # everything that existed is out of the collector's walk
    with quiet_collections.quiet_collections():
        assert quiet_collections.holders() == base + 2
        made_inside = [object() for _ in range(10)]
        assert gc.get_freeze_count() == frozen  # a nested hold freezes nothing more
    assert quiet_collections.holders() == base + 1 and gc.get_freeze_count() == frozen
    quiet_collections.release()
    assert quiet_collections.holders() == base
    assert (gc.get_freeze_count() == 0) == (base == 0)
    assert len(made_inside) == 10


def test_a_cycle_made_before_the_hold_is_collected_after_the_release() -> None:
    class Node:
        other: typing.Any = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    if quiet_collections.holders():
        pytest.fail(f"{quiet_collections.holders()} hold(s) left by earlier tests: a run's results were never shown (pump the session)")
    with quiet_collections.quiet_collections():
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: the cycle waits
    gc.collect()
    assert gone() is None


def test_release_without_hold_is_refused() -> None:
    with pytest.raises(RuntimeError, match="without hold"):
        quiet_collections.release()


def test_a_run_in_swift_holds_collections_off_until_its_results_are_shown(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    plan = PointSpectroscopy(points=2, refine_points=0, exposure_ms=10.0, survey_frame=ScanFrame((64, 64), 16.0))
    runner = start_experiment(plan, window=usim_session.document_controller, run_dir=tmp_path / "run")
    assert quiet_collections.holders() == 1 and gc.get_freeze_count() > 0
    usim_session.pump_until_done(runner, 60)
    assert runner.state is RunState.FINISHED, runner.progress.message
    deadline = time.time() + 10
    while quiet_collections.holders() and time.time() < deadline:
        usim_session.pump(0.05)
    assert quiet_collections.holders() == 0 and gc.get_freeze_count() == 0
    titles = [item.title for item in usim_session.document_model.data_items]
    assert any(runner.run_id in title for title in titles)  # the results were in the document before the release
