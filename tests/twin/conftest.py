"""The twin tests run on the shared headless harness, with the twin as the instrument."""

from __future__ import annotations

import typing

import pytest

from nion_autoem.swift import usim_twin as usim
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.session import leaked_components


class TwinHarness(UsimSession):
    """A running twin instrument with a document controller, as Swift would have it."""

    def __init__(self, configuration: usim.TwinConfiguration) -> None:
        from nion.instrumentation import HardwareSource

        super().__init__(configuration)
        manager = HardwareSource.HardwareSourceManager()
        self.stem = configuration.instrument
        self.scan = manager.get_hardware_source_for_hardware_source_id("usim_scan_device")
        self.eels = manager.get_hardware_source_for_hardware_source_id("usim_eels_camera")
        self.ronchigram = manager.get_hardware_source_for_hardware_source_id("usim_ronchigram_camera")


@pytest.fixture
def twin_harness() -> typing.Iterator[typing.Callable[..., TwinHarness]]:
    """Factory: ``twin_harness(sample="mos2", seed=0, ...)`` gives a running harness, closed after the test."""
    opened: list[TwinHarness] = []

    def make(sample: str | int = "mos2", **kwargs: typing.Any) -> TwinHarness:
        harness = TwinHarness(usim.create_configuration(sample, **kwargs))
        opened.append(harness)
        return harness

    yield make
    for harness in reversed(opened):
        harness.close()
    assert leaked_components() == {}, f"components left registered: {leaked_components()}"
