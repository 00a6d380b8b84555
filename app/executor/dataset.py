"""Dataset conversion: YMIR index + ark/voc annotations -> an Ultralytics YOLO dataset under /out.

Images are symlinked, never copied; label files are written beside them
(``images/<split>/x.jpg`` -> ``labels/<split>/x.txt``). Per-item defects are
skipped and counted, never fatal; only a dataset with nothing usable fails.

Coordinates: boxes are taken in the image's display frame (EXIF orientation
applied), the frame in which YMIR's web UI shows and labels images, and the
frame in which Ultralytics (OpenCV) decodes them for training and infer.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from PIL import Image, UnidentifiedImageError

from executor import ultra
from executor.protocol import asset_id, dataset_error, read_index

LOG = logging.getLogger("executor")

_ARK = {"ark", "det-ark"}
_VOC = {"voc", "det-voc"}
Box = tuple[int, float, float, float, float]  # class id, x1, y1, x2, y2 in pixels


def annotation_format(export_format: str | None) -> str:
    """'ark' or 'voc' from ``export_format`` ('<annotation>:<asset>'); empty means voc:raw."""
    text = (export_format or "").strip().lower() or "voc:raw"
    annotation, _, asset = text.partition(":")
    if asset not in ("", "raw"):
        raise dataset_error(f"export_format '{text}': only raw assets are supported; use ark:raw or voc:raw")
    if annotation in _ARK:
        return "ark"
    if annotation in _VOC:
        return "voc"
    raise dataset_error(
        f"export_format '{text}' is not a detection format this image reads; use ark:raw or voc:raw"
    )


def image_size(path: str) -> tuple[int, int]:
    """(width, height) in the display frame, from the file header only."""
    with Image.open(path) as im:
        width, height = ultra.exif_size(im)
    if width < 1 or height < 1:
        raise ValueError("empty image")
    return width, height


def read_ark(path: str, class_count: int, stats: Counter) -> list[Box]:
    """``class_id, xmin, ymin, xmax, ymax[, quality, angle]`` per line."""
    boxes: list[Box] = []
    with open(path, encoding="utf-8", errors="replace") as fp:
        for line in fp:
            line = line.strip()
            if not line:
                continue
            parts = [p.strip() for p in line.replace(" ", ",").split(",") if p.strip()]
            try:
                cls = int(float(parts[0]))
                x1, y1, x2, y2 = (float(v) for v in parts[1:5])
            except (ValueError, IndexError):
                stats["malformed annotation lines"] += 1
                continue
            if not 0 <= cls < class_count:
                stats["boxes with unknown class"] += 1
                continue
            boxes.append((cls, x1, y1, x2, y2))
    return boxes


def read_voc(path: str, class_index: dict[str, int], stats: Counter) -> list[Box]:
    """Pascal VOC xml: ``object/name`` is a class name, ``bndbox`` may hold floats."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        stats["malformed annotation files"] += 1
        return []
    boxes: list[Box] = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_index:
            stats["boxes with unknown class"] += 1
            continue
        bnd = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr, arg-type]
        except (AttributeError, TypeError, ValueError):
            stats["malformed annotation lines"] += 1
            continue
        boxes.append((class_index[name], x1, y1, x2, y2))
    return boxes


def yolo_lines(boxes: Sequence[Box], width: int, height: int, stats: Counter) -> list[str]:
    """Clip boxes to the image (swapped corners are reordered), drop degenerate ones."""
    lines = []
    for cls, x1, y1, x2, y2 in boxes:
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            stats["degenerate boxes dropped"] += 1
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            stats["boxes clipped to the image"] += 1
        lines.append(
            f"{cls} {(cx1 + cx2) / 2 / width:.6f} {(cy1 + cy2) / 2 / height:.6f} "
            f"{(cx2 - cx1) / width:.6f} {(cy2 - cy1) / height:.6f}"
        )
    return lines


@dataclass
class SplitResult:
    list_file: str
    images: int
    boxes: int


def convert_split(
    index_file: str, split: str, root: Path, fmt: str, class_names: Sequence[str], stats: Counter
) -> SplitResult:
    """Convert one index file; streams line by line, holding only the image list."""
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    class_index = {name: i for i, name in enumerate(class_names)}
    used_names: set[str] = set()
    next_suffix: dict[str, int] = {}  # per stem, so that many repeats of one name stay linear
    images, boxes = [], 0
    for _, fields in read_index(index_file, 2):
        image = fields[0]
        annotation = fields[1] if len(fields) > 1 else ""
        try:
            width, height = image_size(image)
        except (OSError, UnidentifiedImageError, ValueError, *ultra.NOT_AN_IMAGE_ERRORS):
            stats["unreadable images skipped"] += 1
            continue
        if annotation and os.path.isfile(annotation):
            found = read_ark(annotation, len(class_names), stats) if fmt == "ark" else read_voc(annotation, class_index, stats)
        else:
            stats["images without annotation file (negatives)"] += 1
            found = []
        lines = yolo_lines(found, width, height, stats)
        if not lines:
            stats[f"{split} images without objects"] += 1
        stem, ext = asset_id(image), os.path.splitext(image)[1].lower() or ".jpg"
        name = stem
        if name in used_names:  # the same basename in two folders
            stats["duplicate image names renamed"] += 1
            n = next_suffix.get(stem, 1)
            while f"{stem}_{n}" in used_names:
                n += 1
            name, next_suffix[stem] = f"{stem}_{n}", n + 1
        used_names.add(name)
        link = image_dir / f"{name}{ext}"
        try:
            os.symlink(os.path.abspath(image), link)
        except FileExistsError:  # a re-run into the same /out
            link.unlink()
            os.symlink(os.path.abspath(image), link)
        (label_dir / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        images.append(str(link))
        boxes += len(lines)
    list_file = root / f"{split}.txt"
    list_file.write_text("\n".join(images) + ("\n" if images else ""), encoding="utf-8")
    return SplitResult(str(list_file), len(images), boxes)


def convert(
    train_index: str, val_index: str, root: str | os.PathLike, export_format: str | None, class_names: Sequence[str]
) -> str:
    """Build the YOLO dataset under ``root``; returns the path of its data.yaml."""
    fmt = annotation_format(export_format)
    root = Path(root).absolute()  # Ultralytics resolves relative dataset paths against its own folders
    stats: Counter = Counter()
    train = convert_split(train_index, "train", root, fmt, class_names, stats)
    val = convert_split(val_index, "val", root, fmt, class_names, stats)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()) if v) or "no defects"
    LOG.info(
        "dataset (%s): train %d images / %d boxes, val %d images / %d boxes; %s",
        fmt, train.images, train.boxes, val.images, val.boxes, summary,
    )
    if train.images == 0 or train.boxes == 0:
        raise dataset_error(
            f"no usable training data in {train_index} ({summary}): check that the images exist and "
            f"that the annotations are {fmt} files naming classes in class_names"
        )
    if val.images == 0:
        raise dataset_error(
            f"the validation set {val_index} has no usable image ({summary}): "
            "add a validation dataset to the training task"
        )
    data = {
        "path": str(root),
        "train": train.list_file,
        "val": val.list_file,
        "names": {i: name for i, name in enumerate(class_names)},
    }
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(data_yaml)
