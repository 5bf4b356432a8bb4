"""Drive the real Swift window as a microscopist would, and measure how responsive it stays.

Run inside Swift's own process by ``tests/gui/test_real_swift.py`` under Xvfb
(Swift's Qt user interface, the plug-in, usim with the digital twins).  The
scenario runs as a coroutine on Swift's UI event loop, so every panel action
happens on the UI thread exactly as a click would; a heartbeat coroutine on
the same loop measures how long the UI thread is ever kept from running.

For each experiment in the panel it: chooses it, types the fields, presses
Dry run, Start, Pause, Resume (where the run is long enough), waits for the
end (or presses Stop), checks that results appeared and that the beam ended
safe, and takes a screenshot.  It also draws point graphics on a survey for
the "points drawn" targeting, and finds atoms in a large image (about 2,000
columns).  It writes ``result.json`` into ``--out``: per experiment the
largest UI stall while it ran, what the panel said, the products, and whether
the beam was blanked and the probe unparked; plus every traceback logged.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
import traceback
import typing

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gui_screenshot  # noqa: E402  (the launcher's profile and panel helpers)

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

PANEL_ID = gui_screenshot.AUTOEM_PANEL_ID


class Heartbeat:
    """Largest gap between two ticks of the UI event loop, in ms, since the last reset.

    A watcher thread samples what the UI thread is doing whenever a tick is
    late, so a stall comes with the code that caused it.
    """

    def __init__(self, period_s: float = 0.02, late_s: float = 0.15) -> None:
        self.period_s = period_s
        self.late_s = late_s
        self.max_gap_ms = 0.0
        self.running = True
        self.last_tick = time.perf_counter()
        self.stall_stacks: dict[str, int] = {}
        self.ui_thread_id = threading.get_ident()
        #: What is being measured now (the experiment's name), and every stall over ``report_ms`` with what the UI thread did in it.
        self.label = ""
        self.report_ms = 250.0
        self.stalls: list[dict[str, typing.Any]] = []
        self.current: list[str] = []
        #: Garbage collections that held every thread for over ``report_gc_ms``: (label, generation, ms, thread name).
        self.report_gc_ms = 50.0
        self.collections: list[dict[str, typing.Any]] = []
        self.__collection_started = 0.0

    def time_collection(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook: a collection holds the interpreter, so a long one stalls the UI whichever thread runs it."""
        if phase == "start":
            self.__collection_started = time.perf_counter()
            return
        ms = (time.perf_counter() - self.__collection_started) * 1e3
        if ms > self.report_gc_ms:
            self.collections.append({"label": self.label, "generation": info.get("generation"), "ms": round(ms, 1),
                                     "collected": info.get("collected"), "thread": threading.current_thread().name})

    def reset(self) -> float:
        gap, self.max_gap_ms = self.max_gap_ms, 0.0
        return gap

    async def beat(self) -> None:
        self.ui_thread_id = threading.get_ident()
        gc.callbacks.append(self.time_collection)
        threading.Thread(target=self.watch, daemon=True).start()
        last = time.perf_counter()
        while self.running:
            await asyncio.sleep(self.period_s)
            now = time.perf_counter()
            gap_ms = (now - last - self.period_s) * 1e3
            self.max_gap_ms = max(self.max_gap_ms, gap_ms)
            if gap_ms > self.report_ms:
                counts: dict[str, int] = {}
                for key in self.current:
                    counts[key] = counts.get(key, 0) + 1
                self.stalls.append({"label": self.label, "ms": round(gap_ms, 1), "stacks": sorted(counts.items(), key=lambda kv: -kv[1])[:4]})
            self.current = []
            last = self.last_tick = now
        gc.callbacks.remove(self.time_collection)

    def watch(self) -> None:
        while self.running:
            time.sleep(0.05)
            if time.perf_counter() - self.last_tick > self.late_s:
                frame = sys._current_frames().get(self.ui_thread_id)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-16:]
                    key = " <- ".join(f"{pathlib.Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))
                    self.stall_stacks[key] = self.stall_stacks.get(key, 0) + 1
                    self.current.append(key)


class TracebackCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info or "Traceback" in text:
            self.tracebacks.append(text[-2000:])


async def screenshot(out: pathlib.Path, name: str) -> str:
    """The whole screen as ``<name>.png``, taken off the UI thread (so the heartbeat does not count it)."""
    path = out / f"{name}.png"
    command = ["import", "-display", os.environ["DISPLAY"], "-window", "root", str(path)]
    await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(command, check=False, timeout=30))
    return path.name


