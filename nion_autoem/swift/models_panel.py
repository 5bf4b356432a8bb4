"""The "Models" panel: which models exist, where they came from, and which one the experiments use.

It shows the model repository (:mod:`nion_autoem_models.repository`, in
``$NION_AUTOEM_MODELS`` or ``~/nion-autoem/models``): every version with its
parent, the data it was trained or adapted on, its metrics and the imaging
ranges it is valid for, and the aliases (``mos2@production``).  *Promote to
production* makes the chosen version the one the next ELIT run uses (a run
that has started keeps the version it resolved); *Roll back* steps the alias
back.  The panel only reads and writes the repository's small records; it
loads no weights.
"""

from __future__ import annotations

import gettext
import typing

from nion.swift import Panel
from nion.swift import Workspace
from nion.ui import Declarative
from nion.utils import Model

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

    from nion_autoem_models.repository import ModelRepository
    from nion_autoem_models.repository import ModelVersion

_ = gettext.gettext

PANEL_ID = "nion-autoem-models-panel"
#: The alias the experiments use when it exists.
PRODUCTION = "production"


def describe(version: ModelVersion, aliases: typing.Mapping[str, str]) -> str:
    """A model version in a few lines: provenance, data, metrics, validity, aliases."""
    named = [alias for alias, ref in aliases.items() if ref == version.ref]
    runs = sorted({str(item.get("run_id")) for item in version.data_manifest if item.get("run_id")})
    data = f"{len(version.data_manifest)} frame(s) or journal(s) from {len(runs)} run(s)" if version.data_manifest else "the packaged training recipe"
    metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(version.metrics.items())[:4]) or "none recorded"
    ranges = ", ".join(f"{k} {v}" for k, v in version.imaging_ranges.items()) or "not recorded"
    return (f"{version.ref} ({version.kind}, {', '.join(named) or 'no alias'}), registered {version.created[:19]} by {version.code_version or '?'}\n"
            f"from: {version.parent or 'no parent (trained from scratch)'}; trained on {data}\n"
            f"metrics: {metrics}\nvalid for: {ranges}")


class ModelsPanelController(Declarative.Handler):
    """Declarative handler behind the panel; also usable headless in tests."""

    def __init__(self, repository: ModelRepository | None = None) -> None:
        super().__init__()
        from nion_autoem_models.repository import ModelRepository
        from nion_autoem_models.repository import default_folder

        self.repository = repository or ModelRepository(default_folder())
        self.refs = Model.PropertyModel[list[str]]([])
        self.index = Model.PropertyModel(0)
        self.index.on_value_changed = lambda _: self.__show()
        self.details = Model.PropertyModel("")
        self.status = Model.PropertyModel("")
        self.__versions: list[ModelVersion] = []
        u = Declarative.DeclarativeUI()
        self.ui_view = u.create_column(
            u.create_label(text=f"{_('Repository')}: {self.repository.folder}", word_wrap=True),
            u.create_row(u.create_combo_box(items_ref="@binding(refs.value)", current_index="@binding(index.value)"),
                         u.create_push_button(text=_("Refresh"), on_clicked="refresh"), u.create_stretch(), spacing=8),
            u.create_label(text="@binding(details.value)", word_wrap=True),
            u.create_row(u.create_push_button(text=_("Promote to production"), on_clicked="promote"),
                         u.create_push_button(text=_("Roll back production"), on_clicked="roll_back"), u.create_stretch(), spacing=8),
            u.create_row(u.create_push_button(text=_("Add the packaged models"), on_clicked="add_packaged"), u.create_stretch(), spacing=8),
            u.create_label(text="@binding(status.value)", word_wrap=True, name="status_label"),
            u.create_stretch(), spacing=8, margin=8)
        self.refresh()

    def refresh(self, widget: typing.Any = None) -> None:
        """Read the repository again (another session may have registered or promoted)."""
        versions = self.repository.list()
        self.__versions = versions
        self.refs.value = [v.ref for v in versions]
        self.index.value = min(self.index.value or 0, max(len(versions) - 1, 0))
        self.__show()
        if not versions:
            self.status.value = _("The repository is empty: press 'Add the packaged models', or register a retrained one.")

    def __selected(self) -> ModelVersion | None:
        versions = self.__versions
        index = self.index.value or 0
        return versions[index] if 0 <= index < len(versions) else None

    def __show(self) -> None:
        version = self.__selected()
        aliases = self.repository.aliases()
        used = {alias: ref for alias, ref in aliases.items() if alias.endswith(f"@{PRODUCTION}")}
        uses = ("; ".join(f"the panel's ELIT runs use {alias} = {ref}" for alias, ref in used.items())
                or _("the panel's ELIT runs use the packaged models (nothing promoted)"))
        self.details.value = (describe(version, aliases) + "\n" + uses) if version is not None else uses

    def promote(self, widget: typing.Any = None) -> None:
        version = self.__selected()
        if version is None:
            self.status.value = _("Choose a model version first.")
            return
        try:
            self.repository.promote(version.ref, PRODUCTION)
        except Exception as e:  # a lock held by a crashed session, a record that does not read: say so
            self.status.value = f"{_('Cannot promote')}: {e}"
            return
        self.status.value = f"{version.name}@{PRODUCTION} = {version.ref}: the next run uses it (a running one keeps its version)."
        self.__show()

    def roll_back(self, widget: typing.Any = None) -> None:
        version = self.__selected()
        if version is None:
            self.status.value = _("Choose a model first.")
            return
        try:
            now = self.repository.rollback(version.name, PRODUCTION)
        except Exception as e:  # nothing to roll back to
            self.status.value = f"{_('Cannot roll back')}: {e}"
            return
        self.status.value = f"{version.name}@{PRODUCTION} = {now.ref} again."
        self.__show()

    def add_packaged(self, widget: typing.Any = None) -> None:
        from nion_autoem_models.repository import seed_from_package

        added = seed_from_package(self.repository)
        self.refresh()
        self.status.value = f"{_('Packaged models in the repository')}: {', '.join(v.ref for v in added)}."


def production_ensemble(name: str = "mos2") -> str | None:
    """``"mos2@production"`` when the repository has that alias, else None (the packaged model): what the panel's ELIT runs use."""
    from nion_autoem_models.repository import ModelRepository
    from nion_autoem_models.repository import default_folder

    folder = default_folder()
    if not folder.is_dir():
        return None
    alias = f"{name}@{PRODUCTION}"
    return alias if alias in ModelRepository(folder).aliases() else None


class ModelsPanel(Panel.Panel):
    def __init__(self, document_controller: DocumentController.DocumentController, panel_id: str, properties: typing.Mapping[str, typing.Any]) -> None:
        super().__init__(document_controller, panel_id, _("Models"))
        self.controller = ModelsPanelController()
        self.widget = Declarative.DeclarativeWidget(document_controller.ui, document_controller.event_loop, self.controller)


def register_panel() -> None:
    Workspace.WorkspaceManager().register_panel(ModelsPanel, PANEL_ID, _("Models"), ["left", "right"], "right", {})


def unregister_panel() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
