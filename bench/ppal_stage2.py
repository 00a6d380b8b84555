"""ppal's stage 2 (the greedy over the candidates, and at commits that have it the typicality it weighs them by)
timed on synthetic box features at the template's ``mining_budget``: what typicality adds after the pass.

    python bench/ppal_stage2.py [--images 3000] [--boxes 5 20] [--repeats 2]

Stage 2 runs once per mining task, after the forward passes, on the candidates' boxes alone (at most 2 x
``mining_budget`` images, ``MAX_BOXES`` boxes each), so its time is a fixed cost over any pool larger than that.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from common import save_result
from executor.mining import ppal


def pool(images: int, boxes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uncertainty per image, and per box a unit feature (30 scenes plus noise), a class and its image."""
    g = torch.Generator().manual_seed(seed)
    owner = torch.arange(images).repeat_interleave(boxes)
    scenes = torch.randn(30, ppal.DIM, generator=g)
    features = scenes[torch.randint(0, 30, (len(owner),), generator=g)] + torch.randn(len(owner), ppal.DIM, generator=g)
    classes = torch.randint(0, 10, (len(owner),), generator=g)
    return torch.rand(images, generator=g), torch.nn.functional.normalize(features, dim=1), classes, owner


def best(repeats: int, run, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--boxes", type=int, nargs="+", default=[5, ppal.MAX_BOXES])
    parser.add_argument("--budget", type=int, default=1000, help="the template's mining_budget")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for boxes in args.boxes:
        uncertainty, features, classes, owner = pool(args.images, boxes)
        candidates = uncertainty.argsort(descending=True)[: math.ceil(ppal.CANDIDATES * args.budget)]
        position = torch.full((args.images,), -1)
        position[candidates] = torch.arange(len(candidates))
        keep = position[owner] >= 0
        stage2 = best(args.repeats, ppal.select, uncertainty, features, classes, owner, args.budget)
        run = {"boxes_per_image": boxes, "candidates": len(candidates), "stage2_s": stage2}
        if hasattr(ppal, "typicality"):  # issue 43's third lever (9fa9686), in the full run's comparison
            typical = best(args.repeats, ppal.typicality, features[keep], classes[keep], position[owner[keep]], len(candidates))
            run.update(typicality_s=typical, typicality_share=typical / stage2)
        runs.append(run)
        print(f"{boxes} boxes per image, {len(candidates)} candidates: {run}", flush=True)
    save_result("ppal-stage2", {"images": args.images, "budget": args.budget, "repeats": args.repeats, "runs": runs})


if __name__ == "__main__":
    main()
