"""A lab's MLflow model registry behind the model repository's interface (:class:`~nion_autoem_models.repository.ModelStore`).

Each version is an MLflow *model version* of a registered model of the same
name. Its weights (``model/weights.safetensors``, tensors only) and record
(``model/record.json``) are artifacts of an MLflow run in the experiment
``nion-autoem-models``, uploaded through the tracking server (so the server
needs ``--serve-artifacts``, MLflow's default, and clients need no access to
its storage). The record also travels as the model version's tag
``nion_autoem.record``, written in the same call that creates the version, so
a version is never visible without its provenance; the content hash, kind and
parent are tags of their own, for the MLflow UI. Version numbers are MLflow's.

Aliases are MLflow's registered-model aliases (``mos2@production`` is the
alias ``production`` of the registered model ``mos2``). MLflow keeps no alias
history, so the history that :meth:`~MlflowModelRepository.rollback` steps
back through is the registered model's tag ``nion_autoem.alias.<alias>``. A
promotion made elsewhere (the MLflow UI) is taken into that history the next
time this interface promotes or rolls back.

Versions are never rewritten, so their records are cached per repository
object; aliases are read from the server every time.

Start a registry for a lab with::

    mlflow server --host 0.0.0.0 --port 5000 \\
        --backend-store-uri sqlite:///mlflow.sqlite --artifacts-destination ./mlflow-artifacts

or one on this machine, for trying it out, with :func:`local_server`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing
import urllib.error
import urllib.request

import mlflow.exceptions
import mlflow.tracking
import safetensors.torch
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_elit import ensemble
from nion_autoem_elit import storage
from nion_autoem_models import repository
from nion_autoem_models.repository import MissingParentError
from nion_autoem_models.repository import ModelHashError
from nion_autoem_models.repository import ModelVersion
from nion_autoem_models.repository import UnknownModelError

# MLflow's client writes a progress bar for every download and two links for every run it ends to the
# console; in Swift's console (and in a run's log) every model load would leave those lines. A user who
# sets either variable keeps their choice.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

#: The MLflow experiment whose runs hold the weights and records.
EXPERIMENT = "nion-autoem-models"
#: Artifact folder of a version inside its run.
ARTIFACT_FOLDER = "model"
RECORD_TAG = "nion_autoem.record"
#: Registered models made through this interface carry this tag; other models in the registry are left out of ``list``.
MODEL_TAG = "nion_autoem"
ALIAS_HISTORY_TAG = "nion_autoem.alias."
#: Promotions kept per alias for rolling back.
ALIAS_HISTORY_LENGTH = 200
# MLflow's limit on a model-version tag value is 100,000 characters; a longer record is read from its artifact.
_TAG_LIMIT = 100_000


class RegistryUnreachableError(ConnectionError):
    """No MLflow tracking server (with its model registry) answered at the address given."""


class MlflowModelRepository:
    """Versioned models with provenance in an MLflow model registry; the same interface as the folder :class:`~nion_autoem_models.repository.ModelRepository`.

    Parameters
    ----------
    uri : str
        Address of the MLflow tracking server, e.g. ``"http://models.lab:5000"``.
    timeout_s : float
        How long to wait for the server to answer when opening.
    experiment : str
        MLflow experiment for the runs that hold the artifacts.

    Raises
    ------
    RegistryUnreachableError
        If no MLflow server answers at ``uri``.

    Examples
    --------
    >>> MlflowModelRepository("http://127.0.0.1:1", timeout_s=1.0)
    Traceback (most recent call last):
    ...
    nion_autoem_models.mlflow_registry.RegistryUnreachableError: no MLflow registry answered at 'http://127.0.0.1:1' ...
    """

    def __init__(self, uri: str, *, timeout_s: float = 10.0, experiment: str = EXPERIMENT) -> None:
        if not repository.is_registry_address(uri):
            raise ValueError(f"uri must be the http(s):// address of an MLflow tracking server, e.g. 'http://models.lab:5000', got {uri!r}")
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(f"experiment must be the non-empty name of an MLflow experiment, got {experiment!r}")
        self.uri = uri.rstrip("/")
        check_reachable(self.uri, timeout_s)
        self.client = mlflow.tracking.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment = experiment
        self.__lock = threading.Lock()
        self.__records: dict[tuple[str, int], tuple[ModelVersion, str]] = {}  # (name, version) -> (record, run id)
        self.__experiment_id: str | None = None

    @property
    def location(self) -> str:
        """The registry's address (for messages)."""
        return self.uri

    def __repr__(self) -> str:
        return f"MlflowModelRepository({self.uri!r})"

    # -- writing ---------------------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        weights: ensemble.Ensemble | typing.Mapping[str, torch.Tensor],
        *,
        recipe: typing.Mapping[str, typing.Any],
        code_version: str,
        parent: str | None = None,
        data_manifest: typing.Sequence[typing.Mapping[str, typing.Any]] = (),
        metrics: typing.Mapping[str, typing.Any] | None = None,
        imaging_ranges: typing.Mapping[str, typing.Any] | None = None,
        kind: str = "elit-ensemble",
        network: typing.Mapping[str, typing.Any] | None = None,
        class_names: typing.Sequence[str] = (),
        extra: typing.Mapping[str, typing.Any] | None = None,
    ) -> ModelVersion:
        """Store a new version of ``name``: see :meth:`nion_autoem_models.repository.ModelRepository.register`.

        Raises
        ------
        MissingParentError
            If ``parent`` is not in the registry; nothing is uploaded then.
        """
        name, code_version, recipe = repository.check_registration(name, code_version, recipe)
        parent_ref = None
        if parent is not None:
            try:
                parent_ref = self.resolve(parent).ref
            except UnknownModelError as error:
                raise MissingParentError(f"parent must be a model in the registry at {self.uri}, got {parent!r}: {error}") from None
        state, network, class_names, extra, imaging_ranges = repository.split_weights(weights, network, class_names, extra, imaging_ranges)
        manifest = tuple(repository.check_manifest_item(item) for item in data_manifest)
        with tempfile.TemporaryDirectory(prefix="nion_autoem_register_") as scratch:
            folder = pathlib.Path(scratch) / ARTIFACT_FOLDER
            folder.mkdir()
            weights_path = folder / repository.WEIGHTS_FILE
            safetensors.torch.save_file(state, str(weights_path))
            # The version number is MLflow's, known once the version exists: the stored record leaves it out and
            # takes it from the model version when read, so record and version are created in one call.
            record = repository.new_record(name, 0, sha256_of(weights_path), kind=kind, network=network, class_names=class_names,
                                           recipe=recipe, code_version=code_version, parent=parent_ref, data_manifest=manifest,
                                           metrics=metrics, imaging_ranges=imaging_ranges, extra=extra)
            stored = {key: value for key, value in record.as_dict().items() if key != "version"}
            text = json.dumps(stored)
            (folder / repository.RECORD_FILE).write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
            with self._talking("register a model"):
                run = self.client.create_run(self._experiment_id(), run_name=f"register {name}",
                                             tags={"nion_autoem.model": name, "nion_autoem.code_version": code_version[:5000]})
                try:
                    self.client.log_artifacts(run.info.run_id, str(folder), ARTIFACT_FOLDER)
                    self._ensure_registered_model(name)
                    tags = {"nion_autoem.content_hash": record.content_hash, "nion_autoem.kind": record.kind, "nion_autoem.parent": parent_ref or "",
                            RECORD_TAG: text if len(text) < _TAG_LIMIT else ""}
                    created = self.client.create_model_version(name, source=f"{run.info.artifact_uri}/{ARTIFACT_FOLDER}", run_id=run.info.run_id,
                                                               tags=tags, description=f"{name}, {record.kind}, from {parent_ref or 'no parent'}",
                                                               await_creation_for=0)  # loading reads the run's artifacts, not the version's status
                except BaseException:
                    self.client.set_terminated(run.info.run_id, status="FAILED")
                    raise
                self.client.set_terminated(run.info.run_id)
        registered = ModelVersion.from_dict({**stored, "version": int(created.version)})
        with self.__lock:
            self.__records[(name, registered.version)] = (registered, run.info.run_id)
        return registered

    def promote(self, ref: str, alias: str) -> ModelVersion:
        """Point ``NAME@alias`` at the version ``ref``; the previous target stays in the alias's history.

        Raises
        ------
        UnknownModelError
            If ``ref`` names no version in the registry.
        """
        target = self.resolve(ref)
        alias = repository.check_alias(alias)
        with self.__lock, self._talking("promote a model"):
            history = self._alias_history(target.name, alias)
            history.append(target.version)
            self._write_alias_history(target.name, alias, history)
            self.client.set_registered_model_alias(target.name, alias, str(target.version))
        return target

    def rollback(self, name: str, alias: str) -> ModelVersion:
        """Point ``name@alias`` back at the version it pointed at before the last promotion.

        Raises
        ------
        UnknownModelError
            If the alias does not exist or has no earlier version.
        """
        name, alias = repository.check_name(name), repository.check_alias(alias)
        with self.__lock, self._talking("roll back an alias"):
            history = self._alias_history(name, alias)
            if len(history) < 2:
                raise UnknownModelError(f"{name}@{alias} must have been promoted at least twice to roll back, its history in the registry at {self.uri} is {history}")
            history.pop()
            self._write_alias_history(name, alias, history)
            self.client.set_registered_model_alias(name, alias, str(history[-1]))
        return self.resolve(f"{name}@{history[-1]}")

    # -- reading ---------------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelVersion:
        """The record of ``name@version`` or ``name@alias``; see :meth:`nion_autoem_models.repository.ModelRepository.resolve`.

        Raises
        ------
        UnknownModelError
            If there is no such model, version or alias (the message lists what there is).
        """
        return self._resolve(ref)[0]

    def aliases(self) -> dict[str, str]:
        """Every alias of the models made here and the version it names now, e.g. ``{"mos2@production": "mos2@3"}``."""
        found: dict[str, str] = {}
        for model_entity in self._registered_models():
            for alias, version in model_entity.aliases.items():
                found[f"{model_entity.name}@{alias}"] = f"{model_entity.name}@{version}"
        return dict(sorted(found.items()))

    def list(self, name: str | None = None) -> builtins.list[ModelVersion]:
        """Every version (of ``name``, or of all models made here), oldest first per name."""
        if name is not None:
            names = [repository.check_name(name)]
        else:
            names = sorted(m.name for m in self._registered_models())
        records: builtins.list[ModelVersion] = []
        for each in names:
            with self._talking("list model versions"):
                versions = self.client.search_model_versions(f"name = '{each}'")
            for entity in sorted(versions, key=lambda v: int(v.version)):
                if RECORD_TAG in (entity.tags or {}):  # a version someone registered without this interface has no record
                    records.append(self._record_of(entity)[0])
        return records

    def search(self, text: str | None = None, *, run_id: str | None = None, parent: str | None = None, kind: str | None = None) -> builtins.list[ModelVersion]:
        """Versions whose name, lattice or recipe mention ``text``, trained on ``run_id``, adapted from ``parent`` or of ``kind``."""
        parent_ref = self.resolve(parent).ref if parent is not None else None
        return [record for record in self.list() if repository.matches(record, text, run_id=run_id, parent=parent_ref, kind=kind)]

    def lineage(self, ref: str) -> builtins.list[ModelVersion]:
        """The model and its ancestors, newest first: the full provenance chain."""
        return repository.lineage_of(self, ref)

    def load_weights(self, ref: str) -> tuple[dict[str, torch.Tensor], ModelVersion]:
        """The state dict of ``ref`` after checking its content hash, and its record.

        Raises
        ------
        ModelHashError
            If the weights in the registry do not match the hash registered with them.
        """
        record, run_id = self._resolve(ref)
        with tempfile.TemporaryDirectory(prefix="nion_autoem_load_") as scratch, self._talking(f"download the weights of {record.ref}"):
            try:
                local = self.client.download_artifacts(run_id, f"{ARTIFACT_FOLDER}/{repository.WEIGHTS_FILE}", scratch)
            except mlflow.exceptions.MlflowException as error:
                if _connection_lost(error):
                    raise  # said as RegistryUnreachableError by _Talking
                raise storage.ModelIntegrityError(f"weights of {record.ref} must be the artifact {ARTIFACT_FOLDER}/{repository.WEIGHTS_FILE} of run {run_id} "
                                                  f"in the registry at {self.uri}, but it cannot be downloaded: {error.message}") from None
            path = pathlib.Path(local)
            actual = sha256_of(path)
            if actual != record.content_hash:
                raise ModelHashError(f"weights of {record.ref} in the registry at {self.uri} (run {run_id}) must have sha256 {record.content_hash} as registered, "
                                     f"the artifact has {actual}; it was altered or damaged: restore it or register the model again")
            return safetensors.torch.load_file(str(path)), record

    def load_ensemble(self, ref: str) -> ensemble.Ensemble:
        """An ELIT ensemble from the registry, hash checked; ``metadata["model_ref"]`` says exactly which version."""
        state, record = self.load_weights(ref)
        return repository.ensemble_from(state, record)

    # -- internals -------------------------------------------------------------------------------------------

    def _resolve(self, ref: str) -> tuple[ModelVersion, str]:
        name, tag = repository.split_ref(ref)
        if tag.isdigit():
            with self.__lock:
                cached = self.__records.get((name, int(tag)))
            if cached is not None:
                return cached
        with self._talking(f"resolve {ref!r}"):
            try:
                if tag.isdigit():
                    entity = self.client.get_model_version(name, tag)
                else:
                    entity = self.client.get_model_version_by_alias(name, tag)
            except mlflow.exceptions.MlflowException as error:
                if error.error_code not in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                    raise
                raise UnknownModelError(self._unknown(name, tag)) from None
        if RECORD_TAG not in (entity.tags or {}):
            raise storage.ModelIntegrityError(f"{name}@{entity.version} in the registry at {self.uri} must have been registered through "
                                              f"nion_autoem_models (a {RECORD_TAG} tag with its provenance), it has none")
        return self._record_of(entity)

    def _unknown(self, name: str, tag: str) -> str:
        """What the registry holds, for an error about ``name@tag``."""
        try:
            model_entity = self.client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            known = sorted(m.name for m in self._registered_models())
            return f"no model {name!r} in the registry at {self.uri}; models: {known}"
        if tag.isdigit():
            versions = [v.version for v in self.list(name)]
            return f"no model {name}@{tag} in the registry at {self.uri}; versions of {name!r}: {versions}"
        known_aliases = sorted(f"{name}@{alias}" for alias in model_entity.aliases)
        return f"no alias '{name}@{tag}' in the registry at {self.uri}; aliases of {name!r}: {known_aliases}; promote a version first"

    def _record_of(self, entity: typing.Any) -> tuple[ModelVersion, str]:
        key = (str(entity.name), int(entity.version))
        with self.__lock:
            cached = self.__records.get(key)
        if cached is not None:
            return cached
        text = entity.tags.get(RECORD_TAG, "")
        if not text:  # a record too long for a tag: its artifact
            with tempfile.TemporaryDirectory(prefix="nion_autoem_record_") as scratch, self._talking(f"read the record of {key[0]}@{key[1]}"):
                local = self.client.download_artifacts(entity.run_id, f"{ARTIFACT_FOLDER}/{repository.RECORD_FILE}", scratch)
                text = pathlib.Path(local).read_text(encoding="utf-8")
        try:
            record = ModelVersion.from_dict({**json.loads(text), "version": key[1]})
        except (ValueError, TypeError) as error:
            raise storage.ModelIntegrityError(f"the record of {key[0]}@{key[1]} in the registry at {self.uri} must be one written by "
                                              f"nion_autoem_models: {error}") from None
        if record.name != key[0]:
            raise storage.ModelIntegrityError(f"the record of {key[0]}@{key[1]} in the registry at {self.uri} must name {key[0]!r}, it names {record.name!r}")
        with self.__lock:
            self.__records[key] = (record, str(entity.run_id))
        return record, str(entity.run_id)

    def _registered_models(self) -> builtins.list[typing.Any]:
        with self._talking("list registered models"):
            found: builtins.list[typing.Any] = []
            token = None
            while True:
                page = self.client.search_registered_models(max_results=1000, page_token=token)
                found.extend(m for m in page if MODEL_TAG in (m.tags or {}))
                token = page.token
                if not token:
                    return found

    def _ensure_registered_model(self, name: str) -> None:
        try:
            self.client.create_registered_model(name, tags={MODEL_TAG: "1"}, description=f"{name}: models of the nion-autoem suite")
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            self.client.set_registered_model_tag(name, MODEL_TAG, "1")

    def _experiment_id(self) -> str:
        if self.__experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self.__experiment_id = str(self.client.create_experiment(self.experiment))
                except mlflow.exceptions.MlflowException as error:
                    if error.error_code != "RESOURCE_ALREADY_EXISTS":  # another session created it just now
                        raise
                    created = self.client.get_experiment_by_name(self.experiment)
                    if created is None:
                        raise
                    self.__experiment_id = str(created.experiment_id)
            else:
                self.__experiment_id = str(found.experiment_id)
        return self.__experiment_id

    def _alias_history(self, name: str, alias: str) -> builtins.list[int]:
        """The alias's promotions, oldest first, ending with where it points now (even if moved outside this interface)."""
        try:
            model_entity = self.client.get_registered_model(name)
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise UnknownModelError(f"no model {name!r} in the registry at {self.uri}; models: {sorted(m.name for m in self._registered_models())}") from None
        history = [int(v) for v in json.loads(model_entity.tags.get(ALIAS_HISTORY_TAG + alias, "[]"))]
        current = model_entity.aliases.get(alias)
        if current is not None and (not history or history[-1] != int(current)):
            history.append(int(current))
        return history

    def _write_alias_history(self, name: str, alias: str, history: builtins.list[int]) -> None:
        self.client.set_registered_model_tag(name, ALIAS_HISTORY_TAG + alias, json.dumps(history[-ALIAS_HISTORY_LENGTH:]))

    def _talking(self, what: str) -> typing.ContextManager[None]:
        return _Talking(self.uri, what)


