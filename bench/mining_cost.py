"""Mining cost: each algorithm's time over infer's on the same candidates, and joint mining + infer
over infer alone (benchmark issue, item 2). All runs in one process, side by side: each arm's runs
alternate with runs of infer alone, and its ratio is over those.

Candidates: real-sized JPEGs (1-12 MP, mixed aspect ratios: ``photos``) carrying objects the model finds, unless
``--toy`` (the sample's small images, as the figures before the GPU issue were measured). Each miner's per-box
work (class-aware uncertainty, ppal's box features, cald's box matching) only costs something where there are
boxes: the model finds at least ``common.MIN_BOXES`` per candidate at conf 0.25, or the benchmark stops.

``--algorithms`` and ``--joint-only`` put first what a short GPU loan must measure (bench/gpu_session.sh: the
default algorithm's mining + infer first, and only the joint arms, the ones the GPU issue's target names).

Usage: python bench/mining_cost.py [--quick] [--device cpu|0] [--toy] [--algorithms ppal,diversity,...] [--joint-only]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import photos
from common import machine, require_boxes, run_tasks, sample, save_result, trained_model

ALGORITHMS = ("random", "entropy", "aldd", "cald", "diversity", "ppal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 480 toy or 96 real-sized images at 320 px")
    parser.add_argument("--toy", action="store_true", help="the sample's small images instead of real-sized JPEGs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int)
    parser.add_argument("--workers", type=int, default=-1, help="num_workers_per_gpu (-1: the template's automatic default)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated, run in this order")
    parser.add_argument("--joint-only", action="store_true", help="only the mining + infer arms (not mining alone)")
    args = parser.parse_args()
    algorithms = args.algorithms.split(",")
    if unknown := sorted(set(algorithms) - set(ALGORITHMS)):
        parser.error(f"--algorithms: unknown {', '.join(unknown)} (known: {', '.join(ALGORITHMS)})")
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

        def timed(tasks, extra=None) -> float:
            return run_tasks(root, tasks, {**base, **(extra or {})})

        timed(["infer"])  # warm-up, and the instrument's check
        found = require_boxes(root / "out" / "infer-result.json")
        rows, raw = [], []
        for algorithm in algorithms:
            arms = ((f"mining {algorithm}", ["mining"]), (f"mining {algorithm} + infer", ["mining", "infer"]))
            for name, tasks in arms[1:] if args.joint_only else arms:
                # each arm alternates with infer alone, so that a machine that slows down (or speeds up) over the
                # run moves both sides of the ratio alike
                timed(tasks, {"mining_algorithm": algorithm})  # warm-up
                pairs = [(timed(["infer"]), timed(tasks, {"mining_algorithm": algorithm})) for _ in range(args.repeats)]
                infer, arm = min(p[0] for p in pairs), min(p[1] for p in pairs)
                rows.append((name, arm, infer))
                raw.append({"arm": name, "pairs_infer_then_arm": pairs, "best": arm, "infer_best": infer})
                print(f"arm {name}: {arm:.2f} s, infer alone beside it {infer:.2f} s: {arm / infer:.2f}x", flush=True)
    infers = [infer for _, _, infer in rows]
    print(f"\nmachine: {machine()}; {images} candidates at {img_size} px, batch 16, workers {args.workers}, device {args.device}, "
          f"best of {args.repeats}, each arm alternated with infer alone (model load included); {described}; "
          f"{found:.2f} boxes per candidate at conf 0.25; infer alone took {min(infers):.2f}-{max(infers):.2f} s over the run")
    print("| run | seconds | infer alone beside it | vs infer alone |\n| --- | --- | --- | --- |")
    for name, seconds, infer in rows:
        print(f"| {name} | {seconds:.2f} | {infer:.2f} | {seconds / infer:.2f}x |")
    save_result(f"mining-cost-{'toy' if args.toy else 'photos'}-{images}-{img_size}px-{'gpu' if gpu else 'cpu'}",
                {"images": images, "img_size": img_size, "workers": args.workers, "device": args.device,
                 "boxes_per_candidate": found, "arms": raw, "vs_infer_alone": {n: s / i for n, s, i in rows}})


if __name__ == "__main__":
    main()
