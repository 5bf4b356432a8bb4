"""Baselines the deep-kernel agent is measured against, with the same interface.

* ``RandomAgent`` -- uniform random probe positions.
* ``ReferenceRecipeAgent`` -- the published workflow: a fresh ~0.8M-parameter
  MLP on raw flattened patches feeding a 2D GP, trained jointly from scratch
  on every step, then expected improvement. (The original interpolates the GP
  on a grid; with <= a few hundred points an exact GP is the same model, and
  cheaper.)
* ``pca_gp_agent`` -- an exact GP on plain PCA scores of the patches: the
  ``DKLAgent`` code path with the embedding swapped for PCA.

All expose ``suggest(q, pending)``, ``observe(indices, values)`` and
``predict()``.
"""

from __future__ import annotations

import time
import typing

import gpytorch
import numpy
import numpy.typing
import torch

from .acquisition import log_expected_improvement
from .agent import AgentConfig
from .agent import DKLAgent
from .embedding import pca_features

_NDArray = numpy.typing.NDArray[typing.Any]


class RandomAgent:
    """Measure uniformly random, not yet measured candidates.

    Parameters
    ----------
    n_candidates : int
        Size of the candidate set.
    seed : int
        Seed of the generator.

    Examples
    --------
    >>> agent = RandomAgent(10, seed=0)
    >>> chosen = agent.suggest(3)
    >>> agent.observe(chosen, [1.0, 2.0, 3.0])
    >>> len(set(agent.measured_indices.tolist()))
    3
    """

    def __init__(self, n_candidates: int, seed: int = 0) -> None:
        self.n_candidates = n_candidates
        self._rng = numpy.random.default_rng(seed)
        self._measured: list[int] = []
        self._values: list[float] = []
        self.step_timings: list[float] = []

    @property
    def measured_indices(self) -> _NDArray:
        return numpy.asarray(self._measured, dtype=numpy.int64)

    def suggest(self, q: int = 1, pending: typing.Sequence[int] | _NDArray = ()) -> _NDArray:
        free = numpy.ones(self.n_candidates, dtype=bool)
        free[self._measured] = False
        free[numpy.asarray(pending, dtype=numpy.int64)] = False
        pool = numpy.flatnonzero(free)
        return numpy.asarray(self._rng.choice(pool, min(q, pool.size), replace=False), dtype=numpy.int64)

    def observe(self, indices: typing.Sequence[int] | _NDArray, values: typing.Sequence[float] | _NDArray) -> None:
        self._measured.extend(int(i) for i in numpy.atleast_1d(indices))
        self._values.extend(float(v) for v in numpy.atleast_1d(values))

    def predict(self) -> tuple[_NDArray, _NDArray]:
        level = float(numpy.mean(self._values)) if self._values else 0.0
        return numpy.full(self.n_candidates, level), numpy.full(self.n_candidates, numpy.inf)


def pca_gp_agent(
    patches: _NDArray, positions: _NDArray, config: AgentConfig | None = None, n_components: int = 16
) -> DKLAgent:
    """The plain GP-on-PCA baseline: ``DKLAgent`` on whitened PCA scores of the raw patches.

    Examples
    --------
    >>> import numpy
    >>> rng = numpy.random.default_rng(0)
    >>> agent = pca_gp_agent(rng.normal(size=(40, 8, 8)), rng.uniform(0, 50, (40, 2)), n_components=4)
    >>> agent.latent.shape
    (40, 4)
    """
    seed = 0 if config is None else config.seed
    return DKLAgent(patches, positions, config, latent=pca_features(patches, n_components, seed))


class _MLPFeatures(torch.nn.Module):
    """1024-640-256-64-2 ReLU MLP: about 0.84M parameters for 32x32 patches."""

    def __init__(self, n_inputs: int, widths: tuple[int, ...] = (640, 256, 64), latent_dim: int = 2) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        previous = n_inputs
        for width in widths:
            layers += [torch.nn.Linear(previous, width), torch.nn.ReLU()]
            previous = width
        layers.append(torch.nn.Linear(previous, latent_dim))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return typing.cast(torch.Tensor, self.net(x))


class _RecipeGP(gpytorch.models.ExactGP):  # type: ignore[misc]
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        likelihood: gpytorch.likelihoods.GaussianLikelihood,
        extractor: _MLPFeatures,
    ) -> None:
        super().__init__(x, y, likelihood)
        self.extractor = extractor
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=2))

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        z = self.extractor(x)
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))


