"""Posteriors over a fixed candidate set, updated one measurement at a time.

Both hold, for fixed hyperparameters, the posterior mean and variance at
every candidate and fold in a new measurement without a refit:

- ``ExactCache``: the exact GP through a growing Cholesky factor; a
  measurement costs O(n N) for n measurements and N candidates.
- ``SparseCache``: Bayesian linear regression on whitened Nystrom features
  of m inducing points (FITC-corrected); a measurement costs O(m N) however
  many came before, and the memory is O(m N).

Each measurement's noise is the learned noise plus its own error squared.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import gpytorch
import numpy
import numpy.typing
import torch

from .gp_model import ExactDeepKernelGP
from .gp_model import learned_noise
from .posterior import Posterior

_NDArray = numpy.typing.NDArray[typing.Any]
_DTYPE = torch.float64


@dataclasses.dataclass(frozen=True)
class Measurements:
    """A snapshot of the measurements a fit sees."""

    indices: torch.Tensor  # (n,) candidate indices
    values: _NDArray  # (n,) property units
    errors: _NDArray  # (n,) standard errors, property units; 0 where none was given

    def standardisation(self) -> tuple[float, float]:
        spread = float(self.values.std())
        return float(self.values.mean()), spread if spread > 1e-12 else 1.0


@dataclasses.dataclass(eq=False)
class CacheBase:
    """What both posteriors share: the model they were built with and the standardisation of the data."""

    model: ExactDeepKernelGP
    features: torch.Tensor  # (N, k) kernel inputs of every candidate
    y_offset: float
    y_scale: float
    learned_noise: float  # standardised units
    constant: float  # GP mean in standardised units
    mean: torch.Tensor  # (N,) posterior mean, standardised units
    variance: torch.Tensor  # (N,) posterior variance of f, standardised units
    n: int

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return typing.cast(torch.Tensor, self.model.covar_module(a, b).to_dense())

    def noise(self, error: float) -> float:
        """Noise variance (standardised) of a measurement with standard error ``error`` (property units)."""
        return self.learned_noise + (error / self.y_scale) ** 2

    def standard(self, value: float) -> float:
        return (value - self.y_offset) / self.y_scale

    def to_posterior(self, covariance: typing.Callable[[torch.Tensor, torch.Tensor | slice], torch.Tensor]) -> Posterior:
        scale = self.y_scale

        def covariance_with(indices: _NDArray, rows: _NDArray | None = None) -> _NDArray:
            chosen = torch.as_tensor(numpy.asarray(indices, dtype=numpy.int64))
            row_index = slice(None) if rows is None else torch.as_tensor(numpy.asarray(rows, dtype=numpy.int64))
            with torch.no_grad():
                result = covariance(chosen, row_index)
            return typing.cast(_NDArray, result.numpy() * scale**2)

        return Posterior(
            mean=self.mean.numpy() * scale + self.y_offset,
            variance=self.variance.numpy() * scale**2,
            noise_variance=self.learned_noise * scale**2,
            covariance_with=covariance_with,
        )


@dataclasses.dataclass(eq=False)
class ExactCache(CacheBase):
    """Cholesky state of the exact posterior over all candidates for fixed hyperparameters."""

    chol: torch.Tensor  # (capacity, capacity), lower triangle valid up to n
    cross: torch.Tensor  # (capacity, N) rows of L^-1 K(train, candidates)
    whitened: torch.Tensor  # (capacity,) L^-1 (y - constant)

    def _grow(self) -> None:
        capacity = 2 * self.chol.shape[0]
        chol = torch.zeros(capacity, capacity, dtype=_DTYPE)
        chol[: self.n, : self.n] = self.chol[: self.n, : self.n]
        cross = torch.zeros(capacity, self.cross.shape[1], dtype=_DTYPE)
        cross[: self.n] = self.cross[: self.n]
        whitened = torch.zeros(capacity, dtype=_DTYPE)
        whitened[: self.n] = self.whitened[: self.n]
        self.chol, self.cross, self.whitened = chol, cross, whitened

    def add(self, index: int, value: float, error: float) -> None:
        if self.n == self.chol.shape[0]:
            self._grow()
        n = self.n
        with torch.no_grad():
            k_new = self.kernel(self.features[index : index + 1], self.features)[0]  # (N,)
            # The new Cholesky row is the already-whitened cross-covariance column.
            row = self.cross[:n, index]
            pivot2 = float(k_new[index]) + self.noise(error) - float(row @ row)
            pivot = math.sqrt(max(pivot2, 1e-12))
            new_cross = (k_new - self.cross[:n].T @ row) / pivot
            new_whitened = (self.standard(value) - self.constant - float(row @ self.whitened[:n])) / pivot
            self.chol[n, :n] = row
            self.chol[n, n] = pivot
            self.cross[n] = new_cross
            self.whitened[n] = new_whitened
            self.mean = self.mean + new_cross * new_whitened
            self.variance = (self.variance - new_cross**2).clamp_min(1e-12)
            self.n = n + 1

    def posterior(self) -> Posterior:
        cross = self.cross[: self.n]
        features = self.features

        def covariance(chosen: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
            return self.kernel(features[rows], features[chosen]) - cross[:, rows].T @ cross[:, chosen]

        return self.to_posterior(covariance)

    def leave_one_out(self, data: Measurements) -> tuple[_NDArray, _NDArray]:
        n = self.n
        with torch.no_grad():
            chol = self.chol[:n, :n]
            inverse_chol = torch.linalg.solve_triangular(chol, torch.eye(n, dtype=_DTYPE), upper=False)
            precision_diag = (inverse_chol**2).sum(0)
            alpha = inverse_chol.T @ self.whitened[:n]
        residual = alpha.numpy() / precision_diag.numpy() * self.y_scale
        return data.values - residual, self.y_scale**2 / precision_diag.numpy()


@torch.no_grad()
def build_exact(model: ExactDeepKernelGP, features: torch.Tensor, data: Measurements) -> ExactCache:
    offset, scale = data.standardisation()
    learned = learned_noise(model.likelihood)
    constant = float(model.mean_module.constant.detach())
    outputscale = float(model.covar_module.outputscale.detach())
    n, n_candidates = int(data.indices.shape[0]), int(features.shape[0])
    capacity = max(64, 2 * n)
    train_features = features[data.indices]
    noise = torch.as_tensor(learned + (data.errors / scale) ** 2, dtype=_DTYPE)
    kernel = model.covar_module
    gram = kernel(train_features, train_features).to_dense() + torch.diag(noise)
    chol_n = torch.linalg.cholesky(gram)
    cross_n = torch.linalg.solve_triangular(chol_n, kernel(train_features, features).to_dense(), upper=False)
    y = torch.as_tensor((data.values - offset) / scale, dtype=_DTYPE)
    whitened_n = torch.linalg.solve_triangular(chol_n, (y - constant)[:, None], upper=False)[:, 0]
    chol = torch.zeros(capacity, capacity, dtype=_DTYPE)
    chol[:n, :n] = chol_n
    cross = torch.zeros(capacity, n_candidates, dtype=_DTYPE)
    cross[:n] = cross_n
    whitened = torch.zeros(capacity, dtype=_DTYPE)
    whitened[:n] = whitened_n
    return ExactCache(
        model=model, features=features, y_offset=offset, y_scale=scale, learned_noise=learned, constant=constant,
        mean=constant + cross_n.T @ whitened_n,
        variance=(outputscale - (cross_n**2).sum(0)).clamp_min(1e-12),
        n=n, chol=chol, cross=cross, whitened=whitened,
    )


@dataclasses.dataclass(eq=False)
class SparseCache(CacheBase):
    """Sparse posterior: Bayesian linear regression on whitened Nystrom features ``phi``.

    ``phi[i] = L_uu^-1 k_u(x_i)`` for m inducing points u, so ``phi phi^T``
    is the Nystrom approximation of the kernel. Each measurement's noise is
    its own plus the part of its prior variance the inducing points do not
    explain (the FITC correction), so a measurement far from every inducing
    point counts for little rather than being over-trusted. The predictive
    variance adds that unexplained part back, so candidates far from the
    inducing points keep their prior variance.
    """

    phi: torch.Tensor  # (N, m)
    residual: torch.Tensor  # (N,) prior variance not explained by the inducing points
    weights_mean: torch.Tensor  # (m,)
    weights_covariance: torch.Tensor  # (m, m)

    def _effective_noise(self, rows: torch.Tensor, errors: _NDArray) -> torch.Tensor:
        return self.learned_noise + torch.as_tensor((errors / self.y_scale) ** 2, dtype=_DTYPE) + self.residual[rows]

    def add(self, index: int, value: float, error: float) -> None:
        with torch.no_grad():
            phi_i = self.phi[index]
            s = self.weights_covariance @ phi_i
            denominator = self.noise(error) + float(self.residual[index]) + float(phi_i @ s)
            innovation = self.standard(value) - self.constant - float(phi_i @ self.weights_mean)
            gain = self.phi @ s  # (N,)
            self.mean = self.mean + gain * (innovation / denominator)
            self.variance = (self.variance - gain**2 / denominator).clamp_min(1e-12)
            self.weights_mean = self.weights_mean + s * (innovation / denominator)
            self.weights_covariance = self.weights_covariance - torch.outer(s, s) / denominator
            self.n += 1

    def posterior(self) -> Posterior:
        features, phi, covariance_w = self.features, self.phi, self.weights_covariance

        def covariance(chosen: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
            phi_rows, phi_chosen = phi[rows], phi[chosen]
            explained = phi_rows @ (covariance_w @ phi_chosen.T) - phi_rows @ phi_chosen.T
            return self.kernel(features[rows], features[chosen]) + explained

        return self.to_posterior(covariance)

    def leave_one_out(self, data: Measurements) -> tuple[_NDArray, _NDArray]:
        with torch.no_grad():
            phi_t = self.phi[data.indices]
            noise = self._effective_noise(data.indices, data.errors)
            shared = ((phi_t @ self.weights_covariance) * phi_t).sum(1)  # posterior variance of phi.w at each point
            inflation = noise / (noise - shared).clamp_min(1e-12)
            y = torch.as_tensor((data.values - self.y_offset) / self.y_scale, dtype=_DTYPE)
            residual = (y - self.constant - phi_t @ self.weights_mean) * inflation
            variance = shared * inflation + noise
        return data.values - residual.numpy() * self.y_scale, variance.numpy() * self.y_scale**2


@torch.no_grad()
def inducing_rows(kernel: gpytorch.kernels.Kernel, features: torch.Tensor, m: int) -> torch.Tensor:
    """Rows of ``features`` chosen as inducing points by greedy pivoted Cholesky.

    Each pick is the point the points already picked explain least (largest
    residual prior variance), which makes the Nystrom approximation good on
    exactly these points; duplicates are never picked twice.

    Parameters
    ----------
    kernel : gpytorch.kernels.Kernel
        Covariance function.
    features : (n, k) tensor
        Kernel inputs to choose from.
    m : int
        Most inducing points wanted.

    Returns
    -------
    rows : (<= m,) int64 tensor
    """
    n = int(features.shape[0])
    m = min(int(m), n)
    diagonal = kernel(features, diag=True).to(_DTYPE).clone()
    floor = 1e-6 * float(diagonal.max())
    factor = torch.zeros(m, n, dtype=_DTYPE)
    rows: list[int] = []
    for k in range(m):
        pivot = int(torch.argmax(diagonal))
        if float(diagonal[pivot]) <= floor:
            break
        rows.append(pivot)
        column = kernel(features[pivot : pivot + 1], features).to_dense()[0] - factor[:k, pivot] @ factor[:k]
        factor[k] = column / math.sqrt(float(diagonal[pivot]))
        diagonal = (diagonal - factor[k] ** 2).clamp_min(0.0)
        diagonal[pivot] = 0.0
    return torch.as_tensor(rows, dtype=torch.int64)


@torch.no_grad()
def build_sparse(model: ExactDeepKernelGP, features: torch.Tensor, data: Measurements, n_inducing: int) -> SparseCache:
    offset, scale = data.standardisation()
    learned = learned_noise(model.likelihood)
    constant = float(model.mean_module.constant.detach())
    outputscale = float(model.covar_module.outputscale.detach())
    kernel = model.covar_module
    train_features = features[data.indices]
    inducing = train_features[inducing_rows(kernel, train_features, n_inducing)]
    m = int(inducing.shape[0])
    gram = kernel(inducing, inducing).to_dense() + 1e-8 * outputscale * torch.eye(m, dtype=_DTYPE)
    chol_u = torch.linalg.cholesky(gram)
    phi = torch.linalg.solve_triangular(chol_u, kernel(inducing, features).to_dense(), upper=False).T.contiguous()
    residual = (outputscale - (phi**2).sum(1)).clamp_min(0.0)
    phi_t = phi[data.indices]
    noise = learned + torch.as_tensor((data.errors / scale) ** 2, dtype=_DTYPE) + residual[data.indices]
    weighted = phi_t / noise[:, None]
    precision = torch.eye(m, dtype=_DTYPE) + phi_t.T @ weighted
    covariance_w = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    y = torch.as_tensor((data.values - offset) / scale, dtype=_DTYPE)
    mean_w = covariance_w @ (weighted.T @ (y - constant))
    return SparseCache(
        model=model, features=features, y_offset=offset, y_scale=scale, learned_noise=learned, constant=constant,
        mean=constant + phi @ mean_w,
        variance=(residual + ((phi @ covariance_w) * phi).sum(1)).clamp_min(1e-12),
        n=int(data.indices.shape[0]), phi=phi, residual=residual, weights_mean=mean_w, weights_covariance=covariance_w,
    )


Cache: typing.TypeAlias = ExactCache | SparseCache