def beam_state() -> dict[str, typing.Any]:
    from nion.utils import Registry

    stem = Registry.get_component("stem_controller")
    if stem is None:
        return {"blanked": None, "probe_parked": None}
    ok, blank = stem.TryGetVal("C_Blank")
    return {"blanked": bool(ok and blank), "probe_parked": stem.probe_position is not None and stem.probe_state == "parked"}


def status_fits_on_screen(document_controller: DocumentController.DocumentController, panel: typing.Any, controller: typing.Any) -> dict[str, typing.Any]:
    """Where the panel's status line is drawn: inside the panel and on the (1600 x 1000) screen, with room for its text."""
    from nion.utils import Geometry

    label, widget = controller.status_label, panel.widget
    top_left, size = label.map_to_global(Geometry.IntPoint()), label.size
    panel_top_left, panel_size = widget.map_to_global(Geometry.IntPoint()), widget.size
    screen = document_controller.screen_size
    bottom, right = top_left.y + size.height, top_left.x + size.width
    return {"label": [top_left.y, top_left.x, size.height, size.width], "panel": [panel_top_left.y, panel_top_left.x, panel_size.height, panel_size.width],
            "screen": [screen.height, screen.width],
            "fits": size.height >= 12 and bottom <= min(screen.height, panel_top_left.y + panel_size.height) and right <= min(screen.width, panel_top_left.x + panel_size.width)}


async def wait_for(condition: typing.Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step_s)
    return condition()


