"""Swift discovers nion-autoem here: the extension registers the panels, nothing else."""

from __future__ import annotations

import typing

from nion_autoem.swift import panel


class AutonomousExperimentExtension:
    """Registers the nion-autoem panels with Swift and removes them at shutdown."""

    extension_id = "nion.autoem"

    def __init__(self, api_broker: typing.Any) -> None:
        panel.register_panel()

    def close(self) -> None:
        panel.unregister_panel()
