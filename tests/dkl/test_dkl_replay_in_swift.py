"""DKL replayed on a spectrum image already open in Swift, from the panel, without a microscope."""

from __future__ import annotations

import pathlib
import typing

import numpy
from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift import Facade

from nion_autoem.runner import RunState
from nion_autoem.swift import panel


def spectrum_image(rows: int = 40, cols: int = 40, channels: int = 200) -> DataAndMetadata.DataAndMetadata:
    """A 20 nm spectrum image whose 2 eV peak lives only on a bright square."""
    rng = numpy.random.default_rng(4)
    energies = 0.05 * numpy.arange(channels)
    data = numpy.broadcast_to(100.0 * numpy.exp(-energies / 2.0), (rows, cols, channels)).copy()
    data[10:20, 25:35] += 80.0 * numpy.exp(-0.5 * ((energies - 2.0) / 0.15) ** 2)
    data = rng.poisson(data).astype(float)
    space = Calibration.Calibration(-10.0, 0.5, "nm")
    return DataAndMetadata.new_data_and_metadata(data, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=[space, space, Calibration.Calibration(0.0, 0.05, "eV")],
                                                 data_descriptor=DataAndMetadata.DataDescriptor(False, 2, 1))


def test_the_panel_replays_dkl_on_a_spectrum_image_in_the_document(usim_session: typing.Any, tmp_path: pathlib.Path, monkeypatch: typing.Any) -> None:
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    item = Facade.Library(usim_session.document_model).create_data_item_from_data_and_metadata(spectrum_image(), "my spectrum image")
    usim_session.pump(0.2)
    display_item = usim_session.document_model.get_display_item_for_data_item(item._data_item)
    assert display_item is not None
    usim_session.document_controller.selected_display_panel = None
    usim_session.document_controller.select_display_items_in_data_panel([display_item])
    controller = panel.ExperimentPanelController(usim_session.document_controller)
    try:
        controller.experiment_index.value = 1
        controller.points.value, controller.patch_size.value = 15, 8
        controller.band_low_eV.value, controller.band_high_eV.value = 1.7, 2.3
        controller.replay_on_selected_spectrum_image()
        runner = controller.runner
        assert runner is not None, controller.status.value
        usim_session.pump_until_done(runner, 120)
        assert runner.state is RunState.FINISHED, runner.progress.message
        plan = typing.cast(typing.Any, runner.plan)
        assert len(plan.values) == 15
        # the best measurement lies on the square where the 2 eV peak is
        best = numpy.asarray(plan.agent.positions[plan.measured[int(numpy.argmax(plan.values))]])
        assert 8 <= best[0] <= 22 and 23 <= best[1] <= 37
        titles = [d.title or "" for d in usim_session.document_model.data_items]
        assert any(t.startswith("DKL prediction") for t in titles) and any(t.startswith("DKL measured spectra") for t in titles)
        # a 2D image is not a spectrum image: the panel says so
        image = Facade.Library(usim_session.document_model).create_data_item_from_data_and_metadata(
            DataAndMetadata.new_data_and_metadata(numpy.ones((8, 8))), "an image")
        usim_session.pump(0.2)
        image_display = usim_session.document_model.get_display_item_for_data_item(image._data_item)
        assert image_display is not None
        usim_session.document_controller.select_display_items_in_data_panel([image_display])
        controller.replay_on_selected_spectrum_image()
        assert "(rows, cols, energy)" in (controller.status.value or "")
    finally:
        controller.close()
