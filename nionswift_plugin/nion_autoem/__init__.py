"""Swift discovers nion-autoem here: the extension registers the panels; run() adds the digital twins."""

from __future__ import annotations

import typing

from nion.utils import Registry

from nion_autoem.swift import models_panel
from nion_autoem.swift import panel
from nion_autoem.swift import tile_panel


class AutonomousExperimentExtension:
    """Registers the nion-autoem panels with Swift and removes them at shutdown."""

    extension_id = "nion.autoem"

    def __init__(self, api_broker: typing.Any) -> None:
        panel.register_panel()
        tile_panel.register_panel()
        models_panel.register_panel()

    def close(self) -> None:
        models_panel.unregister_panel()
        tile_panel.unregister_panel()
        panel.unregister_panel()


def run() -> None:
    """Give the simulated microscope our digital-twin samples; leave a real microscope alone."""
    from nion_autoem.swift import usim_twin as usim

    stem = Registry.get_component("stem_controller")
    if stem is not None and getattr(stem, "instrument_id", None) == usim.INSTRUMENT_ID:
        usim.install_in_swift(sample="mos2")
