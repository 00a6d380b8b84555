"""Active learning: does mining pick images worth labelling? (benchmark issue, item 5)

From a small labelled seed set, rounds of train -> mine top-B -> add those images with their labels,
as a YMIR iteration does (each round fine-tunes the previous round's model). Every algorithm and
random run from the same seed model, for several seeds; mAP@0.5 on a fixed validation set is
reported per round, with the area under the curve (mean over rounds 0..R).

The pool makes the question real: the rare class ``square`` (10 %), many near-duplicates of a few
easy scenes (a video stream), and some hard images (small, low-contrast objects in clutter).

An algorithm named ``NAME:K`` mines with seed ``seed + 1000 K``: ``random:1`` is a second random
draw, the control that shows how far two equally good picks land apart (the noise floor).

Usage: python bench/active_learning.py [--quick] [--seeds 2] [--first-seed 0] [--algorithms random,entropy,...]
       python bench/active_learning.py --report a.json [b.json ...]   (one table from several runs' results)
       python bench/active_learning.py --quick --picks-only | --draws-only   (what the seed model sees / what random draws)
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


def build_pool(root: Path, seed: int, sizes: dict[str, int], seed_squares: float = 0.1
               ) -> tuple[dict[str, list[str]], dict[str, tuple[str, int]]]:
    """Images with ark annotations under root/in; returns index lines per split, and for each pool
    line its kind (duplicate, normal, hard) and number of squares (the rare class). ``seed_squares``
    changes only the classes of the seed set's objects, never the images of the pool or validation set."""
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
        splits["seed"].append(one("seed", *draw(False, seed_squares)))
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


def ark_rows(annotation: str | Path) -> list[list[int]]:
    """The benchmark's own ark annotation: one ``[class, x1, y1, x2, y2]`` per object."""
    return [[int(float(v)) for v in row.split(",")[:5]] for row in Path(annotation).read_text().splitlines()]


def write_candidates(root: Path, images: list[str]) -> None:
    (root / "in" / "candidate-index.tsv").write_text("\n".join(images) + "\n")


def composition(picked: list[str], kinds: dict[str, tuple[str, int]]) -> str:
    """What a pick holds: how many near-duplicates, ordinary and hard images, and squares (the rare class)."""
    count = {k: sum(1 for line in picked if kinds[line][0] == k) for k in ("duplicate", "normal", "hard")}
    squares = sum(kinds[line][1] for line in picked)
    return f"{count['duplicate']} dup / {count['normal']} normal / {count['hard']} hard, {squares} squares"


def class_signal(root: Path, pool: list[str], kinds: dict[str, tuple[str, int]], model: Path, img: int) -> str:
    """Can the model tell the classes apart, and does it see the hard objects? Infer over the pool (boxes
    from 0.05) and, per annotated class, how many objects a box finds (IoU >= 0.5) and how many of those
    it names right; then how many of the hard images' objects are found."""
    import torch
    from torchvision.ops import box_iou

    write_candidates(root, [line.split("\t")[0] for line in pool])
    run_tasks(root, ["infer"], {"img_size": img, "num_workers_per_gpu": 2, "model_params_path": [str(model)],
                                "conf_thres": 0.05})
    found = json.loads((root / "out" / "infer-result.json").read_text())["detection"]
    counts = {name: [0, 0, 0] for name in sample.CLASS_NAMES}  # objects, found, named right
    hard = [0, 0]  # objects in hard images, found
    for line in pool:
        image, annotation = line.split("\t")
        boxes = found[Path(image).name]["boxes"]
        rows = ark_rows(annotation)
        truth = torch.tensor([r[1:] for r in rows], dtype=torch.float32).reshape(-1, 4)
        predicted = torch.tensor([[b["box"]["x"], b["box"]["y"], b["box"]["x"] + b["box"]["w"], b["box"]["y"] + b["box"]["h"]]
                                  for b in boxes], dtype=torch.float32).reshape(-1, 4)
        iou = box_iou(truth, predicted)
        for (cls, *_), row in zip(rows, iou, strict=True):
            hit = len(boxes) > 0 and float(row.max()) >= 0.5
            name = sample.CLASS_NAMES[cls]
            counts[name][0] += 1
            counts[name][1] += hit
            counts[name][2] += hit and boxes[int(row.argmax())]["class_name"] == name
            if kinds[line][0] == "hard":
                hard[0] += 1
                hard[1] += hit
    return ("; ".join(f"{name}: {n} objects, {f} found, {r} named {name}" for name, (n, f, r) in counts.items())
            + f"; in the hard images: {hard[0]} objects, {hard[1]} found")


