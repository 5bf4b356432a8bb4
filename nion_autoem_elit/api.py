"""The notebook-level entry point: a frame in, atom columns out."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import typing

import numpy
import numpy.typing
import scipy.spatial

import nion_autoem_checks as _checks
from nion_autoem_elit import atoms
from nion_autoem_elit import ensemble
from nion_autoem_elit import ensemble as ensemble_module
from nion_autoem_elit import sampling
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
    pixel_size_nm: float | None = None,
    threshold: float = 0.5,
    test_time_augmentation: bool = False,
    check_lattice: bool = True,
    dose_e_per_nm2: float | None = None,
    probe_fwhm_nm: float | None = None,
) -> atoms.AtomFindingResult:
    """Find, classify and rate every atom column in an ADF-STEM frame.

    Parameters
    ----------
    image : (H, W) array_like
        The frame, at least 32 x 32 pixels, finite values. Intensity scale does
        not matter.
    ensemble : Ensemble, str, Path or None
        The model: ``None`` for the packaged MoS2 ensemble, a packaged name
        (``"mos2"``, ``"graphene"``), a saved model path, or an Ensemble
        (e.g. one fine-tuned by :func:`nion_autoem_elit.iterative.elit_iteration`).
    pixel_size_nm : float, optional
        Sampling of the frame in nm per pixel (from its calibration). A frame
        coarser than the model's trained sampling (MoS2: 0.008-0.016 nm/pixel)
        is resampled to the middle of that range; a finer one, or one in the
        finer part of the range, to near its coarse end (MoS2: 0.015 nm/pixel,
        as accurate and several times faster; small frames to the middle of
        the range or not at all; see :func:`nion_autoem_elit.sampling.plan_sampling`). Positions and
        maps are always in the frame's own pixels. Without ``pixel_size_nm`` the
        frame is used as it is and the result carries a warning that the
        sampling was not checked.
    threshold : float
        Foreground probability above which a pixel belongs to a column, in (0, 1).
    test_time_augmentation : bool
        Average over mirrored/rotated copies: about four times slower.
    check_lattice : bool
        Report no columns (``out_of_distribution``, with a ``reason``) when the
        columns found do not form a lattice: noise, vacuum, amorphous
        material, or a map at a scale without atoms.
    dose_e_per_nm2, probe_fwhm_nm : float, optional
        The frame's dose and probe width where the acquisition says them
        (they cannot be read off the image). Outside the model's trained
        ranges (MoS2: 5e6-1e8 e/nm², 0.06-0.105 nm) the result is marked
        ``in_trained_range=False`` with a warning naming the range; the
        columns are still reported.

    Returns
    -------
    AtomFindingResult
        Positions (input pixels), classes, class probabilities, uncertainties,
        the per-pixel mean and variance maps (input grid), and the sampling
        used, whether it was inside the trained range, and any warnings.

    Raises
    ------
    ValueError
        If the frame is not 2D, too small, non-finite or constant,
        ``threshold`` is outside (0, 1), ``pixel_size_nm`` is not a positive
        number, or the sampling is too coarse (or the field too small) for any
        resampling to rescue; the message says which sampling the model needs.

    Examples
    --------
    >>> from nion_autoem_elit import lattices, synthetic
    >>> frame = synthetic.generate_frame(lattices.mos2_lattice(), (128, 128), seed=1)
    >>> result = find_atoms(frame.image, pixel_size_nm=0.012)
    >>> len(result) > 0, result.in_trained_range
    (True, True)
    """
    threshold = _checks.number(threshold, "threshold", "strictly between 0 and 1", lambda v: 0.0 < v < 1.0)
    test_time_augmentation = _checks.flag(test_time_augmentation, "test_time_augmentation")
    check_lattice = _checks.flag(check_lattice, "check_lattice")
    ens = resolve_ensemble(ensemble)
    frame = ensemble_module.validate_frame(image)
    plan = sampling.plan_sampling(frame.shape, pixel_size_nm, ens.metadata)
    work = sampling.resample(frame, plan.zoom)
    input_shape = (int(frame.shape[0]), int(frame.shape[1]))
    grid = _extraction_grid(input_shape, (int(work.shape[0]), int(work.shape[1])))
    maps = ens.probability_maps(work, threshold=threshold, output_shape=grid, test_time_augmentation=test_time_augmentation)
    calibration = ens.metadata.get("uncertainty_calibration")
    result = atoms.atoms_from_maps(
        maps, ens.class_names, calibration=atoms.UncertaintyCalibration.from_dict(calibration) if calibration else None
    )
    on_input = grid == input_shape
    # Sampling of the grid the columns were found on.
    grid_pixel_nm = plan.pixel_size_nm if on_input else plan.model_pixel_size_nm
    warnings = list(plan.warnings)
    in_range = plan.in_trained_range
    for name, value, unit in (("dose_e_per_nm2", dose_e_per_nm2, "e/nm²"), ("probe_fwhm_nm", probe_fwhm_nm, "nm")):
        if value is None:
            continue
        value = _checks.number(value, name, f"a positive {unit} value", lambda v: v > 0)
        trained = sampling.trained_ranges(ens.metadata).get(name)
        if trained is not None and not trained[0] <= value <= trained[1]:
            in_range = False
            warnings.append(f"{name.split('_')[0]} {value:.3g} {unit} is outside the model's trained {trained[0]:.3g}-{trained[1]:.3g} {unit}: "
                            "classes and uncertainties are less reliable")
    reason = ""
    if check_lattice:
        expected = plan.nearest_neighbour_nm / grid_pixel_nm if plan.nearest_neighbour_nm and grid_pixel_nm else None
        verdict = sampling.check_lattice(result.positions, expected)
        reason = verdict.reason
        if verdict.is_lattice and plan.pixel_size_nm is None and plan.nearest_neighbour_nm and plan.trained_range_nm and len(result) > 1:
            warnings.extend(_spacing_hint(result.positions, plan.nearest_neighbour_nm, plan.trained_range_nm))
    result = dataclasses.replace(
        result,
        positions=result.positions if on_input else sampling.to_input_pixels(result.positions, input_shape, grid),
        position_spread_px=result.position_spread_px if on_input else result.position_spread_px * (input_shape[0] / grid[0]),
        mean_probabilities=sampling.maps_to_input(result.mean_probabilities, input_shape),
        variance=sampling.maps_to_input(result.variance, input_shape),
        pixel_size_nm=plan.pixel_size_nm,
        model_pixel_size_nm=plan.model_pixel_size_nm,
        resampled_by=plan.zoom,
        in_trained_range=in_range,
        trained_ranges=sampling.trained_ranges(ens.metadata),
        warnings=tuple(warnings),
    )
    return result.without_columns(reason) if reason else result


def _extraction_grid(input_shape: tuple[int, int], work_shape: tuple[int, int]) -> tuple[int, int]:
    """The pixel grid columns are found on: the finer of the input frame's and the network's.

    A frame the network sees downsampled has its logits interpolated straight onto
    its own pixels (positions and maps need no mapping back); one it sees
    upsampled is analysed on the network's finer grid and mapped back.
    """
    return input_shape if work_shape[0] * work_shape[1] <= input_shape[0] * input_shape[1] else work_shape


def _spacing_hint(positions: _NDArray, neighbour_nm: float, trained_nm: tuple[float, float]) -> list[str]:
    """A warning when the columns of an uncalibrated frame are spaced unlike the model's training frames."""
    distances, _ = scipy.spatial.cKDTree(positions).query(positions, k=2)
    median = float(numpy.median(distances[:, 1]))
    low_px, high_px = neighbour_nm / trained_nm[1], neighbour_nm / trained_nm[0]
    if low_px <= median <= high_px:
        return []
    return [f"neighbouring columns are found {median:.3g} px apart, the model expects {low_px:.3g}-{high_px:.3g} px: "
            "pass pixel_size_nm so the frame is resampled"]