async def scenario(document_controller: DocumentController.DocumentController, out: pathlib.Path, heartbeat: Heartbeat,
                   collector: TracebackCollector) -> dict[str, typing.Any]:
    from nion.instrumentation import HardwareSource

    workspace_controller = document_controller.workspace_controller
    assert workspace_controller is not None
    panel = next(p for p in workspace_controller.dock_panels if p.panel_id == PANEL_ID)
    controller = typing.cast(typing.Any, panel).controller
    results: dict[str, typing.Any] = {"experiments": {}, "tracebacks": collector.tracebacks}
    scan = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(gui_screenshot.SCAN_DEVICE_ID)
    await asyncio.sleep(2.0)

    async def run(name: str, index: int, fields: dict[str, typing.Any], *, pause: bool = False, stop_after_s: float | None = None,
                  timeout_s: float = 240.0) -> None:
        record: dict[str, typing.Any] = {}
        heartbeat.label = name
        controller.experiment_index.value = index
        for field, value in fields.items():
            getattr(controller, field).value = value
        await asyncio.sleep(0.5)
        controller.dry_run()
        await wait_for(lambda: not str(controller.plan_summary.value).startswith("Planning"), 120)
        record["dry_run"] = controller.plan_summary.value
        heartbeat.reset()
        items_before = len(document_controller.document_model.data_items)
        previous = controller.runner
        controller.start()
        runner = controller.runner if controller.runner is not previous else None
        record["started"] = runner is not None
        if runner is None:
            record["status"] = controller.status.value
            results["experiments"][name] = record
            return
        if pause:
            await wait_for(lambda: runner.progress.step >= 2, 60)
            controller.toggle_pause()
            record["paused"] = await wait_for(lambda: runner.state.value == "paused", 30)
            record["beam_while_paused"] = beam_state()
            await asyncio.sleep(1.0)
            controller.toggle_pause()
        if stop_after_s is not None:
            await asyncio.sleep(stop_after_s)
            controller.stop()
        record["ended"] = await wait_for(lambda: runner.state.is_final, timeout_s)
        await asyncio.sleep(1.5)  # let the last products reach the document
        record["max_ui_stall_ms"] = round(heartbeat.reset(), 1)
        record["state"] = runner.state.value
        record["status"] = controller.status.value
        record["message"] = runner.progress.message
        record["beam"] = beam_state()
        record["new_items"] = len(document_controller.document_model.data_items) - items_before
        record["titles"] = [d.title for d in document_controller.document_model.data_items[items_before:]]
        record["status_fits"] = status_fits_on_screen(document_controller, panel, controller)
        record["screenshot"] = await screenshot(out, name)
        results["experiments"][name] = record

    async def find_atoms_in_a_large_image() -> None:
        """A 1024² survey of the MoS2 twin (about 2,000 columns) as a user's image, then "Find atoms in selected image"."""
        from nion.swift.model import DataItem

        from nion_autoem.geometry import ScanFrame
        from nion_autoem.swift.microscope import SwiftMicroscope

        def survey() -> typing.Any:
            scope = SwiftMicroscope()
            scope.unblank()
            try:
                return scope.survey(ScanFrame((1024, 1024), 9.3), pixel_time_us=2.0).xdata
            finally:
                scope.blank()

        xdata = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, survey), 120)
        item = DataItem.new_data_item(xdata)
        item.title = "MoS2 survey, 9.3 nm (mine)"
        document_controller.document_model.append_data_item(item)
        await asyncio.sleep(0.5)
        display_item = document_controller.document_model.get_display_item_for_data_item(item)
        assert display_item is not None
        # Swift's own cost of showing a 1024² image (the Inspector builds its sections), for comparison with the class map's
        heartbeat.reset()
        document_controller.show_display_item(display_item)
        await asyncio.sleep(2.0)
        show_baseline_ms = round(heartbeat.reset(), 1)
        document_controller.selected_display_panel = None  # as a click in the data panel does
        document_controller.select_display_items_in_data_panel([display_item])
        await asyncio.sleep(0.5)
        heartbeat.reset()
        heartbeat.label = "atoms_2000"
        items_before = len(document_controller.document_model.data_items)
        previous = controller.runner
        controller.find_atoms_in_selection()
        runner = controller.runner if controller.runner is not previous else None
        record: dict[str, typing.Any] = {"started": runner is not None, "status": controller.status.value}
        if runner is not None:
            record["ended"] = await wait_for(lambda: runner.state.is_final, 240)
            await asyncio.sleep(2.0)
            record.update({"max_ui_stall_ms": round(heartbeat.reset(), 1), "state": runner.state.value, "message": runner.progress.message,
                           "beam": beam_state(), "new_items": len(document_controller.document_model.data_items) - items_before,
                           "titles": [d.title for d in document_controller.document_model.data_items[items_before:]],
                           "atoms": sum(len(r) for r in getattr(runner.plan, "results", [])), "dry_run": "Dry run: (not offered for an image already taken)"})
            # show the class map, as a person would look at it
            class_maps = [d for d in document_controller.document_model.data_items[items_before:] if (d.title or "").startswith("Atom classes")]
            if class_maps and (shown := document_controller.document_model.get_display_item_for_data_item(class_maps[0])) is not None:
                heartbeat.reset()
                heartbeat.label = "atoms_2000_show"
                document_controller.show_display_item(shown)
                await asyncio.sleep(2.0)
                # a person's click, not the experiment: Swift's Inspector switching items, reported beside the same for a plain image
                record["show_ui_stall_ms"] = round(heartbeat.reset(), 1)
                record["show_plain_image_ui_stall_ms"] = show_baseline_ms
            record["status_fits"] = status_fits_on_screen(document_controller, panel, controller)
            record["screenshot"] = await screenshot(out, "atoms_2000")
        results["experiments"]["atoms_2000"] = record

    async def live_elit_on_the_users_scan() -> None:
        """The user's own live scan of the twin with "ELIT on every new scan frame" ticked: it used to stall Swift for 48-74 s at a time."""
        from nion.instrumentation import scan_base
        from nion.utils import Geometry

        record: dict[str, typing.Any] = {"started": scan is not None}
        if scan is None:
            results["experiments"]["live_elit"] = record
            return
        live_scan = typing.cast(scan_base.ScanHardwareSource, scan)
        fp = live_scan.get_current_frame_parameters()
        fp.pixel_size, fp.fov_nm, fp.pixel_time_us = Geometry.IntSize(256, 256), 3.0, 1.0
        live_scan.set_current_frame_parameters(fp)
        live_scan.start_playing()
        await asyncio.sleep(1.0)
        heartbeat.reset()
        heartbeat.label = "live_elit"
        controller.live_elit.value = True  # the check box
        await asyncio.sleep(8.0)
        finder = controller.live_finder
        record["frames"] = finder.frames_analysed if finder is not None else 0
        record["error"] = str(finder.last_error) if finder is not None and finder.last_error is not None else None
        controller.live_elit.value = False  # unticking took over a minute before
        live_scan.stop_playing()
        await wait_for(lambda: not live_scan.is_playing, 10)
        await asyncio.sleep(1.5)
        record.update({"max_ui_stall_ms": round(heartbeat.reset(), 1), "status": controller.status.value,
                       "titles": [d.title for d in document_controller.document_model.data_items if (d.title or "").startswith("Atom classes (ELIT)")]})
        heartbeat.label = ""
        record["status_fits"] = status_fits_on_screen(document_controller, panel, controller)
        record["screenshot"] = await screenshot(out, "live_elit")
        results["experiments"]["live_elit"] = record

    async def few_shot_tiles_on_an_image() -> None:
        """The Tile Classes panel on an image nobody labelled before: points labelled with class names, Classify, Suggest."""
        import numpy
        from nion.data import Calibration
        from nion.data import DataAndMetadata
        from nion.swift.model import DataItem
        from nion.swift.model import Graphics

        from nion_autoem.swift import tile_panel
        from nion_autoem_fewshot.synthetic import interface_scene
        from nion_autoem_fewshot.synthetic import tile_truth
        from nion_autoem_fewshot.tiles import cut_tiles

        dock = next(p for p in workspace_controller.dock_panels if p.panel_id == tile_panel.PANEL_ID)
        panel.hide()  # one panel at a time, as a person working on tiles would keep it
        dock.show()
        tiles = typing.cast(typing.Any, dock).controller
        scene = interface_scene((512, 512), seed=1002)
        xdata = DataAndMetadata.new_data_and_metadata(scene.image.astype(numpy.float32), dimensional_calibrations=[Calibration.Calibration(0.0, 0.05, "nm")] * 2)
        item = DataItem.new_data_item(xdata)
        item.title = "Interface (mine)"
        document_controller.document_model.append_data_item(item)
        await asyncio.sleep(0.5)
        display_item = document_controller.document_model.get_display_item_for_data_item(item)
        assert display_item is not None
        workspace_controller.display_panels[0].set_display_panel_display_item(display_item)  # on screen, to label it
        document_controller.selected_display_panel = None
        document_controller.select_display_items_in_data_panel([display_item])
        grid = cut_tiles(scene.image, tile_px=32)
        classes, pure = tile_truth(scene.labels, grid.origins_px, 32)
        for k, name in enumerate(scene.class_names):  # three clicked examples per class, labelled with its name
            for index in numpy.flatnonzero((classes == k) & pure)[::7][:3]:
                point = Graphics.PointGraphic()
                point.position = (float(grid.centres_px[index][0]) / 512, float(grid.centres_px[index][1]) / 512)
                point.label = name
                display_item.add_graphic(point)
        tiles.unit_index.value = tile_panel.UNITS.index("nm")
        tiles.tile_size.value = 1.6
        await asyncio.sleep(0.5)
        heartbeat.reset()
        heartbeat.label = "tiles"
        items_before = len(document_controller.document_model.data_items)
        started = time.perf_counter()
        tiles.classify()  # the tiles are cut and the run started on a worker thread
        await wait_for(lambda: tiles.runner is not None or str(tiles.status.value).startswith("Cannot"), 30)
        runner = tiles.runner
        record: dict[str, typing.Any] = {"started": runner is not None, "status": tiles.status.value, "dry_run": "Dry run: (nothing is acquired)"}
        if runner is not None:
            record["ended"] = await wait_for(lambda: runner.state.is_final and tiles.tile_map is not None, 120)
            record["map_s"] = round(time.perf_counter() - started, 2)
            await asyncio.sleep(1.5)
            tiles.suggest()
            await asyncio.sleep(1.0)
            tile_map = tiles.tile_map
            if tile_map is not None:
                record["accuracy"] = float(numpy.mean(tile_map.classes[pure] == classes[pure]))
            record.update({"max_ui_stall_ms": round(heartbeat.reset(), 1), "state": runner.state.value, "message": runner.progress.message,
                           "status": tiles.status.value, "beam": beam_state(), "new_items": len(document_controller.document_model.data_items) - items_before,
                           "titles": [d.title for d in document_controller.document_model.data_items[items_before:]],
                           "suggested": sum(1 for g in display_item.graphics if g.label == "label me?")})
            maps = [d for d in document_controller.document_model.data_items[items_before:] if (d.title or "").startswith("Tile classes")]
            if maps and (shown := document_controller.document_model.get_display_item_for_data_item(maps[0])) is not None:
                workspace_controller.display_panels[0].set_display_panel_display_item(shown)
                await asyncio.sleep(1.0)
            record["status_fits"] = status_fits_on_screen(document_controller, dock, tiles)
            record["screenshot"] = await screenshot(out, "tiles")
        heartbeat.label = ""
        results["experiments"]["tiles"] = record

    async def search_the_grid_square() -> None:
        """Choose the grid square in usim's sample chooser, survey an overview, draw the region and search it for a platelet from the panel."""
        import tempfile

        from nion.swift.model import DataItem
        from nion.swift.model import Graphics
        from nion.utils import Registry

        from nion_autoem.geometry import ScanFrame
        from nion_autoem.swift import panel as experiment_panel
        from nion_autoem.swift.microscope import SwiftMicroscope
        from nion_autoem.twin import catalog
        from nion_autoem.twin.stage_sample import RARE_CLASS
        from tests.montage.helpers import run_montage
        from tests.montage.helpers import support_from_truth
        from tests.montage.helpers import twin

        def examples() -> str:
            # yesterday's clicks: examples cut from the montage of another grid square
            work = pathlib.Path(tempfile.mkdtemp(prefix="nion-autoem-examples-"))
            pure = twin(101, min_rare=8)
            montage, _ = run_montage(pure, work / "montage")
            return str(support_from_truth(pure, montage).save(work / "examples").parent)

        loop = asyncio.get_running_loop()
        folder = await asyncio.wait_for(loop.run_in_executor(None, examples), 120)
        stem = typing.cast(typing.Any, Registry.get_component("stem_controller"))
        generator = stem.scan_data_generator
        generator.sample_index = list(generator.sample_titles).index(catalog.TITLES["grid-square"])  # as a click in usim's sample chooser
        platelet = next(o for o in generator.twin.sample.objects if o.kind == RARE_CLASS)
        centre = (round(platelet.centre_nm[0] / 1000.0) * 1000.0, round(platelet.centre_nm[1] / 1000.0) * 1000.0)

        def overview() -> typing.Any:
            scope = SwiftMicroscope()
            scope.move_stage(centre)
            scope.unblank()
            try:
                return scope.survey(ScanFrame((256, 256), 16000.0), pixel_time_us=1.0).xdata
            finally:
                scope.blank()

        xdata = await asyncio.wait_for(loop.run_in_executor(None, overview), 60)
        item = DataItem.new_data_item(xdata)
        item.title = "Grid square overview (mine)"
        document_controller.document_model.append_data_item(item)
        await asyncio.sleep(0.5)
        display_item = document_controller.document_model.get_display_item_for_data_item(item)
        assert display_item is not None
        region = Graphics.RectangleGraphic()
        region.bounds = ((0.28, 0.28), (0.44, 0.44))  # 7 µm around the centre
        display_item.add_graphic(region)
        workspace_controller.display_panels[0].set_display_panel_display_item(display_item)
        document_controller.selected_display_panel = None
        document_controller.select_display_items_in_data_panel([display_item])
        tile_dock = next(p for p in workspace_controller.dock_panels if p.panel_id == "nion-autoem-tile-panel")
        tile_dock.hide()
        panel.show()
        await asyncio.sleep(0.5)
        index = next(i for i, e in enumerate(experiment_panel.EXPERIMENTS) if "search" in e.fields)
        await run("search", index, {"points": 1, "examples": folder, "target_class": RARE_CLASS, "verify_edge_eV": 0.0}, timeout_s=240)

    try:
        await live_elit_on_the_users_scan()
        if scan is not None and scan.is_playing:
            scan.stop_playing()
        await run("point_spectroscopy", 0, {"points": 6, "exposure_ms": 20.0, "band_low_eV": 1.0, "band_high_eV": 3.0}, pause=True)
        await run("dkl", 1, {"points": 20, "exposure_ms": 10.0, "band_low_eV": 1.0, "band_high_eV": 3.0, "patch_size": 16}, timeout_s=300)
        await run("atom_finding", 2, {"points": 2, "field_nm": 4.0})
        await run("vacancy_line", 3, {"points": 3, "field_nm": 3.0}, timeout_s=300)
        await run("stopped", 0, {"points": 40, "exposure_ms": 50.0}, stop_after_s=2.0)
        await run("dkl_4dstem", 5, {"points": 20, "exposure_ms": 2.0, "patch_size": 8}, timeout_s=300)
        await run("forecast", 6, {"points": 60, "exposure_ms": 50.0})
        await find_atoms_in_a_large_image()
        await few_shot_tiles_on_an_image()
        await search_the_grid_square()
    except Exception:
        results["scenario_error"] = traceback.format_exc()
    return results