class _Talking:
    """Turns a lost connection during a registry call into :class:`RegistryUnreachableError` naming the address."""

    def __init__(self, uri: str, what: str) -> None:
        self.uri, self.what = uri, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: typing.Any) -> None:
        if error is None or isinstance(error, (UnknownModelError, storage.ModelIntegrityError, RegistryUnreachableError)):
            return
        if _connection_lost(error):
            raise RegistryUnreachableError(f"the MLflow registry at {self.uri!r} stopped answering while trying to {self.what}: {str(error)[:300]}; "
                                           "check that the server is running and reachable from here") from error


def _connection_lost(error: BaseException) -> bool:
    """Whether a registry call failed because the server could not be reached (MLflow reports it as an MlflowException with the requests error in words)."""
    text = str(error)
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        marker in text for marker in ("Max retries exceeded", "Connection refused", "Failed to establish a new connection", "ConnectionError"))


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Raise :class:`RegistryUnreachableError` unless an MLflow server answers its health check at ``uri``.

    MLflow's client retries a lost connection for minutes; asking once, with a
    timeout, when the repository is opened tells the user at once which
    address is wrong.

    Examples
    --------
    >>> check_reachable("http://127.0.0.1:1", timeout_s=1.0)
    Traceback (most recent call last):
    ...
    nion_autoem_models.mlflow_registry.RegistryUnreachableError: no MLflow registry answered at 'http://127.0.0.1:1' ...
    """
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as answer:
            body = answer.read(64).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as error:
        raise RegistryUnreachableError(f"no MLflow registry answered at {uri!r}: the server there answered /health with HTTP {error.code}; "
                                       "the address must be that of an MLflow tracking server (mlflow server ...)") from None
    except (OSError, TimeoutError) as error:
        raise RegistryUnreachableError(f"no MLflow registry answered at {uri!r} within {timeout_s} s ({type(error).__name__}: {error}); "
                                       "check that `mlflow server` is running there and reachable from here, or use a folder repository") from None
    if body != "OK":
        raise RegistryUnreachableError(f"no MLflow registry answered at {uri!r}: its /health said {body!r}, an MLflow server says 'OK'; "
                                       "the address must be that of an MLflow tracking server (mlflow server ...)")


@contextlib.contextmanager
def local_server(folder: str | os.PathLike[str], *, port: int | None = None, host: str = "127.0.0.1", start_timeout_s: float = 120.0) -> typing.Iterator[str]:
    """Run ``mlflow server`` with a SQLite store and an artifact folder under ``folder``, and yield its address; stopped on exit.

    For trying the registry on a workstation, for tests and for benchmarks; a
    lab runs its own server. MLflow's job runner (background jobs for its
    GenAI features) is switched off: a model registry does not need it, and it
    starts a dozen more processes.

    Parameters
    ----------
    folder : str or Path
        Holds ``mlflow.sqlite``, ``artifacts/`` and ``server.log``; kept after the server stops.
    port : int, optional
        Default: a free port.
    host : str
        Address to listen on (``127.0.0.1``: this machine only).
    start_timeout_s : float
        How long the server may take to answer its health check.

    Raises
    ------
    RuntimeError
        If the server exits or does not answer in time; the message holds the end of its log.
    """
    base = pathlib.Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    if port is None:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
    log = base / "server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{(base / 'mlflow.sqlite').resolve()}", "--artifacts-destination", str((base / "artifacts").resolve())]
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "ab") as output:
        # A session of its own: the server runs uvicorn as a child, and stopping the group stops both.
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    uri = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                check_reachable(uri, timeout_s=1.0)
                break
            except RegistryUnreachableError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start at {uri} within {start_timeout_s} s (exit code {server.poll()}); "
                                       f"the end of {log}:\n{log.read_text(errors='replace')[-3000:]}") from None
                time.sleep(0.2)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
