"""Objects of mixed sizes in large images (issues 22 and 32): whole-image vs sliced training and infer, side by side.

Data, made offline: canvases cut from the photos installed packages ship (``photos``), toned down, with
small shapes (a disc or a square, class by shape, under 2 % of the canvas side) and 1-3 large ones (9 to 45 %
of the short side: in quick mode up to twice a tile, so some are larger than any tile) drawn on them; train,
validation and test splits, as a YMIR task's /in.

Arms, each trained with the executor's training task and scored on the test canvases:
  (a) whole-image training and infer at ``img_size`` (slice_size 0), the same epochs as (b);
  (a+) the same with as many training images seen as (b) sees (its epochs times the ratio of (b)'s training
      list, tiles included, to (a)'s): whole-image training at equal compute, the strongest (a), and the
      reference both targets are measured against;
  (b) sliced training and sliced infer (slice_size = img_size, the template's overlap and whole-image pass);
  (b0) (b)'s model with whole-image infer: slicing turned off at infer for the same model;
  (a+s) (a+)'s model with sliced infer: slicing turned on at infer for a model trained on whole images;
  (c) Ultralytics' own predictor on (b)'s model through SAHI's ``get_sliced_prediction`` (same tiles,
      standard whole-image pass, GREEDYNMM / IOS 0.5: SAHI's defaults), for reference.
Positive control: (a+) must find the large objects (mAP@0.5 on them >= CONTROL), or the recipe is broken
and (b) beating (a) would mean nothing.

Scores: mAP@0.5 on the small objects (labels under 2 % of the side; predictions under 3 % of it, so a
large box is not a false positive for the small ones), on the large ones (labels over 5 %, predictions
over 3 %) and, among those, on the ones larger than a tile, with ``executor.evaluate``'s matching
(Ultralytics' validator's) and AP integration, from infer-result.json at conf 0.001. Time per image: the infer
task at the template's conf (model load and worker start included) against SAHI's loop (model load
included), one after the other in this process.

Targets (issue 32): with slicing, small objects >= 2x and large objects >= 0.95x the whole-image mAP@0.5,
read for one model sliced and not ((b) over (b0), (a+s) over (a+)) and across training ((b) over (a+)).

``--speed-only``: the full mode's canvases and sizes (2448x1836 at 640 px, 640 px tiles), infer speed only,
which fits a CPU: a model trained for 2 epochs on 4 canvases (too weak to score, and it makes few boxes,
so post-processing weighs less than with a trained model in every arm), then per test canvas the infer
task whole-image (a) and sliced (b), and SAHI's loop over Ultralytics' predictor (c), at conf 0.25.

``--arms whole`` trains and scores (a) and (a+) only (their code path has no slicing); ``--arms sliced
--reuse THAT.json`` then runs (b), (b0), (a+s) and (c) on the same data, taking (a+)'s model from ``--models``.

Usage: python bench/small_objects.py [--quick | --speed-only] [--arms all|whole|sliced] [--reuse FILE] [--device cpu|0]
[--json FILE]
(--quick: CPU-sized, 960x720 canvases, 160 px; the full mode is 4.5 MP canvases at 640 px, for a GPU.)
Needs ``sahi`` (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import photos
from common import commit, machine, run_tasks
from PIL import Image, ImageDraw

CONTROL = 0.3  # (a+)'s mAP@0.5 on the large objects must reach this for the run to judge
SMALL, PRED_SMALL, LARGE = 0.02, 0.03, 0.05  # of the canvas side: label and prediction size ranges
LARGE_SIDE = (0.09, 0.45)  # large shapes, as shares of the canvas's short side: up to 2x a quick-mode tile
LARGE_TARGET = 0.95  # (b)'s large-object mAP@0.5 over (a+)'s
NAMES = ["disc", "square"]


def canvas(rng: random.Random, backgrounds: list[np.ndarray], width: int, height: int, small: tuple[int, int],
           n_small: int, n_large: int) -> tuple[Image.Image, list[tuple[int, int, int, int, int]]]:
    """A toned-down photo crop with shapes drawn on it; boxes as (class, x1, y1, x2, y2)."""
    photo = backgrounds[rng.randrange(len(backgrounds))]
    image = Image.fromarray(photo).resize((width, height), Image.BILINEAR)
    image = Image.blend(image, Image.new("RGB", image.size, (128, 128, 128)), 0.5)
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[int, int, int, int, int]] = []
    side = min(width, height)
    large = [rng.randint(int(LARGE_SIDE[0] * side), int(LARGE_SIDE[1] * side)) for _ in range(n_large)]
    sizes = sorted(large, reverse=True) + [rng.randint(*small) for _ in range(n_small)]  # the large ones placed first
    for size in sizes:
        for _ in range(50):  # no overlaps between shapes
            x, y = rng.randint(0, width - size - 1), rng.randint(0, height - size - 1)
            if all(x + size < b[1] or b[3] < x or y + size < b[2] or b[4] < y for b in boxes):
                break
        else:
            continue
        cls = rng.randrange(2)
        colour = tuple(rng.choice([(255, 40, 40), (40, 220, 40), (60, 60, 255), (255, 230, 0), (255, 255, 255)]))
        (draw.ellipse if cls == 0 else draw.rectangle)([x, y, x + size, y + size], fill=colour, outline=(0, 0, 0))
        boxes.append((cls, x, y, x + size + 1, y + size + 1))
    return image, boxes


def make_task(root: Path, counts: dict[str, int], width: int, height: int, small: tuple[int, int], seed: int) -> dict:
    """/in under ``root`` (ark annotations); returns the test split's labels by path."""
    rng = random.Random(seed)
    backgrounds = [np.asarray(Image.open(p).convert("RGB")) for p in photos.sources()]
    (root / "in" / "models").mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, count in counts.items():
        lines = []
        for i in range(count):
            image, boxes = canvas(rng, backgrounds, width, height, small, rng.randint(12, 24), rng.randint(1, 3))
            path = root / "in" / "assets" / f"{split}-{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, quality=92)
            note = root / "in" / "annotations" / f"{split}-{i:04d}.txt"
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text("".join(f"{c},{x1},{y1},{x2},{y2}\n" for c, x1, y1, x2, y2 in boxes))
            lines.append(f"{path}\t{note}" if split != "test" else str(path))
            if split == "test":
                truth[str(path)] = boxes
        name = {"train": "train-index.tsv", "val": "val-index.tsv", "test": "candidate-index.tsv"}[split]
        (root / "in" / name).write_text("\n".join(lines) + "\n")
    return truth


