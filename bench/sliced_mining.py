"""Sliced mining across resolutions (issue 32, item 3): how an image's tile scores combine into its score.

With slicing, ``ppal`` and ``diversity`` add up the uncertainty of an image's boxes over every input: its tiles
and the whole-image pass. An object in an overlap is counted 2 to 4 times, and an image's score grows with its
tile count, so in a pool of mixed resolutions the larger images would come first for their size alone. This
benchmark puts each scene into the pool twice, at full size and at half size (same objects, a quarter of the
tiles), mines it with each way of combining the inputs' scores (``mining.base.TILE_REDUCTIONS``: sum, mean and
max), and measures:
  - bias: the share of full-size images in the top half of the list (0.5 when size does not matter);
  - agreement: the rank correlation (Spearman) between a scene's score at full and at half size;
  - information: the rank correlation between an image's score and how many errors the model makes on it
    (missed labels and false boxes at conf 0.25, IoU 0.5; sliced infer), which labelling it would correct.
Control: "sum" must show the bias this instrument is built to see (full-size share >= CONTROL), or the
pool does not test what it is meant to.

Data: ``small_objects``' canvases (photos toned down, small and large shapes), 960x720 and 480x360, mined at
``img_size`` 160 with 160 px tiles; the model: (b) of ``small_objects --quick`` (``--model``), or one trained
here by the same recipe.

Usage: python bench/sliced_mining.py [--model best.pt] [--scenes 40] [--seed 1000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import photos
import small_objects
from common import commit, machine, run_tasks
from PIL import Image

ALGORITHMS = ("ppal", "diversity")
CONTROL = 0.7  # "sum"'s share of full-size images in the top half must reach this for the run to judge
FULL, HALF = (960, 720), (480, 360)
IMG_SIZE = 160


def pool(root: Path, scenes: int, seed: int) -> dict[str, list]:
    """Each scene at full and half size as candidates under ``root/in``; returns the labels by path."""
    rng = random.Random(seed)
    backgrounds = [np.asarray(Image.open(p).convert("RGB")) for p in photos.sources()]
    truth, lines = {}, []
    (root / "in" / "assets").mkdir(parents=True, exist_ok=True)
    (root / "in" / "models").mkdir(parents=True, exist_ok=True)
    for k in range(scenes):
        image, boxes = small_objects.canvas(rng, backgrounds, *FULL, (10, 16), rng.randint(12, 24), rng.randint(1, 3))
        for tag, size in (("full", FULL), ("half", HALF)):
            path = root / "in" / "assets" / f"scene-{k:03d}-{tag}.jpg"
            scale = size[0] / FULL[0]
            image.resize(size, Image.LANCZOS).save(path, quality=92)
            truth[str(path)] = [(c, x1 * scale, y1 * scale, x2 * scale, y2 * scale) for c, x1, y1, x2, y2 in boxes]
            lines.append(str(path))
    (root / "in" / "candidate-index.tsv").write_text("\n".join(lines) + "\n")
    for name in ("train-index.tsv", "val-index.tsv"):
        (root / "in" / name).write_text("")
    return truth


def ranks(values: list[float]) -> np.ndarray:
    """Ranks with ties averaged (for Spearman's correlation)."""
    array = np.asarray(values, dtype=float)
    order = array.argsort(kind="stable")
    out = np.empty(len(array))
    out[order] = np.arange(len(array))
    for value in np.unique(array):
        tied = array == value
        out[tied] = out[tied].mean()
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def errors(root: Path, truth: dict[str, list]) -> dict[str, int]:
    """Per image, the model's missed labels plus its false boxes at the infer template's conf (IoU 0.5, class-aware),
    from the sliced infer's result."""
    import torch
    from executor import evaluate

    predictions = small_objects.infer_predictions(root, truth)
    out = {}
    for path, boxes in truth.items():
        pred = torch.tensor(predictions.get(path, []), dtype=torch.float32).reshape(-1, 6)
        labels = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5)
        tp = evaluate.true_positives(pred, labels)
        out[path] = int(len(labels) - tp.sum() + (~tp).sum())
    return out


def mine(root: Path, model: Path, algorithm: str, reduction: str) -> dict[str, float]:
    """result.tsv's scores by path, with ``algorithm``'s inputs combined by ``reduction``."""
    from executor.mining import algorithms

    miner = algorithms()[algorithm]
    saved = miner.tile_reduce
    miner.tile_reduce = reduction  # the scan runs in this process (one device): the arm's rule
    try:
        run_tasks(root, ["mining"], {"img_size": IMG_SIZE, "slice_size": IMG_SIZE, "num_workers_per_gpu": 2,
                                     "mining_algorithm": algorithm, "class_names": small_objects.NAMES,
                                     "model_params_path": [str(model)]})
    finally:
        miner.tile_reduce = saved
    lines = (root / "out" / "result.tsv").read_text().split("\n")
    return {path: float(score) for path, score in (line.split("\t") for line in lines if line)}


