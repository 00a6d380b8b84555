"""The active-learning benchmark's data: handwritten digits on photo canvases, made offline.

Glyphs are scikit-learn's bundled ``load_digits`` (1,797 real 8x8 handwritten digits, no download),
split so that no glyph is in both the labelled/pool side and the test side. Each canvas is a crop of a
photo that installed packages ship (matplotlib's and Ultralytics' sample images), toned down, or a
texture, with 2-5 digits of 20-44 px drawn as ink. Digits look alike (3/8/9, 1/7, 4/9, 5/6): the class
confusion an uncertainty score should find.

The pool holds what real mining pools hold: near-duplicates of a few scenes (a video stream), empty
canvases, and two rare classes (``RARE``); the test set is class-balanced and large.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [str(d) for d in range(10)]
RARE = (8, 9)  # rare in the seed set and the pool, as common as the others in the test set
CANVAS = 128


def source_data(path: str | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(glyphs (N, 8, 8) float in [0, 1], labels (N,), RGB photos): scikit-learn's ``load_digits`` and the
    photos installed packages ship (matplotlib's and Ultralytics' samples), or the same read back from an
    ``.npz`` that ``save_source_data`` wrote (for a machine without scikit-learn: the same data anywhere)."""
    if path:
        data = np.load(path)
        photos = [data[k] for k in sorted(k for k in data.files if k.startswith("photo"))]
        return data["images"].astype(np.float32), data["labels"].astype(np.int64), photos
    import matplotlib
    import ultralytics
    from sklearn.datasets import load_digits

    digits = load_digits()
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    assets = Path(ultralytics.__file__).parent / "assets"
    paths = [sample / "grace_hopper.jpg", assets / "bus.jpg", assets / "zidane.jpg", sample / "Minduka_Present_Blue_Pack.png"]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64), photos


def save_source_data(path: str) -> None:
    images, labels, photos = source_data()
    np.savez_compressed(path, images=images, labels=labels, **{f"photo{i}": p for i, p in enumerate(photos)})


@dataclass
class Scene:
    image: Image.Image
    boxes: list[tuple[int, int, int, int, int]]  # class, x1, y1, x2, y2
    kind: str = "normal"  # normal, duplicate, empty
    source: int = -1  # a near-duplicate's scene (the copies of one scene share it); -1 for the others


