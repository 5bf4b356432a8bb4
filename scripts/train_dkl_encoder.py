"""Train the DKL patch encoder shipped as ``nion_autoem_dkl/models/columns_v1`` (self-supervised, before any spectrum).

Run::

    python scripts/train_dkl_encoder.py                     # writes nion_autoem_dkl/models/columns_v1.{pt,json}
    python scripts/train_dkl_encoder.py --out /tmp/enc_v0   # somewhere else
    python scripts/train_dkl_encoder.py --steps 50          # a quick smoke run

Data (no property, no spectra, no labels of any kind):

* survey images from ``nion_autoem_dkl.synthetic.make_textured_sample``
  with seeds from 5000 up (the DKL benchmark uses 100-109 and development
  used 0-19), with the number of grains, the vacancy and dopant fractions,
  the number of dopant clusters and the noise drawn at random per image; only
  ``sample.image`` is read, never ``property_at`` or the motif list;
* a quarter of the patches from the few-shot package's pretraining
  simulator (``nion_autoem_fewshot.synthetic.pretraining_patches``: lattices
  of other spacings, amorphous films, particles, edges; its seeds < 1000).

Objective: SimCLR (NT-Xent) between two views of the same 40 x 40 crop:
each a 32 x 32 window shifted by up to 3 px from the crop centre, in a random
dihedral orientation, with a random gain, offset and added noise. The
encoder thus learns what stays put when the lattice slides a little under
the probe, the orientation changes and the counts vary: the columns and
defects next to the probe.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
import typing

import numpy
import numpy.typing
import torch
import torch.nn.functional

from nion_autoem_dkl.encoder import PACKAGED_MODELS
from nion_autoem_dkl.encoder import PatchEncoder
from nion_autoem_dkl.encoder import dihedral_views
from nion_autoem_dkl.encoder import save_encoder
from nion_autoem_dkl.synthetic import make_textured_sample
from nion_autoem_fewshot.synthetic import pretraining_patches

_NDArray = numpy.typing.NDArray[typing.Any]

#: The recipe of the shipped ``columns_v1``.
RECIPE: dict[str, typing.Any] = {
    "seed": 0,
    "steps": 1200,
    "batch": 256,
    "surveys": 48,
    "survey_px": 384,
    "survey_seeds_from": 5000,
    "crops_per_survey": 500,
    "fewshot_crops": 8000,
    "crop_px": 40,
    "view_px": 32,
    "max_shift_px": 3,
    "temperature": 0.2,
    "learning_rate": 0.002,
    "weight_decay": 1e-4,
    "channels": [16, 32, 24],
    "projection": [128, 64],
}


def standardise_survey(image: _NDArray) -> _NDArray:
    """An image on the encoder's scale: minus its median, over its standard deviation."""
    spread = float(image.std())
    return typing.cast(_NDArray, (image - float(numpy.median(image))) / (spread if spread > 0 else 1.0))


def survey_crops(recipe: typing.Mapping[str, typing.Any], rng: numpy.random.Generator) -> _NDArray:
    """Crops (n, crop, crop) of simulated surveys with randomised structure and noise, each survey standardised."""
    crop, side = int(recipe["crop_px"]), int(recipe["survey_px"])
    crops = []
    for k in range(int(recipe["surveys"])):
        sample = make_textured_sample(
            int(recipe["survey_seeds_from"]) + k,
            (side, side),
            n_grains=int(rng.integers(1, 8)),
            vacancy_fraction=float(rng.uniform(0.0, 0.06)),
            dopant_fraction=float(rng.uniform(0.0, 0.03)),
            n_dopant_clusters=int(rng.integers(0, 12)),
            noise=float(rng.uniform(0.4, 2.0)),
        )
        image = standardise_survey(sample.image)
        corners = rng.integers(0, side - crop, (int(recipe["crops_per_survey"]), 2))
        crops.append(numpy.stack([image[r : r + crop, c : c + crop] for r, c in corners]))
    return numpy.concatenate(crops)


def fewshot_crops(recipe: typing.Mapping[str, typing.Any]) -> _NDArray:
    """Crops of the few-shot pretraining simulator, each standardised on its own."""
    patches = pretraining_patches(int(recipe["fewshot_crops"]), int(recipe["crop_px"]), int(recipe["seed"]))
    return numpy.stack([standardise_survey(p) for p in patches.astype(numpy.float64)])


