"""Exact Gaussian process over a fixed, discrete set of candidate probe positions.

The hyperparameters (and the optional trainable projection head, the "deep"
part of the kernel) are fitted with GPyTorch by maximising the exact
marginal likelihood in float64. Between fits the hyperparameters are held
and each new measurement is folded into cached Cholesky factors, so a step
costs O(n * N) for n measurements and N candidates instead of a refit and an
O(n^2 * N) prediction. This is what keeps a step at a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import gpytorch
import numpy
import numpy.typing
import torch

import nion_autoem_checks as _checks

from .posterior import Posterior

_NDArray = numpy.typing.NDArray[typing.Any]
_DTYPE = torch.float64


class ExactDeepKernelGP(gpytorch.models.ExactGP):  # type: ignore[misc]
    """Exact GP with an ARD Matern-5/2 kernel on ``head(latent)``.

    Parameters
    ----------
    train_x : (n, d) tensor
        Latent coordinates of measured candidates.
    train_y : (n,) tensor
        Standardised measurements.
    likelihood : gpytorch.likelihoods.GaussianLikelihood
        Gaussian noise model.
    head : torch.nn.Module or None
        Trainable map from the latent space to the kernel's input space; the
        identity when ``None``.
    input_dim : int
        Dimension of the kernel's input space (after the head).
    """

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        likelihood: gpytorch.likelihoods.GaussianLikelihood,
        head: torch.nn.Module | None,
        input_dim: int,
    ) -> None:
        super().__init__(train_x, train_y, likelihood)
        self.head = head
        self.mean_module = gpytorch.means.ConstantMean()
        # Inputs are whitened, so typical distances grow like sqrt(d); centre
        # the lengthscale prior there to keep all dimensions in play at first.
        lengthscale_prior = gpytorch.priors.LogNormalPrior(math.log(math.sqrt(input_dim)), 1.0)
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=input_dim, lengthscale_prior=lengthscale_prior),
            outputscale_prior=gpytorch.priors.GammaPrior(2.0, 2.0),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Kernel inputs for latent coordinates ``x``."""
        return x if self.head is None else typing.cast(torch.Tensor, self.head(x))

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        z = self.features(x)
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))


def _make_likelihood() -> gpytorch.likelihoods.GaussianLikelihood:
    return gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=gpytorch.priors.GammaPrior(1.1, 0.05),
        noise_constraint=gpytorch.constraints.GreaterThan(1e-5),
    ).to(_DTYPE)


def _reset_hyperparameters(model: ExactDeepKernelGP) -> None:
    input_dim = int(model.covar_module.base_kernel.ard_num_dims)
    model.covar_module.base_kernel.lengthscale = torch.full((1, input_dim), math.sqrt(input_dim), dtype=_DTYPE)
    model.covar_module.outputscale = torch.tensor(1.0, dtype=_DTYPE)
    model.likelihood.noise = torch.tensor(0.05, dtype=_DTYPE)
    model.mean_module.constant.data.fill_(0.0)


def fit_marginal_likelihood(model: ExactDeepKernelGP, iterations: int, learning_rate: float) -> float:
    """Maximise the exact marginal likelihood (plus priors) with Adam.

    Parameters
    ----------
    model : ExactDeepKernelGP
        Model whose training data are set.
    iterations : int
        Adam steps.
    learning_rate : float
        Adam step size.

    Returns
    -------
    loss : float
        Final negative log marginal likelihood per point.
    """
    model.train()
    model.likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss = torch.tensor(float("nan"))
    train_x, train_y = model.train_inputs[0], model.train_targets
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = -mll(model(train_x), train_y)
        loss.backward()
        optimizer.step()
    model.eval()
    model.likelihood.eval()
    return float(loss.detach())


