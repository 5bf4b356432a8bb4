"""Few-shot tile classification: accuracy with 5 and 2 labels per class, clicks with suggestions, speed.

Data the backbone never saw (:mod:`nion_autoem_fewshot.synthetic`, seeds
1000 and up; pretraining used seeds below 1000 and other structures):

- ``interface``: rock salt | amorphous layer | MoS2-like honeycomb, two-species
  crystals that pretraining never showed (it had single-species lattices);
- ``particles``: regions of equilateral triangles, discs and rods on an
  amorphous support, and bare support (pretraining had ellipses and random
  5-8 cornered polygons, no triangles and no rods).

Three 1024 x 1024 images of each, cut into 64 px tiles; tiles with at least
90 % of one class are scored (the support tiles themselves are not), an
``unknown`` answer counts as wrong.  Each accuracy is the mean over
``DRAWS`` random support draws per image.

``clicks_to_95pct``: start from one random labelled tile per class, classify,
label the first suggested tile with its majority class, repeat until 95 % of
the scored tiles are right (at most ``MAX_LABELS_PER_CLASS`` per class; a
run that never gets there counts as that maximum).  Reported as labels per
class (the mean over runs of total labels / classes), with the total and the
same loop with randomly chosen tiles for comparison.

The ``*_smoothed`` figures are the same with ``smooth=0.5`` (each tile's
probabilities mixed with its four grid neighbours'; off by default).

Speed: ``tiles_per_s`` is the whole ``classify_tiles`` call on 64 px tiles
(a 2048 x 2048 image with 50 % overlap: 3969 tiles), support features cached
as in live use; ``map_ms_2048`` a 2048 x 2048 image in 32 px tiles (4096
tiles), with the support set's features cached (``map_ms_2048_cold``: a
fresh support set, its augmented examples encoded too).  Two torch threads.

Run: ``python benchmarks/fewshot_bench.py [--quick]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import typing

import numpy
import torch

from nion_autoem_fewshot import backbone
from nion_autoem_fewshot import synthetic
from nion_autoem_fewshot.classifier import classify_tiles
from nion_autoem_fewshot.support import SupportSet
from nion_autoem_fewshot.tiles import cut_tiles

TILE_PX = 64
DRAWS = 5
MAX_LABELS_PER_CLASS = 5
#: Click simulations per image (each classifies the image up to MAX_LABELS_PER_CLASS * classes times, twice).
CLICK_RUNS = 3
#: Neighbour smoothing of the extra "_smoothed" figures (classify_tiles(..., smooth=SMOOTH)); the headline figures use the default, none.
SMOOTH = 0.5
SCENES: dict[str, typing.Callable[..., synthetic.Scene]] = {"interface": synthetic.interface_scene, "particles": synthetic.particle_scene}


def accuracy(scene: synthetic.Scene, support: SupportSet, features: str, truth: numpy.ndarray, pure: numpy.ndarray, smooth: float = 0.0) -> tuple[float, float]:
    """Fraction of the scored tiles classified right, and the fraction answered unknown."""
    tile_map = classify_tiles(scene.image, support, features=features, smooth=smooth)  # type: ignore[arg-type]
    scored = pure.copy()
    scored[list(tile_map.labelled)] = False
    return float(numpy.mean(tile_map.classes[scored] == truth[scored])), float(numpy.mean(tile_map.classes[scored] == -1))


def draw_support(grid: typing.Any, scene: synthetic.Scene, truth: numpy.ndarray, pure: numpy.ndarray, shots: int, seed: int) -> SupportSet:
    rng = numpy.random.default_rng(seed)
    picks = {name: rng.choice(numpy.flatnonzero(pure & (truth == k)), shots, replace=False).tolist() for k, name in enumerate(scene.class_names)}
    return SupportSet.from_grid(grid, picks)


def clicks_to_95(scene: synthetic.Scene, grid: typing.Any, truth: numpy.ndarray, pure: numpy.ndarray, seed: int, *, suggested: bool,
                 smooth: float = 0.0) -> tuple[int, bool]:
    """Labels used until 95 % accuracy (and whether it got there), labelling suggested (or random) tiles one at a time."""
    rng = numpy.random.default_rng(seed)
    classes = len(scene.class_names)
    labelled = {int(rng.choice(numpy.flatnonzero(pure & (truth == k)))): k for k in range(classes)}
    while True:
        support = SupportSet.from_grid(grid, {name: [i for i, k in labelled.items() if k == c] for c, name in enumerate(scene.class_names)})
        tile_map = classify_tiles(scene.image, support, smooth=smooth)
        scored = pure.copy()
        scored[list(labelled)] = False
        if float(numpy.mean(tile_map.classes[scored] == truth[scored])) >= 0.95:
            return len(labelled), True
        if len(labelled) >= MAX_LABELS_PER_CLASS * classes:
            return len(labelled), False
        if suggested:
            pick = tile_map.suggestions(1, exclude=labelled)[0]
        else:
            pick = int(rng.choice([i for i in range(len(grid)) if i not in labelled]))
        labelled[pick] = int(truth[pick])


def timed(function: typing.Callable[[], typing.Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one image per kind, two draws (a smoke test, not the figures)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    images = 1 if args.quick else 3
    draws = 2 if args.quick else DRAWS
    load_before = os.getloadavg()[0]
    model = backbone.load_backbone()
    per_dataset: dict[str, dict[str, typing.Any]] = {}
    all_results: dict[str, list[float]] = {"backbone_5": [], "backbone_2": [], "texture_5": [], "texture_2": [], "smoothed_5": [], "smoothed_2": []}
    clicks: list[float] = []
    clicks_total: list[int] = []
    clicks_random: list[float] = []
    clicks_smoothed: list[float] = []
    reached_smoothed: list[bool] = []
    reached: list[bool] = []
    for name, make in SCENES.items():
        results: dict[str, list[float]] = {key: [] for key in all_results}
        unknowns: dict[str, list[float]] = {}
        dataset_clicks: list[float] = []
        dataset_random: list[float] = []
        dataset_reached: list[bool] = []
        dataset_smoothed: list[float] = []
        dataset_smoothed_reached: list[bool] = []
        for image_index in range(images):
            scene = make((1024, 1024), seed=synthetic.BENCHMARK_SEED_OFFSET + image_index)
            grid = cut_tiles(scene.image, tile_px=TILE_PX)
            truth, pure = synthetic.tile_truth(scene.labels, grid.origins_px, TILE_PX)
            for draw in range(draws):
                for shots in (5, 2):
                    support = draw_support(grid, scene, truth, pure, shots, seed=100 * image_index + draw)
                    for features in ("backbone", "texture"):
                        right, unknown = accuracy(scene, support, features, truth, pure)
                        results[f"{features}_{shots}"].append(right)
                        unknowns.setdefault(f"{features}_{shots}", []).append(unknown)
                    results[f"smoothed_{shots}"].append(accuracy(scene, support, "backbone", truth, pure, SMOOTH)[0])
                if draw >= CLICK_RUNS:
                    continue
                used, ok = clicks_to_95(scene, grid, truth, pure, seed=100 * image_index + draw, suggested=True)
                used_random, _ = clicks_to_95(scene, grid, truth, pure, seed=100 * image_index + draw, suggested=False)
                used_smoothed, ok_smoothed = clicks_to_95(scene, grid, truth, pure, seed=100 * image_index + draw, suggested=True, smooth=SMOOTH)
                dataset_smoothed.append(used_smoothed / len(scene.class_names))
                dataset_smoothed_reached.append(ok_smoothed)
                clicks_total.append(used)
                dataset_clicks.append(used / len(scene.class_names))
                dataset_reached.append(ok)
                dataset_random.append(used_random / len(scene.class_names))
            print(f"{name} image {image_index}: " + ", ".join(f"{k} {numpy.mean(v):.3f}" for k, v in results.items()), file=sys.stderr, flush=True)
        summary: dict[str, typing.Any] = {key: round(float(numpy.mean(values)), 4) for key, values in results.items()}
        summary["worst_backbone_5"] = round(float(numpy.min(results["backbone_5"])), 4)
        summary["worst_backbone_2"] = round(float(numpy.min(results["backbone_2"])), 4)
        summary["unknown_fraction"] = {key: round(float(numpy.mean(values)), 4) for key, values in unknowns.items()}
        summary["winner_5shot"] = "backbone" if summary["backbone_5"] >= summary["texture_5"] else "texture"
        summary["winner_2shot"] = "backbone" if summary["backbone_2"] >= summary["texture_2"] else "texture"
        summary["clicks_to_95pct"] = round(float(numpy.mean(dataset_clicks)), 3)
        summary["clicks_to_95pct_reached"] = f"{sum(dataset_reached)}/{len(dataset_reached)}"
        summary["clicks_to_95pct_random_tiles"] = round(float(numpy.mean(dataset_random)), 3)
        summary["clicks_to_95pct_smoothed"] = round(float(numpy.mean(dataset_smoothed)), 3)
        summary["clicks_to_95pct_smoothed_reached"] = f"{sum(dataset_smoothed_reached)}/{len(dataset_smoothed_reached)}"
        summary["winner_smoothed_vs_texture_5shot"] = "backbone+smooth" if summary["smoothed_5"] >= summary["texture_5"] else "texture"
        clicks.extend(dataset_clicks)
        clicks_smoothed.extend(dataset_smoothed)
        reached_smoothed.extend(dataset_smoothed_reached)
        clicks_random.extend(dataset_random)
        reached.extend(dataset_reached)
        per_dataset[name] = summary
        for key in all_results:
            all_results[key].extend(results[key])

    # speed: live use, the support set's features already computed
    scene = synthetic.particle_scene((2048, 2048), seed=synthetic.BENCHMARK_SEED_OFFSET + 50)
    grid64 = cut_tiles(scene.image, tile_px=64)
    truth64, pure64 = synthetic.tile_truth(scene.labels, grid64.origins_px, 64)
    support64 = draw_support(grid64, scene, truth64, pure64, 5, seed=0)
    classify_tiles(scene.image, support64, overlap=0.5, backbone=model)
    tiles64 = len(cut_tiles(scene.image, tile_px=64, overlap=0.5))
    seconds64 = timed(lambda: classify_tiles(scene.image, support64, overlap=0.5, backbone=model), 3)
    encoder_only = timed(lambda: model.features(cut_tiles(scene.image, tile_px=64, overlap=0.5).tiles), 3)
    grid32 = cut_tiles(scene.image, tile_px=32)
    truth32, pure32 = synthetic.tile_truth(scene.labels, grid32.origins_px, 32)
    support32 = draw_support(grid32, scene, truth32, pure32, 5, seed=0)
    cold = timed(lambda: classify_tiles(scene.image, draw_support(grid32, scene, truth32, pure32, 5, seed=1), backbone=model), 3)
    classify_tiles(scene.image, support32, backbone=model)
    warm = timed(lambda: classify_tiles(scene.image, support32, backbone=model), 3)
    load_after = os.getloadavg()[0]

    result = {
        "accuracy_5shot": round(float(numpy.mean(all_results["backbone_5"])), 4),
        "accuracy_2shot": round(float(numpy.mean(all_results["backbone_2"])), 4),
        "texture_baseline_accuracy_5shot": round(float(numpy.mean(all_results["texture_5"])), 4),
        "texture_baseline_accuracy_2shot": round(float(numpy.mean(all_results["texture_2"])), 4),
        "accuracy_5shot_smoothed": round(float(numpy.mean(all_results["smoothed_5"])), 4),
        "accuracy_2shot_smoothed": round(float(numpy.mean(all_results["smoothed_2"])), 4),
        "smooth": SMOOTH,
        "clicks_to_95pct": round(float(numpy.mean(clicks)), 3),
        "clicks_to_95pct_total": round(float(numpy.mean(clicks_total)), 2),
        "clicks_to_95pct_worst_per_class": round(float(numpy.max(clicks)), 3),
        "clicks_to_95pct_reached": f"{sum(reached)}/{len(reached)}",
        "clicks_to_95pct_random_tiles": round(float(numpy.mean(clicks_random)), 3),
        "clicks_to_95pct_smoothed": round(float(numpy.mean(clicks_smoothed)), 3),
        "clicks_to_95pct_smoothed_reached": f"{sum(reached_smoothed)}/{len(reached_smoothed)}",
        "tiles_per_s": round(tiles64 / seconds64),
        "encoder_tiles_per_s": round(tiles64 / encoder_only),
        "map_ms_2048": round(warm * 1000, 1),
        "map_ms_2048_cold": round(cold * 1000, 1),
        "per_dataset": per_dataset,
        "backbone": model.name,
        "tile_px": TILE_PX,
        "draws_per_image": draws,
        "images_per_dataset": images,
        "torch_threads": torch.get_num_threads(),
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
