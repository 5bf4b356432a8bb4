"""The "Tile Classes (few-shot)" panel: label a few tiles on an image, get a classified map.

The panel gathers a tile size and a class name, labels the graphics the user
selected, and starts classifications (:mod:`nion_autoem.swift.tile_picker`);
the work runs on the runner's worker thread and the results arrive as data
items.  The last support set is kept, so the next image (or every new scan
frame, with the live check box) is classified without labelling again.
"""

from __future__ import annotations

import gettext
import pathlib
import threading
import typing

from nion.swift import Panel
from nion.swift import Workspace
from nion.ui import Declarative
from nion.utils import Model
from nion.utils import Registry

from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import Progress
from nion_autoem.runner import RunState
from nion_autoem.swift import quiet_collections
from nion_autoem.swift import tile_picker

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

    from nion_autoem_fewshot.classifier import TileMap

_ = gettext.gettext

PANEL_ID = "nion-autoem-tile-panel"
UNITS = ["nm", "px"]


def outcome_sentence(tile_map: TileMap) -> str:
    """What a classification found, in one line: tiles per class with their share of the area."""
    counts = tile_map.counts()
    fractions = tile_map.area_fractions()
    parts = [f"{name} {counts[name]} ({100 * fractions[name]:.0f} %)" for name in tile_map.class_names]
    if counts.get("unknown"):
        parts.append(f"unknown {counts['unknown']}")
    return f"{len(tile_map)} tiles of {tile_map.grid.tile_px} px: " + ", ".join(parts)


