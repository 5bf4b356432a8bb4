"""The deep embedding of survey patches: the shipped convolutional encoder, reduced to a few whitened coordinates.

The encoder (:mod:`nion_autoem_dkl.encoder`, ``columns_v1``) was pretrained
self-supervised on simulated surveys before any spectrum exists; it is
frozen here. For one survey:

1. all candidate patches are put on one intensity scale (minus the median
   pixel, over the standard deviation of all pixels), so a brighter column
   stays brighter whatever the detector gain, as the encoder saw in training;
2. the encoder gives ring-pooled features of every patch, averaged over the
   eight dihedral transforms (orientation does not move them);
3. the features are log-compressed, standardised and reduced to a few
   whitened principal components over the survey's own candidates.

Few coordinates matter: with 10-100 labels an ARD kernel can learn only a
handful of lengthscales well. On top of them ``DKLAgent`` fits, by default,
a linear head that starts as the identity, jointly with the kernel on the
marginal likelihood (``AgentConfig.head_dim``): it can only mix these few
coordinates, which keeps it from over-fitting a few dozen labels.
Optionally the hand-made features of ``PatchEmbedding`` are appended (each
block standardised) before whitening; on development seeds that did worse.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

from .embedding import PatchEmbedding
from .embedding import WhitenedFeatures
from .embedding import Whitening
from .embedding import enlarge_patches
from .encoder import DEFAULT_ENCODER
from .encoder import MIN_PATCH_PX
from .encoder import load_encoder

_NDArray = numpy.typing.NDArray[typing.Any]

#: Whitened coordinates kept unless told otherwise (chosen on development seeds 0-19, not the benchmark's).
DEFAULT_LATENT_DIM = 6


def survey_scale(patches: _NDArray) -> _NDArray:
    """Patches on the encoder's scale: minus the median pixel of all of them, over the standard deviation of all pixels.

    Examples
    --------
    >>> import numpy
    >>> scaled = survey_scale(numpy.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]))
    >>> float(numpy.median(scaled)), round(float(scaled.std()), 6)
    (0.0, 1.0)
    """
    spread = float(patches.std())
    return typing.cast(_NDArray, (patches - float(numpy.median(patches))) / (spread if spread > 0 else 1.0))


@dataclasses.dataclass
class DeepEmbedding(WhitenedFeatures):
    """Features of the shipped pretrained patch encoder, reduced to a whitened latent space.

    Parameters
    ----------
    latent_dim : int or None
        Whitened principal components kept (``None``: all standardised features).
    hand_features : bool
        Append the hand-made features of ``PatchEmbedding`` (standardised) before whitening.
    encoder : str
        Name of a shipped encoder, or a path to a saved one.
    seed : int
        Seed of the randomised SVD.

    Examples
    --------
    >>> import numpy
    >>> patches = numpy.random.default_rng(0).normal(size=(60, 16, 16))
    >>> DeepEmbedding().fit_transform(patches).shape
    (60, 6)
    """

    latent_dim: int | None = DEFAULT_LATENT_DIM
    hand_features: bool = False
    encoder: str = DEFAULT_ENCODER
    seed: int = 0
    _whitening: Whitening | None = dataclasses.field(default=None, init=False, repr=False)
    _hand: PatchEmbedding | None = dataclasses.field(default=None, init=False, repr=False)
    _scale: tuple[float, float] | None = dataclasses.field(default=None, init=False, repr=False)
    _side: int | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _checks.optional_whole(self.latent_dim, "latent_dim", 1)
        _checks.flag(self.hand_features, "hand_features")
        if not isinstance(self.encoder, str) or not self.encoder:
            raise TypeError(f"encoder must be the name of a shipped encoder or a path, got {_checks.type_name(self.encoder)}")
        _checks.whole(self.seed, "seed", 0)

    def _features(self, stack: _NDArray) -> _NDArray:
        assert self._scale is not None
        median, spread = self._scale
        scaled = enlarge_patches((stack - median) / spread, MIN_PATCH_PX)
        deep = numpy.log1p(load_encoder(self.encoder).invariant_features(scaled))
        if self._hand is None:
            return deep
        return numpy.concatenate([deep, self._hand.transform(stack)], axis=1)

    def _fit_features(self, stack: _NDArray) -> _NDArray:
        spread = float(stack.std())
        self._scale = (float(numpy.median(stack)), spread if spread > 0 else 1.0)
        self._side = stack.shape[1]
        self._hand = PatchEmbedding(seed=self.seed).fit(stack) if self.hand_features else None
        features = self._features(stack)
        self._whitening = Whitening.fit(features, self.latent_dim, numpy.random.default_rng(self.seed))
        return features
