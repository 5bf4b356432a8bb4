"""Train the default ELIT ensembles shipped in ``nion_autoem_elit/models``.

Reproducible: every random draw is seeded from ``--seed``. Usage::

    python scripts/train_elit_models.py                 # MoS2 and graphene
    python scripts/train_elit_models.py --models mos2   # just MoS2
    python scripts/train_elit_models.py --quick --output /tmp/models  # smoke run

Each model is written as ``NAME.pt`` + ``NAME.json``; the JSON records the
training recipe, validation metrics, the uncertainty calibration, wall times
and the SHA-256 of the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
import typing

import numpy
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from nion_autoem_elit import atoms
from nion_autoem_elit import calibration
from nion_autoem_elit import evaluation
from nion_autoem_elit import lattices
from nion_autoem_elit import storage
from nion_autoem_elit import synthetic
from nion_autoem_elit import training

# Graphene columns are single light atoms: real graphene images use a much
# higher dose per frame for the same signal, so the simulated dose is higher.
RECIPES: dict[str, dict[str, typing.Any]] = {
    "mos2": {
        "file": "mos2_v1",
        "lattice": lattices.mos2_lattice,
        "ranges": synthetic.ImagingRanges(),
        "validation": synthetic.ImagingConditions(),
        "config": training.TrainingConfig(members=5, base_channels=8, crop=128, frames=3000, steps=4000),
    },
    "graphene": {
        "file": "graphene_v1",
        "lattice": lattices.graphene_lattice,
        "ranges": synthetic.ImagingRanges(dose_e_per_A2=(1.0e6, 2.0e7), pixel_size_A=(0.06, 0.12)),
        "validation": synthetic.ImagingConditions(dose_e_per_A2=4.0e6, pixel_size_A=0.09),
        "config": training.TrainingConfig(members=5, base_channels=8, crop=128, frames=2000, steps=2500),
    },
}


def train_one(name: str, output: pathlib.Path, seed: int, quick: bool, calibrate_only: bool) -> dict[str, typing.Any]:
    recipe = RECIPES[name]
    lattice: lattices.LatticeSpec = recipe["lattice"]()
    config: training.TrainingConfig = dataclasses.replace(recipe["config"], seed=seed)
    if quick:
        config = dataclasses.replace(config, frames=64, steps=30, crop=64)
    ranges: synthetic.ImagingRanges = recipe["ranges"]
    started = time.perf_counter()
    if calibrate_only:
        # Re-fit calibration and metrics of an existing model; its weights are unchanged.
        ens = storage.load_ensemble(output / f"{recipe['file']}.json")
    else:
        ens = training.train_ensemble(lattice, config, ranges=ranges, log=lambda line: print(f"[{name}] {line}", flush=True))

    # Calibrate on harder frames than training: lower dose and blurrier probe make mistakes to learn from.
    hard = dataclasses.replace(
        ranges,
        dose_e_per_A2=(0.3 * ranges.dose_e_per_A2[0], ranges.dose_e_per_A2[1]),
        probe_fwhm_A=(ranges.probe_fwhm_A[0], 1.35 * ranges.probe_fwhm_A[1]),
    )
    data = calibration.collect(ens, lattice, 4 if quick else 40, (256, 256), ranges=hard, seed=seed + 1)
    fitted = calibration.fit_logistic(data.features, data.errors)
    ens.metadata["uncertainty_calibration"] = fitted.as_dict()
    ens.metadata["calibration_error_rate"] = round(float(data.errors.mean()), 4)
    ens.metadata["calibration_ece"] = calibration.expected_calibration_error(fitted(data.features), data.errors)

    frames = [
        synthetic.generate_frame(lattice, (512, 512), seed=seed + 10_000 + i, conditions=recipe["validation"])
        for i in range(2 if quick else 6)
    ]

    def find(image: numpy.typing.NDArray[typing.Any]) -> tuple[typing.Any, typing.Any]:
        result = atoms.extract_atoms(ens.member_probabilities(image), ens.class_names, calibration=fitted)
        return result.positions, result.classes

    metrics = evaluation.evaluate_finder(find, frames, ens.class_names)
    ens.metadata["validation"] = {
        "conditions": dataclasses.asdict(recipe["validation"]),
        "frames": len(frames),
        "shape": [512, 512],
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
    }
    elapsed = round(time.perf_counter() - started, 1)
    if calibrate_only:
        ens.metadata["recalibration_seconds"] = elapsed
    else:
        ens.metadata["total_seconds"] = elapsed
    ens.metadata["machine_note"] = "2 shared CPU cores (other jobs running); wall times are upper bounds"
    ens.metadata["seed"] = seed
    ens.metadata["torch_version"] = torch.__version__
    ens.metadata["recipe"] = "scripts/train_elit_models.py"
    path = storage.save_ensemble(ens, output / recipe["file"])
    summary = {
        "model": recipe["file"],
        "json": str(path),
        "weights_bytes": path.with_suffix(".pt").stat().st_size,
        "training_seconds": ens.metadata["training_seconds"],
        "total_seconds": ens.metadata.get("total_seconds"),
        "validation_f1": round(metrics["f1"], 4),
    }
    print(json.dumps(summary), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--output", type=pathlib.Path, default=storage.PACKAGED_MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; do not ship its output")
    parser.add_argument("--calibrate-only", action="store_true", help="keep the saved weights, redo calibration and validation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    summaries = [train_one(name, args.output, args.seed, args.quick, args.calibrate_only) for name in args.models]
    print(json.dumps({"models": summaries}))


if __name__ == "__main__":
    main()