class TilePanelController(Declarative.Handler):
    """Declarative handler behind the panel; also usable headless in tests."""

    def __init__(self, document_controller: DocumentController.DocumentController) -> None:
        super().__init__()
        self.__document_controller = document_controller
        self.runner: ExperimentRunner | None = None
        self.__listener: typing.Any = None
        self.tile_size = Model.PropertyModel(2.0)
        self.unit_index = Model.PropertyModel(0)
        self.class_name = Model.PropertyModel("")
        self.live = Model.PropertyModel(False)
        self.live.on_value_changed = self.__live_changed
        self.live_classifier: tile_picker.LiveTileClassifier | None = None
        self.idle = Model.PropertyModel(True)
        #: The support set of the last classification (its saved folder) and the map it made, for suggestions and reuse.
        self.support_path: pathlib.Path | None = None
        self.tile_map: TileMap | None = None
        self.__classified_item: typing.Any = None
        self.support_text = Model.PropertyModel(_("Examples: none yet. Label rectangles or points on an image."))
        self.status = Model.PropertyModel(_("Draw rectangles over a few tiles of each kind, label them with a class name, press Classify."))
        u = Declarative.DeclarativeUI()
        self.ui_view = u.create_column(
            u.create_row(u.create_label(text=_("Tile size")), u.create_line_edit(text="@binding(tile_size.value, converter=float_converter)", width=60),
                         u.create_combo_box(items=UNITS, current_index="@binding(unit_index.value)"), u.create_stretch(), spacing=8),
            u.create_row(u.create_label(text=_("Class")), u.create_line_edit(text="@binding(class_name.value)", placeholder_text=_("e.g. particle"), width=120),
                         u.create_push_button(text=_("Label selected graphics"), on_clicked="label_selected"), u.create_stretch(), spacing=8),
            u.create_row(u.create_push_button(text=_("Classify selected image"), on_clicked="classify", enabled="@binding(idle.value)"),
                         u.create_push_button(text=_("Suggest tiles to label"), on_clicked="suggest", enabled="@binding(idle.value)"), u.create_stretch(), spacing=8),
            u.create_row(u.create_check_box(text=_("Classify every new scan frame"), checked="@binding(live.value)"), u.create_stretch(), spacing=8),
            u.create_label(text="@binding(support_text.value)", word_wrap=True),
            u.create_label(text="@binding(status.value)", word_wrap=True, name="status_label"),
            u.create_stretch(), spacing=8, margin=8)

    @property
    def float_converter(self) -> typing.Any:
        from nion.utils import Converter
        return Converter.FloatToStringConverter(format="{:.3g}")

    def close(self) -> None:
        if self.live_classifier is not None:
            self.live_classifier.stop()
            self.live_classifier = None
        if self.__listener is not None:
            self.__listener.close()
            self.__listener = None
        super().close()

    def __tile_size(self) -> dict[str, typing.Any]:
        size = float(self.tile_size.value or 0)
        if UNITS[self.unit_index.value or 0] == "px":
            if size != int(size) or size < 1:
                raise ValueError(f"a tile size in px must be a whole number of pixels, got {size:g}")
            return {"tile_px": int(size)}
        return {"tile_nm": size}

    def label_selected(self, widget: typing.Any = None) -> None:
        """Give the selected graphics on the selected image the class name typed in the panel."""
        display_item = self.__document_controller.selected_display_item
        if display_item is None:
            self.status.value = _("Select the image, then the rectangles or points to label.")
            return
        try:
            n = tile_picker.label_selected_graphics(display_item, str(self.class_name.value or ""))
        except ValueError as e:
            self.status.value = str(e)
            return
        self.status.value = (f"{n} graphic(s) labelled {self.class_name.value!r}." if n
                             else _("No rectangle or point is selected: click one (shift-click for more), then label."))

    def classify(self, widget: typing.Any = None) -> None:
        """Classify the selected image with its labelled graphics, or with the last support set if it has none.

        The graphics are read here, on the UI thread; cutting the tiles, saving
        the examples and starting the run happen on a worker thread.
        """
        if not self.idle.value or (self.runner is not None and not self.runner.state.is_final):
            self.status.value = _("A classification is running; wait for it to finish.")
            return
        display_item = self.__document_controller.selected_display_item
        data_item = display_item.data_item if display_item else None
        if display_item is None or data_item is None or data_item.xdata is None:
            self.status.value = _("Select an image (a data item) first.")
            return
        regions = tile_picker.labelled_regions(display_item)
        support_path = self.support_path
        try:
            size = self.__tile_size()
        except ValueError as e:
            self.status.value = f"{_('Cannot classify')}: {e}"
            return
        if not regions and support_path is None:
            self.status.value = (f"{_('Cannot classify')}: " + _("no labelled graphics on this image and no earlier examples: draw rectangles over "
                                                                  "a few tiles of each kind and label them with a class name"))
            return
        xdata = data_item.xdata
        self.idle.value = False
        self.__classified_item = data_item
        self.status.value = f"{_('Classifying the tiles of')} {data_item.title!r}…"

        def start() -> None:
            try:
                if regions:
                    support, _grid = tile_picker.support_from_regions(xdata, regions, **size)
                    runner = tile_picker.classify_image(data_item, document_controller=self.__document_controller, support=support)
                else:
                    runner = tile_picker.classify_image(data_item, document_controller=self.__document_controller, support=support_path)
            except Exception as e:  # bad tile size, uncalibrated image, one example per class...: say so in the panel
                message = f"{_('Cannot classify')}: {e}"

                def refused() -> None:
                    self.idle.value = True
                    self.status.value = message
                self.__document_controller.queue_task(refused)
                return
            self.runner = runner
            self.__listener = runner.progress_changed_event.listen(self.__progress_changed)
            if runner.state.is_final:  # it may have ended before the listener was there
                self.__progress_changed(runner.progress)

        def start_quietly() -> None:
            with quiet_collections.quiet_collections():  # the features and the tile set, before the run holds its own
                start()

        threading.Thread(target=start_quietly, name="nion-autoem tile classification", daemon=True).start()

    def suggest(self, widget: typing.Any = None) -> None:
        """Mark the tiles whose labels would help most on the image classified last."""
        display_item = self.__document_controller.selected_display_item
        if self.tile_map is None or display_item is None or display_item.data_item is not self.__classified_item:
            self.status.value = _("Classify the selected image first; suggestions come from its map.")
            return
        chosen = tile_picker.mark_suggestions(display_item, self.tile_map, queue_task=self.__document_controller.queue_task)
        self.status.value = (f"{len(chosen)} tile(s) marked '{tile_picker.SUGGESTION_LABEL}': label the ones you can "
                             "(replace the mark's label with the class), then classify again.")

    def __progress_changed(self, progress: Progress) -> None:
        # Called on the worker thread: hand the widget update to the UI thread.
        def update() -> None:
            if not progress.state.is_final or self.runner is None:
                return
            self.idle.value = True
            if progress.state is not RunState.FINISHED:
                self.status.value = f"{progress.state.value}: {progress.message}"
                return
            results = getattr(self.runner.plan, "results", [])
            if results:
                self.tile_map = results[-1].tile_map
                self.support_path = self.runner.run_dir / "support"
                support = getattr(self.runner.plan, "support", None)
                counts = ", ".join(f"{name} {n}" for name, n in support.counts.items()) if support is not None else ""
                self.support_text.value = f"{_('Examples')}: {counts} — {_('saved in')} {self.support_path}"
                self.status.value = f"{outcome_sentence(self.tile_map)}. {_('Map, counts and CSV are in the run’s group.')}"
        self.__document_controller.queue_task(update)

    def __live_changed(self, on: bool | None) -> None:
        if not on:
            if self.live_classifier is not None:
                self.live_classifier.stop()
                self.status.value = _("Live classification off after {} frame(s).").format(self.live_classifier.frames_analysed)
                self.live_classifier = None
            return
        try:
            if self.support_path is None:
                raise ValueError(_("classify one image first: its examples are used for every frame"))
            stem = Registry.get_component("stem_controller")
            scan = stem.scan_controller if stem else None
            if scan is None:
                raise ValueError(_("no scan device is connected"))
            self.live_classifier = tile_picker.LiveTileClassifier(self.__document_controller, scan.hardware_source_id, self.support_path)
            self.live_classifier.start()
            self.status.value = _("Live classification on: the tiles of every new scan frame are classified.")
        except Exception as e:
            self.status.value = f"{_('Cannot start live classification')}: {e}"
            self.live.value = False


class TilePanel(Panel.Panel):
    def __init__(self, document_controller: DocumentController.DocumentController, panel_id: str, properties: typing.Mapping[str, typing.Any]) -> None:
        super().__init__(document_controller, panel_id, _("Tile Classes (few-shot)"))
        self.controller = TilePanelController(document_controller)
        self.widget = Declarative.DeclarativeWidget(document_controller.ui, document_controller.event_loop, self.controller)


def register_panel() -> None:
    Workspace.WorkspaceManager().register_panel(TilePanel, PANEL_ID, _("Tile Classes (few-shot)"), ["left", "right"], "right", {})


def unregister_panel() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
