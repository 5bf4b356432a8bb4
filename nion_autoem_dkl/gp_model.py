"""The deep-kernel GP model in GPyTorch and its marginal-likelihood fit.

An ARD Matern-5/2 kernel on the candidates' latent coordinates (optionally
through a trainable projection head, the "deep" part), a constant mean and
a Gaussian likelihood: homoscedastic, or with a known error per measurement
plus a learned extra noise (``FixedNoiseGaussianLikelihood``). All in float64.
"""

from __future__ import annotations

import math
import typing

import gpytorch
import torch

_DTYPE = torch.float64
Likelihood: typing.TypeAlias = gpytorch.likelihoods.GaussianLikelihood | gpytorch.likelihoods.FixedNoiseGaussianLikelihood


class ExactDeepKernelGP(gpytorch.models.ExactGP):  # type: ignore[misc]
    """Exact GP with an ARD Matern-5/2 kernel on ``head(latent)``.

    Parameters
    ----------
    train_x : (n, d) tensor
        Latent coordinates of measured candidates.
    train_y : (n,) tensor
        Standardised measurements.
    likelihood : gpytorch.likelihoods.GaussianLikelihood
        Gaussian noise model (``FixedNoiseGaussianLikelihood`` when the
        measurements carry their own errors).
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
        likelihood: Likelihood,
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


# Smallest per-measurement variance handed to GPyTorch, in standardised units;
# an error of zero means "no error given" and leaves only the learned noise.
MIN_FIXED_NOISE = 1e-6


def make_likelihood(fixed_noise: torch.Tensor | None = None) -> Likelihood:
    """Learned homoscedastic noise, plus per-measurement variances ``fixed_noise`` if given."""
    noise_prior = gpytorch.priors.GammaPrior(1.1, 0.05)
    noise_constraint = gpytorch.constraints.GreaterThan(1e-5)
    if fixed_noise is None:
        return gpytorch.likelihoods.GaussianLikelihood(noise_prior=noise_prior, noise_constraint=noise_constraint).to(_DTYPE)
    return gpytorch.likelihoods.FixedNoiseGaussianLikelihood(
        noise=fixed_noise.clamp_min(MIN_FIXED_NOISE), learn_additional_noise=True,
        noise_prior=noise_prior, noise_constraint=noise_constraint,
    ).to(_DTYPE)


def learned_noise(likelihood: Likelihood) -> float:
    """The learned (homoscedastic) noise variance of a likelihood, in standardised units.

    For ``FixedNoiseGaussianLikelihood`` this is the extra noise on top of
    the measurements' own errors.
    """
    if isinstance(likelihood, gpytorch.likelihoods.FixedNoiseGaussianLikelihood):
        return float(typing.cast(torch.Tensor, likelihood.second_noise).detach())
    return float(likelihood.noise.detach())


def set_learned_noise(likelihood: Likelihood, value: float) -> None:
    if isinstance(likelihood, gpytorch.likelihoods.FixedNoiseGaussianLikelihood):
        likelihood.second_noise = torch.tensor(value, dtype=_DTYPE)
    else:
        likelihood.noise = torch.tensor(value, dtype=_DTYPE)


def reset_hyperparameters(model: ExactDeepKernelGP) -> None:
    input_dim = int(model.covar_module.base_kernel.ard_num_dims)
    model.covar_module.base_kernel.lengthscale = torch.full((1, input_dim), math.sqrt(input_dim), dtype=_DTYPE)
    model.covar_module.outputscale = torch.tensor(1.0, dtype=_DTYPE)
    set_learned_noise(model.likelihood, 0.05)
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

    Notes
    -----
    The gradients are dropped afterwards, so no autograd state outlives the
    fit (a long run would otherwise hold one set per refit).
    """
    model.train()
    model.likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    final = math.nan
    train_x, train_y = model.train_inputs[0], model.train_targets
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = -mll(model(train_x), train_y)
        loss.backward()
        optimizer.step()
        final = float(loss.detach())
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    model.likelihood.eval()
    return final

