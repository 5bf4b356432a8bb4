"""Training an ensemble on simulated frames.

Two things matter more than architecture here. First, a class-balanced loss:
with plain cross-entropy, S mono-vacancies (well under 1 % of pixels) are
cheaper to ignore than to learn. Second, stochastic weight averaging over the
last part of training, which gives flatter, better-calibrated members.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing

import numpy
import numpy.typing
import torch
import torch.nn.functional as F
from torch.optim import swa_utils

import nion_autoem_checks as _checks
from nion_autoem_elit import ensemble
from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_elit import synthetic

_NDArray = numpy.typing.NDArray[typing.Any]

IGNORE_LABEL = 255


def check_crop(crop: int) -> int:
    """A training crop side: a whole multiple of 16 pixels (the size inference pads frames to), at least 32."""
    expected = "a multiple of 16 of at least 32 pixels"
    try:
        value = _checks.whole(crop, "crop", 32)
    except (TypeError, ValueError) as error:
        raise type(error)(f"crop must be {expected}, got {_checks.describe(crop)}") from None
    if value % 16:
        raise ValueError(f"crop must be {expected}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How to train an ensemble.

    Parameters
    ----------
    members : int
        Ensemble size.
    base_channels : int
        Width of each member.
    crop : int
        Side of the training frames in pixels (multiple of 16).
    frames : int
        Number of simulated frames in the training pool.
    steps : int
        Optimiser steps.
    batch_per_member : int
        Frames each member sees per step; members see different frames.
    learning_rate : float
        Adam learning rate before averaging starts.
    swa_fraction : float
        Fraction of the steps, at the end, over which weights are averaged.
    swa_learning_rate : float
        Constant learning rate during averaging.
    class_weight_power : float
        Class weights are (pixel frequency)^-power; 0.5 balances without
        flooding the frame with false rare-class detections.
    seed : int
        Seed for data and initialisation.
    """

    members: int = 5
    base_channels: int = 8
    crop: int = 128
    frames: int = 2000
    steps: int = 1500
    batch_per_member: int = 4
    learning_rate: float = 3e-3
    swa_fraction: float = 0.3
    swa_learning_rate: float = 1e-3
    class_weight_power: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _checks.whole(self.members, "members", 1)
        _checks.whole(self.base_channels, "base_channels", 1)
        check_crop(self.crop)
        _checks.whole(self.frames, "frames", 1)
        _checks.whole(self.steps, "steps", 1)
        _checks.whole(self.batch_per_member, "batch_per_member", 1)
        _checks.number(self.learning_rate, "learning_rate", "a positive finite number", lambda v: v > 0)
        _checks.number(self.swa_fraction, "swa_fraction", "a fraction in [0, 1]", lambda v: 0 <= v <= 1)
        _checks.number(self.swa_learning_rate, "swa_learning_rate", "a positive finite number", lambda v: v > 0)
        _checks.number(self.class_weight_power, "class_weight_power", "a finite number >= 0", lambda v: v >= 0)
        _checks.whole(self.seed, "seed", 0)

    def as_dict(self) -> dict[str, typing.Any]:
        """Plain dictionary for model metadata."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainingPool:
    """Normalised frames and label masks to draw training batches from."""

    images: _NDArray
    labels: _NDArray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def simulate_pool(
    lattice: lattices.LatticeSpec,
    frames: int,
    crop: int,
    *,
    seed: int,
    ranges: synthetic.ImagingRanges | None = None,
) -> TrainingPool:
    """Simulate ``frames`` labelled frames of ``crop`` x ``crop`` pixels.

    Examples
    --------
    >>> pool = simulate_pool(lattices.mos2_lattice(), 2, 32, seed=0)
    >>> pool.images.shape, pool.labels.dtype.name
    ((2, 32, 32), 'uint8')
    """
    frames = _checks.whole(frames, "frames", 1)
    crop = _checks.whole(crop, "crop", 16)
    rng = numpy.random.default_rng(_checks.whole(seed, "seed", 0))
    images = numpy.empty((frames, crop, crop), dtype=numpy.float32)
    labels = numpy.empty((frames, crop, crop), dtype=numpy.uint8)
    for i in range(frames):
        frame = synthetic.generate_frame(lattice, (crop, crop), seed=rng, ranges=ranges)
        images[i] = ensemble.normalise_frame(frame.image)
        labels[i] = frame.label_mask
    return TrainingPool(images, labels)


def class_weights(labels: _NDArray, classes: int, power: float) -> torch.Tensor:
    """Loss weight per class from pixel frequencies, mean weight per pixel = 1."""
    counts = numpy.bincount(labels[labels != IGNORE_LABEL].ravel(), minlength=classes)[:classes].astype(float)
    frequency = (counts + 1.0) / (counts.sum() + classes)
    weights = frequency**-power
    weights /= float((weights * frequency).sum())
    return torch.tensor(weights, dtype=torch.float32)


def new_ensemble(lattice: lattices.LatticeSpec, config: TrainingConfig) -> ensemble.Ensemble:
    """An untrained ensemble for ``lattice``'s classes."""
    torch.manual_seed(config.seed)
    network = model.EnsembleUNet(config.members, len(lattice.class_names), config.base_channels)
    return ensemble.Ensemble(network, lattice.class_names)