def measure(scores: dict[str, float], wrong: dict[str, int]) -> dict[str, float]:
    ranked = sorted(scores, key=lambda p: -scores[p])
    top = ranked[: len(ranked) // 2]
    scenes = sorted({p.rsplit("-", 1)[0] for p in scores})
    return {"full_share_top_half": sum(p.endswith("-full.jpg") for p in top) / len(top),
            "full_half_spearman": spearman([scores[f"{s}-full.jpg"] for s in scenes], [scores[f"{s}-half.jpg"] for s in scenes]),
            "errors_spearman": spearman([scores[p] for p in ranked], [wrong[p] for p in ranked])}


def model_for(args: argparse.Namespace) -> Path:
    """``--model``, or (b) of ``small_objects --quick`` trained here (its recipe, seed 0), cached."""
    if args.model:
        return Path(args.model)
    cache = Path(tempfile.gettempdir()) / "small-objects" / "sliced-mining-model.pt"
    if cache.exists():
        return cache
    from executor import protocol

    overlap = float(protocol.load_template("infer")["slice_overlap"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small_objects.make_task(root, {"train": 12, "val": 4, "test": 1}, *FULL, (10, 16), 0)
        run_tasks(root, ["training"], {"model": "yolo11n", "epochs": 30, "img_size": IMG_SIZE, "batch_size_per_gpu": 16,
                                       "num_workers_per_gpu": 2, "optimizer": "AdamW", "lr0": 0.002, "mosaic": 0.0,
                                       "save_period": 0, "patience": 0, "export_format": "ark:raw",
                                       "class_names": small_objects.NAMES, "slice_size": IMG_SIZE, "slice_overlap": overlap})
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "out" / "models" / "best.pt", cache)
    return cache


def main() -> None:
    from executor.mining.base import TILE_REDUCTIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model trained on tiles (default: small_objects' (b), trained here)")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1000, help="the pool's scenes (not the model's training scenes)")
    parser.add_argument("--json")
    args = parser.parse_args()
    model = model_for(args)
    results: dict = {"machine": machine(), "commit": commit(), "model": str(model), "scenes": args.scenes,
                     "seed": args.seed, "sizes": [list(FULL), list(HALF)], "img_size": IMG_SIZE, "slice_size": IMG_SIZE,
                     "arms": {}}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = pool(root, args.scenes, args.seed)
        run_tasks(root, ["infer"], {"img_size": IMG_SIZE, "slice_size": IMG_SIZE, "num_workers_per_gpu": 2,
                                    "class_names": small_objects.NAMES, "model_params_path": [str(model)]})
        wrong = errors(root, truth)
        results["errors_full"] = sum(v for p, v in wrong.items() if p.endswith("-full.jpg"))
        results["errors_half"] = sum(v for p, v in wrong.items() if p.endswith("-half.jpg"))
        for algorithm in ALGORITHMS:
            for reduction in TILE_REDUCTIONS:
                found = measure(mine(root, model, algorithm, reduction), wrong)
                results["arms"][f"{algorithm}/{reduction}"] = found
                print(f"{algorithm} {reduction}: full-size share of the top half {found['full_share_top_half']:.2f}, "
                      f"full/half Spearman {found['full_half_spearman']:.3f}, errors Spearman {found['errors_spearman']:.3f}",
                      flush=True)
    results["seconds"] = time.perf_counter() - began
    results["control_passed"] = all(results["arms"][f"{a}/sum"]["full_share_top_half"] >= CONTROL for a in ALGORITHMS)
    print(f"\nmachine: {results['machine']}; commit {results['commit']}; {args.scenes} scenes at {FULL} and {HALF}, "
          f"{IMG_SIZE} px tiles; model errors: full {results['errors_full']}, half {results['errors_half']}")
    print("| algorithm | reduction | full-size share, top half | full/half Spearman | errors Spearman |\n| --- | --- | --- | --- | --- |")
    for arm, found in results["arms"].items():
        algorithm, reduction = arm.split("/")
        print(f"| {algorithm} | {reduction} | {found['full_share_top_half']:.2f} | {found['full_half_spearman']:.3f} | "
              f"{found['errors_spearman']:.3f} |")
    print(f"control (sum's full-size share >= {CONTROL}): {'PASS' if results['control_passed'] else 'FAIL: the pool cannot judge'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