def scores(predictions: dict[str, list[list[float]]], truth: dict[str, list], width: int, height: int,
           tile: int) -> dict[str, float]:
    """mAP@0.5 on the small and on the large objects (see the module's docstring), and on the large ones whose
    longer side exceeds a tile (``tile`` px): those no tile sees whole."""
    import torch
    from executor import evaluate

    side = min(width, height)
    out = {}
    for name, label_ok, pred_ok in (("small", lambda s: s < SMALL * side, lambda s: s < PRED_SMALL * side),
                                    ("large", lambda s: s >= LARGE * side, lambda s: s >= PRED_SMALL * side),
                                    ("over_tile", lambda s: s > tile, lambda s: s >= PRED_SMALL * side)):
        out[name] = evaluate.map50(
            (torch.tensor([p for p in predictions.get(path, []) if pred_ok(max(p[2] - p[0], p[3] - p[1]))],
                          dtype=torch.float32).reshape(-1, 6),
             torch.tensor([b for b in boxes if label_ok(max(b[3] - b[1], b[4] - b[2]))], dtype=torch.float32).reshape(-1, 5))
            for path, boxes in truth.items())
    return out


def infer_predictions(root: Path, truth: dict) -> dict[str, list[list[float]]]:
    data = json.loads((root / "out" / "infer-result.json").read_text())["detection"]
    by_name = {Path(p).name: p for p in truth}
    out = {}
    for name, entry in data.items():
        out[by_name[name]] = [[b["box"]["x"], b["box"]["y"], b["box"]["x"] + b["box"]["w"], b["box"]["y"] + b["box"]["h"],
                               b["score"], NAMES.index(b["class_name"])] for b in entry["boxes"]]
    return out


