"""Active learning: does mining pick images worth labelling? (benchmark issue, item 5)

From a small labelled seed set, rounds of train -> mine top-B -> add those images with their labels,
as a YMIR iteration does (each round fine-tunes the previous round's model). Every algorithm and
random run from the same seed model, for several seeds; mAP@0.5 on a fixed validation set is
reported per round, with the area under the curve (mean over rounds 0..R).

The pool makes the question real: the rare class ``square`` (10 %), many near-duplicates of a few
easy scenes (a video stream), and some hard images (small, low-contrast objects in clutter).

Usage: python bench/active_learning.py [--quick] [--seeds 2] [--algorithms random,entropy,...]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from common import machine, run_tasks, sample


def build_pool(root: Path, seed: int, sizes: dict[str, int]) -> tuple[dict[str, list[str]], dict[str, tuple[str, int]]]:
    """Images with ark annotations under root/in; returns index lines per split, and for each pool
    line its kind (duplicate, normal, hard) and number of squares (the rare class)."""
    rng = random.Random(seed)
    in_dir = root / "in"
    kinds: dict[str, tuple[str, int]] = {}

    def one(name: str, im, boxes, kind: str = "") -> str:
        image = sample.save_asset(in_dir / "assets", im)
        annotation = in_dir / "annotations" / name / f"{image.stem}.txt"
        sample.write_annotation(annotation, "ark", boxes, im.size)
        line = f"{image}\t{annotation}"
        kinds[line] = (kind, sum(1 for b in boxes if b[0] == 1))
        return line

    def draw(hard: bool, share: float):
        return sample.draw_image(rng, rng.randint(1, 3), (160, 128), square_share=share, hard=hard)

    splits: dict[str, list[str]] = {"seed": [], "pool": [], "val": []}
    for _ in range(sizes["seed"]):
        splits["seed"].append(one("seed", *draw(False, 0.1)))
    for _ in range(sizes["val"]):  # balanced, a third hard: what users care to detect
        splits["val"].append(one("val", *draw(rng.random() < 0.33, 0.5)))
    scenes = [draw(False, 0.02) for _ in range(sizes["scenes"])]
    for i in range(sizes["duplicates"]):
        im, boxes = scenes[i % len(scenes)]
        splits["pool"].append(one("pool", sample.jitter(im, rng), boxes, "duplicate"))
    for _ in range(sizes["normal"]):
        splits["pool"].append(one("pool", *draw(False, 0.1), "normal"))
    for _ in range(sizes["hard"]):
        splits["pool"].append(one("pool", *draw(True, 0.1), "hard"))
    rng.shuffle(splits["pool"])
    return splits, kinds


def composition(picked: list[str], kinds: dict[str, tuple[str, int]]) -> str:
    """What a pick holds: how many near-duplicates, ordinary and hard images, and squares (the rare class)."""
    count = {k: sum(1 for line in picked if kinds[line][0] == k) for k in ("duplicate", "normal", "hard")}
    squares = sum(kinds[line][1] for line in picked)
    return f"{count['duplicate']} dup / {count['normal']} normal / {count['hard']} hard, {squares} squares"


def train(root: Path, labelled: list[str], val: list[str], start: Path | None, epochs: int, img: int) -> tuple[float, Path]:
    (root / "in" / "train-index.tsv").write_text("\n".join(labelled) + "\n")
    (root / "in" / "val-index.tsv").write_text("\n".join(val) + "\n")
    config = {"epochs": epochs, "img_size": img, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2, "save_period": 0,
              "patience": 0, "close_mosaic": max(1, epochs // 4), "export_format": "ark:raw", "seed": 0}
    if start is not None:
        config["pretrained_model_params"] = [str(start)]
    run_tasks(root, ["training"], config)
    result = yaml.safe_load(open(root / "out" / "models" / "result.yaml"))
    best = result["best_stage_name"]
    kept = root / "models" / f"{time.time_ns()}.pt"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(root / "out" / "models" / result["model_stages"][best]["files"][0], kept)
    return float(result["model_stages"][best]["mAP"]), kept


def mine(root: Path, pool: list[str], model: Path, algorithm: str, budget: int, img: int, seed: int) -> list[str]:
    by_image = {line.split("\t")[0]: line for line in pool}
    (root / "in" / "candidate-index.tsv").write_text("\n".join(by_image) + "\n")
    config = {"mining_algorithm": algorithm, "img_size": img, "num_workers_per_gpu": 2, "model_params_path": [str(model)],
              "seed": seed, "diversity_budget": budget}
    run_tasks(root, ["mining"], config)
    ranked = [line.split("\t")[0] for line in (root / "out" / "result.tsv").read_text().splitlines()]
    return [by_image[p] for p in ranked[:budget]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized (about 30 minutes on 2 cores)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--algorithms", default="random,entropy,aldd,cald,diversity")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--picks-only", action="store_true",
                        help="train the seed model, mine once with each algorithm and show what each picks (no rounds)")
    args = parser.parse_args()
    if args.quick:
        sizes = {"seed": 60, "val": 120, "scenes": 8, "duplicates": 160, "normal": 100, "hard": 60}
        budget, img, seed_epochs, round_epochs, rounds = 40, 128, 40, 15, args.rounds or 2
    else:
        sizes = {"seed": 200, "val": 500, "scenes": 20, "duplicates": 1000, "normal": 600, "hard": 400}
        budget, img, seed_epochs, round_epochs, rounds = 200, 320, 100, 40, args.rounds or 4
    algorithms = args.algorithms.split(",")
    curves: dict[str, list[list[float]]] = {a: [] for a in algorithms}
    started = time.time()
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            splits, kinds = build_pool(root, seed, sizes)
            map0, model0 = train(root, splits["seed"], splits["val"], None, seed_epochs, img)
            print(f"seed {seed}: seed model mAP@0.5 {map0:.3f}; the pool holds "
                  f"{composition(splits['pool'], kinds)}", flush=True)
            if args.picks_only:
                for algorithm in algorithms:
                    picked = mine(root, splits["pool"], model0, algorithm, budget, img, seed)
                    print(f"seed {seed} {algorithm} picks: {composition(picked, kinds)}", flush=True)
                continue
            for algorithm in algorithms:
                labelled, pool, model, curve = list(splits["seed"]), list(splits["pool"]), model0, [map0]
                for r in range(rounds):
                    picked = mine(root, pool, model, algorithm, budget, img, seed)
                    chosen = set(picked)
                    pool = [line for line in pool if line not in chosen]
                    labelled += picked
                    mAP, model = train(root, labelled, splits["val"], model, round_epochs, img)
                    curve.append(mAP)
                    print(f"seed {seed} {algorithm} round {r + 1}: {len(labelled)} labelled, mAP@0.5 {mAP:.3f}; "
                          f"picked {composition(picked, kinds)}", flush=True)
                curves[algorithm].append(curve)
    if args.picks_only:
        return
    print(f"\nmachine: {machine()}; {args.seeds} seeds, {rounds} rounds of {budget} images, "
          f"img {img}, {time.time() - started:.0f} s")
    header = " | ".join(f"round {r}" for r in range(rounds + 1))
    print(f"| algorithm | {header} | AUC | vs random |\n|---|{'---|' * (rounds + 3)}")
    auc = {a: statistics.mean(statistics.mean(c) for c in cs) for a, cs in curves.items()}
    for algorithm, cs in curves.items():
        means = [statistics.mean(c[r] for c in cs) for r in range(rounds + 1)]
        gain = f"{auc[algorithm] - auc['random']:+.3f}" if "random" in auc else "-"
        print(f"| {algorithm} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {auc[algorithm]:.3f} | {gain} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"curves": curves, "auc": auc, "sizes": sizes, "budget": budget}, indent=1))


if __name__ == "__main__":
    main()
