"""Retrain the shipped backbone: SimCLR-style contrastive learning on simulated tiles only.

Run ``python -m nion_autoem_fewshot.pretrain`` (about 10 minutes on two CPU
cores) to rewrite ``models/tiles_v1.pt`` and ``models/tiles_v1.json``.

Each step takes a batch of simulated patches
(:func:`nion_autoem_fewshot.synthetic.pretraining_patches`, seeds below
:data:`~nion_autoem_fewshot.synthetic.BENCHMARK_SEED_OFFSET`) and makes two
views of each: a random crop, a flip, a quarter turn plus up to 10 degrees, a
scale change of up to 25 %, a contrast and brightness change, blur and noise.
The encoder learns to give the two views of a patch similar features and
different patches different ones (NT-Xent loss), which is what a
prototypical classifier on a handful of labelled tiles needs: tiles of the
same kind close together, whatever their contrast, orientation or noise.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
import typing

import torch
import torch.nn.functional

from nion_autoem_fewshot import backbone
from nion_autoem_fewshot import synthetic

#: The recipe of the shipped backbone.
RECIPE: dict[str, typing.Any] = {"seed": 0, "steps": 1000, "batch": 128, "patches": 4000, "patch_px": 96, "bank_refresh_steps": 400,
                                 "view_px": [32, 48, 64], "temperature": 0.2, "learning_rate": 0.002, "weight_decay": 1e-4, "projection": [128, 64]}


def views(bank: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One augmented view (n, 1, size, size) of every patch in ``bank`` (n, 1, P, P).

    Examples
    --------
    >>> bank = torch.randn(4, 1, 96, 96)
    >>> views(bank, 48, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 1, 48, 48])
    """
    n, patch = bank.shape[0], bank.shape[-1]
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    scale = uniform(0.8, 1.25) * size / patch  # fraction of the patch the view covers
    angle = torch.randint(0, 4, (n,), generator=generator) * (math.pi / 2) + uniform(-0.17, 0.17)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    # the view may sit anywhere that keeps it inside the patch (its corners reach sqrt(2) x half its side)
    room = torch.clamp(1 - scale * math.sqrt(2), min=0.0)
    shift_y, shift_x = (torch.rand(n, generator=generator) * 2 - 1) * room, (torch.rand(n, generator=generator) * 2 - 1) * room
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = torch.nn.functional.grid_sample(bank, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    blur = torch.rand(n, 1, 1, 1, generator=generator) < 0.3
    out = torch.where(blur, torch.nn.functional.avg_pool2d(out, 3, stride=1, padding=1, count_include_pad=False), out)
    out = out * uniform(0.6, 1.6).view(n, 1, 1, 1) + uniform(-0.3, 0.3).view(n, 1, 1, 1)
    out = out + torch.randn(out.shape, generator=generator) * uniform(0.0, 0.3).view(n, 1, 1, 1) * out.std(dim=(1, 2, 3), keepdim=True)
    return backbone.standardise(out)


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's contrastive loss: each view must pick its partner among all 2n - 1 others.

    Examples
    --------
    >>> z = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    >>> bool(nt_xent(z, z, 0.1) < nt_xent(z, z.roll(1, 0), 0.1))
    True
    """
    z = torch.nn.functional.normalize(torch.cat([first, second]), dim=1)
    similarity = z @ z.T / temperature
    n = first.shape[0]
    similarity.fill_diagonal_(-1e9)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return torch.nn.functional.cross_entropy(similarity, partners)


def pretrain(recipe: typing.Mapping[str, typing.Any] = RECIPE, *, log: typing.Callable[[str], None] = print) -> backbone.TileEncoder:
    """Train a :class:`~nion_autoem_fewshot.backbone.TileEncoder` by the recipe (see the module docstring).

    Examples
    --------
    >>> tiny = dict(RECIPE, steps=2, batch=8, patches=16, bank_refresh_steps=100)
    >>> pretrain(tiny, log=lambda line: None).features
    128
    """
    torch.manual_seed(int(recipe["seed"]))
    generator = torch.Generator().manual_seed(int(recipe["seed"]))
    encoder = backbone.TileEncoder()
    width, out = recipe["projection"]
    projection = torch.nn.Sequential(torch.nn.Linear(encoder.features, width), torch.nn.ReLU(), torch.nn.Linear(width, out))
    parameters = list(encoder.parameters()) + list(projection.parameters())
    optimiser = torch.optim.AdamW(parameters, lr=float(recipe["learning_rate"]), weight_decay=float(recipe["weight_decay"]))
    steps = int(recipe["steps"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=float(recipe["learning_rate"]), total_steps=max(steps, 1), pct_start=0.1)
    sizes = [int(s) for s in recipe["view_px"]]
    bank = torch.empty(0)
    encoder.train()
    started = time.perf_counter()
    for step in range(steps):
        if step % int(recipe["bank_refresh_steps"]) == 0:
            # a fresh bank of patches now and then: more variety than one bank, without simulating every step
            seed = int(recipe["seed"]) * 100 + step // int(recipe["bank_refresh_steps"])
            bank = torch.from_numpy(synthetic.pretraining_patches(int(recipe["patches"]), int(recipe["patch_px"]), seed=seed)).unsqueeze(1)
        chosen = torch.randint(0, len(bank), (int(recipe["batch"]),), generator=generator)
        size = sizes[step % len(sizes)]
        batch = bank[chosen]
        loss = nt_xent(projection(encoder(views(batch, size, generator))), projection(encoder(views(batch, size, generator))), float(recipe["temperature"]))
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step + 1}/{steps}: loss {loss.item():.3f}, {time.perf_counter() - started:.0f} s")
    encoder.eval()
    return encoder


def main(argv: typing.Sequence[str] | None = None) -> int:
    """Command line: retrain and write the weights and their JSON."""
    parser = argparse.ArgumentParser(prog="python -m nion_autoem_fewshot.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=backbone.PACKAGED_MODELS / backbone.DEFAULT_BACKBONE, help="weights path without suffix")
    parser.add_argument("--version", default="1")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--seed", type=int, default=RECIPE["seed"], help="0-9 (the patch seeds stay below the benchmark's)")
    parser.add_argument("--batch", type=int, default=RECIPE["batch"])
    parser.add_argument("--patches", type=int, default=RECIPE["patches"], help="simulated patches per bank")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = dict(RECIPE, steps=args.steps, seed=args.seed, batch=args.batch, patches=args.patches)
    started = time.perf_counter()
    encoder = pretrain(recipe)
    recipe["training_seconds"] = round(time.perf_counter() - started, 1)
    recipe["torch_version"] = torch.__version__
    recipe["threads"] = args.threads
    recipe["data"] = "nion_autoem_fewshot.synthetic.pretraining_patches, seeds below 1000 (benchmark scenes use 1000 and up)"
    json_path = backbone.save_backbone(encoder, args.out, version=args.version, recipe=recipe, script="python -m nion_autoem_fewshot.pretrain")
    print(f"wrote {json_path} and its weights in {recipe['training_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
