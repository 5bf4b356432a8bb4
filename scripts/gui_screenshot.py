"""Launch the real Nion Swift GUI with nion-autoem and usim, show the panel, then say when to take the picture.

Run by scripts/gui_screenshot.sh under Xvfb.  This is a small launcher that does
what ``nionui nionui_app.nionswift`` does (``nionui_app/nionswift/main.py``),
with three additions:

* it starts from a pre-made profile holding one project, so Swift opens a
  document window at once instead of the project chooser;
* once the window exists it shows the "Autonomous Experiment" dock panel (and
  usim's scan control panel) that Swift registers but hides in a fresh profile;
* it optionally starts usim's scan, puts the live image in the display panel,
  and writes ``--ready-file`` after ``--settle`` seconds so the shell script
  knows the screen is worth capturing.  ``--quit-after`` is a safety net: the
  application exits by itself in case the shell script never kills it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import pathlib
import sys
import typing
import uuid
import warnings

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController
    from nion.ui import UserInterface

AUTOEM_PANEL_ID = "nion-autoem-experiment-panel"
# Other panels worth showing beside ours: the usim scan control panel is created
# per scan device by nion_instrumentation_ui with this id prefix.
EXTRA_PANEL_PREFIXES = ("scan-control-panel-",)
SCAN_DEVICE_ID = "usim_scan_device"


def make_profile(profile_dir: pathlib.Path) -> None:
    """Write Profile.nsproj with one empty project and make it the one Swift opens."""
    from nion.swift.model import FileStorageSystem
    from nion.swift.model import Profile

    profile_path = profile_dir / "Profile.nsproj"
    if profile_path.exists():
        return
    profile_dir.mkdir(parents=True, exist_ok=True)
    # Same file header Swift writes when it creates a profile itself.
    profile_path.write_text(json.dumps({"version": FileStorageSystem.PROFILE_VERSION, "uuid": str(uuid.uuid4())}), "utf-8")
    storage_system = FileStorageSystem.make_file_persistent_storage_system(profile_path)
    storage_system.load_properties()
    profile = Profile.Profile(storage_system=storage_system)
    try:
        profile.read_profile()
        project_reference = profile.create_project(profile_dir / "Projects", "nion-autoem demo")
        assert project_reference is not None
        profile.last_project_reference = project_reference.uuid
    finally:
        profile.close()


def fill_screen(document_controller: DocumentController.DocumentController) -> None:
    """Make the window cover the (virtual) screen; without a saved geometry Qt picks a smaller default size."""
    from nion.utils import Geometry

    document_controller.show(size=document_controller.screen_size, position=Geometry.IntPoint(x=0, y=0))


def show_panels(document_controller: DocumentController.DocumentController) -> list[str]:
    """Show our dock panel and the scan control panel; return the ids shown."""
    workspace_controller = document_controller.workspace_controller
    assert workspace_controller is not None
    shown: list[str] = []
    for dock_panel in workspace_controller.dock_panels:
        if dock_panel.panel_id == AUTOEM_PANEL_ID or dock_panel.panel_id.startswith(EXTRA_PANEL_PREFIXES):
            dock_panel.show()  # the same thing the Window menu's toggle action does
            shown.append(dock_panel.panel_id)
    return shown


def start_scan(fov_nm: float | None = None) -> bool:
    """Start usim's scan so the display shows a live image; False when usim is absent."""
    from nion.instrumentation import HardwareSource
    from nion.instrumentation import scan_base

    hardware_source = typing.cast("scan_base.ScanHardwareSource | None", HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(SCAN_DEVICE_ID))
    if hardware_source is None:
        return False
    if fov_nm is not None:
        frame_parameters = hardware_source.get_current_frame_parameters()
        frame_parameters.fov_nm = fov_nm
        hardware_source.set_current_frame_parameters(frame_parameters)
    hardware_source.start_playing()
    return True