def sahi_arm(model: Path, truth: dict, size: int, overlap: float, img_size: int, device: str,
             score: bool = True) -> tuple[dict, float]:
    """Arm (c): Ultralytics' predictor through SAHI, conf 0.001 for the scores (unless not ``score``); and seconds
    per image at the template's conf (model load included)."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    def run(conf: float) -> tuple[dict, float]:
        start = time.perf_counter()
        detector = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(model), confidence_threshold=conf,
                                                      device="cpu" if device == "cpu" else f"cuda:{device}", image_size=img_size)
        out = {}
        for path in truth:
            result = get_sliced_prediction(path, detector, slice_height=size, slice_width=size, overlap_height_ratio=overlap,
                                           overlap_width_ratio=overlap, verbose=0,
                                           force_postprocess_type=True)  # keep GREEDYNMM/IOS at a low conf too
            out[path] = [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in result.object_prediction_list]
        return out, (time.perf_counter() - start) / len(truth)

    predictions, _ = run(0.001) if score else ({}, 0.0)
    _, seconds = run(0.25)
    return predictions, seconds


def speed_only(args: argparse.Namespace) -> None:
    """Infer time per image at the full mode's sizes: (a) whole image, (b) sliced, (c) SAHI (see the docstring)."""
    from executor import protocol

    width, height, small, img_size = 2448, 1836, (16, 40), 640
    overlap = float(protocol.load_template("infer")["slice_overlap"])
    gpu = "" if args.device == "cpu" else args.device
    results: dict = {"machine": machine(), "canvas": [width, height], "img_size": img_size, "slice_size": img_size,
                     "slice_overlap": overlap, "speed_only": True}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = make_task(root, {"train": 4, "val": 2, "test": 12}, width, height, small, args.seed)
        run_tasks(root, ["training"], {"model": "yolo11n", "epochs": 2, "img_size": img_size, "batch_size_per_gpu": 16,
                                       "num_workers_per_gpu": 2, "save_period": 0, "export_format": "ark:raw",
                                       "gpu_id": gpu, "gpu_count": 1 if gpu else 0, "class_names": NAMES,
                                       "slice_size": img_size, "slice_overlap": overlap})
        model = root / "model.pt"
        shutil.copyfile(root / "out" / "models" / "best.pt", model)
        infer = {"img_size": img_size, "conf_thres": 0.25, "num_workers_per_gpu": 2, "gpu_id": gpu, "class_names": NAMES,
                 "gpu_count": 1 if gpu else 0, "model_params_path": [str(model)]}
        runs: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for round_ in range(args.repeats):  # the arms alternated, round by round: a drifting machine moves them alike
            for arm, slice_size in (("a", 0), ("b", img_size)):
                runs[arm].append(run_tasks(root, ["infer"], {**infer, "slice_size": slice_size}) / len(truth))
                print(f"arm ({arm}) slice_size {slice_size}, round {round_ + 1}: infer {runs[arm][-1]:.3f} s/image",
                      flush=True)
            runs["c"].append(sahi_arm(model, truth, img_size, overlap, img_size, args.device, score=False)[1])
            print(f"arm (c) SAHI, round {round_ + 1}: infer {runs['c'][-1]:.3f} s/image", flush=True)
    for arm, seconds in runs.items():
        results[arm] = {"infer_seconds_per_image": statistics.median(seconds), "runs": seconds}
    a, b, c = (results[k]["infer_seconds_per_image"] for k in ("a", "b", "c"))
    results["speed_b_over_c"], results["cost_b_over_a"] = c / b, b / a
    results["speed_b_over_c_per_round"] = [y / x for x, y in zip(runs["b"], runs["c"], strict=True)]
    results["commit"] = commit()
    print(f"\nmachine: {machine()}; 12 canvases of {width}x{height}, {img_size} px, tiles of {img_size} px, medians of "
          f"{args.repeats} alternated rounds: (b) runs {c / b:.2f}x (c)'s speed (target >= 1x; per round "
          f"{min(results['speed_b_over_c_per_round']):.2f}x-{max(results['speed_b_over_c_per_round']):.2f}x) and "
          f"costs {b / a:.1f}x (a)'s time")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def sliced_list_length(root: Path, slice_size: int, overlap: float) -> int:
    """How many images sliced training trains on per epoch (whole canvases and their tiles), from the conversion
    the training task runs: what (a+)'s epochs are scaled by, known before any arm trains."""
    from executor import dataset, slicing

    with tempfile.TemporaryDirectory() as tmp:
        dataset.convert(str(root / "in" / "train-index.tsv"), str(root / "in" / "val-index.tsv"), Path(tmp), "ark:raw",
                        NAMES, slicing.SliceSettings(slice_size, overlap, True))
        return len((Path(tmp) / "train.txt").read_text().split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized (about 25 minutes per seed on 2 cores)")
    parser.add_argument("--speed-only", action="store_true", help="infer speed at the full sizes (see above)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train", type=int)
    parser.add_argument("--sliced-epochs", type=int, help="(b)'s epochs, when not --epochs (a pilot at another compute)")
    parser.add_argument("--score-only", action="store_true", help="--arms sliced: (b)'s model from --models, not trained again")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="--speed-only: alternated rounds of the three arms")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--arms", choices=("all", "whole", "sliced"), default="all",
                        help="whole: (a) and (a+) only; sliced: (b), (b0), (a+s) and (c), with (a) and (a+) from --reuse")
    parser.add_argument("--models", help="keep the arms' models here (default: BENCH_CACHE or the temp dir)")
    parser.add_argument("--reuse", help="take arms (a) and (a+) from this JSON of an earlier run with the same data and "
                        "settings (their training and infer do not touch the slicing code), (a+)'s model from --models")
    args = parser.parse_args()
    if args.speed_only:
        speed_only(args)
        return
    if args.quick:
        width, height, small, img_size, counts, epochs = 960, 720, (10, 16), 160, {"train": 12, "val": 4, "test": 12}, 30
    else:
        width, height, small, img_size, counts, epochs = 2448, 1836, (16, 40), 640, {"train": 60, "val": 12, "test": 40}, 60
    counts["train"] = args.train or counts["train"]
    epochs = args.epochs or epochs
    gpu = "" if args.device == "cpu" else args.device
    recipe = {"model": "yolo11n", "epochs": epochs, "img_size": img_size, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2,
              "optimizer": "AdamW", "lr0": 0.002, "mosaic": 0.0, "save_period": 0, "patience": 0,
              "export_format": "ark:raw", "gpu_id": gpu, "gpu_count": 1 if gpu else 0, "class_names": NAMES}
    from executor import protocol

    overlap = float(protocol.load_template("infer")["slice_overlap"])
    models = Path(args.models or Path(os.environ.get("BENCH_CACHE") or tempfile.gettempdir()) / "small-objects")
    models = models / f"{width}x{height}-seed-{args.seed}"
    models.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "commit": commit(), "canvas": [width, height], "small_px": list(small),
                     "large_side": list(LARGE_SIDE), "img_size": img_size, "counts": counts, "epochs": epochs,
                     "seed": args.seed, "slice_size": img_size, "slice_overlap": overlap}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = make_task(root, counts, width, height, small, args.seed)
        results["sliced_training_images"] = sliced_list_length(root, img_size, overlap)
        plus_epochs = round(epochs * results["sliced_training_images"] / counts["train"])
        if args.reuse:
            earlier = json.loads(Path(args.reuse).read_text())
            same = ("canvas", "small_px", "large_side", "img_size", "counts", "epochs", "seed", "slice_overlap")
            if any(earlier.get(k) != results[k] for k in same):
                raise SystemExit(f"--reuse {args.reuse}: another setting ({', '.join(same)} must match)")
            results.update({"a": earlier["a"], "a+": earlier["a+"], "reused": args.reuse,
                            "reused_commit": earlier.get("commit")})
        infer = {"img_size": img_size, "num_workers_per_gpu": 2, "gpu_id": gpu, "class_names": NAMES,
                 "gpu_count": 1 if gpu else 0}

        def score(arm: str, model: Path, slice_size: int) -> dict:
            run_tasks(root, ["infer"], {**infer, "conf_thres": 0.001, "model_params_path": [str(model)], "slice_size": slice_size})
            found = scores(infer_predictions(root, truth), truth, width, height, img_size)
            seconds = run_tasks(root, ["infer"], {**infer, "conf_thres": 0.25, "model_params_path": [str(model)],
                                                  "slice_size": slice_size}) / len(truth)
            print(f"arm ({arm}) infer slice_size {slice_size}: mAP@0.5 small {found['small']:.4f}, large {found['large']:.4f} "
                  f"(larger than a tile {found['over_tile']:.4f}); infer {seconds:.3f} s/image", flush=True)
            return {**found, "infer_seconds_per_image": seconds}

        trained = (("a", 0, epochs), ("a+", 0, plus_epochs)) if args.arms in ("all", "whole") else ()
        if args.arms in ("all", "sliced"):
            if args.score_only:
                results["b"] = {**score("b", models / "model-b.pt", img_size), "trained_earlier": True}
            else:
                trained += (("b", img_size, args.sliced_epochs or epochs),)
        for arm, slice_size, arm_epochs in trained:
            began = time.perf_counter()
            run_tasks(root, ["training"], {**recipe, "epochs": arm_epochs, "slice_size": slice_size, "slice_overlap": overlap})
            listed = len((root / "out" / "yolo-dataset" / "train.txt").read_text().split())
            shutil.copyfile(root / "out" / "models" / "best.pt", models / f"model-{arm}.pt")
            train_seconds = time.perf_counter() - began
            print(f"arm ({arm}): {arm_epochs} epochs of {listed} images, {train_seconds:.0f} s", flush=True)
            results[arm] = {**score(arm, models / f"model-{arm}.pt", slice_size), "training_seconds": train_seconds,
                            "epochs": arm_epochs, "training_images": listed}
        if args.arms in ("all", "sliced"):
            results["b0"] = score("b0", models / "model-b.pt", 0)  # (b)'s model, infer whole: slicing off for that model
            results["a+s"] = score("a+s", models / "model-a+.pt", img_size)  # (a+)'s model, infer sliced: the merge alone
            predictions, seconds = sahi_arm(models / "model-b.pt", truth, img_size, overlap, img_size, args.device)
            results["c"] = {**scores(predictions, truth, width, height, img_size), "infer_seconds_per_image": seconds}
            print(f"arm (c) SAHI on (b)'s model: mAP@0.5 small {results['c']['small']:.4f}, large {results['c']['large']:.4f}; "
                  f"infer {seconds:.3f} s/image", flush=True)
    if args.arms == "whole":
        report(results, whole_only=True)
    else:
        report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def report(results: dict, whole_only: bool = False) -> None:
    """The run's table and verdicts, from its results (also what the JSON holds)."""
    strong = results["a+"]
    results["control_passed"] = strong["large"] >= CONTROL
    print(f"\nmachine: {results['machine']}; commit {results['commit']}; {results['counts']} canvases of "
          f"{results['canvas'][0]}x{results['canvas'][1]}, small objects {results['small_px']} px, large "
          f"{results['large_side']} of the side, {results['img_size']} px, {results['epochs']} epochs, seed {results['seed']}")
    rows = [("(a) whole image, equal epochs", "a"), ("(a+) whole image, equal compute (control)", "a+"),
            ("(b) sliced training + sliced infer", "b"), ("(b0) (b)'s model, whole-image infer", "b0"),
            ("(a+s) (a+)'s model, sliced infer", "a+s"),
            ("(c) SAHI + Ultralytics on (b)'s model", "c")]
    print("| arm | mAP@0.5 small | mAP@0.5 large | of which larger than a tile | infer s/image |\n| --- | --- | --- | --- | --- |")
    for name, key in rows:
        if key in results:
            row = results[key]
            print(f"| {name} | {row['small']:.4f} | {row['large']:.4f} | {row.get('over_tile', float('nan')):.4f} | "
                  f"{row['infer_seconds_per_image']:.3f} |")
    print(f"control ((a+) finds large objects, mAP >= {CONTROL}): "
          f"{'PASS' if results['control_passed'] else 'FAIL: the run cannot judge'}")
    if whole_only:
        return
    b, c, b0, plus_s = results["b"], results["c"], results["b0"], results["a+s"]
    results["speed_b_over_c"] = c["infer_seconds_per_image"] / b["infer_seconds_per_image"]
    targets = {}
    for name, sliced, whole in (("b_over_b0", b, b0), ("a+s_over_a+", plus_s, strong), ("b_over_a+", b, strong)):
        results[f"small_ratio_{name}"] = ratio(sliced["small"], whole["small"])
        results[f"large_ratio_{name}"] = ratio(sliced["large"], whole["large"])
        targets[name] = {"small": sliced["small"] > 0 and sliced["small"] >= 2 * whole["small"],
                         "large": whole["large"] > 0 and sliced["large"] >= LARGE_TARGET * whole["large"]}
    results["targets_met"] = targets

    def show(value: float | None) -> str:
        return "inf" if value is None else f"{value:.2f}x"

    for name, label in (("b_over_b0", "(b) over (b0), one model sliced and not"),
                        ("a+s_over_a+", "(a+s) over (a+), one model sliced and not"),
                        ("b_over_a+", "(b) over (a+), sliced training and infer against whole-image at equal compute")):
        met = targets[name]
        print(f"{label}: small objects {show(results[f'small_ratio_{name}'])} (target >= 2x: "
              f"{'met' if met['small'] else 'NOT met'}), large objects {show(results[f'large_ratio_{name}'])} "
              f"(target >= {LARGE_TARGET}x: {'met' if met['large'] else 'NOT met'})")
    print(f"(b) speed vs (c): {results['speed_b_over_c']:.2f}x")


if __name__ == "__main__":
    main()
