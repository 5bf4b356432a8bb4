"""The montage plan on usim's own stage controls, through SwiftMicroscope: the stage's sign convention and the stitch."""

from __future__ import annotations

import pathlib
import typing

import numpy
import pytest

from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.montage import MontageLayout
from nion_autoem.plans.montage import acquire_montage
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState

#: usim's nanoparticles: a 3 x 3 montage of 32 nm tiles with 30 % overlap.
LAYOUT = MontageLayout((0.0, 0.0), (60.0, 60.0), ScanFrame((128, 128), 32.0), 0.3)


@plan("montage-on-usim")
def montage_run(box: dict[str, typing.Any]) -> PlanGenerator:
    box["montage"] = yield from acquire_montage(LAYOUT, pixel_time_us=2.0, max_stage_error_nm=1000.0)


def test_the_stage_sign_is_measured_on_the_instrument(usim_session: typing.Any) -> None:
    from nion_autoem.swift.microscope import measure_stage_sign

    frame = ScanFrame((128, 128), 32.0)
    assert measure_stage_sign(usim_session.microscope(), frame=frame) == -1.0  # usim: the control moves the specimen
    wrong = usim_session.microscope(stage_control_sign=1.0)
    assert measure_stage_sign(wrong, frame=frame) == -1.0  # found from the image, not from the assumption
    assert wrong.stage_position_nm == (0.0, 0.0) and wrong.is_blanked  # put back, beam safe
    with pytest.raises(ValueError, match="stage_control_sign must be -1"):
        usim_session.microscope(stage_control_sign=0.5)


def test_a_montage_on_usims_stage_registers_every_tile_where_it_was_sent(usim_session: typing.Any, tmp_path: pathlib.Path) -> None:
    """usim's stage is perfect, so every fitted tile position should be the commanded one.

    With the stage's sign the wrong way round, each tile showed the sample
    around minus its commanded position: 8 of 12 neighbour pairs failed to
    register and the fit put tiles up to 10 nm off.
    """
    box: dict[str, typing.Any] = {}
    runner = ExperimentRunner(usim_session.microscope(), montage_run(box), run_dir=tmp_path, sink=MemorySink())
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    montage = box["montage"]
    metadata = montage.xdata().metadata["nion_autoem"]["montage"]
    assert metadata["pairs_used"] >= 10, metadata  # of 12 neighbour pairs
    errors = numpy.asarray(montage.fitted_nm) - LAYOUT.positions_nm()
    assert numpy.abs(errors).max() < 0.5, errors  # nm; a 32 nm tile has 0.25 nm pixels
