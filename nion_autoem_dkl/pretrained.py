"""Embedding of survey patches by the shipped self-supervised CNN (an alternative to ``PatchEmbedding``).

The few-shot package ships a small convolutional encoder pretrained
(SimCLR, on simulated lattices, defects and noise) before any survey is
taken: :func:`nion_autoem_fewshot.backbone.load_backbone`, 128 features per
tile, its weights verified by checksum on load. This module turns its
features into a latent space for the Gaussian process the same way
``PatchEmbedding`` does for its hand-made features:

* patches smaller than the encoder reads (16 px) are resampled up to it;
* the features are averaged over the eight dihedral transforms of each
  patch, so orientation does not move them (optional);
* the encoder standardises every tile, which throws away its brightness and
  contrast; the patch's own mean and standard deviation are appended so a
  property that follows brightness stays learnable (optional);
* the features are standardised and reduced to a few whitened principal
  components, so an ARD kernel has few lengthscales to learn from 10-100
  labels.

Nothing is trained on the survey: the encoder is frozen; a trainable head on
top is the GP's ``head_dim`` option, fitted on the marginal likelihood.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

from .embedding import WhitenedFeatures
from .embedding import Whitening
from .embedding import check_patches
from .embedding import dihedral_transforms
from .embedding import enlarge_patches

_NDArray = numpy.typing.NDArray[typing.Any]

#: Smallest patch side accepted; smaller patches hold too little structure to resample for the encoder.
MIN_PATCH_PX = 4
#: Patches are resampled up to this side when smaller (the encoder's smallest tile).
ENCODER_MIN_PX = 16


def resample_patches(patches: _NDArray, size: int = ENCODER_MIN_PX) -> _NDArray:
    """Patches smaller than ``size`` resampled up to ``size`` x ``size`` (bilinear); larger ones unchanged.

    Parameters
    ----------
    patches : (N, P, P) ndarray
        Square patches, ``P >= MIN_PATCH_PX``.
    size : int
        Smallest side to return.

    Returns
    -------
    resampled : (N, max(P, size), max(P, size)) ndarray

    Raises
    ------
    ValueError
        If the patches are smaller than ``MIN_PATCH_PX`` on a side.

    Examples
    --------
    >>> import numpy
    >>> resample_patches(numpy.zeros((3, 8, 8))).shape
    (3, 16, 16)
    >>> resample_patches(numpy.zeros((3, 32, 32))).shape
    (3, 32, 32)
    """
    stack = check_patches(patches, minimum=1, purpose="")
    side = stack.shape[1]
    if side < MIN_PATCH_PX:
        raise ValueError(f"patches of {side} px are too small for the pretrained embedding (at least {MIN_PATCH_PX} px on a side); "
                         "extract larger patches or use the default embedding")
    return enlarge_patches(stack, size)


@dataclasses.dataclass
class PretrainedEmbedding(WhitenedFeatures):
    """Features of the shipped pretrained CNN, reduced to a whitened latent space.

    Parameters
    ----------
    latent_dim : int or None
        Reduce the standardised features to this many whitened principal
        components; ``None`` keeps all (128, plus 2 with ``intensity``).
    dihedral : bool
        Average the features over the eight rotations and mirror images of
        each patch (eight forward passes instead of one).
    intensity : bool
        Append each patch's mean and standard deviation (the encoder sees
        every tile standardised).
    backbone : str
        Name of a shipped backbone, or a path to a saved one.
    seed : int
        Seed of the randomised SVD.

    Examples
    --------
    >>> import numpy
    >>> patches = numpy.random.default_rng(0).normal(size=(60, 16, 16))
    >>> PretrainedEmbedding(latent_dim=8).fit_transform(patches).shape
    (60, 8)
    >>> PretrainedEmbedding(latent_dim=None, dihedral=False).fit_transform(patches).shape
    (60, 130)
    """

    latent_dim: int | None = 16
    dihedral: bool = True
    intensity: bool = True
    backbone: str = "tiles_v1"
    seed: int = 0
    _whitening: Whitening | None = dataclasses.field(default=None, init=False, repr=False)
    _side: int | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _checks.optional_whole(self.latent_dim, "latent_dim", 1)
        _checks.flag(self.dihedral, "dihedral")
        _checks.flag(self.intensity, "intensity")
        if not isinstance(self.backbone, str) or not self.backbone:
            raise TypeError(f"backbone must be the name of a shipped backbone or a path, got {_checks.type_name(self.backbone)}")
        _checks.whole(self.seed, "seed", 0)

    def features(self, patches: _NDArray) -> _NDArray:
        """Raw (unstandardised) features of patches: 128 from the encoder, then mean and std if ``intensity``.

        Parameters
        ----------
        patches : (N, P, P) ndarray
            Square patches, at least ``MIN_PATCH_PX`` on a side.

        Returns
        -------
        features : (N, 128) or (N, 130) float64 ndarray

        Examples
        --------
        >>> import numpy
        >>> PretrainedEmbedding().features(numpy.ones((2, 8, 8))).shape
        (2, 130)
        """
        # Lazy: torch and the few-shot package load only when this embedding is chosen.
        from nion_autoem_fewshot.backbone import load_backbone

        stack = resample_patches(patches)
        encoder = load_backbone(self.backbone)
        views = dihedral_transforms(stack) if self.dihedral else [stack]
        deep = numpy.mean([encoder.features(numpy.ascontiguousarray(view)).astype(numpy.float64) for view in views], axis=0)
        if not self.intensity:
            return typing.cast(_NDArray, deep)
        original = check_patches(patches, minimum=1, purpose="")
        flat = original.reshape(original.shape[0], -1)
        return numpy.concatenate([deep, flat.mean(axis=1, keepdims=True), flat.std(axis=1, keepdims=True)], axis=1)

    def _fit_features(self, stack: _NDArray) -> _NDArray:
        features = self.features(stack)
        self._side = stack.shape[1]
        self._whitening = Whitening.fit(features, self.latent_dim, numpy.random.default_rng(self.seed))
        return features

    def _features(self, stack: _NDArray) -> _NDArray:
        return self.features(stack)
