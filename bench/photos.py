"""Real-sized candidates for the throughput benchmarks: JPEGs of 1 to 12 megapixels in landscape (4:3),
portrait (3:4) and 16:9, made offline from the photos installed packages ship (Ultralytics' bus and zidane,
matplotlib's grace_hopper), upscaled with camera-like noise so that they decode as slowly as photos do
(a smooth upscale compresses to a fraction of a real photo's bytes and decodes faster).

A few dozen distinct files are made, then hard-linked under as many names as asked: decoding stays real,
making them stays short (seconds on a GPU machine's cores), and every candidate has its own basename.

With ``objects_at`` (the model's input size) each photo also carries 3 to 10 of the sample's objects, sized
to look, letterboxed at that size, like the ones the benchmarks' model was trained on: a user's model finds
boxes on a user's images, and every per-box cost (NMS, box mapping, the result file, each miner's per-box
work) is part of what the benchmarks measure.
"""

from __future__ import annotations

import os
import random
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MEGAPIXELS = (1, 2, 4, 8, 12)
ASPECTS = ((4, 3), (3, 4), (16, 9))
DISTINCT = 45  # 3 photos x 5 sizes x 3 aspect ratios
OBJECTS = (3, 10)  # per photo, with objects_at
OBJECT_SIDE = (20, 44)  # pixels, once the photo is letterboxed to objects_at


def sources() -> list[Path]:
    import matplotlib
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    return [assets / "bus.jpg", assets / "zidane.jpg", Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


def size_of(megapixels: float, aspect: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of about ``megapixels`` at ``aspect``, both even."""
    unit = (megapixels * 1e6 / (aspect[0] * aspect[1])) ** 0.5
    return round(unit * aspect[0] / 2) * 2, round(unit * aspect[1] / 2) * 2


def _make(args: tuple[int, str, str, int | None]) -> str:
    k, source, target, objects_at = args
    megapixels, aspect = MEGAPIXELS[(k // 3) % len(MEGAPIXELS)], ASPECTS[k % len(ASPECTS)]
    width, height = size_of(megapixels, aspect)
    with Image.open(source) as im:
        photo = im.convert("RGB")
    # the largest crop of the photo at the target's aspect ratio, centred, then upscaled
    scale = min(photo.width / width, photo.height / height)
    cw, ch = int(width * scale), int(height * scale)
    left, top = (photo.width - cw) // 2, (photo.height - ch) // 2
    big = np.asarray(photo.crop((left, top, left + cw, top + ch)).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(k).integers(-7, 8, size=(height, width, 1), dtype=np.int16)  # sensor-like grain
    image = Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8))
    if objects_at:
        draw_objects(image, random.Random(k), max(width, height) / objects_at)
    image.save(target, format="JPEG", quality=90)
    return target


def draw_objects(image: Image.Image, rng: random.Random, scale: float) -> None:
    """The sample's circles and squares, ``scale`` photo pixels per model-input pixel."""
    from executor import sample

    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(*OBJECTS)):
        side = int(rng.randint(*OBJECT_SIDE) * scale)
        w, h = side, int(side * rng.uniform(0.8, 1.25))
        x, y = rng.randint(0, image.width - w - 1), rng.randint(0, image.height - h - 1)
        sample.draw_shape(draw, rng.randrange(2), (x, y, x + w, y + h), sample.COLORS[rng.randrange(len(sample.COLORS))],
                          width=max(1, round(scale)))


def make(directory: str | os.PathLike, count: int, distinct: int = DISTINCT, objects_at: int | None = None) -> list[str]:
    """``count`` candidate paths under ``directory`` (made there), cycling over ``distinct`` real-sized JPEGs; with
    ``objects_at``, objects drawn on them for a model of that input size."""
    directory = Path(directory)
    (directory / "distinct").mkdir(parents=True, exist_ok=True)
    photos = sources()
    jobs = [(k, str(photos[k % len(photos)]), str(directory / "distinct" / f"photo-{k:02d}.jpg"), objects_at)
            for k in range(min(distinct, count))]
    with Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        made = pool.map(_make, jobs)
    paths = []
    for i in range(count):
        path = directory / f"candidate-{i:06d}.jpg"
        if not path.exists():
            os.link(made[i % len(made)], path)
        paths.append(str(path))
    return paths


def use_as_candidates(root: Path, paths: list[str]) -> None:
    """Make ``paths`` the candidate index of the sample task at ``root``."""
    (root / "in" / "candidate-index.tsv").write_text("\n".join(paths) + "\n")


def describe(paths: list[str]) -> str:
    files = {(os.stat(p).st_dev, os.stat(p).st_ino): p for p in paths}  # hard links share an inode
    sizes = [Image.open(p).size for p in files.values()]
    mp = [w * h / 1e6 for w, h in sizes]
    return (f"real-sized JPEGs: {len(paths)} candidates from {len(sizes)} distinct files, {min(mp):.1f}-{max(mp):.1f} MP "
            f"(mean {np.mean(mp):.1f}), landscape 4:3, portrait 3:4 and 16:9")
