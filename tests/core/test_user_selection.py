"""The item a user selected in Swift's data panel stays selected while a run adds and updates its results."""

from __future__ import annotations

import pathlib
import time
import typing

import numpy
from nion.swift.model import DataItem

from nion_autoem.geometry import ScanFrame
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.runner import RunState
from nion_autoem.swift.console import start_experiment
from nion_autoem.swift.user_selection import keeping_the_selection


def _users_item(usim_session: typing.Any) -> typing.Any:
    item = DataItem.new_data_item(numpy.zeros((32, 32)))
    item.title = "mine"
    usim_session.document_model.append_data_item(item)
    usim_session.pump(0.1)
    return usim_session.document_model.get_display_item_for_data_item(item)


def test_a_run_leaves_the_users_data_panel_selection_where_it_was(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    controller = usim_session.document_controller
    mine = _users_item(usim_session)
    controller.selected_display_panel = None  # as a click in the data panel does
    controller.select_display_items_in_data_panel([mine])
    assert list(controller.selected_display_items) == [mine]
    # two runs: the second updates the session's dose map made by the first, which moves it to the top of the data panel
    for name in ("first", "second"):
        runner = start_experiment(PointSpectroscopy(points=2, refine_points=0, exposure_ms=10.0, survey_frame=ScanFrame((64, 64), 16.0)),
                                  window=controller, run_dir=tmp_path / name)
        seen: list[list[str]] = []
        deadline = time.time() + 60
        while (not runner.state.is_final or int(getattr(runner.sink, "pending", 0))) and time.time() < deadline:
            usim_session.pump(0.02)
            seen.append([item.displayed_title for item in controller.selected_display_items])  # what the Inspector shows after each refresh
        assert runner.state is RunState.FINISHED, runner.progress.message
        assert seen and all(titles == ["mine"] for titles in seen), [titles for titles in seen if titles != ["mine"]][:3]
    titles = [item.title for item in usim_session.document_model.data_items]
    assert "Dose map (this session)" in titles and sum(runner.run_id in title for title in titles) >= 2


def test_a_selection_in_a_display_panel_is_left_alone(usim_session: typing.Any) -> None:
    controller = usim_session.document_controller
    mine = _users_item(usim_session)
    controller.selected_display_panel = None
    controller.select_display_items_in_data_panel([mine])
    with keeping_the_selection(controller):
        controller.select_display_items_in_data_panel([])  # a change that moved the selection
    assert list(controller.selected_display_items) == [mine]
    # a click on an image makes its display panel the selection: that one is not the data panel's to restore
    assert controller.workspace_controller is not None
    controller.selected_display_panel = controller.workspace_controller.display_panels[0]
    with keeping_the_selection(controller):
        controller.selected_display_panel = None
        controller.select_display_items_in_data_panel([])
    assert list(controller.selected_display_items) == []
