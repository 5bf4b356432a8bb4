"""What the montage tests share: a twin, a montage run through the engine, a support set from ground truth, and scores against the truth."""

from __future__ import annotations

import pathlib
import typing

import numpy
import numpy.typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.montage import Montage
from nion_autoem.plans.montage import MontageLayout
from nion_autoem.plans.montage import acquire_montage
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin.stage_sample import StageMicroscope
from nion_autoem.twin.stage_sample import StageSample
from nion_autoem_fewshot import SupportSet

_NDArray = numpy.typing.NDArray[typing.Any]

SIZE_NM = 12_000.0
TILE = ScanFrame((128, 128), 4000.0)  # 31 nm per pixel
OVERVIEW = ScanFrame((256, 256), 8000.0)  # the same pixels, a quarter of the stage moves: the search's overview
SUPPORT_CLASSES = ("hexagonal platelet", "round particle", "rod", "flake", "film", "hole")


def twin(seed: int, *, min_rare: int = 4) -> StageMicroscope:
    return StageMicroscope(StageSample(seed, size_nm=SIZE_NM, objects=150, min_rare=min_rare), seed=seed)


def layout(tile: ScanFrame = TILE) -> MontageLayout:
    return MontageLayout((0.0, 0.0), (SIZE_NM - 1000.0, SIZE_NM - 1000.0), tile, 0.3)


@plan("montage-test")
def montage_run(box: dict[str, typing.Any], register: bool = True, limits: typing.Any = None, max_stage_error_nm: float = 1000.0,
                tile: ScanFrame = TILE) -> PlanGenerator:
    box["montage"] = yield from acquire_montage(layout(tile), pixel_time_us=2.0, register=register, limits=limits, max_stage_error_nm=max_stage_error_nm)


def run_montage(scope: StageMicroscope, run_dir: pathlib.Path, **kwargs: typing.Any) -> tuple[Montage, MemorySink]:
    box: dict[str, typing.Any] = {}
    sink = MemorySink()
    runner = ExperimentRunner(scope, montage_run(box, **kwargs), run_dir=run_dir, sink=sink)
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    return box["montage"], sink


def montage_offset(scope: StageMicroscope, montage: Montage) -> _NDArray:
    """True minus montage stage coordinates: the constant the montage cannot know."""
    true = numpy.array([t for _, t in scope.surveys[: len(montage.tiles)]])
    return typing.cast(_NDArray, (true - montage.fitted_nm).mean(axis=0))


def landing_errors_nm(scope: StageMicroscope, montage: Montage, visits: typing.Sequence[typing.Any], first_survey: int) -> tuple[_NDArray, _NDArray]:
    """Where each visit's zoomed frame really landed against its candidate, without and with the scan-offset correction (nm).

    The truth is the true stage at the zoom's mid-frame (every visit takes a
    registration survey, then the zoom), in the montage's coordinates.
    """
    offset = montage_offset(scope, montage)
    zooms = scope.surveys[first_survey + 1::2]
    raw, corrected = [], []
    for v, (_, true_nm) in zip(visits, zooms, strict=True):
        stage = numpy.asarray(true_nm) - offset
        raw.append(numpy.hypot(*(numpy.asarray(v.candidate_nm) - stage)))
        corrected.append(numpy.hypot(*(numpy.asarray(v.candidate_nm) - (stage + numpy.asarray(v.scan_offset_nm)))))
    return numpy.asarray(raw), numpy.asarray(corrected)


def stitch_errors_px(scope: StageMicroscope, montage: Montage, positions_nm: _NDArray) -> _NDArray:
    """Per tile, how far ``positions_nm`` put it from where it really was, relative to the others (mean removed), in montage pixels."""
    true = numpy.array([t for _, t in scope.surveys[: len(montage.tiles)]])
    d = (positions_nm - positions_nm.mean(axis=0)) - (true - true.mean(axis=0))
    return typing.cast(_NDArray, numpy.hypot(d[:, 0], d[:, 1]) / montage.pixel_size_nm)


def support_from_truth(scope: StageMicroscope, montage: Montage, *, per_class: int = 6, tile_px: int = 32) -> SupportSet:
    """A few tiles of each class cut from a montage, centred on ground-truth objects (and on bare film), as a person would click them."""
    offset = montage_offset(scope, montage)
    support = SupportSet(tile_px, tile_nm=tile_px * montage.pixel_size_nm)
    for name in SUPPORT_CLASSES:
        added = 0
        for centre in scope.sample.examples_nm(name, per_class + 4, tile_nm=tile_px * montage.pixel_size_nm):
            r, c = numpy.round((numpy.asarray(centre) - offset - montage.origin_nm) / montage.pixel_size_nm).astype(int) - tile_px // 2
            if added < per_class and r >= 0 and c >= 0 and r + tile_px <= montage.image.shape[0] and c + tile_px <= montage.image.shape[1]:
                support.add(name, montage.image[r:r + tile_px, c:c + tile_px])
                added += 1
    return support
