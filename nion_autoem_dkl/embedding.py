"""Rotation-invariant embedding of survey patches, fitted on unlabelled candidates.

Before the first spectrum is measured every candidate patch is already
known. This module learns a low-dimensional description of local structure
from all of them, so that the Gaussian process needs only a few labels to
relate structure to the spectral property.

The description is built to ignore what the property should not depend on:

* orientation -- every patch is seen under the 8 dihedral transforms (four
  rotations, with and without a mirror) and the features are averaged over
  them, so a defect looks the same in any grain orientation;
* exact lattice phase -- besides the symmetrised principal components, the
  root-mean-square of each component over the transforms, ring averages
  around the probe and the brightest-pixel statistics change little when the
  lattice slides under the patch.

Patches are lightly smoothed first (about one probe width) so that the
brightest-pixel features follow columns, not shot noise. The features are
standardised (and optionally reduced by PCA) to a whitened latent space in
which a kernel with one lengthscale per dimension can pick what matters.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing
import scipy.ndimage

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]

_QUANTILES = (0.5, 0.9, 0.97, 0.995, 1.0)


def dihedral_transforms(patches: _NDArray) -> list[_NDArray]:
    """The eight rotations and mirror images of a stack of square patches.

    Parameters
    ----------
    patches : (N, P, P) ndarray
        Square patches.

    Returns
    -------
    transforms : list of 8 (N, P, P) ndarrays
        Identity first, then the other seven elements of the dihedral group.

    Examples
    --------
    >>> import numpy
    >>> len(dihedral_transforms(numpy.zeros((2, 4, 4))))
    8
    """
    stack = numpy.asarray(patches)
    rotations = [numpy.rot90(stack, k, axes=(1, 2)) for k in range(4)]
    return rotations + [r[:, :, ::-1] for r in rotations]


def _principal_axes(rows: _NDArray, n_components: int, rng: numpy.random.Generator) -> _NDArray:
    """Leading right singular vectors by a randomised range finder (fast for 1000s of rows)."""
    n_components = min(n_components, *rows.shape)
    probe = rng.standard_normal((rows.shape[1], min(n_components + 10, rows.shape[1])))
    basis = rows @ probe
    for _ in range(2):
        basis, _ = numpy.linalg.qr(rows @ (rows.T @ basis))
    _, _, vt = numpy.linalg.svd(basis.T @ rows, full_matrices=False)
    return vt[:n_components]


def _ring_masks(size: int, ring_width: float) -> _NDArray:
    # The rotation centre of a square patch (between pixels when size is even),
    # so that the rings map onto themselves under all eight transforms.
    centre = (size - 1) / 2.0
    rr, cc = numpy.mgrid[0:size, 0:size]
    radius = numpy.hypot(rr - centre, cc - centre)
    edges = numpy.arange(0.0, size / 2.0 + 1e-9, ring_width)
    masks = [(radius >= lo) & (radius < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    rings = numpy.stack([m / max(m.sum(), 1) for m in masks if m.any()])
    return typing.cast(_NDArray, rings.reshape(rings.shape[0], -1))



@dataclasses.dataclass(frozen=True)
class Whitening:
    """The last step of every patch embedding: standardise the features, project them onto principal axes, scale each to unit variance.

    Build it with :meth:`fit` on the candidates' features; call it on features to get latent coordinates.

    Examples
    --------
    >>> import numpy
    >>> features = numpy.random.default_rng(0).normal(size=(50, 6)) * [1, 2, 3, 4, 5, 6]
    >>> latent = Whitening.fit(features, 3, numpy.random.default_rng(0))(features)
    >>> latent.shape, numpy.allclose(latent.std(axis=0), 1.0)
    ((50, 3), True)
    """

    mean: _NDArray
    scale: _NDArray
    axes: _NDArray
    latent_scale: _NDArray

    @classmethod
    def fit(cls, features: _NDArray, latent_dim: int | None, rng: numpy.random.Generator) -> Whitening:
        """Learn it from ``features`` (N, F); ``latent_dim=None`` keeps every standardised feature."""
        mean = features.mean(axis=0)
        spread = features.std(axis=0)
        scale = numpy.where(spread > 1e-12, spread, 1.0)
        standard = (features - mean) / scale
        axes = numpy.eye(standard.shape[1]) if latent_dim is None else _principal_axes(standard, min(latent_dim, *standard.shape), rng)
        projected_spread = (standard @ axes.T).std(axis=0)
        return cls(mean, scale, axes, numpy.where(projected_spread > 1e-12, projected_spread, 1.0))

    def __call__(self, features: _NDArray) -> _NDArray:
        return typing.cast(_NDArray, (((features - self.mean) / self.scale) @ self.axes.T) / self.latent_scale)

class WhitenedFeatures:
    """What an embedding that computes features per patch and whitens them over the fitted survey shares.

    A subclass's ``_fit_features(stack)`` sets ``_whitening`` and ``_side``
    and returns the fitted patches' features; its ``_features(stack)``
    computes the features of any patches of that side.
    """

    _whitening: Whitening | None
    _side: int | None

    def _features(self, stack: _NDArray) -> _NDArray:
        raise NotImplementedError

    def _fit_features(self, stack: _NDArray) -> _NDArray:
        raise NotImplementedError

    def fit(self, patches: _NDArray) -> typing.Self:
        """Learn the embedding from all candidate patches (no labels needed).

        Parameters
        ----------
        patches : (N, P, P) ndarray
            Candidate patches, as returned by ``extract_patches``.

        Returns
        -------
        self
        """
        self._fit_features(check_patches(patches))
        return self

    def transform(self, patches: _NDArray) -> _NDArray:
        """Map patches into the whitened latent space.

        Parameters
        ----------
        patches : (N, P, P) ndarray
            Patches of the same size as those given to ``fit``.

        Returns
        -------
        latent : (N, latent_dim) ndarray
            Zero mean, unit variance per dimension over the fitted patches.
        """
        if self._whitening is None:
            raise RuntimeError(f"{type(self).__name__}.transform called before fit; call fit(patches) first.")
        stack = check_patches(patches, minimum=1, purpose="")
        if stack.shape[1] != self._side:
            raise ValueError(f"patches must be {self._side} x {self._side} pixels like the patches the embedding was fitted on, "
                             f"got {stack.shape[1]} x {stack.shape[2]}")
        return self._whitening(self._features(stack))

    def fit_transform(self, patches: _NDArray) -> _NDArray:
        """Fit on ``patches`` and return their latent coordinates (their features are computed once)."""
        features = self._fit_features(check_patches(patches))
        assert self._whitening is not None
        return self._whitening(features)


@dataclasses.dataclass
class PatchEmbedding(WhitenedFeatures):
    """Dihedral-invariant patch features reduced to a whitened latent space.

    Parameters
    ----------
    latent_dim : int or None
        Reduce the standardised features to this many whitened principal
        components; ``None`` keeps all features (about 2 * n_components +
        patch_size + 5) and lets the kernel's lengthscales choose.
    n_components : int
        Principal components of the (augmented) patches used as raw features.
    ring_width : float
        Width in pixels of the rings of the radial intensity profile.
    smoothing : float
        Gaussian smoothing of the patches in pixels (0 for none).
    max_fit_patches : int
        At most this many patches (times 8 transforms) are used to find the
        principal components; all patches are used for the rest.
    seed : int
        Seed for the subset and the randomised SVD.

    Examples
    --------
    >>> import numpy
    >>> patches = numpy.random.default_rng(0).normal(size=(200, 16, 16))
    >>> PatchEmbedding(latent_dim=4).fit_transform(patches).shape
    (200, 4)
    >>> PatchEmbedding(n_components=4).fit_transform(patches).shape
    (200, 21)
    """

    latent_dim: int | None = None
    n_components: int = 8
    ring_width: float = 2.0
    smoothing: float = 1.0
    max_fit_patches: int = 1000
    seed: int = 0
    _components: _NDArray | None = dataclasses.field(default=None, init=False, repr=False)
    _pixel_mean: _NDArray | None = dataclasses.field(default=None, init=False, repr=False)
    _rings: _NDArray | None = dataclasses.field(default=None, init=False, repr=False)
    _whitening: Whitening | None = dataclasses.field(default=None, init=False, repr=False)
    _side: int | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _checks.optional_whole(self.latent_dim, "latent_dim", 1)
        _checks.whole(self.n_components, "n_components", 1)
        # Narrower rings than half a pixel are empty, and their number (patch size / width) would explode.
        _checks.number(self.ring_width, "ring_width", "a finite number of pixels >= 0.5", lambda v: v >= 0.5)
        _checks.number(self.smoothing, "smoothing", "a finite number of pixels >= 0", lambda v: v >= 0)
        _checks.whole(self.max_fit_patches, "max_fit_patches", 1)
        _checks.whole(self.seed, "seed", 0)

    def _features(self, stack: _NDArray) -> _NDArray:
        return self._smoothed_features(self._smooth(stack))

    def _smoothed_features(self, patches: _NDArray) -> _NDArray:
        # In blocks of patches: every feature is per patch, and the transformed
        # and sorted copies of a 16,384-patch survey would otherwise cost
        # several hundred MB at once.
        block = 2048
        if patches.shape[0] <= block:
            return self._block_features(patches)
        return numpy.concatenate([self._block_features(patches[start : start + block]) for start in range(0, patches.shape[0], block)])

    def _block_features(self, patches: _NDArray) -> _NDArray:
        assert self._components is not None and self._pixel_mean is not None and self._rings is not None
        n = patches.shape[0]
        scores = numpy.stack(
            [(t.reshape(n, -1) - self._pixel_mean) @ self._components.T for t in dihedral_transforms(patches)]
        )
        symmetric = scores.mean(axis=0)
        energy = numpy.sqrt((scores**2).mean(axis=0))
        flat = patches.reshape(n, -1)
        radial = flat @ self._rings.T
        # The brightest pixel of each ring says "something bright at distance r
        # from the probe" in any direction -- a dopant column, say.
        ring_peak = numpy.stack([flat[:, ring > 0].max(axis=1) for ring in self._rings], axis=1)
        brightest = numpy.quantile(flat, _QUANTILES, axis=1).T
        return numpy.concatenate([symmetric, energy, radial, ring_peak, brightest], axis=1)

    def _smooth(self, stack: _NDArray) -> _NDArray:
        if self.smoothing <= 0:
            return stack
        return typing.cast(_NDArray, scipy.ndimage.gaussian_filter(stack, (0.0, self.smoothing, self.smoothing)))

    def _fit_features(self, stack: _NDArray) -> _NDArray:
        smoothed = self._smooth(stack)
        rng = numpy.random.default_rng(self.seed)
        subset = smoothed[rng.permutation(smoothed.shape[0])[: self.max_fit_patches]]
        augmented = numpy.concatenate([t.reshape(subset.shape[0], -1) for t in dihedral_transforms(subset)])
        self._pixel_mean = augmented.mean(axis=0)
        self._components = _principal_axes(augmented - self._pixel_mean, self.n_components, rng)
        self._rings = _ring_masks(smoothed.shape[1], self.ring_width)
        self._side = smoothed.shape[1]
        features = self._smoothed_features(smoothed)
        self._whitening = Whitening.fit(features, self.latent_dim, rng)
        return features


def enlarge_patches(patches: _NDArray, size: int) -> _NDArray:
    """Patches smaller than ``size`` resampled (bilinear) up to it; larger ones unchanged.

    Examples
    --------
    >>> import numpy
    >>> enlarge_patches(numpy.zeros((2, 4, 4)), 8).shape
    (2, 8, 8)
    """
    side = patches.shape[1]
    if side >= size:
        return patches
    zoom = size / side
    out = scipy.ndimage.zoom(patches, (1.0, zoom, zoom), order=1, mode="nearest", grid_mode=True)
    return typing.cast(_NDArray, out[:, :size, :size])


def check_patches(patches: _NDArray, minimum: int = 2, purpose: str = " to fit an embedding") -> _NDArray:
    """``patches`` as a float64 (N, P, P) stack, checked: real, finite, square, at least ``minimum`` of them."""
    stack = _checks.real_array(patches, "patches", "a finite real array of shape (N, P, P)")
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ValueError(f"patches must have shape (N, P, P) with square patches, got {stack.shape}")
    if stack.shape[0] < minimum:
        raise ValueError(f"patches must hold at least {minimum} patch{'es' if minimum != 1 else ''}{purpose}, got {stack.shape[0]}")
    return stack


def pca_features(patches: _NDArray, n_components: int = 16, seed: int = 0) -> _NDArray:
    """Plain whitened PCA of flattened patches (the baseline representation).

    Parameters
    ----------
    patches : (N, P, P) ndarray
        Candidate patches.
    n_components : int
        Number of principal components kept.
    seed : int
        Seed of the randomised SVD.

    Returns
    -------
    features : (N, n_components) ndarray
        Unit-variance principal component scores.

    Examples
    --------
    >>> import numpy
    >>> pca_features(numpy.random.default_rng(0).normal(size=(50, 8, 8)), 3).shape
    (50, 3)
    """
    n_components = _checks.whole(n_components, "n_components", 1)
    _checks.whole(seed, "seed", 0)
    stack = check_patches(patches)
    flat = stack.reshape(stack.shape[0], -1)
    centred = flat - flat.mean(axis=0)
    axes = _principal_axes(centred, n_components, numpy.random.default_rng(seed))
    scores = centred @ axes.T
    scale = scores.std(axis=0)
    return typing.cast(_NDArray, scores / numpy.where(scale > 1e-12, scale, 1.0))