@dataclass
class Maker:
    """Draws canvases from one side's glyphs (pool/seed or test)."""

    rng: random.Random
    images: np.ndarray
    labels: np.ndarray
    backgrounds: list[np.ndarray]
    by_class: dict[int, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_class = {c: [i for i, y in enumerate(self.labels) if y == c] for c in range(len(CLASSES))}

    def background(self) -> np.ndarray:
        rng = self.rng
        if rng.random() < 0.25:  # a texture: smooth noise
            coarse = np.asarray([rng.randint(60, 200) for _ in range(3 * 8 * 8)], dtype=np.uint8).reshape(8, 8, 3)
            return np.asarray(Image.fromarray(coarse).resize((CANVAS, CANVAS), Image.BILINEAR), dtype=np.float32)
        photo = rng.choice(self.backgrounds)
        side = rng.randint(CANVAS, min(photo.shape[:2]))
        y, x = rng.randint(0, photo.shape[0] - side), rng.randint(0, photo.shape[1] - side)
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((CANVAS, CANVAS), Image.BILINEAR)
        return 64 + 0.5 * np.asarray(crop, dtype=np.float32)  # toned down, so that ink stays visible

    def scene(self, count: int, class_weights: list[float]) -> Scene:
        rng = self.rng
        canvas = self.background()
        boxes: list[tuple[int, int, int, int, int]] = []
        for _ in range(count):
            cls = rng.choices(range(len(CLASSES)), weights=class_weights)[0]
            glyph = self.images[rng.choice(self.by_class[cls])]
            size = rng.randint(20, 44)
            for _ in range(30):  # a free spot, not overlapping the digits already drawn
                x, y = rng.randint(0, CANVAS - size), rng.randint(0, CANVAS - size)
                if all(x + size <= b[1] or b[3] <= x or y + size <= b[2] or b[4] <= y for b in boxes):
                    break
            else:
                continue
            alpha = np.asarray(Image.fromarray((glyph * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                               dtype=np.float32)[:, :, None] / 255
            region = canvas[y : y + size, x : x + size]
            ink = np.asarray([rng.randint(0, 50)] * 3 if region.mean() > 110 else [rng.randint(205, 255)] * 3,
                             dtype=np.float32)
            canvas[y : y + size, x : x + size] = region * (1 - alpha) + ink * alpha
            rows, cols = np.nonzero(alpha[:, :, 0] > 0.25)
            boxes.append((cls, x + int(cols.min()), y + int(rows.min()), x + int(cols.max()) + 1, y + int(rows.max()) + 1))
        return Scene(Image.fromarray(canvas.clip(0, 255).astype(np.uint8)), boxes)

    def empty(self) -> Scene:
        return Scene(Image.fromarray(self.background().astype(np.uint8)), [], "empty")

    def jitter(self, scene: Scene, source: int) -> Scene:
        """A near-duplicate: the same scene, a pixel shift and a little noise (as from a video stream)."""
        dx, dy = self.rng.randint(-2, 2), self.rng.randint(-2, 2)
        pixels = np.roll(np.asarray(scene.image, dtype=np.int16), (dy, dx), axis=(0, 1))
        noise = np.random.default_rng(self.rng.randrange(1 << 30)).integers(-6, 7, pixels.shape)
        boxes = [(c, max(0, x1 + dx), max(0, y1 + dy), min(CANVAS, x2 + dx), min(CANVAS, y2 + dy))
                 for c, x1, y1, x2, y2 in scene.boxes]
        return Scene(Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)), boxes, "duplicate", source)


def skewed(rare_share: float) -> list[float]:
    """Class weights with each ``RARE`` class at ``rare_share`` of the digits and the rest alike."""
    common = (1 - rare_share * len(RARE)) / (len(CLASSES) - len(RARE))
    return [rare_share if c in RARE else common for c in range(len(CLASSES))]


def build(seed: int, sizes: dict[str, int], data_file: str | None = None) -> dict[str, list[Scene]]:
    """Scenes per split: ``seed`` (labelled at the start), ``pool`` (to mine), ``val`` (picks nothing: fixed
    epochs; Ultralytics needs one), ``test`` (class-balanced, glyphs of its own)."""
    rng = random.Random(seed)
    images, labels, backgrounds = source_data(data_file)
    order = list(range(len(labels)))
    random.Random(12345).shuffle(order)  # the glyph split is the same for every seed
    cut = int(0.6 * len(order))
    train_side, test_side = order[:cut], order[cut:]
    train = Maker(rng, images[train_side], labels[train_side], backgrounds)
    test = Maker(rng, images[test_side], labels[test_side], backgrounds)
    rare = skewed(0.03)

    def digits() -> int:
        return rng.randint(2, 5)

    splits = {"seed": [train.scene(digits(), rare) for _ in range(sizes["seed"])]}
    scenes = [train.scene(digits(), rare) for _ in range(sizes["scenes"])]
    pool = [train.jitter(scenes[i % len(scenes)], i % len(scenes)) for i in range(sizes["duplicates"])]
    pool += [train.empty() for _ in range(sizes["empty"])]
    pool += [train.scene(digits(), rare) for _ in range(sizes["pool"] - len(pool))]
    rng.shuffle(pool)
    splits["pool"] = pool
    splits["val"] = [test.scene(digits(), skewed(0.1)) for _ in range(sizes["val"])]
    splits["test"] = [test.scene(digits(), skewed(0.1)) for _ in range(sizes["test"])]
    return splits