def show_live_image(document_controller: DocumentController.DocumentController) -> None:
    """Put the newest display item (the live scan, once it has a frame) in the display panel."""
    display_items = document_controller.document_model.display_items
    if display_items:
        document_controller.show_display_item(display_items[-1], request_focus=False)


def stop_scan() -> None:
    from nion.instrumentation import HardwareSource

    hardware_source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(SCAN_DEVICE_ID)
    if hardware_source is not None and hardware_source.is_playing:
        hardware_source.stop_playing()


def parse_args(argv: typing.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile-dir", type=pathlib.Path, required=True, help="throwaway folder for Profile.nsproj and its project")
    parser.add_argument("--ready-file", type=pathlib.Path, required=True, help="written when the window is ready to be captured")
    parser.add_argument("--scan", action=argparse.BooleanOptionalAction, default=True, help="start usim's scan first (default: yes)")
    parser.add_argument("--fov-nm", type=float, default=None, help="scan field of view (default: leave usim's)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds between opening the window and writing --ready-file")
    parser.add_argument("--quit-after", type=float, default=90.0, help="seconds after which the application exits by itself")
    return parser.parse_args(argv)


def main(argv: typing.Sequence[str]) -> int:
    args = parse_args(argv)

    # Swift's Qt user interface needs PySide6 (nionui-launcher is the other way, not used here): say so plainly.
    if importlib.util.find_spec("PySide6") is None:
        print("gui_screenshot: PySide6 is not installed (pip install PySide6-Essentials)", file=sys.stderr)
        return 2

    # Imported here so --help works without Swift's start-up cost.
    from nion.swift import Application
    from nion.swift import Facade
    from nion.ui import Application as ApplicationUI

    default_profile_dir: pathlib.Path = args.profile_dir.resolve()
    ready_file: pathlib.Path = args.ready_file
    make_profile(default_profile_dir)

    class ScreenshotApplication(Application.Application):
        """Swift's application; start() opens our profile and then arranges the window."""

        def start(self, *, profile_dir: pathlib.Path | None = None, profile: typing.Any = None) -> bool:
            # profile_dir is Application.start's public (test) hook for the profile location.
            result = super().start(profile_dir=profile_dir or default_profile_dir, profile=profile)
            if not self.document_controllers:
                logging.error("gui_screenshot: Swift opened no document window")
                return result
            document_controller = self.document_controllers[0]
            fill_screen(document_controller)
            logging.info("gui_screenshot: showing panels %s", show_panels(document_controller))
            event_loop = document_controller.event_loop
            if args.scan:
                if start_scan(args.fov_nm):
                    # The live data item appears with the first frame; show it a little later.
                    event_loop.call_later(max(1.0, args.settle / 2), show_live_image, document_controller)
                else:
                    logging.warning("gui_screenshot: no %s; showing the UI without a scan", SCAN_DEVICE_ID)

            def ready() -> None:
                ready_file.write_text("ready\n", "utf-8")
                logging.info("gui_screenshot: ready for the screenshot")

            def quit_app() -> None:
                # Closing the only window quits Swift.  Queued, because a close requested from a task
                # of the window's own event loop would close that loop under the running task.
                document_controller.queue_request_close()

            event_loop.call_later(args.settle, ready)
            # Stop the scan a little before closing so its acquisition thread has wound down.
            event_loop.call_later(max(0.0, args.quit_after - 3.0), stop_scan)
            event_loop.call_later(args.quit_after, quit_app)
            return result

    logging.basicConfig(level=logging.INFO)
    warnings.simplefilter("always", RuntimeWarning)
    Facade.initialize()
    ui: UserInterface.UserInterface = ApplicationUI.make_ui({"qt": None})
    app = ScreenshotApplication(ui)
    app.initialize(use_root_dir=False)
    app.run()
    # Swift has shut down (windows closed, plug-ins unloaded, profile closed).  After a scan, the
    # interpreter's final garbage collection aborts in PySide6 ("none_dealloc: deallocating None"),
    # an upstream refcount bug outside this repo; skip finalization so the exit status stays 0.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
