"""Slicing over the grid users meet (issue 42, item 2): image sizes spanning 4x in side, crossed with object-size
bands, each cell scored for whole-image infer, tiles only and the default slicing, on one sliced model.

Scaled down 4x from 3000-12000 px photos at 640 so that it runs on 2 cores: ``img_size`` = ``slice_size`` = 160
(the template's overlap 0.2: 32 px), images of 750x562, 1500x1125 and 3000x2250. There the whole-image pass shrinks
an image 4.7x, 9.4x and 18.75x, as at 640 it shrinks 3000 to 12000 px photos. Bands of object side (pixels):

- ``under_overlap`` 14-28: under the overlap, whole in some tile wherever it lies;
- ``overlap_window`` 36-144: from the overlap to the window, whole in a tile or cut by every tile;
- ``window_whole`` 176 px to what the whole-image pass sees well, taken as ``BAND_INPUT_PX`` pixels of its input
  (300 and 600 px at 1500 and 3000 px), or to 240 px at 750 px, where there is no such gap: never whole in a tile;
- ``large``: from there (at least 280 px) to 80 % of the short side.
The bands are the benchmark's, fixed: they do not move with ``slicing.WHOLE_MIN``, the rule under test.

Data, made offline (``small_objects``' way): toned-down photo crops with discs and squares (class by shape), per
image 6 / 4 / 2 / 1 objects of the four bands, no overlaps; train 4, val 1 and test ``--test`` images per size.
One model per seed: the training task with the templates' slicing (tiles and the whole view) on all three sizes.
Arms, each the infer task at conf 0.001 on the same model: ``whole`` (slice_size 0), ``tiles`` (slice_whole_image
false), ``default`` (the templates: tiles and the whole image). Per cell: AP@0.5 on the band's labels, with the
predictions of that band's size (a third either side) that match no other band's label (IoU 0.5), by
``executor.evaluate``'s matching and AP. Also the infer task's seconds per image of each arm at conf 0.25.

Target: in every cell the default >= 0.9x the better of the other two. Control (per seed, before any target is
read): the model finds what each pass is for, ``tiles`` on ``under_overlap`` and ``whole`` on ``large`` at the
smallest size, both AP@0.5 >= 0.3. Thresholds are chosen on seed 100 (``--pilot``), never reported.

Usage: python bench/slicing_grid.py --seed S [--epochs 30] [--test 6] [--whole-min PX ...] [--json NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import photos
from common import run_tasks, save_result
from PIL import Image, ImageDraw

IMG_SIZE = 160
SIZES = {"750": (750, 562), "1500": (1500, 1125), "3000": (3000, 2250)}
PER_IMAGE = {"under_overlap": 6, "overlap_window": 4, "window_whole": 2, "large": 1}
NAMES = ["disc", "square"]
BAND_INPUT_PX = 32  # the band edge "what the whole pass sees well", in pixels of its input (COCO's small/medium line)
CONTROL = 0.3
TARGET = 0.9
ARMS = {"whole": {"slice_size": 0}, "tiles": {"slice_size": IMG_SIZE, "slice_whole_image": False},
        "default": {"slice_size": IMG_SIZE, "slice_whole_image": True}}


def bands(width: int, height: int, whole_min: float) -> dict[str, tuple[int, int]]:
    """The four bands of object side, in pixels, for a ``width x height`` image (see the docstring)."""
    gap_end = max(240, int(whole_min * max(width, height) / IMG_SIZE))
    large_lo = max(280, gap_end)
    return {"under_overlap": (14, 28), "overlap_window": (36, 144), "window_whole": (176, gap_end - 1),
            "large": (large_lo, max(large_lo + 1, int(0.8 * min(width, height))))}


def canvas(rng: random.Random, backgrounds: list[np.ndarray], width: int, height: int, whole_min: float):
    photo = backgrounds[rng.randrange(len(backgrounds))]
    image = Image.fromarray(photo).resize((width, height), Image.BILINEAR)
    image = Image.blend(image, Image.new("RGB", image.size, (128, 128, 128)), 0.5)
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[int, int, int, int, int]] = []
    sizes = []
    for band, (lo, hi) in bands(width, height, whole_min).items():
        sizes += [rng.randint(lo, hi) for _ in range(PER_IMAGE[band])]
    for size in sorted(sizes, reverse=True):  # the large ones placed first
        for _ in range(100):
            x, y = rng.randint(0, width - size - 1), rng.randint(0, height - size - 1)
            if all(x + size < b[1] - 4 or b[3] + 4 < x or y + size < b[2] - 4 or b[4] + 4 < y for b in boxes):
                break
        else:
            continue
        cls = rng.randrange(2)
        colour = tuple(rng.choice([(255, 40, 40), (40, 220, 40), (60, 60, 255), (255, 230, 0), (255, 255, 255)]))
        outline = max(1, size // 40)
        (draw.ellipse if cls == 0 else draw.rectangle)([x, y, x + size, y + size], fill=colour, outline=(0, 0, 0),
                                                       width=outline)
        boxes.append((cls, x, y, x + size + 1, y + size + 1))
    return image, boxes


def make_task(root: Path, seed: int, test: int, whole_min: float) -> dict[str, dict]:
    """/in under ``root``; returns the test labels by path, grouped by size."""
    rng = random.Random(seed)
    backgrounds = [np.asarray(Image.open(p).convert("RGB")) for p in photos.sources()]
    (root / "in" / "models").mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {label: {} for label in SIZES}
    for split, count in (("train", 4), ("val", 1), ("test", test)):
        lines = []
        for label, (width, height) in SIZES.items():
            for i in range(count):
                image, boxes = canvas(rng, backgrounds, width, height, whole_min)
                path = root / "in" / "assets" / f"{split}-{label}-{i:03d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path, quality=92)
                note = root / "in" / "annotations" / f"{split}-{label}-{i:03d}.txt"
                note.parent.mkdir(parents=True, exist_ok=True)
                note.write_text("".join(f"{c},{x1},{y1},{x2},{y2}\n" for c, x1, y1, x2, y2 in boxes))
                lines.append(f"{path}\t{note}" if split != "test" else str(path))
                if split == "test":
                    truth[label][str(path)] = boxes
        name = {"train": "train-index.tsv", "val": "val-index.tsv", "test": "candidate-index.tsv"}[split]
        (root / "in" / name).write_text("\n".join(lines) + "\n")
    return truth


def predictions(root: Path) -> dict[str, list[list[float]]]:
    data = json.loads((root / "out" / "infer-result.json").read_text())["detection"]
    return {name: [[b["box"]["x"], b["box"]["y"], b["box"]["x"] + b["box"]["w"], b["box"]["y"] + b["box"]["h"], b["score"],
                    NAMES.index(b["class_name"])] for b in entry["boxes"]] for name, entry in data.items()}


def cell_ap(found: dict[str, list[list[float]]], truth: dict[str, list], band: tuple[int, int],
            others: list[tuple[int, int]]) -> float:
    """AP@0.5 on the labels of ``band`` (see the docstring), over the images of one size."""
    import torch
    from executor import evaluate
    from torchvision.ops import box_iou

    lo, hi = band
    pairs = []
    for path, boxes in truth.items():
        side = [max(b[3] - b[1], b[4] - b[2]) for b in boxes]
        labels = torch.tensor([b for b, s in zip(boxes, side, strict=True) if lo <= s - 1 <= hi], dtype=torch.float32).reshape(-1, 5)
        other = torch.tensor([b for b, s in zip(boxes, side, strict=True) if not lo <= s - 1 <= hi], dtype=torch.float32).reshape(-1, 5)
        pred = torch.tensor([p for p in found.get(Path(path).name, [])
                             if lo / 1.33 <= max(p[2] - p[0], p[3] - p[1]) <= hi * 1.33], dtype=torch.float32).reshape(-1, 6)
        if len(pred) and len(other):
            pred = pred[~(box_iou(pred[:, :4], other[:, 1:5]) >= 0.5).any(1)]
        pairs.append((pred, labels))
    return evaluate.map50(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--test", type=int, default=6, help="test images per size")
    parser.add_argument("--whole-min", type=float, nargs="*", help="(the pilot) score the default at these "
                        "slicing.WHOLE_MIN values too, as arms 'default@PX'")
    parser.add_argument("--models", help="keep the model here (default: BENCH_CACHE or the temp dir)")
    parser.add_argument("--json", help="raw result name (bench/results/NAME.json)")
    args = parser.parse_args()
    from executor import protocol, slicing

    template = protocol.load_template("training")
    overlap = float(template["slice_overlap"])
    models = Path(args.models or Path(os.environ.get("BENCH_CACHE") or tempfile.gettempdir()) / "slicing-grid")
    models.mkdir(parents=True, exist_ok=True)
    results: dict = {"seed": args.seed, "img_size": IMG_SIZE, "slice_size": IMG_SIZE, "slice_overlap": overlap,
                     "sizes": SIZES, "per_image": PER_IMAGE, "epochs": args.epochs, "test_per_size": args.test,
                     "whole_min": slicing.WHOLE_MIN}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = make_task(root, args.seed, args.test, BAND_INPUT_PX)
        results["bands"] = {label: bands(w, h, BAND_INPUT_PX) for label, (w, h) in SIZES.items()}
        results["labels"] = {label: {band: sum(lo <= max(b[3] - b[1], b[4] - b[2]) - 1 <= hi for boxes in truth[label].values()
                                               for b in boxes) for band, (lo, hi) in results["bands"][label].items()}
                             for label in SIZES}
        model = models / f"model-seed-{args.seed}-{args.epochs}ep.pt"
        if not model.exists():
            began = time.perf_counter()
            run_tasks(root, ["training"], {"model": "yolo11n", "epochs": args.epochs, "img_size": IMG_SIZE,
                                           "batch_size_per_gpu": 16, "num_workers_per_gpu": 2, "optimizer": "AdamW",
                                           "lr0": 0.002, "mosaic": 0.0, "save_period": 0, "patience": 0,
                                           "export_format": "ark:raw", "gpu_id": "", "gpu_count": 0, "class_names": NAMES,
                                           "slice_size": IMG_SIZE, "slice_overlap": overlap, "seed": args.seed})
            results["training_seconds"] = time.perf_counter() - began
            results["training_entries"] = len((root / "out" / "yolo-dataset" / "train.txt").read_text().split())
            shutil.copyfile(root / "out" / "models" / "best.pt", model)
            print(f"trained in {results['training_seconds']:.0f} s on {results['training_entries']} entries per epoch", flush=True)
        infer = {"img_size": IMG_SIZE, "num_workers_per_gpu": 2, "gpu_id": "", "gpu_count": 0, "class_names": NAMES,
                 "model_params_path": [str(model)], "slice_overlap": overlap}
        arms = dict(ARMS)
        for value in args.whole_min or []:
            arms[f"default@{value:g}"] = {**ARMS["default"], "whole_min": value}
        saved_min = slicing.WHOLE_MIN
        results["arms"] = {}
        for arm, settings in arms.items():
            settings = dict(settings)
            slicing.WHOLE_MIN = settings.pop("whole_min", saved_min)  # the constant the production merge reads
            try:
                run_tasks(root, ["infer"], {**infer, **settings, "conf_thres": 0.001})
                found = predictions(root)
                seconds = run_tasks(root, ["infer"], {**infer, **settings, "conf_thres": 0.25}) / sum(map(len, truth.values()))
            finally:
                slicing.WHOLE_MIN = saved_min
            cells = {}
            for label in SIZES:
                table = results["bands"][label]
                cells[label] = {band: cell_ap(found, truth[label], table[band], [r for b, r in table.items() if b != band])
                                for band in table}
            results["arms"][arm] = {"ap50": cells, "infer_seconds_per_image": seconds}
            print(f"{arm}: " + "; ".join(f"{label}: " + ", ".join(f"{b} {v:.3f}" for b, v in cells[label].items())
                                         for label in SIZES) + f"; {seconds:.2f} s/image", flush=True)
    report(results)
    if args.json:
        save_result(args.json, results)


def report(results: dict) -> None:
    arms = results["arms"]
    control = {"tiles_under_overlap_750": arms["tiles"]["ap50"]["750"]["under_overlap"],
               "whole_large_750": arms["whole"]["ap50"]["750"]["large"]}
    results["control"] = control
    results["control_passed"] = all(v >= CONTROL for v in control.values())
    print(f"\nseed {results['seed']}, {results['epochs']} epochs, {results['test_per_size']} test images per size; control "
          f"(tiles on the smallest, whole on the large, >= {CONTROL}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in control.items()) + (" PASS" if results["control_passed"] else " FAIL"))
    defaults = [arm for arm in arms if arm.startswith("default")]
    print("| size | band | labels | whole | tiles | " + " | ".join(defaults) + " |\n| --- " * (5 + len(defaults)) + "|")
    results["cells"] = {}
    for label in SIZES:
        for band in results["bands"][label]:
            best = max(arms["whole"]["ap50"][label][band], arms["tiles"]["ap50"][label][band])
            row = {arm: arms[arm]["ap50"][label][band] for arm in arms}
            met = {arm: row[arm] >= TARGET * best for arm in defaults}
            results["cells"][f"{label}/{band}"] = {"best_other": best, "ratio": {arm: (row[arm] / best if best > 0 else None)
                                                                              for arm in defaults}, "met": met}
            print(f"| {label} | {band} | {results['labels'][label][band]} | {row['whole']:.3f} | {row['tiles']:.3f} | "
                  + " | ".join(f"{row[a]:.3f}{'' if met[a] else ' (NOT met)'}" for a in defaults) + " |")
    results["target_met"] = {arm: all(cell["met"][arm] for cell in results["cells"].values()) for arm in defaults}
    print("target (default >= 0.9x the better of whole and tiles in every cell): "
          + ", ".join(f"{arm} {'met' if ok else 'NOT met'}" for arm, ok in results["target_met"].items()))
    print("infer s/image at conf 0.25: " + ", ".join(f"{arm} {arms[arm]['infer_seconds_per_image']:.2f}" for arm in arms))


if __name__ == "__main__":
    main()
