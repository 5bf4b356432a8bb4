"""ELIT training as Dask tasks: members in parallel, on a local cluster or a lab's scheduler.

Each ensemble member is an independent network, so members train as separate
tasks (one per member) and are packed back into one grouped-convolution
network afterwards; the packed layout is member-major, so packing is a
concatenation. A task checkpoints its member every few steps, and a task that
starts again after its worker died resumes from the checkpoint instead of from
step 0; with ``retries`` a task that raised is run again too.

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
import torch
import torch.nn.functional as F

import nion_autoem_checks as _checks
from nion_autoem_elit import ensemble
from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_elit import synthetic
from nion_autoem_elit import training

_NDArray = numpy.typing.NDArray[typing.Any]

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
    """

    member: int
    state: dict[str, _NDArray]
    seconds: float
    resumed_from_step: int
    worker_pid: int


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
    saved = _read_checkpoint(path) if path is not None else None
    if saved is not None:
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        averaged, n_averaged, step0 = dict(saved["averaged"]), int(saved["n_averaged"]), int(saved["step"])
        rng.bit_generator.state = json.loads(saved["rng"])
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
            _save_checkpoint(path, network, optimiser, averaged, n_averaged, step + 1, rng)
    final = averaged if n_averaged else network.state_dict()
    state = {name: tensor.detach().cpu().numpy().copy() for name, tensor in final.items()}
    if path is not None:
        path.unlink(missing_ok=True)
    return MemberResult(member, state, time.perf_counter() - started, step0, os.getpid())


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
        return str(folder / f"{spec.name}_{recipe}_member{member}.pt") if folder is not None else None

    args = [(spec, config.as_dict(), m, imaging.as_dict()) for m in range(config.members)]
    options = {"checkpoint_every": checkpoint_every, "torch_threads": torch_threads}
    if client is None:
        results = [train_member(*a, checkpoint=checkpoint_of(a[2]), **options) for a in args]  # type: ignore[arg-type]
    else:
        futures = [client.submit(train_member, *a, checkpoint=checkpoint_of(a[2]), **options, retries=retries, pure=False,
                                 key=f"elit-member-{spec.name}-{config.seed}-{time.time_ns()}-{a[2]}") for a in args]
        try:
            results = client.gather(futures)  # type: ignore[no-untyped-call]
        except distributed.KilledWorker as error:
            raise RuntimeError(f"training of {spec.name} failed: {error}; a worker died on this member more than "
                               "distributed.scheduler.allowed-failures times (out of memory?): give workers more memory or fewer threads") from None
    ens = pack_members(results, spec, config)
    ens.metadata.update({"lattice": spec.name, "training": config.as_dict(), "imaging_ranges": imaging.as_dict(),
                         "training_seconds_per_member": [round(r.seconds, 2) for r in results]})
    return ens, list(results)


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


def _read_checkpoint(path: pathlib.Path) -> dict[str, typing.Any] | None:
    """The checkpoint at ``path``, or None if there is none or it cannot be used (then the member starts again from step 0)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # the RNG state must stay on the CPU
    except Exception as error:  # torch raises RuntimeError, EOFError, pickle errors ... for a damaged file
        warnings.warn(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); training this member again from step 0", stacklevel=2)
        return None
    keys = {"network", "optimiser", "averaged", "n_averaged", "step", "rng", "torch_rng"}
    if not isinstance(saved, dict) or not keys <= set(saved):
        warnings.warn(f"checkpoint {path} is not one this module wrote; training this member again from step 0", stacklevel=2)
        return None
    return saved


def _save_checkpoint(path: pathlib.Path, network: torch.nn.Module, optimiser: torch.optim.Optimizer, averaged: dict[str, torch.Tensor],
                     n_averaged: int, step: int, rng: numpy.random.Generator) -> None:
    """Write to a temporary name and rename: a worker killed mid-write leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save({"network": network.state_dict(), "optimiser": optimiser.state_dict(), "averaged": averaged, "n_averaged": n_averaged,
                "step": step, "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


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