def train_ensemble(
    lattice: lattices.LatticeSpec,
    config: TrainingConfig = TrainingConfig(),
    *,
    ranges: synthetic.ImagingRanges | None = None,
    log: typing.Callable[[str], None] | None = None,
) -> ensemble.Ensemble:
    """Train a new ensemble on simulated frames of ``lattice``.

    Returns
    -------
    Ensemble
        With ``metadata`` holding the training configuration, imaging ranges,
        class weights and wall times.

    Examples
    --------
    >>> config = TrainingConfig(members=2, frames=4, crop=32, steps=2, batch_per_member=1)
    >>> ens = train_ensemble(lattices.mos2_lattice(), config)
    >>> ens.members
    2
    """
    ranges = ranges or synthetic.ImagingRanges()
    started = time.perf_counter()
    pool = simulate_pool(lattice, config.frames, config.crop, seed=config.seed, ranges=ranges)
    simulated = time.perf_counter()
    ens = new_ensemble(lattice, config)
    weights = class_weights(pool.labels, len(lattice.class_names), config.class_weight_power)
    fit(
        ens.network,
        [pool],
        [1.0],
        weights,
        steps=config.steps,
        batch_per_member=config.batch_per_member,
        learning_rate=config.learning_rate,
        swa_fraction=config.swa_fraction,
        swa_learning_rate=config.swa_learning_rate,
        seed=config.seed,
        log=log,
    )
    finished = time.perf_counter()
    ens.metadata.update(
        {
            "lattice": lattice.name,
            "training": config.as_dict(),
            "imaging_ranges": ranges.as_dict(),
            "class_weights": [round(float(w), 4) for w in weights],
            "simulation_seconds": round(simulated - started, 1),
            "training_seconds": round(finished - simulated, 1),
        }
    )
    return ens


