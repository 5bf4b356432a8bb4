"""A model repository: every model with its weights, hash and provenance, in a folder.

A version is a folder ``NAME/VERSION/`` holding ``weights.safetensors`` (tensors
only, so loading runs no code) and ``record.json`` (the content hash of the
weights, the training recipe, code version, parent model, data manifest,
metrics and imaging ranges). Versions are never rewritten; aliases such as
``mos2@production`` are pointers kept in ``aliases.json`` with their history,
so promoting is one write and rolling back is stepping back in that history.

The folder can be shared (a network drive): a version number is claimed by
creating its folder, which fails for the second of two writers, and every
file is written to a temporary name and renamed into place.

A lab's MLflow model registry holds the same records behind the same
interface (:class:`ModelStore`; :mod:`nion_autoem_models.mlflow_registry`):
:func:`open_repository` picks the folder or the registry from a path or an
``http(s)://`` address.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import re
import time
import typing

import safetensors.torch
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_elit import ensemble
from nion_autoem_elit import model
from nion_autoem_elit import storage

WEIGHTS_FILE = "weights.safetensors"
RECORD_FILE = "record.json"
ALIASES_FILE = "aliases.json"
ALIASES_LOCK = "aliases.lock"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
#: The environment variable naming the suite's repository: a folder, or an MLflow registry's address.
LOCATION_VARIABLE = "NION_AUTOEM_MODELS"


class ModelHashError(storage.ModelIntegrityError):
    """A stored model's weights do not match the content hash in its record."""


class UnknownModelError(LookupError):
    """No model, version or alias of that name in the repository."""


class MissingParentError(ValueError):
    """A model names a parent that the repository does not hold."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One registered model: what it is, where it came from and what it is good for.

    Attributes
    ----------
    name, version : str, int
        ``name@version`` identifies it for ever.
    content_hash : str
        SHA-256 of the weights file.
    kind : str
        ``"elit-ensemble"`` or another model family.
    network : dict
        Constructor arguments of the network (empty if not rebuildable here).
    class_names : tuple of str
        Output classes, background first (empty if not a classifier).
    recipe : dict
        Training or adaptation settings.
    code_version : str
        Software that trained it.
    parent : str or None
        ``name@version`` of the model it was adapted from.
    data_manifest : tuple of dict
        What it was trained on: ``{"run_id", "path", "sha256"}`` per frame or journal.
    metrics : dict
        Validation figures.
    imaging_ranges : dict
        Imaging conditions the model is valid for.
    extra : dict
        Further metadata (e.g. the uncertainty calibration) returned on load.
    created : str
        ISO time of registration (UTC).
    """

    name: str
    version: int
    content_hash: str
    kind: str
    network: dict[str, typing.Any]
    class_names: tuple[str, ...]
    recipe: dict[str, typing.Any]
    code_version: str
    parent: str | None
    data_manifest: tuple[dict[str, typing.Any], ...]
    metrics: dict[str, typing.Any]
    imaging_ranges: dict[str, typing.Any]
    extra: dict[str, typing.Any]
    created: str

    @property
    def ref(self) -> str:
        """``name@version``, the reference that never changes meaning."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, typing.Any]:
        """Plain dictionary (JSON-ready)."""
        record = dataclasses.asdict(self)
        record["class_names"] = list(self.class_names)
        record["data_manifest"] = [dict(item) for item in self.data_manifest]
        return record

    @classmethod
    def from_dict(cls, record: typing.Mapping[str, typing.Any]) -> ModelVersion:
        """The inverse of :meth:`as_dict`."""
        fields = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(fields - set(record))
        if missing:
            raise storage.ModelIntegrityError(f"a model record must have the fields {sorted(fields)}, missing {missing}")
        values = {key: record[key] for key in fields}
        values["class_names"] = tuple(values["class_names"])
        values["data_manifest"] = tuple(dict(item) for item in values["data_manifest"])
        return cls(**values)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, for data manifests.

    Examples
    --------
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "frame.npy"
    >>> _ = path.write_bytes(b"abc")
    >>> file_sha256(path)[:12]
    'ba7816bf8f01'
    """
    return sha256_of(pathlib.Path(path))


