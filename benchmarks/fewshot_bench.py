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

The headline keys use ``classify_tiles``'s defaults: the backbone's and the
texture baseline's features side by side (``features="combined"``) and the
neighbours' prior whose strength the image chooses (``smooth="auto"``).  The
variants show what each part does: ``backbone`` and ``texture`` alone with
every tile on its own (``smooth=0``, the first release's headline and its
baseline), ``combined`` with ``smooth=0``, ``backbone_auto`` (the backbone
with the neighbours' prior) and ``backbone_smooth05`` (the backbone with the
fixed mixing ``smooth=0.5``).

``clicks_to_95pct``: start from one random labelled tile per class, classify,
label the first suggested tile with its majority class, repeat until 95 % of
the scored tiles are right (at most ``MAX_LABELS_PER_CLASS`` per class; a
run that never gets there counts as that maximum).  Reported as labels per
class (the mean over runs of total labels / classes), with the same loop
labelling random tiles, and the loop with the backbone alone and
``smooth=0`` (the first release's classifier, with today's suggestions).

What the neighbours' prior costs: ``lone_tile_kept`` pastes single pure
tiles of another class into the interior of regions (8 per image, tile
aligned) and counts how many keep their own class, with the defaults and
with ``smooth=0``.  ``noise_frame_unknown``: a frame of Poisson noise (and
``blank_frame_unknown``: a constant frame) classified with 5 interface
labels per class, the fraction of tiles answered unknown.

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
#: Click simulations per image (each classifies the image up to MAX_LABELS_PER_CLASS * classes times, three times).
CLICK_RUNS = 3
#: Single tiles of another class pasted into each image for ``lone_tile_kept``.
LONE_TILES = 8
SCENES: dict[str, typing.Callable[..., synthetic.Scene]] = {"interface": synthetic.interface_scene, "particles": synthetic.particle_scene}
#: Name -> classify_tiles keywords; "default" gives the headline keys.
VARIANTS: dict[str, dict[str, typing.Any]] = {
    "default": {},
    "combined": {"smooth": 0.0},
    "backbone": {"features": "backbone", "smooth": 0.0},
    "texture": {"features": "texture", "smooth": 0.0},
    "backbone_auto": {"features": "backbone"},
    "backbone_smooth05": {"features": "backbone", "smooth": 0.5},
}


def accuracy(image: numpy.ndarray, support: SupportSet, truth: numpy.ndarray, pure: numpy.ndarray, **options: typing.Any) -> tuple[float, float]:
    """Fraction of the scored tiles classified right, and the fraction answered unknown."""
    tile_map = classify_tiles(image, support, **options)
    scored = pure.copy()
    scored[list(tile_map.labelled)] = False
    return float(numpy.mean(tile_map.classes[scored] == truth[scored])), float(numpy.mean(tile_map.classes[scored] == -1))


def draw_support(grid: typing.Any, scene: synthetic.Scene, truth: numpy.ndarray, pure: numpy.ndarray, shots: int, seed: int) -> SupportSet:
    rng = numpy.random.default_rng(seed)
    picks = {name: rng.choice(numpy.flatnonzero(pure & (truth == k)), shots, replace=False).tolist() for k, name in enumerate(scene.class_names)}
    return SupportSet.from_grid(grid, picks)


def clicks_to_95(scene: synthetic.Scene, grid: typing.Any, truth: numpy.ndarray, pure: numpy.ndarray, seed: int, *, suggested: bool,
                 **options: typing.Any) -> tuple[int, bool]:
    """Labels used until 95 % accuracy (and whether it got there), labelling suggested (or random) tiles one at a time."""
    rng = numpy.random.default_rng(seed)
    classes = len(scene.class_names)
    labelled = {int(rng.choice(numpy.flatnonzero(pure & (truth == k)))): k for k in range(classes)}
    while True:
        support = SupportSet.from_grid(grid, {name: [i for i, k in labelled.items() if k == c] for c, name in enumerate(scene.class_names)})
        tile_map = classify_tiles(scene.image, support, **options)
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