def fit(
    network: model.EnsembleUNet,
    pools: typing.Sequence[TrainingPool],
    pool_shares: typing.Sequence[float],
    weights: torch.Tensor,
    *,
    steps: int,
    batch_per_member: int,
    learning_rate: float,
    swa_fraction: float,
    swa_learning_rate: float,
    seed: int,
    log: typing.Callable[[str], None] | None = None,
) -> list[float]:
    """Optimise ``network`` in place on batches drawn from ``pools``.

    Each member gets its own random frames (bagging-like diversity at no extra
    cost). The last ``swa_fraction`` of steps run at a constant rate and their
    weights are averaged into the final network.

    Returns
    -------
    list of float
        Loss per step.
    """
    steps = _checks.whole(steps, "steps", 1)
    batch_per_member = _checks.whole(batch_per_member, "batch_per_member", 1)
    learning_rate = _checks.number(learning_rate, "learning_rate", "a positive finite number", lambda v: v > 0)
    swa_fraction = _checks.number(swa_fraction, "swa_fraction", "a fraction in [0, 1]", lambda v: 0 <= v <= 1)
    swa_learning_rate = _checks.number(swa_learning_rate, "swa_learning_rate", "a positive finite number", lambda v: v > 0)
    seed = _checks.whole(seed, "seed", 0)
    if not isinstance(network, model.EnsembleUNet):
        raise TypeError(f"network must be an EnsembleUNet, got {type(network).__name__}")
    if not pools or not all(isinstance(pool, TrainingPool) and len(pool) > 0 for pool in pools):
        raise ValueError(f"pools must be one or more non-empty TrainingPools, got {_checks.describe(list(pools))}")
    shares_given = [float(share) if _checks.is_number(share) else math.nan for share in pool_shares]
    if len(shares_given) != len(pools):
        raise ValueError(f"pool_shares must give one share per pool ({len(pools)}), got {len(shares_given)}")
    if not all(math.isfinite(share) and share >= 0 for share in shares_given) or sum(shares_given) <= 0:
        raise ValueError(f"pool_shares must be finite shares >= 0 with a positive sum, got {_checks.describe(list(pool_shares))}")
    rng = numpy.random.default_rng(seed)
    torch.manual_seed(seed)
    network.train()
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    swa_start = int(round(steps * (1.0 - swa_fraction)))
    averaged = swa_utils.AveragedModel(network)
    shares = numpy.asarray(pool_shares, dtype=float) / float(sum(pool_shares))
    losses: list[float] = []
    members = network.members
    averaged_any = False
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, swa_start, learning_rate, swa_learning_rate)
        x, y = _draw_batch(pools, shares, members, batch_per_member, rng)
        logits = network(x)
        batch, _, classes, rows, cols = logits.shape
        loss = F.cross_entropy(
            logits.reshape(batch * members, classes, rows, cols),
            y.reshape(batch * members, rows, cols),
            weight=weights,
            ignore_index=IGNORE_LABEL,
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        losses.append(float(loss.detach()))
        if step >= swa_start:
            averaged.update_parameters(network)
            averaged_any = True
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(f"step {step:5d}/{steps} loss {numpy.mean(losses[-100:]):.4f}")
    if averaged_any:
        # No batch normalisation in the members, so averaged weights need no BN refresh.
        network.load_state_dict(averaged.module.state_dict())
    network.eval()
    return losses


def _learning_rate(step: int, swa_start: int, start: float, swa: float) -> float:
    """Cosine decay from ``start`` to the averaging rate, then constant while averaging."""
    if step >= swa_start or swa_start <= 0:
        return swa
    return swa + 0.5 * (start - swa) * (1.0 + math.cos(math.pi * step / swa_start))


def _draw_batch(
    pools: typing.Sequence[TrainingPool],
    shares: _NDArray,
    members: int,
    batch_per_member: int,
    rng: numpy.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    crop = pools[0].images.shape[-1]
    count = batch_per_member * members
    images = numpy.empty((count, crop, crop), dtype=numpy.float32)
    labels = numpy.empty((count, crop, crop), dtype=numpy.int64)
    which = rng.choice(len(pools), size=count, p=shares)
    for i, p in enumerate(which):
        pool = pools[int(p)]
        index = int(rng.integers(len(pool)))
        image, label = pool.images[index], pool.labels[index]
        # The lattices are symmetric enough that rotated and mirrored frames are
        # valid frames too; this multiplies the pool eightfold for free.
        k = int(rng.integers(4))
        image, label = numpy.rot90(image, k), numpy.rot90(label, k)
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        images[i] = image
        labels[i] = label
    x = torch.from_numpy(images).view(batch_per_member, members, crop, crop)
    y = torch.from_numpy(labels).view(batch_per_member, members, crop, crop)
    return x, y
