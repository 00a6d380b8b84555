"""Sliced training's data loading per epoch at 12 MP and 48 MP (issue 42, item 3): the whole views of a tiled image
as the conversion's copy shrunk to ``img_size`` (now) against the full photo listed as often (before).

Data, made offline: photos of 4000x3000 (12 MP) and 8000x6000 (48 MP) upscaled from the ones installed packages
ship (``photos.sources``) with camera-like noise, each with 12 boxes; converted once by ``dataset.convert`` with
the templates' slicing (``slice_size`` = ``img_size`` = 640, overlap 0.2, whole image on). Arms, one training
list each, over the same files: (after) the list conversion writes, whole views are the copy; (before) the same
list with every copy entry replaced by the photo's link (same labels), as conversion listed it until now.
Loading time: one pass over the list through Ultralytics' own training dataset (``YOLODataset``, the template's
augmentation, mosaic included), in this process, arms alternated over ``--repeats`` rounds.

Usage: python bench/whole_views.py [--images 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import photos
from common import save_result
from PIL import Image

SIZES = {"12MP": (4000, 3000), "48MP": (8000, 6000)}
IMG_SIZE = 640


def make_photo(path: Path, width: int, height: int, seed: int) -> list[tuple[int, float, float, float, float]]:
    rng = np.random.default_rng(seed)
    sources = photos.sources()
    with Image.open(sources[seed % len(sources)]) as im:
        image = np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR)).astype(np.int16)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=90)
    boxes = []
    for _ in range(12):
        side = int(rng.integers(40, 400))
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        boxes.append((int(rng.integers(0, 2)), x, y, x + side, y + side))
    return boxes


def load_epoch(list_file: Path, data: dict) -> float:
    """Seconds to load every entry of ``list_file`` once as Ultralytics' training dataset does."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import YOLODataset

    hyp = get_cfg(overrides={k: v for k, v in TEMPLATE.items() if k in AUGMENTATION})
    dataset = YOLODataset(img_path=str(list_file), imgsz=IMG_SIZE, augment=True, hyp=hyp, cache=False, data=data,
                          batch_size=16, stride=32, task="detect")
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


AUGMENTATION = ("mosaic", "mixup", "fliplr", "flipud", "degrees", "scale", "hsv_h", "hsv_s", "hsv_v")
TEMPLATE: dict = {}


def main() -> None:
    from executor import dataset, protocol, slicing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2, help="photos per size")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    TEMPLATE.update(protocol.load_template("training"))
    slices = slicing.SliceSettings(IMG_SIZE, float(TEMPLATE["slice_overlap"]), bool(TEMPLATE["slice_whole_image"]))
    results: dict = {"img_size": IMG_SIZE, "slice_size": slices.size, "slice_overlap": slices.overlap,
                     "images_per_size": args.images, "repeats": args.repeats, "sizes": {}}
    for label, (width, height) in SIZES.items():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            lines = []
            for k in range(args.images):
                image = root / "in" / f"{label}-{k}.jpg"
                image.parent.mkdir(parents=True, exist_ok=True)
                boxes = make_photo(image, width, height, k)
                note = image.with_suffix(".txt")
                note.write_text("".join(f"{c},{x1},{y1},{x2},{y2}\n" for c, x1, y1, x2, y2 in boxes))
                lines.append(f"{image}\t{note}")
            index = root / "index.tsv"
            index.write_text("\n".join(lines) + "\n")
            started = time.perf_counter()
            dataset.convert(str(index), str(index), root / "yolo", "ark:raw", ["a", "b"], slices, img_size=IMG_SIZE)
            conversion = time.perf_counter() - started
            after = root / "yolo" / "train.txt"
            listed = after.read_text().split()
            before = root / "yolo" / "train-before.txt"
            before.write_text("\n".join(p.replace("/images/train-whole/", "/images/train/") for p in listed) + "\n")
            wholes = sum("/images/train-whole/" in p for p in listed)
            data = {"names": {0: "a", 1: "b"}, "nc": 2, "channels": 3}
            runs: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.repeats):
                for arm, list_file in (("before", before), ("after", after)):
                    runs[arm].append(load_epoch(list_file, data))
                    print(f"{label} {arm}: {runs[arm][-1]:.1f} s for {len(listed)} entries ({wholes} whole views)", flush=True)
            b, a = statistics.median(runs["before"]), statistics.median(runs["after"])
            results["sizes"][label] = {"canvas": [width, height], "entries": len(listed), "whole_views": wholes,
                                       "conversion_seconds": conversion, "before_seconds": runs["before"],
                                       "after_seconds": runs["after"], "before_median": b, "after_median": a,
                                       "speedup": b / a}
            print(f"{label}: one epoch's loading {b:.1f} s before, {a:.1f} s after: {b / a:.1f}x faster", flush=True)
    save_result("whole-views-loading-cpu", results)


if __name__ == "__main__":
    main()
