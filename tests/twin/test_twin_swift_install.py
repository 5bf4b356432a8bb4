"""install_in_swift swaps the stock usim that usim's plug-in registered for the twin one, and back."""

from __future__ import annotations

import pathlib
import typing

from nion.instrumentation import HardwareSource
from nion.instrumentation import camera_base
from nion.instrumentation import scan_base
from nion.utils import Registry

from nion_autoem.swift import usim_twin as usim
from nion_autoem.twin import catalog


def test_install_and_uninstall_in_swift(tmp_path: pathlib.Path) -> None:
    import nionswift_plugin.usim as usim_plugin
    from nionswift_plugin import nion_instrumentation_ui

    nion_instrumentation_ui.configuration_location = tmp_path
    nion_instrumentation_ui.run()
    try:
        usim_plugin.run()  # what Swift does before our plug-in's run()
        stock = Registry.get_component("stem_controller")
        assert stock is not None
        assert len(stock.scan_data_generator.sample_titles) == 3
        configuration = usim.install_in_swift(seed=0)
        try:
            stems = Registry.get_components_by_type("stem_controller")
            assert list(stems) == [configuration.instrument]
            scan = typing.cast("scan_base.ScanHardwareSource | None", HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_scan_device"))
            assert scan is not None and scan.scan_device is configuration.scan_module.device
            generator = configuration.instrument.scan_data_generator
            assert isinstance(generator, usim.TwinScanDataGenerator)
            assert catalog.TITLES["mos2"] in generator.sample_titles
            eels = typing.cast("camera_base.CameraHardwareSource | None", HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("usim_eels_camera"))
            assert eels is not None and eels.camera is configuration.eels_camera_device
        finally:
            usim.uninstall_from_swift()
        restored = list(Registry.get_components_by_type("stem_controller"))
        assert len(restored) == 1 and restored[0] is not configuration.instrument
        assert len(restored[0].scan_data_generator.sample_titles) == 3
    finally:
        usim_plugin.stop()
        nion_instrumentation_ui.stop()
        nion_instrumentation_ui.configuration_location = None
    assert not Registry.get_components_by_type("stem_controller")
    assert not Registry.get_components_by_type("scan_module")
