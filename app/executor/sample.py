"""A deterministic sample ``/in`` folder in YMIR's layout, for the demo and the tests.

Images are drawn shapes on noisy backgrounds (class ``circle``: a filled
ellipse, class ``square``: a filled rectangle), saved as
``assets/<hh>/<sha1>.<ext>``, with ark (txt) or voc (xml) annotations, negatives
(annotation path that does not exist), index files, env.yaml and config.yaml.

Run ``python -m executor.sample DIR`` (with ``app`` on the path) to write one.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw

CLASS_NAMES = ["circle", "square"]
COLORS = [(220, 40, 40), (40, 90, 220), (40, 170, 60), (230, 200, 40)]


def draw_image(
    rng: random.Random, objects: int, size: tuple[int, int], square_share: float = 0.5, hard: bool = False
) -> tuple[Image.Image, list[tuple[int, int, int, int, int]]]:
    """An RGB image and its boxes ``(class_id, x1, y1, x2, y2)``.

    ``square_share`` makes the classes imbalanced; ``hard`` draws small, low-contrast
    objects in heavy clutter (the images a model misses).
    """
    width, height = size
    base = tuple(rng.randint(60, 200) for _ in range(3))
    im = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(im)
    for _ in range(40 if hard else 12):  # background clutter: thin lines
        x, y = rng.randrange(width), rng.randrange(height)
        end = (x + rng.randint(-30, 30), y + rng.randint(-30, 30))
        draw.line((x, y, *end), fill=tuple(rng.randint(0, 255) for _ in range(3)), width=2 if hard else 1)
    boxes = []
    for _ in range(objects):
        lo, hi = (max(6, min(size) // 12), max(8, min(size) // 7)) if hard else (max(8, min(size) // 6), max(10, min(size) // 3))
        side = rng.randint(lo, hi)
        w, h = side, int(side * rng.uniform(0.8, 1.25))
        x1, y1 = rng.randint(0, width - w - 1), rng.randint(0, height - h - 1)
        cls = 1 if rng.random() < square_share else 0
        if hard:
            color = tuple(min(255, max(0, c + rng.randint(-45, 45))) for c in base)
        else:
            color = COLORS[rng.randrange(len(COLORS))]
        draw_shape(draw, cls, (x1, y1, x1 + w, y1 + h), color, None if hard else (0, 0, 0))
        boxes.append((cls, x1, y1, x1 + w, y1 + h))
    return im, boxes


def draw_shape(draw: ImageDraw.ImageDraw, cls: int, xyxy: tuple[int, int, int, int], color: tuple[int, ...],
               outline: tuple[int, ...] | None = (0, 0, 0), width: int = 1) -> None:
    """One object of class ``cls`` (0: circle, 1: square) filling ``xyxy``."""
    shape = draw.ellipse if cls == 0 else draw.rectangle
    shape(xyxy, fill=color, outline=outline, width=width)


def jitter(im: Image.Image, rng: random.Random) -> Image.Image:
    """A near-duplicate: the same scene with a little pixel noise (as from a video stream)."""
    import numpy as np

    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(-6, 7, (im.height, im.width, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype("uint8"))


def save_asset(assets_dir: Path, im: Image.Image, ext: str = "jpg") -> Path:
    """Save under ``<hh>/<sha1>.<ext>`` like YMIR (named by content hash)."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG" if ext == "jpg" else ext.upper(), quality=92)
    data = buf.getvalue()
    digest = hashlib.sha1(data).hexdigest()
    path = assets_dir / digest[-2:] / f"{digest}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_annotation(path: Path, fmt: str, boxes: Sequence[tuple[int, int, int, int, int]], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "ark":
        path.write_text("".join(f"{c}, {x1}, {y1}, {x2}, {y2}, -1.0, 0.0\n" for c, x1, y1, x2, y2 in boxes))
        return
    objs = "".join(
        f"<object><name>{CLASS_NAMES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for c, x1, y1, x2, y2 in boxes
    )
    path.write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>"
    )


def make_split(root: Path, name: str, count: int, rng: random.Random, fmt: str | None, negatives: float) -> list[str]:
    """Write ``count`` images (and annotations when ``fmt``); returns index lines."""
    lines = []
    ext = "txt" if fmt == "ark" else "xml"
    for _ in range(count):
        size = (rng.choice([96, 128, 160]), rng.choice([96, 128]))
        negative = rng.random() < negatives
        im, boxes = draw_image(rng, 0 if negative else rng.randint(1, 3), size)
        image = save_asset(root / "assets", im)
        if fmt is None:
            lines.append(str(image))
            continue
        annotation = root / "annotations" / name / f"{image.stem}.{ext}"
        if not negative:
            write_annotation(annotation, fmt, boxes, size)
        lines.append(f"{image}\t{annotation}")
    return lines