def manifest_entry(path: str | os.PathLike[str], run_id: str) -> dict[str, typing.Any]:
    """One data-manifest item: the file, its run and its hash.

    Examples
    --------
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "frame.npy"
    >>> _ = path.write_bytes(b"abc")
    >>> sorted(manifest_entry(path, "run-1"))
    ['path', 'run_id', 'sha256']
    """
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be the non-empty id of the run the file came from, got {run_id!r}")
    return {"run_id": run_id, "path": str(path), "sha256": file_sha256(path)}


@typing.runtime_checkable
class ModelStore(typing.Protocol):
    """What every model repository offers: a folder (:class:`ModelRepository`) or a lab's MLflow registry.

    Code that registers, promotes or loads models takes a ``ModelStore`` and
    works with either; :func:`open_repository` makes one from a path or an address.
    """

    @property
    def location(self) -> str:
        """Where the models are: a folder path or a registry address (for messages)."""
        ...

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
    ) -> ModelVersion: ...

    def promote(self, ref: str, alias: str) -> ModelVersion: ...

    def rollback(self, name: str, alias: str) -> ModelVersion: ...

    def resolve(self, ref: str) -> ModelVersion: ...

    def aliases(self) -> dict[str, str]: ...

    def list(self, name: str | None = None) -> builtins.list[ModelVersion]: ...

    def search(self, text: str | None = None, *, run_id: str | None = None, parent: str | None = None, kind: str | None = None) -> builtins.list[ModelVersion]: ...

    def lineage(self, ref: str) -> builtins.list[ModelVersion]: ...

    def load_weights(self, ref: str) -> tuple[dict[str, torch.Tensor], ModelVersion]: ...

    def load_ensemble(self, ref: str) -> ensemble.Ensemble: ...