def main(argv: typing.Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--profile-dir", type=pathlib.Path, required=True)
    parser.add_argument("--quit-after", type=float, default=480.0)
    args = parser.parse_args(argv)
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    from nion.swift import Application
    from nion.swift import Facade
    from nion.ui import Application as ApplicationUI

    collector = TracebackCollector()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger().addHandler(collector)
    profile_dir: pathlib.Path = args.profile_dir.resolve()
    gui_screenshot.make_profile(profile_dir)
    heartbeat = Heartbeat()

    class DrivenApplication(Application.Application):
        def start(self, *, profile_dir: pathlib.Path | None = None, profile: typing.Any = None) -> bool:
            result = super().start(profile_dir=profile_dir or args.profile_dir.resolve(), profile=profile)
            document_controller = self.document_controllers[0]
            gui_screenshot.fill_screen(document_controller)
            gui_screenshot.show_panels(document_controller)
            loop = document_controller.event_loop

            focus_changes: list[tuple[str, str | None]] = []
            focus_listener = document_controller.focused_display_item_changed_event.listen(
                lambda item: focus_changes.append((heartbeat.label, item.displayed_title if item else None)))

            async def drive() -> None:
                beat = loop.create_task(heartbeat.beat())
                try:
                    results = await scenario(document_controller, out, heartbeat, collector)
                except Exception:
                    results = {"scenario_error": traceback.format_exc()}
                heartbeat.running = False
                await beat
                results["stall_stacks"] = sorted(heartbeat.stall_stacks.items(), key=lambda kv: -kv[1])[:25]
                results["stalls"] = heartbeat.stalls
                results["collections"] = heartbeat.collections
                results["focus_changes"] = focus_changes  # what the Inspector was asked to show, and during which experiment
                focus_listener.close()
                (out / "result.json").write_text(json.dumps(results, indent=1, default=str), "utf-8")
                document_controller.queue_request_close()

            loop.create_task(drive())
            loop.call_later(args.quit_after, document_controller.queue_request_close)
            return result

    Facade.initialize()
    ui = ApplicationUI.make_ui({"qt": None})
    app = DrivenApplication(ui)
    app.initialize(use_root_dir=False)
    app.run()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # see gui_screenshot.main: PySide6 aborts in the interpreter's final collection after a scan


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
