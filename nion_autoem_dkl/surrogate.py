"""Gaussian process over a fixed, discrete set of candidate probe positions: fits, refit schedule, background refits.

The hyperparameters (and the optional trainable projection head, the "deep"
part of the kernel) are fitted with GPyTorch by maximising the exact
marginal likelihood in float64. Between fits the hyperparameters are held
and each new measurement is folded into cached factors, so a step costs
O(n * N) for n measurements and N candidates instead of a refit and an
O(n^2 * N) prediction. This is what keeps a step at a few milliseconds.

Two posteriors share that interface:

- up to ``exact_limit`` measurements, the exact GP (``incremental.ExactCache``);
- past it, a sparse GP on at most ``inducing_points`` inducing points chosen
  among the measured candidates by pivoted Cholesky (FITC-corrected
  Nystrom features, ``incremental.SparseCache``). A step then costs O(m * N) whatever
  the number of measurements, the memory is O(m * N), and hyperparameters
  are fitted on a random subset of ``exact_limit`` measurements.

Measurements may carry a per-spectrum error (e.g. Poisson statistics of the
band counts the scalarizer integrated). The noise of each measurement is
then that error squared plus a learned extra noise
(``gpytorch.likelihoods.FixedNoiseGaussianLikelihood``), so intervals widen
where the spectra are poor instead of one noise level fitting all.

A refit may run in a background thread (``refit(wait=False)``): the
previous posterior serves suggestions while the new one trains, and the
measurements that arrive meanwhile are folded into the new one when it is
installed.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import threading
import typing
import warnings

import gpytorch
import numpy
import numpy.typing
import torch

import nion_autoem_checks as _checks

from .gp_model import MIN_FIXED_NOISE
from .gp_model import ExactDeepKernelGP
from .gp_model import fit_marginal_likelihood
from .gp_model import learned_noise
from .gp_model import make_likelihood
from .gp_model import reset_hyperparameters
from .gp_model import set_learned_noise
from .incremental import Cache
from .incremental import Measurements
from .incremental import SparseCache
from .incremental import build_exact
from .incremental import build_sparse
from .posterior import Posterior

__all__ = ["CandidateGP", "ExactDeepKernelGP", "fit_marginal_likelihood", "warm_up"]

_NDArray = numpy.typing.NDArray[typing.Any]
_DTYPE = torch.float64


@dataclasses.dataclass
class _FitJob:
    """One hyperparameter fit and posterior build; touches nothing but its own model and snapshot."""

    model: ExactDeepKernelGP | None  # None: a fresh model with ``head``
    head: torch.nn.Module | None
    input_dim: int
    latent: torch.Tensor
    data: Measurements
    fit_rows: _NDArray  # which measurements the hyperparameters are fitted on
    iterations: int
    learning_rate: float
    sparse: bool
    n_inducing: int
    # Measurements from a given count on, for a background fit to fold in
    # what arrived while it ran (so the swap itself stays cheap).
    since: typing.Callable[[int], list[tuple[int, float, float]]] | None = None

    def __call__(self) -> Cache:
        cache = self._fit_and_build()
        if self.since is not None:
            while len(missed := self.since(cache.n)) > 1:
                for index, value, error in missed:
                    cache.add(index, value, error)
        return cache

    def _fit_and_build(self) -> Cache:
        data = self.data
        offset, scale = data.standardisation()
        rows = torch.as_tensor(self.fit_rows, dtype=torch.int64)
        train_x = self.latent[data.indices[rows]]
        train_y = torch.as_tensor((data.values[self.fit_rows] - offset) / scale, dtype=_DTYPE)
        errors = data.errors[self.fit_rows]
        fixed = torch.as_tensor((errors / scale) ** 2, dtype=_DTYPE) if bool((data.errors > 0).any()) else None
        model = self.model
        if model is None:
            model = ExactDeepKernelGP(train_x, train_y, make_likelihood(fixed), self.head, self.input_dim).to(_DTYPE)
            reset_hyperparameters(model)
        else:
            model.set_train_data(train_x, train_y, strict=False)
            heteroscedastic = isinstance(model.likelihood, gpytorch.likelihoods.FixedNoiseGaussianLikelihood)
            if (fixed is not None) != heteroscedastic:  # errors appeared (or vanished): swap the noise model
                previous = learned_noise(model.likelihood)
                model.likelihood = make_likelihood(fixed)
                set_learned_noise(model.likelihood, previous)
            elif fixed is not None:
                model.likelihood.noise = fixed.clamp_min(MIN_FIXED_NOISE)
        with gpytorch.settings.max_cholesky_size(100000):
            fit_marginal_likelihood(model, self.iterations, self.learning_rate)
        with torch.no_grad():
            features = model.features(self.latent).detach()
            if self.sparse:
                return build_sparse(model, features, data, self.n_inducing)
            return build_exact(model, features, data)


_warmed_up = False


def warm_up() -> None:
    """Pay PyTorch's and GPyTorch's one-time first-call costs now (about a second, once per process).

    ``CandidateGP`` calls this on construction, so that the cost lands in the
    set-up (next to fitting the embedding) rather than in the first step
    that fits a model.
    """
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    gp = CandidateGP(numpy.linspace(0.0, 1.0, 8)[:, None])
    gp.add([0, 3, 5, 7], [0.0, 1.0, 0.0, 1.0])
    gp.refit(full=True, iterations=2)


class CandidateGP:
    """GP posterior over a fixed set of candidates, updated one measurement at a time.

    Parameters
    ----------
    latent : (N, d) ndarray
        Latent coordinates of all candidates (from ``PatchEmbedding``).
    head_dim : int or None
        If given, a trainable linear projection to ``head_dim`` dimensions
        followed by the kernel (the deep-kernel head); ``None`` uses the
        latent directly with one lengthscale per dimension.
    seed : int
        Seed for the head's initial weights and the hyperparameter subsets.
    exact_limit : int
        Up to this many measurements the posterior is the exact GP; past it
        a sparse GP on ``inducing_points`` inducing points, with the
        hyperparameters fitted on a random subset of this many measurements.
    inducing_points : int
        Inducing points of the sparse posterior (chosen among the measured
        candidates).

    Examples
    --------
    >>> import numpy
    >>> x = numpy.linspace(0, 1, 50)[:, None]
    >>> gp = CandidateGP(x)
    >>> gp.add([0, 10, 20, 30, 40, 49], numpy.sin(6 * x[[0, 10, 20, 30, 40, 49], 0]))
    >>> gp.refit(full=True)
    True
    >>> gp.posterior().mean.shape
    (50,)
    """

    def __init__(
        self, latent: _NDArray, *, head_dim: int | None = None, seed: int = 0, exact_limit: int = 512, inducing_points: int = 256
    ) -> None:
        latent_array = _checks.real_array(latent, "latent", "a finite real array of shape (N, d)")
        if latent_array.ndim != 2:
            raise ValueError(f"latent must have shape (N, d), got {latent_array.shape}")
        head_dim = _checks.optional_whole(head_dim, "head_dim", 1)
        seed = _checks.whole(seed, "seed", 0)
        self.exact_limit = _checks.whole(exact_limit, "exact_limit", 2)
        self.inducing_points = _checks.whole(inducing_points, "inducing_points", 1)
        self._latent = torch.as_tensor(latent_array, dtype=_DTYPE)
        self._generator = torch.Generator().manual_seed(seed)
        self._subset_rng = numpy.random.default_rng(seed)
        self._head_dim = head_dim
        self._input_dim = self._latent.shape[1] if head_dim is None else head_dim
        self._indices: list[int] = []
        self._values: list[float] = []
        self._errors: list[float] = []
        self._cache: Cache | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: concurrent.futures.Future[Cache] | None = None
        # Guards the measurement lists, which a background fit reads to catch up.
        self._lock = threading.Lock()
        warm_up()

    @property
    def model(self) -> ExactDeepKernelGP | None:
        """The GPyTorch model of the posterior in use (``None`` before the first fit)."""
        self.poll()
        return None if self._cache is None else self._cache.model

    @property
    def sparse(self) -> bool:
        """True when the posterior in use is the sparse (inducing-point) one."""
        self.poll()
        return isinstance(self._cache, SparseCache)

    @property
    def refitting(self) -> bool:
        """True while a background refit is under way."""
        self.poll()
        return self._pending is not None

    @property
    def _y_offset(self) -> float:
        return 0.0 if self._cache is None else self._cache.y_offset

    @property
    def _y_scale(self) -> float:
        return 1.0 if self._cache is None else self._cache.y_scale

    @property
    def n_measured(self) -> int:
        return len(self._indices)

    @property
    def measured_indices(self) -> _NDArray:
        return numpy.asarray(self._indices, dtype=numpy.int64)

    @property
    def measured_values(self) -> _NDArray:
        return numpy.asarray(self._values, dtype=numpy.float64)

    @property
    def measured_errors(self) -> _NDArray:
        """Standard error given with each measurement (0 where none was given)."""
        return numpy.asarray(self._errors, dtype=numpy.float64)

    def _snapshot(self) -> Measurements:
        return Measurements(torch.as_tensor(self._indices, dtype=torch.int64), self.measured_values, self.measured_errors)

    def add(
        self,
        indices: typing.Sequence[int] | _NDArray,
        values: typing.Sequence[float] | _NDArray,
        errors: typing.Sequence[float] | _NDArray | None = None,
    ) -> None:
        """Record measurements; folded into the posterior without refitting if a model exists.

        Parameters
        ----------
        indices : sequence of int
            Measured candidates.
        values : sequence of float
            Their scalarized values.
        errors : sequence of float, optional
            Standard error of each value (e.g. from the counting statistics
            of the spectrum); the model adds its learned noise to it.
        """
        index_array, value_array = _checks.measurements(indices, values, int(self._latent.shape[0]))
        error_array: _NDArray = numpy.zeros(value_array.shape)
        if errors is not None:
            error_array = _checks.real_array(errors, "errors", "finite standard errors >= 0, one per value").reshape(-1)
            _checks.same_shape(error_array, "errors", value_array, "values")
            if (error_array < 0).any():
                raise ValueError(f"errors must be finite standard errors >= 0, got {_checks.describe(error_array[error_array < 0][:5])}")
        self.poll()
        for index, value, error in zip(index_array.tolist(), value_array.tolist(), error_array.tolist()):
            with self._lock:
                self._indices.append(int(index))
                self._values.append(float(value))
                self._errors.append(float(error))
            if self._cache is not None:
                self._cache.add(int(index), float(value), float(error))

    def refit(self, *, full: bool = False, iterations: int | None = None, learning_rate: float = 0.05, wait: bool = True) -> bool:
        """Fit hyperparameters and rebuild the posterior.

        Parameters
        ----------
        full : bool
            Start from default hyperparameters (and a fresh head) instead of
            warm-starting from the previous fit.
        iterations : int, optional
            Adam iterations; defaults to 80 for a full fit and 15 otherwise.
        learning_rate : float
            Adam step size for warm-started fits (full fits use twice this).
        wait : bool
            With ``False`` (and a posterior already in use) the fit runs in a
            background thread; the current posterior keeps serving until the
            new one is ready, and ``add``/``posterior`` install it then.

        Returns
        -------
        started : bool
            False when ``wait=False`` and a background refit is still running
            (nothing new is started).
        """
        if iterations is not None:
            iterations = _checks.optional_whole(iterations, "iterations", 0)
        learning_rate = _checks.number(learning_rate, "learning_rate", "a positive finite step size", lambda v: v > 0)
        _checks.flag(wait, "wait")
        if not self._indices:
            raise RuntimeError("CandidateGP.refit needs at least one measurement; call add() first.")
        self.poll()
        background = not wait and self._cache is not None
        if background and self._pending is not None:
            return False
        n = len(self._indices)
        sparse = n > self.exact_limit
        fit_rows = numpy.arange(n) if not sparse else numpy.sort(self._subset_rng.choice(n, self.exact_limit, replace=False))
        fresh = self._cache is None or full
        model = None if fresh or self._cache is None else self._cache.model
        job = _FitJob(
            model=copy.deepcopy(model) if background else model,
            head=self._fresh_head() if fresh else None,
            input_dim=self._input_dim,
            latent=self._latent,
            data=self._snapshot(),
            fit_rows=fit_rows,
            iterations=iterations if iterations is not None else (80 if full else 15),
            learning_rate=2 * learning_rate if full else learning_rate,
            sparse=sparse,
            n_inducing=self.inducing_points,
            since=self._measurements_since if background else None,
        )
        if not background:
            self._install(job())
            return True
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dkl-refit")
        self._pending = self._executor.submit(job)
        return True

    def _measurements_since(self, n: int) -> list[tuple[int, float, float]]:
        with self._lock:
            return list(zip(self._indices[n:], self._values[n:], self._errors[n:]))

    def poll(self) -> None:
        """Install a finished background refit, folding in the measurements that arrived meanwhile."""
        if self._pending is not None and self._pending.done():
            future = self._pending
            self._pending = None
            error = future.exception()
            if error is not None:
                # The previous posterior is still valid; a failed background
                # fit must not stop an experiment, and the next refit retries.
                warnings.warn(f"background GP refit failed, keeping the previous model: {error!r}", RuntimeWarning, stacklevel=2)
                return
            self._install(future.result())

    def wait_for_refit(self) -> None:
        """Block until a background refit (if any) is finished and installed."""
        if self._pending is not None:
            concurrent.futures.wait([self._pending])
            self.poll()

    def close(self) -> None:
        """Finish any background refit and stop its thread."""
        self.wait_for_refit()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _install(self, cache: Cache) -> None:
        for index, value, error in self._measurements_since(cache.n):
            cache.add(index, value, error)
        self._cache = cache

    def _fresh_head(self) -> torch.nn.Module | None:
        if self._head_dim is None:
            return None
        latent_dim = self._latent.shape[1]
        head = torch.nn.Linear(latent_dim, self._head_dim, bias=False).to(_DTYPE)
        with torch.no_grad():
            if self._head_dim >= latent_dim:
                # The identity, padded with zero rows: the kernel starts on the
                # embedding itself and the fit can only mix its coordinates.
                head.weight.zero_()
                head.weight[:latent_dim].copy_(torch.eye(latent_dim, dtype=_DTYPE))
                return head
            # Orthonormal rows: the head starts as a random rotation-projection,
            # so initial distances in the kernel match those in the embedding.
            basis = torch.linalg.qr(torch.randn(latent_dim, self._head_dim, generator=self._generator, dtype=_DTYPE))[0]
            head.weight.copy_(basis.T)
        return head

    def posterior(self) -> Posterior:
        """Posterior over all candidates in measurement units.

        Returns
        -------
        posterior : Posterior
            Mean and variance of the noise-free property, the learned noise
            variance (on top of any error given with a measurement), and a
            callable giving covariances with chosen candidates.
        """
        self.poll()
        if self._cache is None:
            raise RuntimeError("no fitted model yet; call refit() after the first measurements.")
        return self._cache.posterior()

    def leave_one_out(self) -> tuple[_NDArray, _NDArray]:
        """Leave-one-out predictions of the measured values (closed form; approximate for the sparse posterior).

        Returns
        -------
        mean, variance : (n,) ndarrays
            Predictive mean and variance (noise included) of each measurement
            from all the others, with the current hyperparameters.
        """
        self.poll()
        if self._cache is None:
            raise RuntimeError("no fitted model yet; call refit() first.")
        return self._cache.leave_one_out(self._snapshot())