class ModelRepository:
    """Versioned models with provenance in a local (or shared) folder.

    Parameters
    ----------
    folder : str or Path
        Where the models live; created if needed.

    Examples
    --------
    >>> import tempfile
    >>> from nion_autoem_elit import ensemble, model
    >>> repo = ModelRepository(tempfile.mkdtemp())
    >>> ens = ensemble.Ensemble(model.EnsembleUNet(2, 3), ("background", "A", "B"))
    >>> first = repo.register("tiny", ens, recipe={"steps": 0}, code_version="doc")
    >>> second = repo.register("tiny", ens, recipe={"steps": 1}, code_version="doc", parent=first.ref)
    >>> _ = repo.promote(first.ref, "production")
    >>> repo.promote(second.ref, "production").ref
    'tiny@2'
    >>> repo.load_ensemble("tiny@production").metadata["model_ref"]
    'tiny@2'
    >>> repo.rollback("tiny", "production").ref
    'tiny@1'
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"folder must be a directory path (str or Path), got {type(folder).__name__}")
        self.folder = pathlib.Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        """The folder, as a string (for messages)."""
        return str(self.folder)

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
        """Store a new version of ``name`` and return its record.

        Parameters
        ----------
        name : str
            Lower-case model name, e.g. ``"mos2"``.
        weights : Ensemble or mapping of str to Tensor
            An ELIT ensemble (network, classes and metadata are taken from it)
            or any state dict.
        recipe : mapping
            Training or adaptation settings.
        code_version : str
            Software that made the weights.
        parent : str, optional
            ``name@version`` (or alias) of the model these weights were adapted from.
        data_manifest : sequence of mapping
            ``{"run_id", "path", "sha256"}`` per file trained on (see :func:`manifest_entry`).
        metrics, imaging_ranges, extra : mapping, optional
            Validation figures, valid imaging conditions, further metadata.
        kind : str
            Model family.
        network, class_names :
            For a plain state dict: how to rebuild the network.

        Returns
        -------
        ModelVersion
            The record, with the next free version number.

        Raises
        ------
        MissingParentError
            If ``parent`` is not in the repository.

        Examples
        --------
        >>> import tempfile
        >>> repo = ModelRepository(tempfile.mkdtemp())
        >>> repo.register("plain", {"w": torch.zeros(2)}, recipe={}, code_version="doc", kind="test").ref
        'plain@1'
        """
        name, code_version, recipe = check_registration(name, code_version, recipe)
        parent_ref = None
        if parent is not None:
            try:
                parent_ref = self.resolve(parent).ref
            except UnknownModelError as error:
                raise MissingParentError(f"parent must be a model in the repository at {self.folder}, got {parent!r}: {error}") from None
        state, network, class_names, extra, imaging_ranges = split_weights(weights, network, class_names, extra, imaging_ranges)
        manifest = tuple(_check_manifest_item(item) for item in data_manifest)
        folder, version = self._claim_version(name)
        weights_path = folder / WEIGHTS_FILE
        tmp = weights_path.with_suffix(".tmp")
        safetensors.torch.save_file(state, str(tmp))
        os.replace(tmp, weights_path)
        record = new_record(name, version, sha256_of(weights_path), kind=kind, network=network, class_names=class_names, recipe=recipe,
                            code_version=code_version, parent=parent_ref, data_manifest=manifest, metrics=metrics,
                            imaging_ranges=imaging_ranges, extra=extra)
        _write_json(folder / RECORD_FILE, record.as_dict())
        return record

    def promote(self, ref: str, alias: str) -> ModelVersion:
        """Point ``NAME@alias`` at the version ``ref``; the previous target stays in the alias's history.

        Examples
        --------
        >>> import tempfile
        >>> repo = ModelRepository(tempfile.mkdtemp())
        >>> v = repo.register("plain", {"w": torch.zeros(2)}, recipe={}, code_version="doc", kind="test")
        >>> repo.promote("plain@1", "production").ref
        'plain@1'
        """
        target = self.resolve(ref)
        alias = _check_alias(alias)
        with self._aliases_locked():
            aliases = self._aliases()
            history = aliases.setdefault(f"{target.name}@{alias}", [])
            history.append(target.version)
            _write_json(self.folder / ALIASES_FILE, aliases)
        return target

    def rollback(self, name: str, alias: str) -> ModelVersion:
        """Point ``name@alias`` back at the version it pointed at before the last promotion.

        Raises
        ------
        UnknownModelError
            If the alias does not exist or has no earlier version.

        Examples
        --------
        >>> import tempfile
        >>> repo = ModelRepository(tempfile.mkdtemp())
        >>> for _ in range(2):
        ...     _ = repo.promote(repo.register("plain", {"w": torch.zeros(2)}, recipe={}, code_version="doc", kind="test").ref, "production")
        >>> repo.rollback("plain", "production").ref
        'plain@1'
        """
        key = f"{_check_name(name)}@{_check_alias(alias)}"
        with self._aliases_locked():
            aliases = self._aliases()
            history = aliases.get(key, [])
            if len(history) < 2:
                raise UnknownModelError(f"{key} must have been promoted at least twice to roll back, its history is {history}")
            history.pop()
            _write_json(self.folder / ALIASES_FILE, aliases)
        return self.resolve(f"{name}@{history[-1]}")

    # -- reading ---------------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelVersion:
        """The record of ``name@version`` (e.g. ``"mos2@3"``) or ``name@alias`` (e.g. ``"mos2@production"``).

        A run should resolve an alias once, when it starts, and use the returned
        ``ref`` from then on: a later promotion then never swaps its model mid-run.

        Raises
        ------
        UnknownModelError
            If there is no such model, version or alias.

        Examples
        --------
        >>> import tempfile
        >>> ModelRepository(tempfile.mkdtemp()).resolve("mos2@production")
        Traceback (most recent call last):
        ...
        nion_autoem_models.repository.UnknownModelError: no alias 'mos2@production' ...
        """
        name, tag = split_ref(ref)
        if tag.isdigit():
            version = int(tag)
        else:
            history = self._aliases().get(f"{name}@{tag}")
            if not history:
                known = sorted(self._aliases())
                raise UnknownModelError(f"no alias {ref!r} in the repository at {self.folder}; known aliases: {known}; promote a version first")
            version = history[-1]
        path = self.folder / name / str(version) / RECORD_FILE
        if not path.exists():
            known_versions = [v.version for v in self.list(name)]
            raise UnknownModelError(f"no model {name}@{version} in the repository at {self.folder}; versions of {name!r}: {known_versions}")
        try:
            return ModelVersion.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise storage.ModelIntegrityError(f"record {path} must be a model record written by ModelRepository.register: {error}") from None

    def aliases(self) -> dict[str, str]:
        """Every alias and the version it names now, e.g. ``{"mos2@production": "mos2@3"}``.

        Examples
        --------
        >>> import tempfile
        >>> ModelRepository(tempfile.mkdtemp()).aliases()
        {}
        """
        return {alias: f"{alias.partition('@')[0]}@{history[-1]}" for alias, history in sorted(self._aliases().items()) if history}

    def list(self, name: str | None = None) -> builtins.list[ModelVersion]:
        """Every version (of ``name``, or of all models), oldest first per name.

        Examples
        --------
        >>> import tempfile
        >>> ModelRepository(tempfile.mkdtemp()).list()
        []
        """
        names = [_check_name(name)] if name is not None else sorted(p.name for p in self.folder.iterdir() if p.is_dir())
        records: builtins.list[ModelVersion] = []
        for each in names:
            folder = self.folder / each
            if not folder.is_dir():
                continue
            versions = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / RECORD_FILE).exists())
            records.extend(self.resolve(f"{each}@{v}") for v in versions)
        return records

    def search(self, text: str | None = None, *, run_id: str | None = None, parent: str | None = None, kind: str | None = None) -> builtins.list[ModelVersion]:
        """Versions whose name, lattice or recipe mention ``text``, trained on ``run_id``, adapted from ``parent`` or of ``kind``.

        Examples
        --------
        >>> import tempfile
        >>> repo = ModelRepository(tempfile.mkdtemp())
        >>> _ = repo.register("plain", {"w": torch.zeros(2)}, recipe={"lattice": "MoS2"}, code_version="doc", kind="test")
        >>> [v.ref for v in repo.search("mos2")]
        ['plain@1']
        """
        parent_ref = self.resolve(parent).ref if parent is not None else None
        return [record for record in self.list() if matches(record, text, run_id=run_id, parent=parent_ref, kind=kind)]

    def lineage(self, ref: str) -> builtins.list[ModelVersion]:
        """The model and its ancestors, newest first: the full provenance chain."""
        return lineage_of(self, ref)

    def load_weights(self, ref: str) -> tuple[dict[str, torch.Tensor], ModelVersion]:
        """The state dict of ``ref`` after checking its content hash, and its record.

        Raises
        ------
        ModelHashError
            If the weights file does not match the hash registered with it.
        """
        record = self.resolve(ref)
        path = self.folder / record.name / str(record.version) / WEIGHTS_FILE
        if not path.exists():
            raise storage.ModelIntegrityError(f"weights of {record.ref} must be at {path}, but the file is missing")
        actual = sha256_of(path)
        if actual != record.content_hash:
            raise ModelHashError(f"weights of {record.ref} at {path} must have sha256 {record.content_hash} as registered, the file has {actual}; "
                                 "it was altered or damaged: restore it or register the model again")
        return safetensors.torch.load_file(str(path)), record

    def load_ensemble(self, ref: str) -> ensemble.Ensemble:
        """An ELIT ensemble from the repository, hash checked; ``metadata["model_ref"]`` says exactly which version."""
        state, record = self.load_weights(ref)
        return ensemble_from(state, record)

    # -- internals -------------------------------------------------------------------------------------------

    def _claim_version(self, name: str) -> tuple[pathlib.Path, int]:
        """Create the next version folder; mkdir is atomic, so two writers never get the same number."""
        base = self.folder / name
        base.mkdir(parents=True, exist_ok=True)
        version = max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) + 1
        while True:
            try:
                (base / str(version)).mkdir()
                return base / str(version), version
            except FileExistsError:
                version += 1

    @contextlib.contextmanager
    def _aliases_locked(self, timeout_s: float = 10.0) -> typing.Iterator[None]:
        """Hold the alias lock: promotions from two sessions on a shared folder must not lose one another.

        An exclusively created file is the lock, because it works on every OS and network drive the folder may be on.
        """
        path = self.folder / ALIASES_LOCK
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} has been held for {timeout_s} s: another session is promoting, or one crashed while promoting; "
                                       "if no one is using the repository, delete the file") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            os.close(descriptor)
            os.unlink(path)

    def _aliases(self) -> dict[str, builtins.list[int]]:
        path = self.folder / ALIASES_FILE
        if not path.exists():
            return {}
        aliases = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(aliases, dict):
            raise storage.ModelIntegrityError(f"{path} must be a JSON object of alias to version history, got {type(aliases).__name__}")
        return typing.cast(dict[str, builtins.list[int]], aliases)


def default_folder() -> pathlib.Path:
    """Where the suite keeps its model folder: ``$NION_AUTOEM_MODELS``, or ``~/nion-autoem/models``.

    Raises
    ------
    ValueError
        If ``$NION_AUTOEM_MODELS`` is a registry address (``http(s)://``), which
        is not a folder: use :func:`open_repository` there.
    """
    location = os.environ.get(LOCATION_VARIABLE, "")
    if is_registry_address(location):
        raise ValueError(f"${LOCATION_VARIABLE} is the registry address {location!r}, not a folder; open it with "
                         "nion_autoem_models.open_repository(), which returns the folder repository or the MLflow registry")
    return pathlib.Path(location or pathlib.Path.home() / "nion-autoem" / "models").expanduser()


def is_registry_address(location: str | os.PathLike[str]) -> bool:
    """True for an MLflow registry address (``http://`` or ``https://``), False for a folder.

    Examples
    --------
    >>> is_registry_address("http://models.lab:5000"), is_registry_address("~/nion-autoem/models")
    (True, False)
    """
    return isinstance(location, str) and location.lower().startswith(("http://", "https://"))


def open_repository(location: str | os.PathLike[str] | None = None) -> ModelStore:
    """The model repository at ``location``: a folder, or a lab's MLflow registry given its address.

    Parameters
    ----------
    location : str or Path, optional
        A folder path (or ``file://`` URI), or the ``http(s)://host:port``
        address of an MLflow tracking server with its model registry. Default:
        ``$NION_AUTOEM_MODELS``, else ``~/nion-autoem/models``.

    Returns
    -------
    ModelStore
        A :class:`ModelRepository` or an
        :class:`~nion_autoem_models.mlflow_registry.MlflowModelRepository`; both
        list, search, load by ``name@version`` or alias, promote and roll back.

    Raises
    ------
    nion_autoem_models.mlflow_registry.RegistryUnreachableError
        If no MLflow server answers at the address.

    Examples
    --------
    >>> import tempfile
    >>> type(open_repository(tempfile.mkdtemp())).__name__
    'ModelRepository'
    >>> open_repository("http://127.0.0.1:1")
    Traceback (most recent call last):
    ...
    nion_autoem_models.mlflow_registry.RegistryUnreachableError: no MLflow registry answered at 'http://127.0.0.1:1' ...
    """
    if location is None:
        location = os.environ.get(LOCATION_VARIABLE) or default_folder()
    if not isinstance(location, (str, os.PathLike)):
        raise TypeError(f"location must be a folder path or an http(s):// registry address, got {type(location).__name__}")
    if is_registry_address(location):
        from nion_autoem_models import mlflow_registry  # MLflow takes seconds to import: only when a registry is used

        return mlflow_registry.MlflowModelRepository(str(location))
    if isinstance(location, str) and location.startswith("file://"):
        location = location.removeprefix("file://")
    elif isinstance(location, str) and "://" in location:
        raise ValueError(f"location must be a folder path, a file:// URI or an http(s):// MLflow registry address, got {location!r}")
    return ModelRepository(location)


def seed_from_package(repo: ModelStore) -> builtins.list[ModelVersion]:
    """Register the ELIT ensembles shipped in ``nion_autoem_elit/models`` and promote them to ``production``.

    Idempotent: a packaged model already registered (same content hash) is not registered again.

    Examples
    --------
    >>> import tempfile
    >>> repo = ModelRepository(tempfile.mkdtemp())
    >>> [v.ref for v in seed_from_package(repo)]
    ['graphene@1', 'mos2@1']
    >>> [v.ref for v in seed_from_package(repo)]
    ['graphene@1', 'mos2@1']
    """
    if not isinstance(repo, ModelStore):
        raise TypeError(f"repo must be a ModelStore (a ModelRepository or an MLflow registry), got {type(repo).__name__}")
    seeded = []
    for json_path in sorted(storage.PACKAGED_MODELS.glob("*.json")):
        ens = storage.load_ensemble(json_path)  # verifies the packaged checksum
        name = json_path.stem.rsplit("_v", 1)[0]
        source_hash = ens.metadata.get("weights_sha256")
        existing = [v for v in repo.list(name) if v.extra.get("weights_sha256") == source_hash]
        if existing:
            seeded.append(existing[0])
            continue
        metrics = {k: v for k, v in ens.metadata.items() if k == "validation" or k in {"calibration_error_rate", "calibration_ece"}}
        record = repo.register(
            name,
            ens,
            recipe=ens.metadata.get("training", {}),
            code_version=f"nion_autoem_elit packaged {json_path.stem} (scripts/train_elit_models.py)",
            data_manifest=[{"run_id": "simulated", "path": f"nion_autoem_elit.synthetic:{ens.metadata.get('lattice', name)}", "sha256": ""}],
            metrics=metrics,
            extra={"packaged_file": json_path.name},
        )
        repo.promote(record.ref, "production")
        seeded.append(record)
    return seeded


# -- shared by every ModelStore ------------------------------------------------------------------------------


def split_ref(ref: str) -> tuple[str, str]:
    """``"mos2@3"`` to ``("mos2", "3")``, ``"mos2@production"`` to ``("mos2", "production")``, with the name checked.

    Examples
    --------
    >>> split_ref("mos2@production")
    ('mos2', 'production')
    """
    if not isinstance(ref, str) or "@" not in ref:
        raise ValueError(f"ref must be 'name@version' or 'name@alias' (e.g. 'mos2@production'), got {ref!r}")
    name, _, tag = ref.partition("@")
    if not tag:
        raise ValueError(f"ref must be 'name@version' or 'name@alias' (e.g. 'mos2@production'), got {ref!r}")
    return _check_name(name), tag


def split_weights(
    weights: ensemble.Ensemble | typing.Mapping[str, torch.Tensor],
    network: typing.Mapping[str, typing.Any] | None,
    class_names: typing.Sequence[str],
    extra: typing.Mapping[str, typing.Any] | None,
    imaging_ranges: typing.Mapping[str, typing.Any] | None,
) -> tuple[dict[str, torch.Tensor], dict[str, typing.Any], tuple[str, ...], dict[str, typing.Any], dict[str, typing.Any] | None]:
    """The tensors to store and the record fields that come with them (an ensemble carries its network, classes and metadata)."""
    if isinstance(weights, ensemble.Ensemble):
        state = dict(weights.network.state_dict())
        network = dict(weights.network.config())
        class_names = weights.class_names
        carried = {k: v for k, v in weights.metadata.items() if k not in {"imaging_ranges", "model_ref"}}
        extra = {**carried, **dict(extra or {})}
        if imaging_ranges is None and "imaging_ranges" in weights.metadata:
            imaging_ranges = weights.metadata["imaging_ranges"]
    elif isinstance(weights, typing.Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        state = dict(weights)
    else:
        raise TypeError(f"weights must be an Ensemble or a state dict of str to Tensor, got {type(weights).__name__}")
    tensors = {key: tensor.detach().cpu().contiguous().clone() for key, tensor in state.items()}
    return tensors, dict(network or {}), tuple(class_names), dict(extra or {}), dict(imaging_ranges) if imaging_ranges is not None else None


def new_record(name: str, version: int, content_hash: str, *, kind: str, network: typing.Mapping[str, typing.Any], class_names: typing.Sequence[str],
               recipe: typing.Mapping[str, typing.Any], code_version: str, parent: str | None, data_manifest: typing.Sequence[typing.Mapping[str, typing.Any]],
               metrics: typing.Mapping[str, typing.Any] | None, imaging_ranges: typing.Mapping[str, typing.Any] | None,
               extra: typing.Mapping[str, typing.Any] | None) -> ModelVersion:
    """The record of a version being registered now (JSON round-tripped, so it equals the record read back)."""
    return ModelVersion(
        name=name,
        version=version,
        content_hash=content_hash,
        kind=str(kind),
        network=dict(network or {}),
        class_names=tuple(class_names),
        recipe=_jsonable(recipe),
        code_version=code_version,
        parent=parent,
        data_manifest=tuple(dict(item) for item in data_manifest),
        metrics=_jsonable(metrics or {}),
        imaging_ranges=_jsonable(imaging_ranges or {}),
        extra=_jsonable(extra or {}),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def matches(record: ModelVersion, text: str | None = None, *, run_id: str | None = None, parent: str | None = None, kind: str | None = None) -> bool:
    """Whether ``record`` passes :meth:`ModelStore.search`'s filters (``parent`` already resolved to ``name@version``)."""
    if text is not None and text.lower() not in json.dumps([record.name, record.recipe, record.extra.get("lattice", "")]).lower():
        return False
    if run_id is not None and not any(item.get("run_id") == run_id for item in record.data_manifest):
        return False
    if parent is not None and record.parent != parent:
        return False
    return kind is None or record.kind == kind


def lineage_of(repo: ModelStore, ref: str) -> builtins.list[ModelVersion]:
    """The model and its ancestors in ``repo``, newest first."""
    chain: builtins.list[ModelVersion] = [repo.resolve(ref)]
    while chain[-1].parent is not None:
        chain.append(repo.resolve(chain[-1].parent))
    return chain


def ensemble_from(state: typing.Mapping[str, torch.Tensor], record: ModelVersion) -> ensemble.Ensemble:
    """The ELIT ensemble of a loaded state dict; ``metadata["model_ref"]`` says exactly which version it is."""
    if record.kind != "elit-ensemble":
        raise ValueError(f"ref must name an ELIT ensemble, {record.ref} is a {record.kind!r} model")
    network = model.build(record.network)
    network.load_state_dict({key: tensor.to(torch.float32) for key, tensor in state.items()})
    network.eval()
    metadata = {**record.extra, "imaging_ranges": record.imaging_ranges, "model_ref": record.ref}
    return ensemble.Ensemble(network, record.class_names, metadata)


def check_registration(name: str, code_version: str, recipe: typing.Mapping[str, typing.Any]) -> tuple[str, str, typing.Mapping[str, typing.Any]]:
    """``register``'s own arguments, checked: a valid name, a non-empty code version, a mapping recipe."""
    name = _check_name(name)
    if not isinstance(code_version, str) or not code_version:
        raise ValueError(f"code_version must be a non-empty string naming the software that trained the model, got {code_version!r}")
    if not isinstance(recipe, typing.Mapping):
        raise TypeError(f"recipe must be a mapping of training settings, got {type(recipe).__name__}")
    return name, code_version, recipe


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (lower-case letters, digits, ``_.-``), else ValueError saying so."""
    return _check_name(name)


def check_alias(alias: str) -> str:
    """``alias`` if it is a valid alias (a lower-case word that is not a number), else ValueError saying so."""
    return _check_alias(alias)


def check_manifest_item(item: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """A data-manifest item with ``run_id``, ``path`` and ``sha256``, else ValueError saying so."""
    return _check_manifest_item(item)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be lower-case letters, digits, '_', '.' or '-' (e.g. 'mos2'), got {name!r}")
    return name


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _NAME.match(alias) or alias.isdigit():
        raise ValueError(f"alias must be a lower-case word that is not a number (e.g. 'production'), got {alias!r}")
    return alias


def _check_manifest_item(item: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    if not isinstance(item, typing.Mapping) or not {"run_id", "path", "sha256"} <= set(item):
        raise ValueError(f"data_manifest items must be mappings with run_id, path and sha256 (see manifest_entry), got {item!r}")
    return typing.cast(dict[str, typing.Any], _jsonable(item))


def _jsonable(value: typing.Any) -> typing.Any:
    """JSON round trip, so a record read back equals the one written (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _write_json(path: pathlib.Path, value: typing.Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of bytes (the same hash the repository records for weight files).

    Examples
    --------
    >>> content_hash(b"abc")[:12]
    'ba7816bf8f01'
    """
    return hashlib.sha256(data).hexdigest()