class ReferenceRecipeAgent:
    """The reference DKL recipe: fresh MLP + GP trained from scratch at every step.

    Parameters
    ----------
    patches : (N, P, P) ndarray
        Candidate patches (flattened raw pixels are the network input).
    n_initial : int
        Random measurements before the first model.
    train_iterations : int
        Adam iterations of the joint MLP+GP fit at each step.
    learning_rate : float
        Adam step size.
    seed : int
        Seed of the initial design and network weights.

    Examples
    --------
    >>> import numpy
    >>> rng = numpy.random.default_rng(0)
    >>> agent = ReferenceRecipeAgent(rng.normal(size=(30, 4, 4)), n_initial=3, train_iterations=2)
    >>> first = agent.suggest(3)
    >>> agent.observe(first, [0.0, 1.0, 2.0])
    >>> agent.suggest(1).shape
    (1,)
    """

    def __init__(
        self,
        patches: _NDArray,
        *,
        n_initial: int = 10,
        train_iterations: int = 100,
        learning_rate: float = 0.01,
        seed: int = 0,
    ) -> None:
        stack = numpy.asarray(patches, dtype=numpy.float32)
        self._inputs = torch.as_tensor(stack.reshape(stack.shape[0], -1))
        self.n_candidates = int(stack.shape[0])
        self.n_parameters = sum(p.numel() for p in _MLPFeatures(self._inputs.shape[1]).parameters())
        self.n_initial = n_initial
        self.train_iterations = train_iterations
        self.learning_rate = learning_rate
        self._seed = seed
        self._rng = numpy.random.default_rng(seed)
        self._measured: list[int] = []
        self._values: list[float] = []
        self._mean = numpy.zeros(self.n_candidates)
        self._variance = numpy.full(self.n_candidates, numpy.inf)
        self._observe_seconds = 0.0
        self.step_timings: list[float] = []

    @property
    def measured_indices(self) -> _NDArray:
        return numpy.asarray(self._measured, dtype=numpy.int64)

    def _fit_and_predict(self) -> None:
        torch.manual_seed(self._seed + len(self._measured))
        values = numpy.asarray(self._values)
        offset, scale = float(values.mean()), float(values.std()) or 1.0
        x = self._inputs[torch.as_tensor(self._measured)]
        y = torch.as_tensor((values - offset) / scale, dtype=torch.float32)
        likelihood = gpytorch.likelihoods.GaussianLikelihood()
        model = _RecipeGP(x, y, likelihood, _MLPFeatures(x.shape[1]))
        model.train()
        likelihood.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=self.learning_rate)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        for _ in range(self.train_iterations):
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        likelihood.eval()
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            prediction = model(self._inputs)
            self._mean = prediction.mean.double().numpy() * scale + offset
            self._variance = prediction.variance.double().numpy() * scale**2

    def suggest(self, q: int = 1, pending: typing.Sequence[int] | _NDArray = ()) -> _NDArray:
        started = time.perf_counter()
        free = numpy.ones(self.n_candidates, dtype=bool)
        free[self._measured] = False
        free[numpy.asarray(pending, dtype=numpy.int64)] = False
        if len(self._measured) < self.n_initial:
            pool = numpy.flatnonzero(free)
            chosen = numpy.asarray(self._rng.choice(pool, min(q, pool.size), replace=False), dtype=numpy.int64)
        else:
            best = float(numpy.max(self._mean[self._measured]))
            scores = log_expected_improvement(self._mean, numpy.sqrt(self._variance), best)
            scores[~free] = -numpy.inf
            chosen = numpy.argsort(-scores)[:q].astype(numpy.int64)
        self.step_timings.append(1000.0 * (self._observe_seconds + time.perf_counter() - started))
        self._observe_seconds = 0.0
        return chosen

    def observe(self, indices: typing.Sequence[int] | _NDArray, values: typing.Sequence[float] | _NDArray) -> None:
        started = time.perf_counter()
        self._measured.extend(int(i) for i in numpy.atleast_1d(indices))
        self._values.extend(float(v) for v in numpy.atleast_1d(values))
        if len(self._measured) >= self.n_initial:
            self._fit_and_predict()
        self._observe_seconds += time.perf_counter() - started

    def predict(self) -> tuple[_NDArray, _NDArray]:
        return self._mean.copy(), numpy.sqrt(numpy.clip(self._variance, 0.0, None))


def reference_parameter_count(patch_size: int = 32) -> int:
    """Parameters of the reference MLP for square patches of ``patch_size``.

    Examples
    --------
    >>> reference_parameter_count(32)
    836674
    """
    return int(sum(p.numel() for p in _MLPFeatures(patch_size * patch_size).parameters()))


__all__ = ["RandomAgent", "ReferenceRecipeAgent", "pca_gp_agent", "reference_parameter_count"]
