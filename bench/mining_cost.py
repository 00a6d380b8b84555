"""Mining cost: each algorithm's time over infer's on the same candidates, and joint mining + infer
over infer alone (benchmark issue, item 2). All runs in one process, side by side.

Candidates: real-sized JPEGs (1-12 MP, mixed aspect ratios: ``photos``) carrying objects the model finds, unless
``--toy`` (the sample's small images, as the figures before the GPU issue were measured). Each miner's per-box
work (class-aware uncertainty, ppal's box features, cald's box matching) only costs something where there are
boxes: the model finds at least ``common.MIN_BOXES`` per candidate at conf 0.25, or the benchmark stops.

Usage: python bench/mining_cost.py [--quick] [--device cpu|0] [--toy]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import photos
from common import machine, require_boxes, run_tasks, sample, trained_model

ALGORITHMS = ("random", "entropy", "aldd", "cald", "diversity", "ppal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 480 toy or 96 real-sized images at 320 px")
    parser.add_argument("--toy", action="store_true", help="the sample's small images instead of real-sized JPEGs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int)
    parser.add_argument("--workers", type=int, default=-1, help="num_workers_per_gpu (-1: the template's automatic default)")
    args = parser.parse_args()
    images, img_size = ((480 if args.toy else 96), 320) if args.quick else (2000, 640)
    images = args.images or images
    gpu = "" if args.device == "cpu" else args.device
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=0, val=0, candidates=images)
        model = trained_model(args.device)
        if not args.toy:
            photos.use_as_candidates(root, photos.make(Path(tmp) / "photos", images, objects_at=img_size))
        described = "toy sample images" if args.toy else photos.describe(
            [p for p in (root / "in" / "candidate-index.tsv").read_text().splitlines() if p])
        base = {"img_size": img_size, "batch_size_per_gpu": 16, "num_workers_per_gpu": args.workers, "gpu_id": gpu,
                "gpu_count": 1 if gpu else 0, "model_params_path": [str(model)]}

        def best(tasks, extra=None) -> float:
            run_tasks(root, tasks, {**base, **(extra or {})})  # warm-up
            return min(run_tasks(root, tasks, {**base, **(extra or {})}) for _ in range(args.repeats))

        infer = best(["infer"])
        found = require_boxes(root / "out" / "infer-result.json")
        rows = [("infer alone", infer)]
        print(f"arm infer alone: {infer:.2f} s, {found:.2f} boxes per candidate at conf 0.25", flush=True)
        for algorithm in ALGORITHMS:
            for name, tasks in ((f"mining {algorithm}", ["mining"]), (f"mining {algorithm} + infer", ["mining", "infer"])):
                rows.append((name, best(tasks, {"mining_algorithm": algorithm})))
                print(f"arm {name}: {rows[-1][1]:.2f} s, {rows[-1][1] / infer:.2f}x infer alone", flush=True)
    print(f"\nmachine: {machine()}; {images} candidates at {img_size} px, batch 16, workers {args.workers}, device {args.device}, "
          f"best of {args.repeats} (model load included); {described}; {found:.2f} boxes per candidate at conf 0.25")
    print("| run | seconds | vs infer alone |\n| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / infer:.2f}x |")


if __name__ == "__main__":
    main()
