"""The notebook-level entry point: a frame in, atom columns out."""

from __future__ import annotations

import functools
import pathlib
import typing

import numpy
import numpy.typing

from nion_autoem_elit import _checks
from nion_autoem_elit import atoms
from nion_autoem_elit import ensemble
from nion_autoem_elit import storage

_NDArray = numpy.typing.NDArray[typing.Any]

EnsembleLike = ensemble.Ensemble | str | pathlib.Path | None


@functools.lru_cache(maxsize=4)
def _packaged(name: str) -> ensemble.Ensemble:
    # Loading verifies a checksum and builds the network; do it once per process.
    return storage.load_ensemble(name)


def resolve_ensemble(ens: EnsembleLike) -> ensemble.Ensemble:
    """An :class:`Ensemble` from an ensemble, a model name or path, or ``None`` (MoS2 default)."""
    if isinstance(ens, ensemble.Ensemble):
        return ens
    if ens is None:
        return _packaged("mos2")
    if isinstance(ens, str) and ens in storage.DEFAULT_MODELS:
        return _packaged(ens)
    if isinstance(ens, (str, pathlib.Path)):
        return storage.load_ensemble(ens)
    # A ValueError (not a TypeError) for callers that catch ValueError for every bad model choice.
    raise ValueError(f"ensemble must be an Ensemble, a packaged model name such as 'mos2', a path or None, got {type(ens).__name__}")


def find_atoms(
    image: _NDArray,
    ensemble: EnsembleLike = None,
    *,
    threshold: float = 0.5,
    test_time_augmentation: bool = False,
) -> atoms.AtomFindingResult:
    """Find, classify and rate every atom column in an ADF-STEM frame.

    Parameters
    ----------
    image : (H, W) array_like
        The frame, at least 32 x 32 pixels, finite values. Intensity scale does
        not matter. Sampling should put neighbouring columns roughly 10 to 25
        pixels apart (the range the default models were trained on).
    ensemble : Ensemble, str, Path or None
        The model: ``None`` for the packaged MoS2 ensemble, a packaged name
        (``"mos2"``, ``"graphene"``), a saved model path, or an Ensemble
        (e.g. one fine-tuned by :func:`nion_autoem_elit.iterative.elit_iteration`).
    threshold : float
        Foreground probability above which a pixel belongs to a column, in (0, 1).
    test_time_augmentation : bool
        Average over mirrored/rotated copies: about four times slower.

    Returns
    -------
    AtomFindingResult
        Positions, classes, class probabilities, uncertainties and the
        per-pixel mean and variance maps.

    Raises
    ------
    ValueError
        If the frame is not 2D, too small, non-finite or constant, or
        ``threshold`` is outside (0, 1).

    Examples
    --------
    >>> from nion_autoem_elit import lattices, synthetic
    >>> frame = synthetic.generate_frame(lattices.mos2_lattice(), (128, 128), seed=1)
    >>> result = find_atoms(frame.image)
    >>> len(result) > 0
    True
    """
    threshold = _checks.number(threshold, "threshold", "strictly between 0 and 1", lambda v: 0.0 < v < 1.0)
    test_time_augmentation = _checks.flag(test_time_augmentation, "test_time_augmentation")
    ens = resolve_ensemble(ensemble)
    probabilities = ens.member_probabilities(image, test_time_augmentation=test_time_augmentation)
    calibration = ens.metadata.get("uncertainty_calibration")
    return atoms.extract_atoms(
        probabilities,
        ens.class_names,
        threshold=threshold,
        calibration=atoms.UncertaintyCalibration.from_dict(calibration) if calibration else None,
    )