@dataclasses.dataclass
class _Cache:
    """Cholesky state of the posterior over all candidates for fixed hyperparameters."""

    features: torch.Tensor  # (N, k) kernel inputs of every candidate
    prior_variance: torch.Tensor  # (N,)
    chol: torch.Tensor  # (capacity, capacity), lower triangle valid up to n
    cross: torch.Tensor  # (capacity, N) rows of L^-1 K(train, candidates)
    whitened: torch.Tensor  # (capacity,) L^-1 (y - constant)
    mean: torch.Tensor  # (N,) posterior mean, standardised units
    variance: torch.Tensor  # (N,) posterior variance of f, standardised units
    n: int = 0


class CandidateGP:
    """Exact GP posterior over a fixed set of candidates, updated one measurement at a time.

    Parameters
    ----------
    latent : (N, d) ndarray
        Latent coordinates of all candidates (from ``PatchEmbedding``).
    head_dim : int or None
        If given, a trainable linear projection to ``head_dim`` dimensions
        followed by the kernel (the deep-kernel head); ``None`` uses the
        latent directly with one lengthscale per dimension.
    seed : int
        Seed for the head's initial weights.

    Examples
    --------
    >>> import numpy
    >>> x = numpy.linspace(0, 1, 50)[:, None]
    >>> gp = CandidateGP(x)
    >>> gp.add([0, 10, 20, 30, 40, 49], numpy.sin(6 * x[[0, 10, 20, 30, 40, 49], 0]))
    >>> gp.refit(full=True)
    >>> gp.posterior().mean.shape
    (50,)
    """

    def __init__(self, latent: _NDArray, *, head_dim: int | None = None, seed: int = 0) -> None:
        latent_array = _checks.real_array(latent, "latent", "a finite real array of shape (N, d)")
        if latent_array.ndim != 2:
            raise ValueError(f"latent must have shape (N, d), got {latent_array.shape}")
        head_dim = _checks.optional_whole(head_dim, "head_dim", 1)
        seed = _checks.whole(seed, "seed", 0)
        self._latent = torch.as_tensor(latent_array, dtype=_DTYPE)
        self._generator = torch.Generator().manual_seed(seed)
        self._head_dim = head_dim
        self._head: torch.nn.Module | None = None
        self._input_dim = self._latent.shape[1] if head_dim is None else head_dim
        self._indices: list[int] = []
        self._values: list[float] = []
        self._y_offset = 0.0
        self._y_scale = 1.0
        self._model: ExactDeepKernelGP | None = None
        self._cache: _Cache | None = None

    @property
    def model(self) -> ExactDeepKernelGP | None:
        """The GPyTorch model of the last fit (``None`` before the first fit)."""
        return self._model

    @property
    def n_measured(self) -> int:
        return len(self._indices)

    @property
    def measured_indices(self) -> _NDArray:
        return numpy.asarray(self._indices, dtype=numpy.int64)

    @property
    def measured_values(self) -> _NDArray:
        return numpy.asarray(self._values, dtype=numpy.float64)

    def _standardise(self) -> torch.Tensor:
        values = numpy.asarray(self._values, dtype=numpy.float64)
        self._y_offset = float(values.mean())
        spread = float(values.std())
        self._y_scale = spread if spread > 1e-12 else 1.0
        return torch.as_tensor((values - self._y_offset) / self._y_scale, dtype=_DTYPE)

    def add(self, indices: typing.Sequence[int] | _NDArray, values: typing.Sequence[float] | _NDArray) -> None:
        """Record measurements; folded into the posterior without refitting if a model exists."""
        index_array, value_array = _checks.measurements(indices, values, int(self._latent.shape[0]))
        for index, value in zip(index_array.tolist(), value_array.tolist()):
            self._indices.append(int(index))
            self._values.append(float(value))
            if self._cache is not None:
                self._append_to_cache(int(index), float(value))

    def refit(self, *, full: bool = False, iterations: int | None = None, learning_rate: float = 0.05) -> None:
        """Fit hyperparameters and rebuild the posterior cache.

        Parameters
        ----------
        full : bool
            Start from default hyperparameters (and a fresh head) instead of
            warm-starting from the previous fit.
        iterations : int, optional
            Adam iterations; defaults to 80 for a full fit and 15 otherwise.
        learning_rate : float
            Adam step size for warm-started fits (full fits use twice this).
        """
        if iterations is not None:
            iterations = _checks.optional_whole(iterations, "iterations", 0)
        learning_rate = _checks.number(learning_rate, "learning_rate", "a positive finite step size", lambda v: v > 0)
        if not self._indices:
            raise RuntimeError("CandidateGP.refit needs at least one measurement; call add() first.")
        train_y = self._standardise()
        train_x = self._latent[torch.as_tensor(self._indices)]
        if self._model is None or full:
            self._head = self._fresh_head()
            likelihood = _make_likelihood()
            self._model = ExactDeepKernelGP(train_x, train_y, likelihood, self._head, self._input_dim).to(_DTYPE)
            _reset_hyperparameters(self._model)
        else:
            self._model.set_train_data(train_x, train_y, strict=False)
        steps = iterations if iterations is not None else (80 if full else 15)
        rate = 2 * learning_rate if full else learning_rate
        with gpytorch.settings.max_cholesky_size(100000):
            fit_marginal_likelihood(self._model, steps, rate)
        self._rebuild_cache(train_y)

    def _fresh_head(self) -> torch.nn.Module | None:
        if self._head_dim is None:
            return None
        latent_dim = self._latent.shape[1]
        head = torch.nn.Linear(latent_dim, self._head_dim, bias=False).to(_DTYPE)
        with torch.no_grad():
            # Orthonormal rows: the head starts as a random rotation-projection,
            # so initial distances in the kernel match those in the embedding.
            basis = torch.linalg.qr(torch.randn(latent_dim, self._head_dim, generator=self._generator, dtype=_DTYPE))[0]
            head.weight.copy_(basis.T)
        return head

    def _kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert self._model is not None
        return typing.cast(torch.Tensor, self._model.covar_module(a, b).to_dense())

    def _noise(self) -> float:
        assert self._model is not None
        return float(self._model.likelihood.noise.detach())

    def _rebuild_cache(self, train_y: torch.Tensor) -> None:
        assert self._model is not None
        with torch.no_grad():
            features = self._model.features(self._latent)
            n = len(self._indices)
            capacity = max(64, 2 * n)
            n_candidates = features.shape[0]
            outputscale = self._model.covar_module.outputscale.detach()
            prior_variance = torch.full((n_candidates,), float(outputscale), dtype=_DTYPE)
            train_features = features[torch.as_tensor(self._indices)]
            gram = self._kernel(train_features, train_features) + self._noise() * torch.eye(n, dtype=_DTYPE)
            chol_n = torch.linalg.cholesky(gram)
            cross_n = torch.linalg.solve_triangular(chol_n, self._kernel(train_features, features), upper=False)
            constant = float(self._model.mean_module.constant.detach())
            whitened_n = torch.linalg.solve_triangular(chol_n, (train_y - constant)[:, None], upper=False)[:, 0]
            chol = torch.zeros(capacity, capacity, dtype=_DTYPE)
            chol[:n, :n] = chol_n
            cross = torch.zeros(capacity, n_candidates, dtype=_DTYPE)
            cross[:n] = cross_n
            whitened = torch.zeros(capacity, dtype=_DTYPE)
            whitened[:n] = whitened_n
            self._cache = _Cache(
                features=features,
                prior_variance=prior_variance,
                chol=chol,
                cross=cross,
                whitened=whitened,
                mean=constant + cross_n.T @ whitened_n,
                variance=(prior_variance - (cross_n**2).sum(0)).clamp_min(1e-12),
                n=n,
            )

    def _grow(self) -> None:
        cache = self._cache
        assert cache is not None
        capacity = 2 * cache.chol.shape[0]
        chol = torch.zeros(capacity, capacity, dtype=_DTYPE)
        chol[: cache.n, : cache.n] = cache.chol[: cache.n, : cache.n]
        cross = torch.zeros(capacity, cache.cross.shape[1], dtype=_DTYPE)
        cross[: cache.n] = cache.cross[: cache.n]
        whitened = torch.zeros(capacity, dtype=_DTYPE)
        whitened[: cache.n] = cache.whitened[: cache.n]
        cache.chol, cache.cross, cache.whitened = chol, cross, whitened

    def _append_to_cache(self, index: int, value: float) -> None:
        cache = self._cache
        assert cache is not None and self._model is not None
        if cache.n == cache.chol.shape[0]:
            self._grow()
        n = cache.n
        with torch.no_grad():
            k_new = self._kernel(cache.features[index : index + 1], cache.features)[0]  # (N,)
            # The new Cholesky row is the already-whitened cross-covariance column.
            row = cache.cross[:n, index]
            pivot2 = float(k_new[index]) + self._noise() - float(row @ row)
            pivot = math.sqrt(max(pivot2, 1e-12))
            new_cross = (k_new - cache.cross[:n].T @ row) / pivot
            constant = float(self._model.mean_module.constant.detach())
            y_standard = (value - self._y_offset) / self._y_scale
            new_whitened = (y_standard - constant - float(row @ cache.whitened[:n])) / pivot
            cache.chol[n, :n] = row
            cache.chol[n, n] = pivot
            cache.cross[n] = new_cross
            cache.whitened[n] = new_whitened
            cache.mean = cache.mean + new_cross * new_whitened
            cache.variance = (cache.variance - new_cross**2).clamp_min(1e-12)
            cache.n = n + 1

    def posterior(self) -> Posterior:
        """Posterior over all candidates in measurement units.

        Returns
        -------
        posterior : Posterior
            Mean and variance of the noise-free property, the noise variance,
            and a callable giving covariances with chosen candidates.
        """
        cache = self._cache
        if cache is None:
            raise RuntimeError("no fitted model yet; call refit() after the first measurements.")
        scale = self._y_scale
        n = cache.n
        cross = cache.cross[:n]
        features = cache.features

        def covariance_with(indices: _NDArray, rows: _NDArray | None = None) -> _NDArray:
            chosen = torch.as_tensor(numpy.asarray(indices, dtype=numpy.int64))
            row_index = slice(None) if rows is None else torch.as_tensor(numpy.asarray(rows, dtype=numpy.int64))
            with torch.no_grad():
                prior = self._kernel(features[row_index], features[chosen])
                posterior = prior - cross[:, row_index].T @ cross[:, chosen]
            return typing.cast(_NDArray, posterior.numpy() * scale**2)

        return Posterior(
            mean=cache.mean.numpy() * scale + self._y_offset,
            variance=cache.variance.numpy() * scale**2,
            noise_variance=self._noise() * scale**2,
            covariance_with=covariance_with,
        )

    def leave_one_out(self) -> tuple[_NDArray, _NDArray]:
        """Closed-form leave-one-out predictions of the measured values.

        Returns
        -------
        mean, variance : (n,) ndarrays
            Predictive mean and variance (noise included) of each measurement
            from all the others, with the current hyperparameters.
        """
        cache = self._cache
        if cache is None:
            raise RuntimeError("no fitted model yet; call refit() first.")
        n = cache.n
        with torch.no_grad():
            chol = cache.chol[:n, :n]
            inverse_chol = torch.linalg.solve_triangular(chol, torch.eye(n, dtype=_DTYPE), upper=False)
            precision_diag = (inverse_chol**2).sum(0)
            alpha = inverse_chol.T @ cache.whitened[:n]
        values = numpy.asarray(self._values, dtype=numpy.float64)
        residual = alpha.numpy() / precision_diag.numpy() * self._y_scale
        return values - residual, self._y_scale**2 / precision_diag.numpy()