def views(bank: torch.Tensor, size: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """One augmented view (n, 1, size, size) of each crop in ``bank`` (n, 1, C, C): shifted, turned, rescaled, noisier."""
    n, crop = bank.shape[0], bank.shape[-1]
    centre = (crop - size) // 2
    offsets = centre + torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(size)[None, :]
    cols = offsets[:, 1, None] + torch.arange(size)[None, :]
    windows = bank[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]
    orientation = torch.randint(0, 8, (n,), generator=generator)
    turned = torch.empty_like(windows)
    for k, transformed in enumerate(dihedral_views(windows)):
        turned[orientation == k] = transformed[orientation == k]
    gain = 0.8 + 0.45 * torch.rand(n, 1, 1, 1, generator=generator)
    offset = 0.15 * torch.randn(n, 1, 1, 1, generator=generator)
    noise = 0.3 * torch.rand(n, 1, 1, 1, generator=generator) * torch.randn(turned.shape, generator=generator)
    return turned * gain + offset + noise


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy between two batches of projections."""
    z = torch.nn.functional.normalize(torch.cat([first, second]), dim=1)
    similarity = z @ z.T / temperature
    n = first.shape[0]
    similarity.fill_diagonal_(-math.inf)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return torch.nn.functional.cross_entropy(similarity, targets)


def train(recipe: typing.Mapping[str, typing.Any] = RECIPE, *, log: typing.Callable[[str], None] = print) -> tuple[PatchEncoder, float]:
    """Train a ``PatchEncoder`` by SimCLR on simulated survey crops; returns it and the training seconds."""
    started = time.perf_counter()
    seed = int(recipe["seed"])
    torch.manual_seed(seed)
    rng = numpy.random.default_rng(seed)
    bank_array = numpy.concatenate([survey_crops(recipe, rng), fewshot_crops(recipe)]).astype(numpy.float32)
    bank = torch.as_tensor(bank_array)[:, None]
    log(f"{bank.shape[0]} crops of {bank.shape[-1]} px in {time.perf_counter() - started:.1f} s")
    encoder = PatchEncoder(typing.cast(tuple[int, int, int], tuple(int(c) for c in recipe["channels"])))
    size = int(recipe["view_px"])
    width, out = (int(v) for v in recipe["projection"])
    projection = torch.nn.Sequential(torch.nn.Linear(encoder.n_features(size), width), torch.nn.ReLU(), torch.nn.Linear(width, out))
    parameters = list(encoder.parameters()) + list(projection.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=float(recipe["learning_rate"]), weight_decay=float(recipe["weight_decay"]))
    steps = int(recipe["steps"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(recipe["learning_rate"]), total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    batch, shift = int(recipe["batch"]), int(recipe["max_shift_px"])
    encoder.train()
    for step in range(1, steps + 1):
        chosen = torch.randint(0, bank.shape[0], (batch,), generator=generator)
        crops = bank[chosen]
        first, second = views(crops, size, shift, generator), views(crops, size, shift, generator)
        features = encoder(torch.cat([first, second]))
        # Log-compress the pooled maps, as the embedding does before standardising them.
        projected = projection(torch.log1p(features))
        loss = nt_xent(projected[:batch], projected[batch:], float(recipe["temperature"]))
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            log(f"step {step}/{steps}: loss {float(loss.detach()):.3f}, {time.perf_counter() - started:.0f} s")
    encoder.eval()
    return encoder, time.perf_counter() - started


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=PACKAGED_MODELS / "columns_v1", help="path of the weights, without suffix")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = dict(RECIPE)
    if args.steps is not None:
        recipe["steps"] = args.steps
    encoder, seconds = train(recipe)
    recipe.update(
        {
            "training_seconds": round(seconds, 1),
            "torch_version": torch.__version__,
            "threads": args.threads,
            "data": "nion_autoem_dkl.synthetic.make_textured_sample images only (seeds from 5000, randomised structure and noise; "
            "no property), plus nion_autoem_fewshot.synthetic.pretraining_patches (seeds < 1000)",
        }
    )
    json_path = save_encoder(encoder, args.out, version="1", recipe=recipe, script="python scripts/train_dkl_encoder.py")
    print(f"wrote {json_path} and its weights ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
