"""Policy-driven retraining: enough new frames of a material start an ELIT iteration, whose result is registered with its provenance.

The adapted model is registered as a new version whose parent is the model it
started from and whose data manifest lists every frame it saw (hash and run),
and is promoted to a ``candidate`` alias, never to ``production``: a running
experiment has resolved its model to a fixed ``name@version`` when it started,
and the next run (or the operator, in the panel) chooses to use the candidate.
A retraining that fails registers nothing, so a working model is never replaced.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import threading
import time
import typing

import distributed
import numpy
import numpy.typing
import torch

import nion_autoem_checks as _checks
from nion_autoem_elit import ensemble
from nion_autoem_elit import iterative
from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_models import repository
from nion_autoem_models.progress import JobProgress

_NDArray = numpy.typing.NDArray[typing.Any]


_DEFAULT_ITERATION = iterative.IterationConfig()


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """A recorded frame: its ``.npy`` file and the run that recorded it (a run catalog query returns these)."""

    path: str
    run_id: str


def adapt_on_frames(
    state: dict[str, _NDArray],
    network_config: dict[str, int],
    class_names: tuple[str, ...],
    metadata: dict[str, typing.Any],
    frames: list[_NDArray],
    lattice: lattices.LatticeSpec | str,
    config: iterative.IterationConfig,
    torch_threads: int = 1,
) -> tuple[dict[str, _NDArray], list[dict[str, typing.Any]]]:
    """One ELIT iteration per frame, in order; plain arguments so it runs as a Dask task anywhere.

    Returns the adapted weights and one iteration report per frame.
    """
    torch.set_num_threads(_checks.whole(torch_threads, "torch_threads", 1))
    network = model.build(network_config)
    network.load_state_dict({name: torch.from_numpy(array).to(torch.float32) for name, array in state.items()})
    network.eval()
    ens = ensemble.Ensemble(network, class_names, dict(metadata))
    reports = []
    for frame in frames:
        ens, report = iterative.elit_iteration(ens, frame, lattice, config)
        reports.append(report.as_dict())
    return {name: tensor.detach().numpy().copy() for name, tensor in ens.network.state_dict().items()}, reports


def retrain(
    repo: repository.ModelStore,
    base: str,
    frames: typing.Sequence[FrameRecord],
    lattice: lattices.LatticeSpec | str,
    *,
    client: distributed.Client | None = None,
    config: iterative.IterationConfig = _DEFAULT_ITERATION,
    alias: str = "candidate",
    code_version: str = "nion_autoem_models.retraining",
    progress: JobProgress | None = None,
) -> repository.ModelVersion:
    """Adapt model ``base`` to ``frames`` (on ``client``'s cluster, or here) and register the result.

    Parameters
    ----------
    repo : ModelStore
        Where ``base`` is and the result goes: a folder repository or an MLflow registry.
    base : str
        ``name@version`` or alias of the model to adapt; resolved once, now.
    frames : sequence of FrameRecord
        New frames (``.npy``), each with its run id.
    lattice : LatticeSpec or str
        Material.
    client : distributed.Client, optional
        Cluster to run on; without one it runs in this process.
    config : IterationConfig
        ELIT iteration settings.
    alias : str
        Alias the new version is promoted to (not ``production``: see the module notes).
    progress : JobProgress, optional
        Updated as the job goes (a step per frame, then registering), then
        finished with the registered ``name@version`` or failed with the error.

    Returns
    -------
    ModelVersion
        The registered version: parent ``base``, a data manifest of ``frames`` and the iteration reports as metrics.
    """
    if progress is not None and not isinstance(progress, JobProgress):
        raise TypeError(f"progress must be a JobProgress (or None), got {type(progress).__name__}")
    job = progress if progress is not None else JobProgress(f"retrain {base} on {len(frames)} frame(s)")
    try:
        if not isinstance(repo, repository.ModelStore):
            raise TypeError(f"repo must be a ModelStore (a ModelRepository or an MLflow registry), got {type(repo).__name__}")
        if not frames or not all(isinstance(f, FrameRecord) for f in frames):
            raise ValueError(f"frames must be one or more FrameRecords, got {_checks.describe(list(frames))}")
        if not isinstance(config, iterative.IterationConfig):
            raise TypeError(f"config must be an IterationConfig, got {type(config).__name__}")
        job.start(f"loading {base}")
        record = _retrain(repo, base, frames, lattice, client, config, alias, code_version, job)
    except BaseException as error:
        job.fail(f"retraining {base} failed, nothing was registered: {type(error).__name__}: {error}")
        raise
    job.finish(f"registered {record.ref} as {record.name}@{alias}, adapted from {record.parent} on {len(frames)} frame(s)", result=record.ref)
    return record


def _retrain(
    repo: repository.ModelStore,
    base: str,
    frames: typing.Sequence[FrameRecord],
    lattice: lattices.LatticeSpec | str,
    client: distributed.Client | None,
    config: iterative.IterationConfig,
    alias: str,
    code_version: str,
    job: JobProgress,
) -> repository.ModelVersion:
    base_record = repo.resolve(base)
    ens = repo.load_ensemble(base_record.ref)
    arrays = [numpy.load(frame.path, allow_pickle=False) for frame in frames]
    manifest = [repository.manifest_entry(frame.path, frame.run_id) for frame in frames]
    state = {name: tensor.detach().numpy().copy() for name, tensor in ens.network.state_dict().items()}
    metadata = {k: v for k, v in ens.metadata.items() if k != "model_ref"}
    started = time.perf_counter()
    reports: list[dict[str, typing.Any]] = []
    # One task per frame, each starting from the weights the previous one returned: the same result as one
    # task over all frames (an iteration's only metadata change is the count set below), and progress per frame.
    units = len(arrays) + 1  # the frames, and registering
    where = " on the cluster" if client is not None else ""
    for i, array in enumerate(arrays):
        job.update(i / units, f"adapting {base_record.ref} to frame {i + 1} of {len(arrays)}{where}")
        args = (state, ens.network.config(), ens.class_names, metadata, [array], lattice, config)
        if client is None:
            state, frame_reports = adapt_on_frames(*args, torch_threads=torch.get_num_threads())
        else:
            state, frame_reports = client.submit(adapt_on_frames, *args, pure=False, retries=1).result()
        reports.extend(frame_reports)
    job.update(len(arrays) / units, f"registering the adapted {base_record.name} in {repo.location}")
    network = model.build(ens.network.config())
    network.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
    adapted = ensemble.Ensemble(network, ens.class_names, {**metadata, "elit_iterations": int(metadata.get("elit_iterations", 0)) + len(frames)})
    record = repo.register(
        base_record.name,
        adapted,
        recipe={"elit_iteration": dataclasses.asdict(config), "lattice": lattices.resolve_lattice(lattice).name},
        code_version=code_version,
        parent=base_record.ref,
        data_manifest=manifest,
        metrics={"elit_reports": reports, "training_seconds": round(time.perf_counter() - started, 2)},
        imaging_ranges=base_record.imaging_ranges,
    )
    repo.promote(record.ref, alias)
    return record


@dataclasses.dataclass(frozen=True)
class RetrainingRule:
    """"After ``every_frames`` new frames of ``lattice``, adapt ``base`` to them".

    Examples
    --------
    >>> RetrainingRule("mos2", "mos2@production", every_frames=50).every_frames
    50
    """

    lattice: str
    base: str
    every_frames: int = 50
    config: iterative.IterationConfig = iterative.IterationConfig()

    def __post_init__(self) -> None:
        _checks.whole(self.every_frames, "every_frames", 1)
        lattices.resolve_lattice(self.lattice)


class RetrainingPolicy:
    """Counts new frames and starts a background retraining when a rule's count is reached.

    One retraining at a time; frames that arrive meanwhile count towards the next.
    Each retraining reports its progress in a :class:`~nion_autoem_models.progress.JobProgress`
    (:attr:`progress` is the latest, :attr:`jobs` all of them), which a panel polls.

    Parameters
    ----------
    repo : ModelStore
        Where models come from and go.
    rule : RetrainingRule
        When and what to retrain.
    client : distributed.Client, optional
        Cluster to train on.
    """

    def __init__(self, repo: repository.ModelStore, rule: RetrainingRule, client: distributed.Client | None = None) -> None:
        if not isinstance(rule, RetrainingRule):
            raise TypeError(f"rule must be a RetrainingRule, got {type(rule).__name__}")
        self.repo, self.rule, self.client = repo, rule, client
        self.__lock = threading.Lock()
        self.__pending: list[FrameRecord] = []
        self.__seen: set[str] = set()
        self.__running: concurrent.futures.Future[repository.ModelVersion] | None = None
        self.__jobs: list[JobProgress] = []
        self.__executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="retraining")

    def offer(self, frames: typing.Iterable[FrameRecord]) -> concurrent.futures.Future[repository.ModelVersion] | None:
        """Count ``frames`` (already seen paths are ignored); the retraining started, if this completes a batch."""
        with self.__lock:
            for frame in frames:
                key = os.path.abspath(frame.path)
                if key not in self.__seen:
                    self.__seen.add(key)
                    self.__pending.append(frame)
            if len(self.__pending) < self.rule.every_frames or (self.__running is not None and not self.__running.done()):
                return None
            batch, self.__pending = self.__pending, []
            job = JobProgress(f"retrain {self.rule.base} on {len(batch)} new {self.rule.lattice} frame(s)")
            self.__jobs.append(job)
            self.__running = self.__executor.submit(retrain, self.repo, self.rule.base, batch, self.rule.lattice, client=self.client,
                                                    config=self.rule.config, progress=job)
            return self.__running

    @property
    def progress(self) -> JobProgress | None:
        """The progress of the latest retraining (running or ended), or None before the first."""
        with self.__lock:
            return self.__jobs[-1] if self.__jobs else None

    @property
    def jobs(self) -> list[JobProgress]:
        """The progress of every retraining this policy started, oldest first (a copy of the list)."""
        with self.__lock:
            return list(self.__jobs)

    @property
    def pending_frames(self) -> int:
        """Frames counted towards the next retraining."""
        with self.__lock:
            return len(self.__pending)

    def close(self) -> None:
        """Wait for a running retraining and stop the background thread."""
        self.__executor.shutdown(wait=True)


def frames_in(folder: str | os.PathLike[str], run_id: str) -> list[FrameRecord]:
    """Every ``.npy`` frame under ``folder`` as FrameRecords of ``run_id``.

    Examples
    --------
    >>> frames_in("/nonexistent", "run-1")
    []
    """
    return [FrameRecord(str(path), run_id) for path in sorted(pathlib.Path(folder).rglob("*.npy"))]
