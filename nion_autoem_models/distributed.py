"""ELIT training as Dask tasks: members in parallel, on a local cluster or a lab's scheduler.

Each ensemble member is an independent network, so members train as separate
tasks (one per member) and are packed back into one grouped-convolution
network afterwards; the packed layout is member-major, so packing is a
concatenation. A task checkpoints its member every few steps (one safetensors
file: tensors, and a JSON header with the step, optimiser settings and RNG
states; no pickle), and a task that starts again after its worker died, or is
submitted again after the whole training was stopped, resumes from the
checkpoint instead of from step 0 and ends after the same number of steps,
with the same weights; with ``retries`` a task that raised is run again too.

The Dask nanny exports ``MALLOC_TRIM_THRESHOLD_=65536`` to its workers
(``distributed.nanny.pre-spawn-environ``) to return memory to the system
eagerly; with torch's many short-lived allocations that trimming made training
in workers slower (about 2x in the issue's measurement, 1.4x in
``benchmarks/cloud_bench.py`` here). :func:`local_cluster` removes it and sets the
thread variables to the torch threads each worker is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import time
import typing
import warnings

import dask.config
import distributed
import numpy
import numpy.typing
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F

import nion_autoem_checks as _checks
from nion_autoem_elit import ensemble
from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_elit import synthetic
from nion_autoem_elit import training
from nion_autoem_models.progress import JobProgress

_NDArray = numpy.typing.NDArray[typing.Any]

#: A member's checkpoint: one safetensors file, its non-tensor state as JSON under this key of the header.
CHECKPOINT_SUFFIX = ".safetensors"
CHECKPOINT_HEADER = "nion_autoem_checkpoint"
CHECKPOINT_FORMAT = 1

#: Seeds of members are this far apart, so member ``m`` draws its own frames and initialisation.
MEMBER_SEED_STRIDE = 1009


_DEFAULT_TRAINING = training.TrainingConfig()


class SchedulerUnreachableError(ConnectionError):
    """No Dask scheduler answered at the address given."""


def worker_environment(torch_threads: int = 1) -> dict[str, str | None]:
    """Environment for Dask worker processes that train with torch.

    ``None`` removes a variable the nanny would otherwise set.

    Examples
    --------
    >>> env = worker_environment(2)
    >>> env["MALLOC_TRIM_THRESHOLD_"] is None, env["OMP_NUM_THREADS"]
    (True, '2')
    """
    threads = _checks.whole(torch_threads, "torch_threads", 1)
    return {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}


@contextlib.contextmanager
def local_cluster(workers: int = 2, torch_threads: int = 1) -> typing.Iterator[distributed.Client]:
    """A process-based ``LocalCluster`` set up for torch training, and a client on it; both closed on exit.

    Parameters
    ----------
    workers : int
        Worker processes (one Dask thread each: a member uses its worker's cores through torch).
    torch_threads : int
        Torch threads per worker; workers x threads should not exceed the cores.

    Examples
    --------
    >>> with local_cluster(1) as client:
    ...     len(client.scheduler_info()["workers"])
    1
    """
    workers = _checks.whole(workers, "workers", 1)
    environ = worker_environment(torch_threads)
    # Workers inherit this process's environment, and an earlier default Dask cluster in this
    # session leaves MALLOC_TRIM_THRESHOLD_ in it (the nanny exports its settings here before
    # spawning): keep it out while this cluster lives, as its nannies restart killed workers.
    inherited = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        # Each nanny reads this once, when it is made (and keeps it for restarts), so the setting
        # is only needed while the cluster starts: other clusters made later keep Dask's defaults.
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            # Any free port for the dashboard (on localhost): two clusters, or another user's, never clash on 8787.
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40)  # type: ignore[no-untyped-call]
        try:
            client = distributed.Client(cluster)  # type: ignore[no-untyped-call]
            try:
                yield client
            finally:
                client.close()  # type: ignore[no-untyped-call]
        finally:
            cluster.close()
    finally:
        if inherited is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = inherited


def connect(address: str, *, timeout_s: float = 10.0) -> distributed.Client:
    """A client on a running scheduler, e.g. a lab's Slurm cluster started with dask-jobqueue.

    Raises
    ------
    SchedulerUnreachableError
        If no scheduler answers at ``address`` within ``timeout_s``.

    Examples
    --------
    >>> connect("tcp://127.0.0.1:1", timeout_s=0.5)
    Traceback (most recent call last):
    ...
    nion_autoem_models.distributed.SchedulerUnreachableError: no Dask scheduler answered at 'tcp://127.0.0.1:1' ...
    """
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"address must be a Dask scheduler address such as 'tcp://host:8786', got {address!r}")
    try:
        client = distributed.Client(address, timeout=f"{timeout_s}s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as error:
        raise SchedulerUnreachableError(
            f"no Dask scheduler answered at {address!r} within {timeout_s} s ({type(error).__name__}); "
            "check that the scheduler is running and reachable from here, or train on a local_cluster()"
        ) from None
    slow = workers_trimming_malloc(client)
    if slow:
        # A lab's workers are started by the lab's configuration, not by us: say what to change.
        warnings.warn(f"workers {slow} run with MALLOC_TRIM_THRESHOLD_ set (Dask's nanny default), which slows torch training (1.4-2x); "
                      "start them with distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ set to null", stacklevel=2)
    return client


def workers_trimming_malloc(client: distributed.Client) -> list[str]:
    """Addresses of the workers that run with ``MALLOC_TRIM_THRESHOLD_`` set (slow torch training; see the module notes).

    Examples
    --------
    >>> with local_cluster(1) as client:
    ...     workers_trimming_malloc(client)
    []
    """
    found = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    return sorted(address for address, value in found.items() if value is not None)


@dataclasses.dataclass(frozen=True)
class MemberResult:
    """One trained member, as a task returns it.

    Attributes
    ----------
    member : int
        Its index in the ensemble.
    state : dict of str to ndarray
        Weights of a one-member network.
    seconds : float
        Time spent computing in the task (simulation and training).
    resumed_from_step : int
        0 for a fresh start, else the checkpointed step it carried on from.
    worker_pid : int
        Process that finished it.
    steps_run : int
        Optimiser steps this task ran; ``resumed_from_step + steps_run`` is
        always the recipe's ``steps``, resumed or not.
    """

    member: int
    state: dict[str, _NDArray]
    seconds: float
    resumed_from_step: int
    worker_pid: int
    steps_run: int = 0

    @property
    def steps(self) -> int:
        """Optimiser steps behind the weights: those before the checkpoint it resumed from and those it ran."""
        return self.resumed_from_step + self.steps_run


def train_member(
    lattice: lattices.LatticeSpec | str,
    config: dict[str, typing.Any],
    member: int,
    ranges: dict[str, typing.Any] | None = None,
    *,
    checkpoint: str | None = None,
    checkpoint_every: int = 25,
    torch_threads: int = 1,
) -> MemberResult:
    """Train member ``member`` of an ensemble described by ``config`` (a :class:`TrainingConfig` as a dict).

    Runs anywhere: in this process, or as a Dask task. Plain arguments and
    numpy results keep it serialisable. With ``checkpoint`` (a path every
    worker can write), progress is saved every ``checkpoint_every`` steps and
    a later call with the same path resumes.

    Examples
    --------
    >>> config = training.TrainingConfig(members=2, frames=2, crop=32, steps=2, batch_per_member=1).as_dict()
    >>> result = train_member("mos2", config, 1)
    >>> result.member, result.resumed_from_step
    (1, 0)
    """
    threads = _checks.whole(torch_threads, "torch_threads", 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_member(lattice, config, member, ranges, checkpoint, checkpoint_every)
    finally:
        # In this process (the sequential baseline, a notebook) the caller's thread count comes back.
        torch.set_num_threads(previous)


def _train_member(
    lattice: lattices.LatticeSpec | str,
    config: dict[str, typing.Any],
    member: int,
    ranges: dict[str, typing.Any] | None,
    checkpoint: str | None,
    checkpoint_every: int,
) -> MemberResult:
    started = time.perf_counter()
    spec = training.TrainingConfig(**config)
    member = _checks.whole(member, "member", 0, spec.members - 1)
    checkpoint_every = _checks.whole(checkpoint_every, "checkpoint_every", 1)
    lattice = lattices.resolve_lattice(lattice)
    imaging = synthetic.ImagingRanges.from_dict(ranges) if ranges else synthetic.ImagingRanges()
    seed = spec.seed + MEMBER_SEED_STRIDE * member
    pool = training.simulate_pool(lattice, spec.frames, spec.crop, seed=seed, ranges=imaging)
    weights = training.class_weights(pool.labels, len(lattice.class_names), spec.class_weight_power)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    network = model.EnsembleUNet(1, len(lattice.class_names), spec.base_channels).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=spec.learning_rate)
    rng = numpy.random.default_rng(seed)
    swa_start = int(round(spec.steps * (1.0 - spec.swa_fraction)))
    averaged: dict[str, torch.Tensor] = {}
    n_averaged = 0
    step0 = 0
    path = pathlib.Path(checkpoint) if checkpoint else None
    saved = _read_checkpoint(path, member, spec.steps) if path is not None else None
    if saved is not None:
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        averaged = {name: tensor.to(device) for name, tensor in saved["averaged"].items()}
        n_averaged, step0 = int(saved["n_averaged"]), int(saved["step"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
    network.train()
    for step in range(step0, spec.steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, swa_start, spec.learning_rate, spec.swa_learning_rate)
        x, y = _draw_batch(pool, spec.batch_per_member, rng)
        logits = network(x.to(device))
        batch, _, classes, rows, cols = logits.shape
        loss = F.cross_entropy(logits.reshape(batch, classes, rows, cols), y.to(device).reshape(batch, rows, cols),
                               weight=weights.to(device), ignore_index=training.IGNORE_LABEL)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if step >= swa_start:
            # The same stochastic weight averaging as training.fit, kept as plain tensors so it checkpoints.
            n_averaged += 1
            for name, tensor in network.state_dict().items():
                mean = averaged.get(name)
                averaged[name] = tensor.detach().clone() if mean is None else mean + (tensor.detach() - mean) / n_averaged
        if path is not None and (step + 1) % checkpoint_every == 0 and step + 1 < spec.steps:
            _save_checkpoint(path, member, spec.steps, network, optimiser, averaged, n_averaged, step + 1, rng)
    final = averaged if n_averaged else network.state_dict()
    state = {name: tensor.detach().cpu().numpy().copy() for name, tensor in final.items()}
    if path is not None:
        path.unlink(missing_ok=True)
    return MemberResult(member, state, time.perf_counter() - started, step0, os.getpid(), spec.steps - step0)


def pack_members(results: typing.Sequence[MemberResult], lattice: lattices.LatticeSpec, config: training.TrainingConfig) -> ensemble.Ensemble:
    """One ensemble from its members' weights (grouped convolutions are member-major, so this is a concatenation).

    Examples
    --------
    >>> config = training.TrainingConfig(members=2, frames=2, crop=32, steps=1, batch_per_member=1)
    >>> parts = [train_member("mos2", config.as_dict(), m) for m in range(2)]
    >>> pack_members(parts, lattices.mos2_lattice(), config).members
    2
    """
    ordered = sorted(results, key=lambda r: r.member)
    if [r.member for r in ordered] != list(range(config.members)):
        raise ValueError(f"results must hold members 0..{config.members - 1} once each, got {[r.member for r in ordered]}")
    network = model.EnsembleUNet(config.members, len(lattice.class_names), config.base_channels)
    names = list(network.state_dict())
    network.load_state_dict({name: torch.cat([torch.from_numpy(r.state[name]) for r in ordered], dim=0) for name in names})
    network.eval()
    return ensemble.Ensemble(network, lattice.class_names)


def train_ensemble(
    lattice: lattices.LatticeSpec | str,
    config: training.TrainingConfig = _DEFAULT_TRAINING,
    *,
    client: distributed.Client | None = None,
    ranges: synthetic.ImagingRanges | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 25,
    retries: int = 2,
    torch_threads: int = 1,
    progress: JobProgress | None = None,
) -> tuple[ensemble.Ensemble, list[MemberResult]]:
    """Train an ELIT ensemble with one Dask task per member.

    Parameters
    ----------
    lattice : LatticeSpec or str
        Material.
    config : TrainingConfig
        Recipe; ``config.members`` tasks are submitted.
    client : distributed.Client, optional
        Where to train: a client of :func:`local_cluster` or :func:`connect`.
        Without one, members train one after another in this process (the
        sequential baseline of the benchmark).
    ranges : ImagingRanges, optional
        Imaging ranges to simulate.
    checkpoint_dir : path, optional
        Folder every worker can write (shared on a remote cluster) for resumable checkpoints.
    checkpoint_every : int
        Steps between checkpoints.
    retries : int
        Times Dask reruns a member whose task raised.
    torch_threads : int
        Torch threads per task.
    progress : JobProgress, optional
        Updated as members finish, then finished or failed.

    Returns
    -------
    ensemble : Ensemble
        With ``metadata`` holding the recipe and imaging ranges.
    members : list of MemberResult
        Per-member timing and resume information.

    Examples
    --------
    >>> config = training.TrainingConfig(members=2, frames=2, crop=32, steps=2, batch_per_member=1)
    >>> ens, parts = train_ensemble("mos2", config)
    >>> ens.members, [p.member for p in parts]
    (2, [0, 1])
    """
    spec = lattices.resolve_lattice(lattice)
    if not isinstance(config, training.TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    imaging = ranges or synthetic.ImagingRanges()
    retries = _checks.whole(retries, "retries", 0)
    folder = pathlib.Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    recipe = hashlib.sha256(json.dumps([spec.name, config.as_dict(), imaging.as_dict()], sort_keys=True, default=str).encode()).hexdigest()[:12]

    def checkpoint_of(member: int) -> str | None:
        # The recipe's hash in the name: a checkpoint is only ever resumed by the training that wrote it.
        return str(folder / f"{spec.name}_{recipe}_member{member}{CHECKPOINT_SUFFIX}") if folder is not None else None

    args = [(spec, config.as_dict(), m, imaging.as_dict()) for m in range(config.members)]
    options = {"checkpoint_every": checkpoint_every, "torch_threads": torch_threads}
    job = progress if progress is not None else JobProgress(f"train {spec.name} ({config.members} members)")
    where = " on the cluster" if client is not None else ""
    job.start(f"training {config.members} members of {spec.name}{where}")
    try:
        if client is None:
            results = []
            for a in args:
                job.update(a[2] / config.members, f"training member {a[2] + 1} of {config.members} of {spec.name}")
                results.append(train_member(*a, checkpoint=checkpoint_of(a[2]), **options))  # type: ignore[arg-type]
        else:
            futures = [client.submit(train_member, *a, checkpoint=checkpoint_of(a[2]), **options, retries=retries, pure=False,
                                     key=f"elit-member-{spec.name}-{config.seed}-{time.time_ns()}-{a[2]}") for a in args]
            try:
                for finished, _ in enumerate(distributed.as_completed(futures), start=1):  # type: ignore[no-untyped-call]
                    job.update(finished / config.members, f"{finished} of {config.members} members of {spec.name} trained{where}")
                results = client.gather(futures)  # type: ignore[no-untyped-call]
            except distributed.KilledWorker as error:
                raise RuntimeError(f"training of {spec.name} failed: {error}; a worker died on this member more than "
                                   "distributed.scheduler.allowed-failures times (out of memory?): give workers more memory or fewer threads") from None
    except BaseException as error:
        job.fail(f"training {spec.name} failed: {type(error).__name__}: {error}")
        raise
    ens = pack_members(results, spec, config)
    ens.metadata.update({"lattice": spec.name, "training": config.as_dict(), "imaging_ranges": imaging.as_dict(),
                         "training_seconds_per_member": [round(r.seconds, 2) for r in results]})
    job.finish(f"{config.members} members of {spec.name} trained" + (f", {sum(r.resumed_from_step > 0 for r in results)} resumed from a checkpoint"
                                                                       if any(r.resumed_from_step for r in results) else ""))
    return ens, list(results)


def pretrain_backbone(recipe: typing.Mapping[str, typing.Any] | None = None, *, client: distributed.Client | None = None, torch_threads: int = 1,
                      retries: int = 1) -> torch.nn.Module:
    """The few-shot tile backbone's contrastive pretraining (:func:`nion_autoem_fewshot.pretrain.pretrain`) as one Dask task.

    Parameters
    ----------
    recipe : mapping, optional
        Default: the shipped backbone's :data:`~nion_autoem_fewshot.pretrain.RECIPE`.
    client : distributed.Client, optional
        Where to train (a :func:`local_cluster` or :func:`connect` client); here without one.
    torch_threads : int
        Torch threads of the task.
    retries : int
        Times Dask reruns the task if it raised.

    Returns
    -------
    nion_autoem_fewshot.backbone.TileEncoder
        The trained encoder (in eval mode), here.

    Examples
    --------
    >>> from nion_autoem_fewshot import pretrain
    >>> pretrain_backbone(dict(pretrain.RECIPE, steps=1, batch=4, patches=8, patch_px=64)).features
    128
    """
    from nion_autoem_fewshot import backbone
    from nion_autoem_fewshot import pretrain

    settings = dict(pretrain.RECIPE if recipe is None else recipe)
    state = _run_task(_pretrain_task, settings, _checks.whole(torch_threads, "torch_threads", 1), client=client, retries=retries, what="few-shot backbone pretraining")
    encoder = backbone.TileEncoder()
    encoder.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
    encoder.eval()
    return encoder


def train_weight_forecaster(series: typing.Sequence[_NDArray], *, client: distributed.Client | None = None, torch_threads: int = 1, retries: int = 1,
                            lookback: int = 16, steps: int = 4000, batch: int = 512, learning_rate: float = 2e-3, seed: int = 0) -> torch.nn.Module:
    """The forecaster's training (:func:`nion_autoem_forecast.train.train_weight_forecaster`) as one Dask task.

    Parameters are those of the training, plus ``client``, ``torch_threads``
    and ``retries`` as in :func:`pretrain_backbone`.

    Returns
    -------
    nion_autoem_forecast.models.WeightForecaster
        The trained network (in eval mode), here.

    Examples
    --------
    >>> series = [numpy.random.default_rng(i).standard_normal((60, 1)) for i in range(2)]
    >>> train_weight_forecaster(series, steps=2, batch=8).lookback
    16
    """
    from nion_autoem_forecast.models import WeightForecaster

    lookback = _checks.whole(lookback, "lookback", 2)
    options: dict[str, typing.Any] = {"lookback": lookback, "steps": _checks.whole(steps, "steps", 1), "batch": _checks.whole(batch, "batch", 1),
               "learning_rate": float(learning_rate), "seed": _checks.whole(seed, "seed", 0)}
    arrays = [numpy.asarray(item, dtype=float) for item in series]
    if not arrays or not all(a.ndim == 2 for a in arrays):
        raise ValueError(f"series must be one or more arrays of shape (steps, k), got {_checks.describe(list(series))}")
    state = _run_task(_forecaster_task, arrays, options, _checks.whole(torch_threads, "torch_threads", 1), client=client, retries=retries,
                      what="forecaster training")
    network = WeightForecaster(lookback)
    network.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
    network.eval()
    return network


def _pretrain_task(recipe: dict[str, typing.Any], torch_threads: int) -> dict[str, _NDArray]:
    from nion_autoem_fewshot import pretrain

    with _torch_threads(torch_threads):
        return _numpy_state(pretrain.pretrain(recipe, log=lambda line: None))


def _forecaster_task(series: list[_NDArray], options: dict[str, typing.Any], torch_threads: int) -> dict[str, _NDArray]:
    from nion_autoem_forecast import train

    with _torch_threads(torch_threads):
        return _numpy_state(train.train_weight_forecaster(series, **options))


@contextlib.contextmanager
def _torch_threads(threads: int) -> typing.Iterator[None]:
    """Torch's thread count for one task; the caller's comes back (a task may run in this process)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _numpy_state(network: torch.nn.Module) -> dict[str, _NDArray]:
    """Weights as numpy arrays: what a task sends back, whatever the worker's torch build."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in network.state_dict().items()}


def _run_task(function: typing.Callable[..., dict[str, _NDArray]], *args: typing.Any, client: distributed.Client | None, retries: int, what: str) -> dict[str, _NDArray]:
    """``function(*args)`` here, or as one task on ``client``'s cluster."""
    retries = _checks.whole(retries, "retries", 0)
    if client is None:
        return function(*args)
    future = client.submit(function, *args, pure=False, retries=retries, key=f"{function.__name__.strip('_')}-{time.time_ns()}")
    try:
        result: dict[str, _NDArray] = future.result()
        return result
    except distributed.KilledWorker as error:
        raise RuntimeError(f"{what} failed: {error}; a worker died on it more than distributed.scheduler.allowed-failures times "
                           "(out of memory?): give workers more memory or fewer threads") from None


def _learning_rate(step: int, swa_start: int, start: float, swa: float) -> float:
    """The schedule of :func:`nion_autoem_elit.training.fit`: cosine decay to the averaging rate, then constant."""
    if step >= swa_start or swa_start <= 0:
        return swa
    return swa + 0.5 * (start - swa) * (1.0 + math.cos(math.pi * step / swa_start))


def _draw_batch(pool: training.TrainingPool, batch: int, rng: numpy.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random frames of ``pool``, rotated and mirrored at random, as :func:`nion_autoem_elit.training.fit` draws them."""
    crop = pool.images.shape[-1]
    images = numpy.empty((batch, crop, crop), dtype=numpy.float32)
    labels = numpy.empty((batch, crop, crop), dtype=numpy.int64)
    for i in range(batch):
        index = int(rng.integers(len(pool)))
        k = int(rng.integers(4))
        image, label = numpy.rot90(pool.images[index], k), numpy.rot90(pool.labels[index], k)
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        images[i], labels[i] = image, label
    return torch.from_numpy(images).view(batch, 1, crop, crop), torch.from_numpy(labels).view(batch, 1, crop, crop)


def _read_checkpoint(path: pathlib.Path, member: int, steps: int) -> dict[str, typing.Any] | None:
    """The checkpoint at ``path``, or None if there is none or it cannot be used (then the member starts again from step 0).

    A checkpoint is one safetensors file: the tensors (network, running
    average, optimiser moments, torch's RNG state) and, in its header, a small
    JSON of the rest (step, optimiser settings, numpy's RNG state). Reading it
    runs no code.
    """
    if not path.exists():
        return None
    try:
        with safetensors.safe_open(str(path), framework="pt") as stored:
            header = stored.metadata() or {}
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}
        state = json.loads(header[CHECKPOINT_HEADER])
    except Exception as error:  # safetensors raises its own errors, OSError, KeyError, JSON errors ... for a damaged file
        warnings.warn(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); training this member again from step 0", stacklevel=2)
        return None
    keys = {"format", "member", "steps", "step", "n_averaged", "rng", "optimiser_groups", "optimiser_scalars"}
    if not isinstance(state, dict) or not keys <= set(state) or state["format"] != CHECKPOINT_FORMAT:
        warnings.warn(f"checkpoint {path} is not one this module wrote; training this member again from step 0", stacklevel=2)
        return None
    if (state["member"], state["steps"]) != (member, steps):
        warnings.warn(f"checkpoint {path} is of member {state['member']} of a {state['steps']}-step training, not of member {member} "
                      f"of a {steps}-step one; training this member again from step 0", stacklevel=2)
        return None
    network = {key.removeprefix("network."): t for key, t in tensors.items() if key.startswith("network.")}
    averaged = {key.removeprefix("averaged."): t for key, t in tensors.items() if key.startswith("averaged.")}
    moments: dict[int, dict[str, typing.Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimiser."):
            _, index, name = key.split(".", 2)
            moments.setdefault(int(index), {})[name] = tensor
    for index, values in state["optimiser_scalars"].items():
        moments.setdefault(int(index), {}).update(values)
    return {"network": network, "averaged": averaged, "optimiser": {"state": moments, "param_groups": state["optimiser_groups"]},
            "n_averaged": state["n_averaged"], "step": state["step"], "rng": state["rng"], "torch_rng": tensors["torch_rng"]}


def _save_checkpoint(path: pathlib.Path, member: int, steps: int, network: torch.nn.Module, optimiser: torch.optim.Optimizer,
                     averaged: dict[str, torch.Tensor], n_averaged: int, step: int, rng: numpy.random.Generator) -> None:
    """Write to a temporary name and rename: a worker killed mid-write leaves the previous checkpoint intact."""
    tensors: dict[str, torch.Tensor] = {f"network.{k}": v for k, v in network.state_dict().items()}
    tensors.update({f"averaged.{k}": v for k, v in averaged.items()})
    optimiser_state = optimiser.state_dict()
    scalars: dict[str, dict[str, typing.Any]] = {}
    for index, values in optimiser_state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimiser.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["torch_rng"] = torch.get_rng_state()
    header = {"format": CHECKPOINT_FORMAT, "member": member, "steps": steps, "step": step, "n_averaged": n_averaged,
              "rng": rng.bit_generator.state, "optimiser_groups": optimiser_state["param_groups"], "optimiser_scalars": scalars}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    safetensors.torch.save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp),
                                metadata={CHECKPOINT_HEADER: json.dumps(header, default=_plain)})
    os.replace(tmp, path)


def _plain(value: typing.Any) -> typing.Any:
    """JSON for what optimiser settings and numpy's RNG state hold besides plain numbers (tuples are lists already)."""
    if isinstance(value, numpy.integer):
        return int(value)
    if isinstance(value, numpy.floating):
        return float(value)
    raise TypeError(f"a checkpoint header must hold plain values, got {type(value).__name__}")


_Item = typing.TypeVar("_Item")
_Result = typing.TypeVar("_Result")


def sweep(function: typing.Callable[..., _Result], items: typing.Iterable[_Item], *, client: distributed.Client | None = None, retries: int = 1,
          **kwargs: typing.Any) -> list[_Result]:
    """``function(item, **kwargs)`` for every item, one Dask task each on ``client``'s cluster (or here, in order, without one).

    A benchmark's seeds, a parameter scan: the results come back in the
    items' order whichever worker ran them.  A task whose worker dies is run
    again elsewhere (``retries`` times if it raises).

    Examples
    --------
    >>> sweep(pow, [1, 2, 3], exp=2)
    [1, 4, 9]
    """
    listed = list(items)
    if client is None:
        return [function(item, **kwargs) for item in listed]
    futures = client.map(function, listed, retries=_checks.whole(retries, "retries", 0), pure=False, **kwargs)
    return typing.cast(list[_Result], client.gather(futures))  # type: ignore[no-untyped-call]


def speedup(sequential_s: float, parallel_s: float) -> float:
    """Sequential over parallel wall time.

    Examples
    --------
    >>> speedup(10.0, 5.0)
    2.0
    """
    if not (math.isfinite(parallel_s) and parallel_s > 0):
        raise ValueError(f"parallel_s must be a positive wall time, got {parallel_s!r}")
    return sequential_s / parallel_s