def env_dict(in_dir: Path, out_dir: Path, tasks: Sequence[str], protocol_version: str | None = "1.1.0") -> dict[str, Any]:
    env: dict[str, Any] = {
        "task_id": "t0000sample",
        "run_training": "training" in tasks,
        "run_mining": "mining" in tasks,
        "run_infer": "infer" in tasks,
        "input": {
            "root_dir": str(in_dir),
            "assets_dir": str(in_dir / "assets"),
            "annotations_dir": str(in_dir / "annotations"),
            "models_dir": str(in_dir / "models"),
            "training_index_file": str(in_dir / "train-index.tsv"),
            "val_index_file": str(in_dir / "val-index.tsv"),
            "candidate_index_file": str(in_dir / "candidate-index.tsv"),
            "config_file": str(in_dir / "config.yaml"),
        },
        "output": {
            "root_dir": str(out_dir),
            "models_dir": str(out_dir / "models"),
            "tensorboard_dir": str(out_dir / "tensorboard"),
            "training_result_file": str(out_dir / "models" / "result.yaml"),
            "mining_result_file": str(out_dir / "result.tsv"),
            "infer_result_file": str(out_dir / "infer-result.json"),
            "monitor_file": str(out_dir / "monitor.txt"),
            "executor_log_file": str(out_dir / "ymir-executor-out.log"),
        },
    }
    if protocol_version:
        env["protocol_version"] = protocol_version
    return env


def write_task(root: str | os.PathLike, tasks: Sequence[str], config: dict[str, Any], protocol_version: str | None = "1.1.0") -> Path:
    """(Re)write ``root/in/env.yaml`` and ``config.yaml`` for a task; returns the env path."""
    root = Path(root)
    in_dir, out_dir = root / "in", root / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    in_dir.mkdir(parents=True, exist_ok=True)
    env = env_dict(in_dir, out_dir, tasks, protocol_version)
    base = {"task_id": env["task_id"], "gpu_id": "", "gpu_count": 0, "class_names": list(CLASS_NAMES), "object_type": 2}
    (in_dir / "config.yaml").write_text(yaml.safe_dump({**base, **config}, sort_keys=False))
    env_path = in_dir / "env.yaml"
    env_path.write_text(yaml.safe_dump(env, sort_keys=False))
    return env_path


def generate(root: str | os.PathLike, train: int = 40, val: int = 16, candidates: int = 24, fmt: str = "ark", seed: int = 0) -> Path:
    """Write a complete sample under ``root/in`` (and an empty ``root/out``); returns ``root``."""
    root = Path(root)
    in_dir = root / "in"
    rng = random.Random(seed)
    (in_dir / "models").mkdir(parents=True, exist_ok=True)
    (in_dir / "train-index.tsv").write_text("\n".join(make_split(in_dir, "train", train, rng, fmt, 0.1)) + "\n")
    (in_dir / "val-index.tsv").write_text("\n".join(make_split(in_dir, "val", val, rng, fmt, 0.1)) + "\n")
    (in_dir / "candidate-index.tsv").write_text("\n".join(make_split(in_dir, "candidate", candidates, rng, None, 0.1)) + "\n")
    write_task(root, ["training"], {"export_format": f"{fmt}:raw"})
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="writes ROOT/in (and ROOT/out); '/' writes /in and /out")
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--val", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--format", choices=["ark", "voc"], default="ark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", nargs="+", choices=["training", "mining", "infer"],
                        help="only (re)write env.yaml and config.yaml for these tasks")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="config.yaml values for --task")
    args = parser.parse_args()
    if args.task:
        # the sample's annotation format (--format, as when it was generated): config.yaml without export_format
        # means voc to YMIR's protocol, which an ark sample is not
        config = {"export_format": f"{args.format}:raw"} if "training" in args.task else {}
        for item in args.set:
            key, _, value = item.partition("=")
            config[key] = yaml.safe_load(value)
        print(write_task(args.root, args.task, config))
        return
    print(generate(args.root, args.train, args.val, args.candidates, args.format, args.seed))


if __name__ == "__main__":
    main()
