"""The active-spectroscopy agent: observations in, probe positions out.

``DKLAgent`` owns an embedding of the survey patches, a Gaussian process on
that embedding and an acquisition function. It performs no I/O: the caller
acquires spectra at the suggested candidates, scalarizes them and hands the
numbers back with ``observe``.

Typical loop::

    agent = DKLAgent(candidates.patches, candidates.positions)
    while not agent.should_stop:
        chosen = agent.suggest(q=1)
        values = [scalarize(acquire_spectrum(candidates.positions[i])) for i in chosen]
        agent.observe(chosen, values)
    mean, std = agent.predict()
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

from . import acquisition as acq
from .batch import select_batch
from .calibration import IntervalScale
from .calibration import ProspectiveCoverage
from .calibration import coverage_of
from .constraints import exclusion_mask
from .embedding import PatchEmbedding
from .embedding import check_patches
from .error_pool import ErrorPool
from .posterior import Posterior
from .stopping import StoppingRule
from .surrogate import CandidateGP

_NDArray = numpy.typing.NDArray[typing.Any]

# Largest exact-GP refit (n^2 N multiply-adds for the posterior rebuild) done
# inside a step: 400 measurements on 4,225 candidates (7e8, a few hundred ms
# every refit_every steps) stay there, as before; larger ones run in the background.
_BLOCKING_REFIT_WORK = 1e9

AcquisitionName = typing.Literal["log_ei", "ucb", "thompson", "max_uncertainty"]
ACQUISITIONS: tuple[str, ...] = typing.get_args(AcquisitionName)


#: Width of the identity-initialised head the deep embedding gets by default (chosen on development seeds 0-19).
DEEP_HEAD_DIM = 8

#: Smallest patch side the deep embedding is used for: smaller patches hold a single 4-px ring of its
#: features, and fall back on ``'patch'`` (at 8 px on the 4D-STEM twin the deep one mapped worse).
DEEP_MIN_PATCH_PX = 9

EmbeddingName = typing.Literal["deep", "patch", "pretrained"]
EMBEDDINGS: tuple[str, ...] = typing.get_args(EmbeddingName)


@dataclasses.dataclass
class AgentConfig:
    """Settings of a ``DKLAgent``.

    Parameters
    ----------
    acquisition : {'thompson', 'log_ei', 'ucb', 'max_uncertainty'}
        Where to look next: Thompson sampling (default; finds rare high
        values best in our benchmark), log expected improvement, UCB with a
        GP-UCB beta schedule, or pure uncertainty (mapping).
    n_initial : int
        Measurements chosen before the model is trusted: spread out in the
        embedding (structurally diverse), not in space.
    refit_every : int
        Warm-started hyperparameter update every this many measurements;
        between updates measurements are folded in at fixed hyperparameters.
    warm_iterations : int
        Adam iterations of a warm-started update.
    full_iterations : int
        Adam iterations of a fit from default hyperparameters, done when the
        number of measurements has doubled since the last one.
    head_dim : int, None or 'auto'
        Trainable linear projection of the embedding (the deep-kernel head),
        fitted jointly with the kernel on the marginal likelihood.
        ``'auto'`` (default): the embedding's own choice -- for ``'deep'`` a
        head of ``DEEP_HEAD_DIM`` outputs that starts as the identity (so
        it can only learn to mix the few latent coordinates), for
        ``'patch'`` and ``'pretrained'``, and for a ``latent`` given to the
        agent, none; ``None``: no head (an ARD kernel on the embedding
        itself); a whole number >= 1: a head of that width.
    latent_dim : int or None
        PCA reduction of the embedding features (``None`` keeps them all
        with ``embedding='patch'``; with ``'deep'`` it means that
        embedding's default of 6, with ``'pretrained'`` its default of 16).
    embedding : {'deep', 'patch', 'pretrained'}
        How candidate patches become GP inputs: ``'deep'`` (default) the
        shipped self-supervised patch encoder of this package, dihedral-
        averaged and reduced to a few whitened components
        (``nion_autoem_dkl.deep.DeepEmbedding``; patches smaller than
        ``DEEP_MIN_PATCH_PX`` fall back on ``'patch'``, see
        ``DKLAgent.embedding_used``); ``'patch'`` the hand-made
        dihedral-averaged PCA and intensity features of ``PatchEmbedding``;
        ``'pretrained'`` the few-shot package's self-supervised tile CNN
        (``nion_autoem_dkl.pretrained.PretrainedEmbedding``).
    exclusion_radius : float
        Pixels around measured and pending probes where no new probe goes.
    dose_budget : float
        Total dose allowed (in the units of ``dose_cost``); ``inf`` for none.
    ucb_scale : float
        Shrink factor of the GP-UCB beta schedule.
    thompson_subset : int
        Candidates in the joint Thompson sample.
    stop_threshold : float or None
        Stop when the best acquisition score stays below this ...
    stop_patience : int
        ... for this many steps.
    coverage_window : int
        Recent measurements used for the prospective coverage.
    calibration_window : int
        Recent measurements whose predictions (each made before it) set
        the scale of the intervals ``predict`` reports
        (``calibration.IntervalScale``); the acquisition works on the
        model's own posterior.
    error_neighbours : int
        Errors given with the measurements are pooled over this many
        nearest measurements (the new one included) before the GP weights
        by them: an error computed from one spectrum's own counts is small
        exactly where they fell low, and weighting by it biases the map
        (``nion_autoem_dkl.error_pool``). 1 uses each error as given.
    exact_limit : int
        Up to this many measurements the GP is exact and refitted as above;
        past it a sparse GP on ``inducing_points`` inducing points takes
        over, so a step costs the same at 5,000 measurements as at 500.
    inducing_points : int
        Inducing points of the sparse GP.
    refit_growth : float
        Past ``exact_limit``, hyperparameters are refitted (warm-started,
        ``warm_iterations``, on a subset of ``exact_limit`` measurements)
        each time the number of measurements has grown by this fraction.
    background_refit : bool
        Run long refits (every one past ``exact_limit``, and exact ones whose
        rebuild is large, e.g. a few hundred measurements on 16,384
        candidates) in a background thread while the previous posterior
        keeps serving suggestions; results then depend slightly on timing.
        ``False`` refits in the step that triggers it.
    seed : int
        Seed of all randomness (initial design, Thompson samples, head).
    """

    acquisition: AcquisitionName = "thompson"
    n_initial: int = 10
    refit_every: int = 10
    warm_iterations: int = 10
    full_iterations: int = 80
    head_dim: int | None | typing.Literal["auto"] = "auto"
    latent_dim: int | None = None
    embedding: EmbeddingName = "deep"
    exclusion_radius: float = 0.0
    dose_budget: float = math.inf
    ucb_scale: float = 0.2
    thompson_subset: int = 256
    stop_threshold: float | None = None
    stop_patience: int = 5
    coverage_window: int = 50
    calibration_window: int = 100
    error_neighbours: int = 9
    exact_limit: int = 512
    inducing_points: int = 256
    refit_growth: float = 0.1
    background_refit: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every setting; raises ``ValueError``/``TypeError`` saying which one is wrong and what would be right.

        Called on construction and again by ``DKLAgent`` (the settings may have been changed since).
        """
        if not isinstance(self.acquisition, str) or self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {self.acquisition!r}")
        _checks.whole(self.n_initial, "n_initial", 0)
        _checks.whole(self.refit_every, "refit_every", 1)
        _checks.whole(self.warm_iterations, "warm_iterations", 0)
        _checks.whole(self.full_iterations, "full_iterations", 0)
        if self.head_dim != "auto":
            _checks.optional_whole(self.head_dim, "head_dim", 1)
        _checks.optional_whole(self.latent_dim, "latent_dim", 1)
        if not isinstance(self.embedding, str) or self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        _checks.number(self.exclusion_radius, "exclusion_radius", "a finite number of pixels >= 0", lambda v: v >= 0)
        _checks.number(self.dose_budget, "dose_budget", "a dose >= 0 (inf for no limit)", lambda v: v >= 0, allow_inf=True)
        _checks.number(self.ucb_scale, "ucb_scale", "a finite number >= 0", lambda v: v >= 0)
        _checks.whole(self.thompson_subset, "thompson_subset", 1)
        if self.stop_threshold is not None:
            _checks.number(self.stop_threshold, "stop_threshold", "None or a finite score")
        _checks.whole(self.stop_patience, "stop_patience", 1)
        _checks.whole(self.coverage_window, "coverage_window", 1)
        _checks.whole(self.calibration_window, "calibration_window", 1)
        _checks.whole(self.error_neighbours, "error_neighbours", 1)
        _checks.whole(self.exact_limit, "exact_limit", 2)
        _checks.whole(self.inducing_points, "inducing_points", 1)
        _checks.number(self.refit_growth, "refit_growth", "a finite fraction > 0", lambda v: v > 0)
        _checks.flag(self.background_refit, "background_refit")
        _checks.whole(self.seed, "seed", 0)


def diverse_subset(
    latent: _NDArray, k: int, allowed: _NDArray, rng: numpy.random.Generator, existing: _NDArray | None = None
) -> _NDArray:
    """Structurally diverse candidates by k-means++ seeding in the latent space.

    Each new point is drawn with probability proportional to its squared
    distance from the nearest point already chosen (or measured): spread out
    like farthest-point sampling, but not drawn only to the rarest outliers.

    Parameters
    ----------
    latent : (N, d) ndarray
        Candidate coordinates.
    k : int
        Number of points to pick.
    allowed : (N,) bool ndarray
        Candidates that may be picked.
    rng : numpy.random.Generator
        Source of randomness.
    existing : (M,) int ndarray, optional
        Candidates already measured; new points keep away from them too.

    Returns
    -------
    indices : (<= k,) int ndarray

    Examples
    --------
    >>> import numpy
    >>> x = numpy.array([[0.0], [0.1], [5.0], [10.0]])
    >>> diverse_subset(x, 1, numpy.array([False, True, False, True]), numpy.random.default_rng(0), numpy.array([1])).tolist()
    [3]
    """
    pool = numpy.flatnonzero(allowed)
    if pool.size == 0 or k <= 0:
        return numpy.zeros(0, dtype=numpy.int64)

    def squared_distance(index: int) -> _NDArray:
        return typing.cast(_NDArray, ((latent[pool] - latent[index]) ** 2).sum(axis=1))

    distance = numpy.full(pool.size, numpy.inf)
    for index in numpy.asarray([] if existing is None else existing, dtype=numpy.int64).tolist():
        distance = numpy.minimum(distance, squared_distance(index))
    chosen: list[int] = []
    while len(chosen) < min(k, pool.size):
        total = float(distance.sum()) if numpy.all(numpy.isfinite(distance)) else math.inf
        if not math.isfinite(total) or total <= 0:
            free = numpy.flatnonzero(numpy.isinf(distance)) if math.isinf(total) else numpy.arange(pool.size)
            pick = int(rng.choice(free))
        else:
            pick = int(rng.choice(pool.size, p=distance / total))
        chosen.append(int(pool[pick]))
        distance = numpy.minimum(distance, squared_distance(int(pool[pick])))
        distance[pick] = 0.0
    return numpy.asarray(chosen, dtype=numpy.int64)


class DKLAgent:
    """Deep-kernel active learner over survey-patch candidates.

    Parameters
    ----------
    patches : (N, P, P) ndarray
        Candidate survey patches (see ``extract_patches``).
    positions : (N, 2) ndarray
        Candidate positions in pixels.
    config : AgentConfig, optional
        Settings; defaults to ``AgentConfig()``.
    dose_cost : (N,) ndarray, optional
        Dose of one measurement at each candidate (default 1 each).
    latent : (N, d) ndarray, optional
        Precomputed candidate features; skips the embedding (used for the
        GP-on-PCA baseline, or for an embedding trained elsewhere).

    Examples
    --------
    >>> import numpy
    >>> rng = numpy.random.default_rng(0)
    >>> patches = rng.normal(size=(60, 8, 8))
    >>> positions = rng.uniform(0, 100, (60, 2))
    >>> agent = DKLAgent(patches, positions, AgentConfig(n_initial=4))
    >>> first = agent.suggest(q=2)
    >>> agent.observe(first, patches[first].mean(axis=(1, 2)))
    >>> len(agent.measured_indices)
    2
    """

    def __init__(
        self,
        patches: _NDArray,
        positions: _NDArray,
        config: AgentConfig | None = None,
        *,
        dose_cost: _NDArray | None = None,
        latent: _NDArray | None = None,
    ) -> None:
        if config is not None and not isinstance(config, AgentConfig):
            raise TypeError(f"config must be an AgentConfig or None, got {_checks.type_name(config)}")
        self.config = config if config is not None else AgentConfig()
        self.config.validate()
        self.positions = _checks.real_array(positions, "positions", "finite (row, column) pixel positions of shape (N, 2)")
        if self.positions.ndim != 2 or self.positions.shape[1] != 2:
            raise ValueError(f"positions must have shape (N, 2), got {self.positions.shape}")
        n_candidates = self.positions.shape[0]
        if latent is None:
            stack = check_patches(patches)
            if stack.shape[0] != n_candidates:
                raise ValueError(f"positions must have one row per patch ({stack.shape[0]}), got {n_candidates}")
        else:
            latent = _checks.real_array(latent, "latent", "a finite real array of shape (N, d)")
            if latent.ndim != 2 or latent.shape[0] != n_candidates:
                raise ValueError(f"latent must have shape (N, d) with one row per position ({n_candidates}), got {latent.shape}")
        self.dose_cost = numpy.ones(n_candidates) if dose_cost is None else _checks.real_array(
            dose_cost, "dose_cost", "a finite dose >= 0 for every candidate", finite=False)
        if self.dose_cost.shape != (n_candidates,):
            raise ValueError(f"dose_cost must have shape ({n_candidates},), got {self.dose_cost.shape}")
        usable = numpy.isfinite(self.dose_cost) & (self.dose_cost >= 0)
        if not usable.all():
            first = int(numpy.flatnonzero(~usable)[0])
            raise ValueError(f"dose_cost must be a finite dose >= 0 for every candidate, got {_checks.describe(self.dose_cost[first])} at candidate {first}"
                             " (check the dwell times, exposures and beam currents it was computed from)")
        started = time.perf_counter()
        given_latent = latent
        self.embedding_used: str | None = None if latent is not None else self.config.embedding
        """The embedding that made ``latent`` (``None`` when it was given); ``'patch'`` where ``'deep'`` fell back on small patches."""
        if latent is None and self.config.embedding == "deep" and stack.shape[1] < DEEP_MIN_PATCH_PX:
            self.embedding_used = "patch"
        if latent is None and self.embedding_used == "deep":
            from .deep import DEFAULT_LATENT_DIM
            from .deep import DeepEmbedding

            latent = DeepEmbedding(latent_dim=self.config.latent_dim or DEFAULT_LATENT_DIM, seed=self.config.seed).fit_transform(stack)
        elif latent is None and self.config.embedding == "pretrained":
            from .pretrained import PretrainedEmbedding

            latent = PretrainedEmbedding(latent_dim=self.config.latent_dim or 16, seed=self.config.seed).fit_transform(stack)
        elif latent is None:
            embedding = PatchEmbedding(latent_dim=self.config.latent_dim, seed=self.config.seed)
            latent = embedding.fit_transform(stack)
        self.latent = numpy.asarray(latent, dtype=numpy.float64)
        self.embedding_seconds = time.perf_counter() - started
        self.dose_spent = 0.0
        self._rng = numpy.random.default_rng(self.config.seed)
        self.head_dim = self._head_width(embedded=given_latent is None)
        """Width of the trainable head (``None``: no head), ``AgentConfig.head_dim`` resolved."""
        self._gp = CandidateGP(self.latent, head_dim=self.head_dim, seed=self.config.seed,
                               exact_limit=self.config.exact_limit, inducing_points=self.config.inducing_points)
        self._allowed = numpy.ones(n_candidates, dtype=bool)
        self._n_at_full_fit = 0
        self._n_at_refit = 0
        self._since_refit = 0
        self._stopping = StoppingRule(self.config.stop_threshold, self.config.stop_patience)
        self._prospective = ProspectiveCoverage(self.config.coverage_window)
        self._interval_scale = IntervalScale(self.config.calibration_window)
        self._error_pool = ErrorPool(self.positions, self.config.error_neighbours)
        self._errors_given: list[float] = []
        self._observe_seconds = 0.0
        self.step_timings: list[float] = []
        """Milliseconds per step: model update of the last ``observe`` plus ``suggest``."""

    def _head_width(self, embedded: bool) -> int | None:
        if self.config.head_dim == "auto":
            return DEEP_HEAD_DIM if embedded and self.embedding_used == "deep" else None
        return self.config.head_dim

    # -- state -----------------------------------------------------------------

    @property
    def n_candidates(self) -> int:
        return int(self.positions.shape[0])

    @property
    def measured_indices(self) -> _NDArray:
        return self._gp.measured_indices

    @property
    def measured_values(self) -> _NDArray:
        return self._gp.measured_values

    @property
    def measured_errors(self) -> _NDArray:
        """Standard error given with each measurement (0 where none was given)."""
        return numpy.asarray(self._errors_given, dtype=numpy.float64)

    @property
    def pooled_errors(self) -> _NDArray:
        """The errors the GP weights by: each given one pooled with its neighbours' (``AgentConfig.error_neighbours``)."""
        return self._gp.measured_errors

    @property
    def has_model(self) -> bool:
        return self._gp.model is not None

    @property
    def dose_remaining(self) -> float:
        return self.config.dose_budget - self.dose_spent

    @property
    def should_stop(self) -> bool:
        """True when the dose budget cannot pay for any allowed candidate, or the stopping rule fired."""
        affordable = self._allowed & (self.dose_cost <= self.dose_remaining + 1e-12)
        return self._stopping.stopped or not affordable.any()

    @property
    def coverage95(self) -> float:
        """Leave-one-out coverage of the 95% predictive interval (scaled as ``predict``'s) over all measurements (NaN before a model)."""
        if not self.has_model:
            return math.nan
        mean, variance = self._gp.leave_one_out()
        return coverage_of(self.measured_values, mean, variance * self.interval_scale**2, 0.95)

    @property
    def prospective_coverage95(self) -> float:
        """Coverage of the 95% intervals predicted just before each recent measurement, with the scale of that moment."""
        return self._prospective.coverage

    @property
    def prospective_count(self) -> int:
        """Measurements behind ``prospective_coverage95`` (at most ``coverage_window``)."""
        return self._prospective.count

    @property
    def interval_scale(self) -> float:
        """Factor on the model's standard deviations in ``predict``: its recent predictions' 95 % intervals held 95 % of the measurements."""
        return self._interval_scale.factor

    # -- decisions -------------------------------------------------------------

    def posterior(self) -> Posterior:
        """Current posterior over all candidates (raises before the first model).

        The model's own: the acquisition works on it. ``predict`` gives the
        intervals a person reads, scaled by ``interval_scale``.
        """
        return self._gp.posterior()

    def predict(self) -> tuple[_NDArray, _NDArray]:
        """Posterior mean and standard deviation of the property at every candidate.

        Returns
        -------
        mean, std : (N,) ndarrays
            Before the first model: the mean of the measurements so far (0
            without any) and infinite standard deviation. The standard
            deviation is the posterior's times ``interval_scale``.
        """
        if not self.has_model:
            values = self.measured_values
            level = float(values.mean()) if values.size else 0.0
            return numpy.full(self.n_candidates, level), numpy.full(self.n_candidates, numpy.inf)
        posterior = self._gp.posterior()
        return posterior.mean.copy(), posterior.std * self.interval_scale

    def acquisition_function(self, *, stable: bool = False) -> acq.Acquisition:
        """The configured acquisition function, made for the current posterior: the one place a name becomes a function.

        With ``stable`` Thompson sampling is replaced by UCB: a random draw
        is not a map a person can read, so maps show UCB for it.
        """
        return self._acquisition(self.posterior(), self._allowed, stable=stable)

    def _acquisition(self, posterior: Posterior, allowed: _NDArray, *, stable: bool = False) -> acq.Acquisition:
        name = self.config.acquisition
        if stable and name == "thompson":
            name = "ucb"
        if name == "log_ei":
            return acq.LogExpectedImprovement(acq.noisy_incumbent(posterior, self.measured_indices))
        if name == "ucb":
            step = len(self.measured_indices) + 1
            return acq.UpperConfidenceBound(acq.gp_ucb_beta(step, self.n_candidates, scale=self.config.ucb_scale))
        if name == "thompson":
            return acq.ThompsonSampling(self._rng, self.config.thompson_subset, allowed=allowed)
        if name == "max_uncertainty":
            return acq.MaxUncertainty()
        raise ValueError(f"unknown acquisition {name!r}; use one of {typing.get_args(AcquisitionName)}.")

    def suggest(self, q: int = 1, pending: typing.Sequence[int] | _NDArray = ()) -> _NDArray:
        """Candidates to measure next.

        Parameters
        ----------
        q : int
            Number of probe positions wanted.
        pending : sequence of int
            Candidates already requested whose results are not back yet.

        Returns
        -------
        indices : (k,) int ndarray
            ``k <= q`` distinct candidate indices; empty when the dose budget
            is spent or nothing is allowed.
        """
        q = _checks.whole(q, "q", 1)
        pending_indices = _checks.indices(pending, "pending", self.n_candidates)
        started = time.perf_counter()
        if not self.has_model:
            chosen = self._initial_design(q, pending_indices)
            best_score = math.inf
        else:
            posterior = self._gp.posterior()
            allowed = self._allowed.copy()
            allowed[pending_indices] = False
            acquisition = self._acquisition(posterior, allowed)
            chosen = select_batch(
                posterior,
                acquisition,
                q,
                self._allowed,
                pending=pending_indices,
                positions=self.positions,
                exclusion_radius=self.config.exclusion_radius,
                dose_cost=self.dose_cost,
                dose_remaining=self.dose_remaining - float(self.dose_cost[pending_indices].sum()),
            )
            best_score = math.inf
            if self.config.stop_threshold is not None:
                # Scored again only when a stopping threshold needs it (a Thompson score is a fresh draw).
                best_score = float(numpy.max(acquisition(posterior)[chosen])) if chosen.size else -math.inf
        self._stopping.update(best_score, budget_exhausted=chosen.size == 0)
        self.step_timings.append(1000.0 * (self._observe_seconds + time.perf_counter() - started))
        self._observe_seconds = 0.0
        return chosen

    def _initial_design(self, q: int, pending: _NDArray) -> _NDArray:
        allowed = self._allowed.copy()
        allowed[pending] = False
        if self.config.exclusion_radius > 0 and pending.size:
            allowed &= exclusion_mask(self.positions, self.positions[pending], self.config.exclusion_radius)
        allowed &= self.dose_cost <= self.dose_remaining - float(self.dose_cost[pending].sum()) + 1e-12
        chosen: list[int] = []
        remaining = self.dose_remaining - float(self.dose_cost[pending].sum())
        existing = numpy.concatenate([self.measured_indices, pending])
        for index in diverse_subset(self.latent, max(q, 1) * 4, allowed, self._rng, existing).tolist():
            if len(chosen) == q:
                break
            if self.dose_cost[index] > remaining + 1e-12:
                continue
            if self.config.exclusion_radius > 0 and chosen:
                near = exclusion_mask(self.positions[[index]], self.positions[chosen], self.config.exclusion_radius)
                if not near[0]:
                    continue
            chosen.append(index)
            remaining -= float(self.dose_cost[index])
        return numpy.asarray(chosen, dtype=numpy.int64)

    # -- observations ----------------------------------------------------------

    def observe(
        self,
        indices: typing.Sequence[int] | _NDArray,
        values: typing.Sequence[float] | _NDArray,
        errors: typing.Sequence[float] | _NDArray | None = None,
    ) -> None:
        """Add measured scalar values at candidate indices and update the model.

        Parameters
        ----------
        indices : sequence of int
            Candidates that were measured.
        values : sequence of float
            Scalarized measurements, same length as ``indices``.
        errors : sequence of float, optional
            Standard error of each value where the scalarizer knows it (e.g.
            Poisson statistics of the band counts); the noise model then
            adds a learned extra noise to these instead of fitting one noise
            level to all measurements. Each is first pooled with the errors
            of the nearest earlier measurements (``error_neighbours``).
        """
        started = time.perf_counter()
        index_array, value_array = _checks.measurements(indices, values, self.n_candidates)
        error_array: _NDArray = numpy.zeros(value_array.shape)
        if errors is not None:
            error_array = _checks.real_array(errors, "errors", "finite standard errors >= 0, one per value").reshape(-1)
            _checks.same_shape(error_array, "errors", value_array, "values")
            if (error_array < 0).any():
                raise ValueError(f"errors must be finite standard errors >= 0, got {_checks.describe(error_array[error_array < 0][:5])}")
        pooled = self._error_pool.pool(index_array, error_array)
        if self.has_model and index_array.size:
            posterior = self._gp.posterior()
            for index, value, error in zip(index_array.tolist(), value_array.tolist(), pooled.tolist()):
                spread = posterior.variance[index] + posterior.noise_variance + error**2
                self._prospective.record(value, posterior.mean[index], spread * self.interval_scale**2)
                self._interval_scale.record(value, posterior.mean[index], spread)
        self._gp.add(index_array, value_array, None if errors is None else pooled)
        self._errors_given.extend(error_array.tolist())
        self._allowed[index_array] = False
        if self.config.exclusion_radius > 0 and index_array.size:
            self._allowed &= exclusion_mask(self.positions, self.positions[index_array], self.config.exclusion_radius)
        self.dose_spent += float(self.dose_cost[index_array].sum())
        self._since_refit += int(index_array.size)
        self._update_model()
        self._observe_seconds += time.perf_counter() - started

    def _update_model(self) -> None:
        """The refit schedule: exact fits while the data are few, amortised sparse fits after.

        A refit whose posterior rebuild is large (about n^2 N operations for
        the exact GP, always past ``exact_limit``) runs in a background
        thread when ``background_refit`` is set; smaller ones stay in the
        step, so runs on a few thousand candidates are reproducible.
        """
        n = self._gp.n_measured
        if n < max(self.config.n_initial, 2):
            return
        if not self.has_model:
            self._gp.refit(full=True, iterations=self.config.full_iterations)
            self._n_at_full_fit = self._n_at_refit = n
            self._since_refit = 0
            return
        exact = n <= self.config.exact_limit
        wait = not self.config.background_refit or (exact and n * n * self.n_candidates <= _BLOCKING_REFIT_WORK)
        if exact and n >= 2 * self._n_at_full_fit:
            if self._gp.refit(full=True, iterations=self.config.full_iterations, wait=wait):
                self._n_at_full_fit = self._n_at_refit = n
                self._since_refit = 0
        elif exact:
            if self._since_refit >= self.config.refit_every and self._gp.refit(full=False, iterations=self.config.warm_iterations, wait=wait):
                self._n_at_refit = n
                self._since_refit = 0
        elif self._n_at_refit <= self.config.exact_limit or n >= (1.0 + self.config.refit_growth) * self._n_at_refit:
            # Past the exact limit a refit costs a fit on a subset plus an
            # O(m^2 N) rebuild, so it is amortised over a growing number of steps.
            if self._gp.refit(full=False, iterations=self.config.warm_iterations, wait=wait):
                self._n_at_refit = n
                self._since_refit = 0

    def wait_for_refit(self) -> None:
        """Block until a background refit (if any) is installed; for reproducible checkpoints."""
        self._gp.wait_for_refit()

    def close(self) -> None:
        """Finish any background refit and stop its thread."""
        self._gp.close()

    @property
    def uses_sparse_model(self) -> bool:
        """True once the sparse (inducing-point) GP serves the posterior."""
        return self._gp.sparse