def class_vectors(pool: list[str], model: Path, img: int) -> str:
    """Does the model's whole class vector (YOLO scores every class with its own sigmoid) hold a hint
    of the rare class that the top class hides? Mean score of each class on the boxes (from 0.05,
    IoU >= 0.5) that find an object of each annotated class: if squares got a higher square score than
    circles do, a class-confusion score could point at them."""
    import torch
    from executor.engine import Engine, to_image_frame
    from torchvision.ops import box_iou
    from ultralytics.utils import nms

    engine = Engine(model, "cpu", img, False, sample.CLASS_NAMES)
    annotations = dict(line.split("\t") for line in pool)
    found: dict[int, list[torch.Tensor]] = {c: [] for c in range(len(sample.CLASS_NAMES))}
    for images, metas, _ in engine.batches(list(annotations), 16, 0):
        batch = engine.forward(engine.prepare(images), metas)
        dets, keep = nms.non_max_suppression(batch.decoded.float(), 0.05, 0.45, max_det=300, return_idxs=True)
        for i, (det, kept, meta) in enumerate(zip(dets, keep, metas, strict=True)):
            rows = ark_rows(annotations[meta.path])
            if not len(det) or not rows:
                continue
            scores = batch.decoded[i, 4:4 + engine.nc, kept.long().flatten()].T.float()
            boxes = to_image_frame(det[:, :4], meta)
            iou = box_iou(boxes, torch.tensor([r[1:] for r in rows], dtype=torch.float32))
            best, match = iou.max(1)
            for score, hit, j in zip(scores, best >= 0.5, match.tolist(), strict=True):
                if hit:
                    found[rows[j][0]].append(score)
    return "; ".join(
        f"boxes on {name}s: {len(found[c])}, mean score " + ", ".join(
            f"{other} {float(torch.stack(found[c])[:, k].mean()) if found[c] else float('nan'):.3f}"
            for k, other in enumerate(sample.CLASS_NAMES))
        for c, name in enumerate(sample.CLASS_NAMES))


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
    algorithm, _, draw = algorithm.partition(":")
    seed += 1000 * int(draw or 0)
    by_image = {line.split("\t")[0]: line for line in pool}
    write_candidates(root, list(by_image))
    config = {"mining_algorithm": algorithm, "img_size": img, "num_workers_per_gpu": 2, "model_params_path": [str(model)],
              "seed": seed, "diversity_budget": budget}
    run_tasks(root, ["mining"], config)
    ranked = [line.split("\t")[0] for line in (root / "out" / "result.tsv").read_text().splitlines()]
    return [by_image[p] for p in ranked[:budget]]


def sign_flip_p(gains: list[float]) -> float:
    """One-sided exact paired randomization test: the share of the 2^n sign flips of the per-seed
    gains whose mean is at least the observed one (under "no better than random" every sign is a coin toss).
    Distribution-free, so a few lucky seeds cannot pass for a normal spread."""
    n = len(gains)
    if n == 0 or n > 22:
        return float("nan")
    observed = sum(gains)
    hits = sum(1 for mask in range(1 << n)
               if sum(-g if mask >> i & 1 else g for i, g in enumerate(gains)) >= observed - 1e-12)
    return hits / (1 << n)


def report(curves: dict[str, dict[str, list[float]]], header: str, focus: str = "diversity") -> None:
    """The table: mean mAP per round, AUC (mean over rounds), and the AUC gain over random per seed,
    with its mean and standard error over the seeds both ran; then the paired comparisons (below),
    each with the exact sign-flip p-value."""
    print(f"\n{header}")
    rounds = min(len(c) for cs in curves.values() for c in cs.values()) - 1
    auc = {a: {s: statistics.mean(c[: rounds + 1]) for s, c in cs.items()} for a, cs in curves.items()}
    cols = " | ".join(f"round {r}" for r in range(rounds + 1))
    print(f"| algorithm | {cols} | AUC | vs random | seeds ahead | AUC vs random, per seed |\n|---|{'---|' * (rounds + 5)}")
    for algorithm, cs in curves.items():
        means = [statistics.mean(c[r] for c in cs.values()) for r in range(rounds + 1)]
        mean_auc = statistics.mean(auc[algorithm].values())
        row = f"| {algorithm} ({len(cs)} seeds) | " + " | ".join(f"{m:.3f}" for m in means) + f" | {mean_auc:.3f} |"
        shared = sorted(set(cs) & set(auc.get("random", {}))) if algorithm != "random" else []
        if shared:
            gains = [auc[algorithm][s] - auc["random"][s] for s in shared]
            error = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else float("nan")
            row += (f" {statistics.mean(gains):+.3f} ± {error:.3f} | {sum(g > 0 for g in gains)} of {len(gains)} | "
                    + ", ".join(f"{g:+.3f}" for g in gains) + " |")
        else:
            row += " | | |"
        print(row)
    print("\n| paired comparison of AUC | mean gain | seeds ahead | one-sided p (exact sign flip) |\n|---|---|---|---|")
    for name, a, b in paired_comparisons(auc, focus):
        gains = [a[s] - b[s] for s in sorted(set(a) & set(b))]
        if gains:
            error = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else float("nan")
            print(f"| {name} ({len(gains)} seeds) | {statistics.mean(gains):+.3f} ± {error:.3f} | "
                  f"{sum(g > 0 for g in gains)} of {len(gains)} | {sign_flip_p(gains):.4f} |")