def lone_tiles_kept(scene: synthetic.Scene, grid: typing.Any, truth: numpy.ndarray, pure: numpy.ndarray, support: SupportSet, seed: int,
                    **options: typing.Any) -> list[bool]:
    """Paste single pure tiles of another class into region interiors; whether each keeps its own class."""
    rng = numpy.random.default_rng(seed)
    rows, cols = grid.shape
    classes = truth.reshape(rows, cols)
    padded = numpy.pad(classes, 1, mode="edge")
    interior = ((padded[:-2, 1:-1] == classes) & (padded[2:, 1:-1] == classes) & (padded[1:-1, :-2] == classes) & (padded[1:-1, 2:] == classes)).ravel() & pure
    interior[list(classify_tiles(scene.image, support, **options).labelled)] = False
    image = scene.image.copy()
    implanted = truth.copy()
    candidates = [int(t) for t in rng.choice(numpy.flatnonzero(interior), LONE_TILES, replace=False)]
    # no two targets side by side: each must be a lone tile
    targets = [t for i, t in enumerate(candidates) if all(abs(t // cols - u // cols) + abs(t % cols - u % cols) > 1 for u in candidates[:i])]
    for target in targets:
        donor = int(rng.choice(numpy.flatnonzero(pure & (truth != truth[target]))))
        (r, c), (dr, dc) = grid.origins_px[target], grid.origins_px[donor]
        image[r:r + TILE_PX, c:c + TILE_PX] = scene.image[dr:dr + TILE_PX, dc:dc + TILE_PX]
        implanted[target] = truth[donor]
    tile_map = classify_tiles(image, support, **options)
    return [bool(tile_map.classes[t] == implanted[t]) for t in targets]


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
    parser.add_argument("--first-seed", type=int, default=synthetic.BENCHMARK_SEED_OFFSET,
                        help="seed of the first scene of each kind; develop on others than the benchmark's (e.g. 2000)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    images = 1 if args.quick else 3
    draws = 2 if args.quick else DRAWS
    load_before = os.getloadavg()[0]
    model = backbone.load_backbone()
    per_dataset: dict[str, dict[str, typing.Any]] = {}
    all_results: dict[str, list[float]] = {f"{variant}_{shots}": [] for variant in VARIANTS for shots in (5, 2)}
    loops: dict[str, dict[str, typing.Any]] = {"suggested": {"suggested": True}, "random_tiles": {"suggested": False}, "backbone_only": {"suggested": True, "features": "backbone", "smooth": 0.0}}
    all_clicks: dict[str, list[float]] = {loop: [] for loop in loops}
    all_reached: dict[str, list[bool]] = {loop: [] for loop in loops}
    all_lone: dict[str, list[bool]] = {"default": [], "smooth_0": []}
    noise_support: SupportSet | None = None
    for name, make in SCENES.items():
        results: dict[str, list[float]] = {key: [] for key in all_results}
        unknowns: dict[str, list[float]] = {key: [] for key in all_results}
        clicks: dict[str, list[float]] = {loop: [] for loop in loops}
        reached: dict[str, list[bool]] = {loop: [] for loop in loops}
        lone: dict[str, list[bool]] = {key: [] for key in all_lone}
        for image_index in range(images):
            scene = make((1024, 1024), seed=args.first_seed + image_index)
            grid = cut_tiles(scene.image, tile_px=TILE_PX)
            truth, pure = synthetic.tile_truth(scene.labels, grid.origins_px, TILE_PX)
            for draw in range(draws):
                for shots in (5, 2):
                    support = draw_support(grid, scene, truth, pure, shots, seed=100 * image_index + draw)
                    if name == "interface" and shots == 5 and noise_support is None:
                        noise_support = support
                    for variant, options in VARIANTS.items():
                        right, unknown = accuracy(scene.image, support, truth, pure, backbone=model, **options)
                        results[f"{variant}_{shots}"].append(right)
                        unknowns[f"{variant}_{shots}"].append(unknown)
                if draw < CLICK_RUNS:
                    for loop, options in loops.items():
                        used, ok = clicks_to_95(scene, grid, truth, pure, seed=100 * image_index + draw, backbone=model, **options)
                        clicks[loop].append(used / len(scene.class_names))
                        reached[loop].append(ok)
            support = draw_support(grid, scene, truth, pure, 5, seed=100 * image_index + 99)
            lone["default"].extend(lone_tiles_kept(scene, grid, truth, pure, support, seed=image_index, backbone=model))
            lone["smooth_0"].extend(lone_tiles_kept(scene, grid, truth, pure, support, seed=image_index, backbone=model, smooth=0.0))
            print(f"{name} image {image_index}: " + ", ".join(f"{k} {numpy.mean(v):.3f}" for k, v in results.items()), file=sys.stderr, flush=True)
        summary: dict[str, typing.Any] = {key: round(float(numpy.mean(values)), 4) for key, values in results.items()}
        summary["worst_default_5"] = round(float(numpy.min(results["default_5"])), 4)
        summary["worst_default_2"] = round(float(numpy.min(results["default_2"])), 4)
        summary["unknown_fraction"] = {key: round(float(numpy.mean(values)), 4) for key, values in unknowns.items()}
        summary["winner_5shot_backbone_vs_texture"] = "backbone" if summary["backbone_5"] >= summary["texture_5"] else "texture"
        summary["winner_2shot_backbone_vs_texture"] = "backbone" if summary["backbone_2"] >= summary["texture_2"] else "texture"
        for loop in loops:
            suffix = "" if loop == "suggested" else f"_{loop}"
            summary[f"clicks_to_95pct{suffix}"] = round(float(numpy.mean(clicks[loop])), 3)
            summary[f"clicks_to_95pct{suffix}_reached"] = f"{sum(reached[loop])}/{len(reached[loop])}"
            all_clicks[loop].extend(clicks[loop])
            all_reached[loop].extend(reached[loop])
        for key, kept in lone.items():
            summary[f"lone_tile_kept_{key}"] = f"{sum(kept)}/{len(kept)}"
            all_lone[key].extend(kept)
        per_dataset[name] = summary
        for key in all_results:
            all_results[key].extend(results[key])

    # the unknown answer for a frame with nothing in it
    assert noise_support is not None
    rng = numpy.random.default_rng(args.first_seed)
    noise_map = classify_tiles(rng.poisson(20.0, (1024, 1024)).astype(float), noise_support, backbone=model)
    blank_map = classify_tiles(numpy.full((1024, 1024), 5.0), noise_support, backbone=model)

    # speed: live use, the support set's features already computed
    scene = synthetic.particle_scene((2048, 2048), seed=args.first_seed + 50)
    grid64 = cut_tiles(scene.image, tile_px=64)
    truth64, pure64 = synthetic.tile_truth(scene.labels, grid64.origins_px, 64)
    support64 = draw_support(grid64, scene, truth64, pure64, 5, seed=0)
    classify_tiles(scene.image, support64, overlap=0.5, backbone=model)
    classify_tiles(scene.image, support64, overlap=0.5, backbone=model, features="backbone", smooth=0.0)
    tiles64 = len(cut_tiles(scene.image, tile_px=64, overlap=0.5))
    seconds64 = timed(lambda: classify_tiles(scene.image, support64, overlap=0.5, backbone=model), 3)
    seconds64_backbone = timed(lambda: classify_tiles(scene.image, support64, overlap=0.5, backbone=model, features="backbone", smooth=0.0), 3)
    encoder_only = timed(lambda: model.features(cut_tiles(scene.image, tile_px=64, overlap=0.5).tiles), 3)
    grid32 = cut_tiles(scene.image, tile_px=32)
    truth32, pure32 = synthetic.tile_truth(scene.labels, grid32.origins_px, 32)
    support32 = draw_support(grid32, scene, truth32, pure32, 5, seed=0)
    cold = timed(lambda: classify_tiles(scene.image, draw_support(grid32, scene, truth32, pure32, 5, seed=1), backbone=model), 3)
    classify_tiles(scene.image, support32, backbone=model)
    warm = timed(lambda: classify_tiles(scene.image, support32, backbone=model), 3)
    load_after = os.getloadavg()[0]

    def mean(key: str) -> float:
        return round(float(numpy.mean(all_results[key])), 4)

    result = {
        "accuracy_5shot": mean("default_5"),
        "accuracy_2shot": mean("default_2"),
        "texture_baseline_accuracy_5shot": mean("texture_5"),
        "texture_baseline_accuracy_2shot": mean("texture_2"),
        "backbone_only_accuracy_5shot": mean("backbone_5"),
        "backbone_only_accuracy_2shot": mean("backbone_2"),
        "combined_unsmoothed_accuracy_5shot": mean("combined_5"),
        "combined_unsmoothed_accuracy_2shot": mean("combined_2"),
        "backbone_auto_accuracy_5shot": mean("backbone_auto_5"),
        "backbone_smooth05_accuracy_5shot": mean("backbone_smooth05_5"),
        "clicks_to_95pct": round(float(numpy.mean(all_clicks["suggested"])), 3),
        "clicks_to_95pct_worst_per_class": round(float(numpy.max(all_clicks["suggested"])), 3),
        "clicks_to_95pct_reached": f"{sum(all_reached['suggested'])}/{len(all_reached['suggested'])}",
        "clicks_to_95pct_random_tiles": round(float(numpy.mean(all_clicks["random_tiles"])), 3),
        "clicks_to_95pct_random_tiles_reached": f"{sum(all_reached['random_tiles'])}/{len(all_reached['random_tiles'])}",
        "clicks_to_95pct_backbone_only": round(float(numpy.mean(all_clicks["backbone_only"])), 3),
        "clicks_to_95pct_backbone_only_reached": f"{sum(all_reached['backbone_only'])}/{len(all_reached['backbone_only'])}",
        "lone_tile_kept": f"{sum(all_lone['default'])}/{len(all_lone['default'])}",
        "lone_tile_kept_smooth_0": f"{sum(all_lone['smooth_0'])}/{len(all_lone['smooth_0'])}",
        "noise_frame_unknown": round(float(numpy.mean(noise_map.classes == -1)), 4),
        "blank_frame_unknown": round(float(numpy.mean(blank_map.classes == -1)), 4),
        "tiles_per_s": round(tiles64 / seconds64),
        "tiles_per_s_backbone_only": round(tiles64 / seconds64_backbone),
        "encoder_tiles_per_s": round(tiles64 / encoder_only),
        "map_ms_2048": round(warm * 1000, 1),
        "map_ms_2048_cold": round(cold * 1000, 1),
        "per_dataset": per_dataset,
        "backbone": model.name,
        "tile_px": TILE_PX,
        "draws_per_image": draws,
        "images_per_dataset": images,
        "first_seed": args.first_seed,
        "torch_threads": torch.get_num_threads(),
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
