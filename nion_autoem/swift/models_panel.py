"""The "Models" panel: which models exist, where they came from, and which one the experiments use.

It shows the model repository (:mod:`nion_autoem_models.repository`, in
``$NION_AUTOEM_MODELS`` or ``~/nion-autoem/models``): every version with its
parent, the data it was trained or adapted on, its metrics and the imaging
ranges it is valid for, and the aliases (``mos2@production``).  *Promote to
production* makes the chosen version the one the next ELIT run uses (a run
that has started keeps the version it resolved); *Roll back* steps the alias
back.

*Adapt to new ELIT frames* switches on a retraining rule: every N frames
that the ELIT runs of this session and earlier ones recorded (the surveys in
the run journals, ``$NION_AUTOEM_RUNS``) start an ELIT iteration in the
background (:class:`nion_autoem_models.retraining.RetrainingPolicy`), whose
progress and ETA the panel shows; the result is registered with its parent and
data as ``<name>@candidate`` and offered, never swapped in: *Promote to
production* makes it the model of the next run.  The panel reads the
repository's small records and the journals' first lines on a worker thread;
it loads no weights on the UI thread.
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import json
import os
import pathlib
import threading
import time
import typing

from nion.swift import Panel
from nion.swift import Workspace
from nion.ui import Declarative
from nion.utils import Model

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

    from nion_autoem_models.repository import ModelStore
    from nion_autoem_models.repository import ModelVersion
    from nion_autoem_models.retraining import FrameRecord
    from nion_autoem_models.retraining import RetrainingPolicy
    from nion_autoem_models.retraining import RetrainingRule

_ = gettext.gettext

PANEL_ID = "nion-autoem-models-panel"
#: The alias the experiments use when it exists.
PRODUCTION = "production"
#: The plan whose recorded surveys an ELIT retraining adapts to (``AtomFinding.name``).
ELIT_PLAN = "atom-finding"


def elit_frames_in(runs_folder: str | os.PathLike[str], headers: dict[pathlib.Path, str | None] | None = None) -> list[FrameRecord]:
    """Every survey frame the ELIT runs under ``runs_folder`` recorded, oldest run first (reads each journal's first line only).

    A run directory counts when its journal's header names the ELIT plan;
    its frames are the HAADF surveys the journal saved (``data/step_*_HAADF.npy``).
    ``headers`` (journal → run id of an ELIT run, or None) keeps what was
    read, so a watcher polling the folder reads each journal once.
    """
    from nion_autoem.journal import JOURNAL_NAME
    from nion_autoem_models.retraining import FrameRecord

    records: list[FrameRecord] = []
    folder = pathlib.Path(runs_folder)
    if not folder.is_dir():
        return records
    known = headers if headers is not None else {}
    for journal in sorted(folder.glob(f"*/{JOURNAL_NAME}"), key=lambda path: path.stat().st_mtime):
        if journal not in known:
            try:
                with open(journal, encoding="utf-8") as f:
                    header = json.loads(f.readline() or "{}")
            except (OSError, ValueError):
                continue  # a journal being written or a foreign file: read it again next time
            elit = header.get("type") == "header" and header.get("plan") == ELIT_PLAN
            known[journal] = str(header.get("run_id", journal.parent.name)) if elit else None
        run_id = known[journal]
        if run_id is not None:
            records.extend(FrameRecord(str(path), run_id) for path in sorted((journal.parent / "data").glob("step_*_HAADF.npy")))
    return records


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

    def __init__(self, repository: ModelStore | None = None, *, runs_folder: str | os.PathLike[str] | None = None,
                 queue_task: typing.Callable[[typing.Callable[[], None]], None] | None = None, rule: RetrainingRule | None = None,
                 poll_s: float = 5.0) -> None:
        super().__init__()
        from nion_autoem.swift.console import runs_root
        from nion_autoem_models.repository import open_repository
        from nion_autoem_models.retraining import RetrainingRule

        # $NION_AUTOEM_MODELS: a folder, or the address of a lab's MLflow registry
        self.repository: ModelStore = repository or open_repository()
        self.runs_folder = pathlib.Path(runs_folder) if runs_folder is not None else runs_root()
        # UI models are changed on the UI thread: a panel passes its document controller's queue_task, tests run it at once
        self.__queue_task = queue_task or (lambda task: task())
        self.__rule = rule or RetrainingRule("mos2", f"mos2@{PRODUCTION}", every_frames=50)
        self.__poll_s = float(poll_s)
        self.__policy: RetrainingPolicy | None = None
        self.__watching = threading.Event()
        self.__closed = threading.Event()
        self.__watcher: threading.Thread | None = None
        self.__announced: set[int] = set()
        self.__since = 0.0  # frames written from then on are new (set when the rule is switched on)
        self.__headers: dict[pathlib.Path, str | None] = {}  # journal -> ELIT run id (or None), read once
        self.__wanted: tuple[RetrainingRule, str] | None = None
        self.__made: tuple[RetrainingRule, str] | None = None
        self.__cluster = contextlib.ExitStack()
        self.__client: typing.Any = None
        self.__cluster_text = ""
        self.train_on = Model.PropertyModel("local")
        self.retrain = Model.PropertyModel(False)
        self.retrain.on_value_changed = lambda on: self.set_retraining(bool(on))
        self.retrain_every = Model.PropertyModel(self.__rule.every_frames)
        self.jobs = Model.PropertyModel(_("Retraining is off."))
        self.refs = Model.PropertyModel[list[str]]([])
        self.index = Model.PropertyModel(0)
        self.index.on_value_changed = lambda _: self.__show()
        self.details = Model.PropertyModel("")
        self.status = Model.PropertyModel("")
        self.__versions: list[ModelVersion] = []
        u = Declarative.DeclarativeUI()
        self.ui_view = u.create_column(
            u.create_label(text=f"{_('Repository')}: {self.repository.location}", word_wrap=True),
            u.create_row(u.create_combo_box(items_ref="@binding(refs.value)", current_index="@binding(index.value)"),
                         u.create_push_button(text=_("Refresh"), on_clicked="refresh"), u.create_stretch(), spacing=8),
            u.create_label(text="@binding(details.value)", word_wrap=True),
            u.create_row(u.create_push_button(text=_("Promote to production"), on_clicked="promote"),
                         u.create_push_button(text=_("Roll back production"), on_clicked="roll_back"), u.create_stretch(), spacing=8),
            u.create_row(u.create_push_button(text=_("Add the packaged models"), on_clicked="add_packaged"), u.create_stretch(), spacing=8),
            u.create_row(u.create_check_box(text=f"{_('Adapt')} {self.__rule.base} {_('to every')}", checked="@binding(retrain.value)"),
                         u.create_line_edit(text="@binding(retrain_every.value)", width=48),
                         u.create_label(text=_("new ELIT frames, on")), u.create_line_edit(text="@binding(train_on.value)", width=160),
                         u.create_stretch(), spacing=8),
            u.create_label(text="@binding(jobs.value)", word_wrap=True, name="jobs_label"),
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


    # --- retraining on new frames ------------------------------------------------------------------

    def set_retraining(self, on: bool) -> None:
        """Switch the retraining rule on or off (a retraining already running finishes and is offered).

        On: a background thread starts the Dask cluster (:attr:`train_on`:
        ``"local"``, a one-worker cluster on this workstation, or a scheduler's
        address such as ``tcp://cluster-head:8786``) and then looks for new
        ELIT frames every few seconds.  Runs on the UI thread; nothing here waits.
        """
        from nion_autoem_models.retraining import RetrainingRule

        if not on:
            self.__watching.clear()
            self.jobs.value = _("Retraining is off.") if self.__policy is None or self.__idle() else self.jobs.value
            return
        try:
            every = int(self.retrain_every.value or 0)
            rule = RetrainingRule(self.__rule.lattice, self.__rule.base, every_frames=every, config=self.__rule.config)
            where = str(self.train_on.value or "").strip() or "local"
            if where != "local" and "://" not in where:
                raise ValueError(f"train on 'local' (a Dask cluster on this workstation) or a scheduler's address such as tcp://cluster-head:8786, got {where!r}")
        except (TypeError, ValueError) as e:
            self.retrain.value = False  # unticks the box (and says "off"), then the reason
            self.jobs.value = f"{_('Cannot retrain')}: {e}"
            return
        if self.__made != (rule, where):
            # frames already on disk are the old models' data, not new ones: count those written from the moment the box is ticked
            self.__since = time.time()
        self.__wanted = (rule, where)
        self.__watching.set()
        self.jobs.value = f"{_('Starting the Dask cluster')} ({where})…" if self.__policy is None else self.jobs.value
        if self.__watcher is None:
            self.__watcher = threading.Thread(target=self.__watch, name="nion-autoem retraining watcher", daemon=True)
            self.__watcher.start()

    def __idle(self) -> bool:
        progress = self.__policy.progress if self.__policy is not None else None
        return progress is None or progress.snapshot().finished

    def __follow_the_rule(self) -> None:
        """On the watcher thread: the cluster and the policy the rule asks for, made or remade when the rule changed."""
        from nion_autoem_models import distributed as elit_dask
        from nion_autoem_models.retraining import RetrainingPolicy

        wanted = self.__wanted
        if wanted is None or (self.__policy is not None and self.__made == wanted):
            return
        rule, where = wanted
        if self.__policy is not None:
            self.__policy.close()  # a running retraining finishes first
            self.__policy = None
        if self.__made is None or self.__made[1] != where:
            self.__cluster.close()
            self.__cluster = contextlib.ExitStack()
            # one worker on this workstation: the other core stays with Swift and the experiment
            client = (self.__cluster.enter_context(elit_dask.local_cluster(workers=1, torch_threads=1)) if where == "local"
                      else self.__cluster.enter_context(elit_dask.connect(where)))
            self.__client = client
            workers = len(client.scheduler_info().get("workers", {}))
            self.__cluster_text = f"{_('on a local Dask cluster')} ({workers} {_('worker')})" if where == "local" else f"{_('on')} {where} ({workers} {_('workers')})"
        self.__policy = RetrainingPolicy(self.repository, rule, self.__client)
        self.__made = wanted

    def check_for_new_frames(self) -> None:
        """Offer the frames recorded since retraining was switched on to the rule, and show where the jobs are (any thread)."""
        policy = self.__policy
        if policy is None:
            return
        if self.__watching.is_set():
            policy.offer([record for record in elit_frames_in(self.runs_folder, self.__headers) if os.path.getmtime(record.path) >= self.__since])
        lines = []
        for index, job in enumerate(policy.jobs):
            snapshot = job.snapshot()
            lines.append(f"{job.title}: {snapshot.describe()}")
            if snapshot.done and index not in self.__announced:
                self.__announced.add(index)
                self.__queue_task(functools.partial(self.__offer, snapshot.result))
        pending = policy.pending_frames
        lines.append(f"{pending} of {policy.rule.every_frames} new frame(s) towards the next retraining, {self.__cluster_text}"
                     if self.__watching.is_set() else _("Retraining is off."))
        text = "\n".join(lines)
        self.__queue_task(lambda: setattr(self.jobs, "value", text))

    def __offer(self, ref: str | None) -> None:
        """On the UI thread: a retraining registered ``ref``; show it, do not use it yet."""
        self.refresh()
        if ref is not None and ref in (self.refs.value or []):
            self.index.value = list(self.refs.value or []).index(ref)
        self.status.value = f"{ref} {_('is ready (the rule registered it as a candidate): check its metrics, then Promote to production to use it in the next run.')}"

    def __watch(self) -> None:
        while True:
            try:
                if self.__watching.is_set():
                    self.__follow_the_rule()
                self.check_for_new_frames()
            except Exception as e:  # a scheduler that does not answer, a folder that vanished: say so, and keep watching
                self.__queue_task(functools.partial(setattr, self.jobs, "value", f"{_('Cannot retrain')}: {e}"))
            if self.__closed.wait(self.__poll_s):
                return

    def close(self) -> None:
        self.__closed.set()
        self.__watching.clear()
        if self.__watcher is not None:
            self.__watcher.join(timeout=60.0)  # it may be starting the cluster
        if self.__policy is not None:
            self.__policy.close()
        self.__cluster.close()
        super().close()


def production_ensemble(name: str = "mos2") -> str | None:
    """``"mos2@production"`` when the repository has that alias, else None (the packaged model): what the panel's ELIT runs use."""
    from nion_autoem_models.repository import default_folder
    from nion_autoem_models.repository import is_registry_address
    from nion_autoem_models.repository import open_repository

    location = os.environ.get("NION_AUTOEM_MODELS", "")
    if not is_registry_address(location) and not default_folder().is_dir():
        return None  # no repository yet: the packaged model, and no empty folder made
    alias = f"{name}@{PRODUCTION}"
    return alias if alias in open_repository().aliases() else None


class ModelsPanel(Panel.Panel):
    def __init__(self, document_controller: DocumentController.DocumentController, panel_id: str, properties: typing.Mapping[str, typing.Any]) -> None:
        super().__init__(document_controller, panel_id, _("Models"))
        self.controller = ModelsPanelController(queue_task=document_controller.queue_task)
        self.widget = Declarative.DeclarativeWidget(document_controller.ui, document_controller.event_loop, self.controller)


def register_panel() -> None:
    Workspace.WorkspaceManager().register_panel(ModelsPanel, PANEL_ID, _("Models"), ["left", "right"], "right", {})


def unregister_panel() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