def paired_comparisons(auc: dict[str, dict[str, float]], focus: str) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """What the significance table compares: the second random draw against the first (the noise floor:
    must come out level), every other algorithm against the mean of both draws and against ``random``
    alone, and ``focus`` (the default algorithm) against every other model-based one (the peers)."""
    out = []
    others = [a for a in auc if not a.startswith("random")]
    if "random" in auc and "random:1" in auc:
        out.append(("random:1 vs random", auc["random:1"], auc["random"]))
        both = {s: (auc["random"][s] + auc["random:1"][s]) / 2 for s in set(auc["random"]) & set(auc["random:1"])}
        out += [(f"{a} vs the mean of random and random:1", auc[a], both) for a in others]
    if "random" in auc:
        out += [(f"{a} vs random", auc[a], auc["random"]) for a in others]
    if focus in auc:
        out += [(f"{focus} vs {a}", auc[focus], auc[a]) for a in others if a != focus]
    return out


def compare_draws(seeds: range, sizes: dict[str, int], budget: int, img: int, seed_squares: float) -> None:
    """The make-up of random's and random:1's round-1 picks (the executor's own random mining, which needs
    no model), and random minus random:1 over the seeds: a check that the noise floor is two alike draws."""
    keys = ("objects", "squares", "duplicate", "hard")
    diffs: dict[str, list[int]] = {k: [] for k in keys}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            splits, kinds = build_pool(root, seed, sizes, seed_squares)
            made = []
            for algorithm in ("random", "random:1"):
                picked = mine(root, splits["pool"], root / "no-model.pt", algorithm, budget, img, seed)
                made.append({"objects": sum(len(ark_rows(line.split("\t")[1])) for line in picked),
                             "squares": sum(kinds[line][1] for line in picked),
                             "duplicate": sum(kinds[line][0] == "duplicate" for line in picked),
                             "hard": sum(kinds[line][0] == "hard" for line in picked)})
                print(f"seed {seed} {algorithm} picks: {made[-1]['objects']} objects, {composition(picked, kinds)}", flush=True)
            for k in keys:
                diffs[k].append(made[0][k] - made[1][k])
    print("random minus random:1 over seeds " + f"{seeds.start}-{seeds.stop - 1}: " + ", ".join(
        f"{k} {statistics.mean(v):+.1f} ± {statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else float('nan'):.1f}"
        for k, v in diffs.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized (2 cores: 2 minutes per seed model, 2-3 per algorithm and seed)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seed-epochs", type=int, help="train the seed model this long (quick: 40, full: 100)")
    parser.add_argument("--seed-squares", type=float, default=0.1, help="share of squares in the seed set")
    parser.add_argument("--algorithms", default="random,random:1,entropy,aldd,cald,diversity")
    parser.add_argument("--json", help="also write the raw results here (after every seed)")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="only print the table from earlier runs' --json files")
    parser.add_argument("--picks-only", action="store_true",
                        help="train the seed model, show whether it tells the classes apart, and what each algorithm "
                             "would pick (no rounds)")
    parser.add_argument("--draws-only", action="store_true",
                        help="no training: what random and random:1 pick in round 1, seed by seed (are the two draws alike?)")
    args = parser.parse_args()
    if args.report:
        curves: dict[str, dict[str, list[float]]] = {}
        for path in args.report:
            for algorithm, cs in json.loads(Path(path).read_text())["curves"].items():
                curves.setdefault(algorithm, {}).update(cs)
        report(curves, f"from {', '.join(args.report)}")
        return
    if args.quick:
        sizes = {"seed": 60, "val": 120, "scenes": 8, "duplicates": 160, "normal": 100, "hard": 60}
        budget, img, seed_epochs, round_epochs, rounds = 40, 128, 40, 15, args.rounds or 2
    else:
        sizes = {"seed": 200, "val": 500, "scenes": 20, "duplicates": 1000, "normal": 600, "hard": 400}
        budget, img, seed_epochs, round_epochs, rounds = 200, 320, 100, 40, args.rounds or 4
    seed_epochs = args.seed_epochs or seed_epochs
    algorithms = args.algorithms.split(",")
    if args.draws_only:
        compare_draws(range(args.first_seed, args.first_seed + args.seeds), sizes, budget, img, args.seed_squares)
        return
    curves = {a: {} for a in algorithms}  # algorithm -> seed -> mAP per round
    started = time.time()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            splits, kinds = build_pool(root, seed, sizes, args.seed_squares)
            map0, model0 = train(root, splits["seed"], splits["val"], None, seed_epochs, img)
            print(f"seed {seed}: seed model mAP@0.5 {map0:.3f}; the pool holds "
                  f"{composition(splits['pool'], kinds)}", flush=True)
            if args.picks_only:
                print(f"seed {seed}: seed model on the pool: {class_signal(root, splits['pool'], kinds, model0, img)}", flush=True)
                print(f"seed {seed}: seed model's class scores: {class_vectors(splits['pool'], model0, img)}", flush=True)
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
                curves[algorithm][str(seed)] = curve
        if args.json:
            Path(args.json).write_text(json.dumps({"curves": curves, "sizes": sizes, "budget": budget}, indent=1))
    if not args.picks_only:
        report(curves, f"machine: {machine()}; seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, {rounds} rounds "
                       f"of {budget} images, img {img}, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
