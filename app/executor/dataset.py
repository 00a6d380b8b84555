"""Dataset conversion: YMIR index + ark/voc annotations -> an Ultralytics YOLO dataset under /out.

Images are symlinked, never copied; label files are written beside them
(``images/<split>/x.jpg`` -> ``labels/<split>/x.txt``). With slicing, an image larger
than one tile is also cut into tiles, written as files with their own labels
(``write_tiles``). Per-item defects are skipped and counted, never fatal; only a
dataset with nothing usable fails.

Coordinates: boxes are taken in the image's display frame (EXIF orientation
applied), the frame in which YMIR's web UI shows and labels images, and the
frame in which Ultralytics (OpenCV) decodes them for training and infer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import yaml
from PIL import Image, UnidentifiedImageError

from executor import runtime, slicing, ultra
from executor.protocol import asset_id, dataset_error, read_index

LOG = logging.getLogger("executor")

_ARK = {"ark", "det-ark"}
_VOC = {"voc", "det-voc"}
Box = tuple[int, float, float, float, float]  # class id, x1, y1, x2, y2 in pixels
MIN_VISIBLE = 0.3  # a box a tile cuts stays in the tile's labels when this share of its area is inside
NEGATIVE_SHARE = 0.2  # tiles without a box kept per tile with one (at least one per image that has any)
WHOLE_EVERY = 4  # sliced training lists a tiled image whole once per this many of its windows
# Decoded images conversion's threads hold at once (``Tiler``): 1.5 GB, so converting stays within about 2 GB
# of its baseline at any thread count (docs/tasks.md, measured)
DECODED_BUDGET = 1536 * 2**20
VAL_TRUTH = "val-whole-images.json"  # with slicing: validation images and their boxes, for ``evaluate``


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


def clip_boxes(boxes: Sequence[Box], width: int, height: int, stats: Counter) -> list[Box]:
    """Clip boxes to the image (swapped corners are reordered), drop degenerate ones."""
    out = []
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
        out.append((cls, cx1, cy1, cx2, cy2))
    return out


def to_lines(boxes: Sequence[Box], width: int, height: int) -> list[str]:
    """YOLO label lines: class, centre and size as fractions of the image."""
    return [f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
            for cls, x1, y1, x2, y2 in boxes]


def tile_labels(boxes: Sequence[Box], window: slicing.Window) -> tuple[list[Box], int]:
    """The boxes a tile holds, clipped to it and in its pixels: a box keeps its place in the tile when at least
    ``MIN_VISIBLE`` of its area lies inside; returns them and how many boxes the tile cut below that."""
    wx1, wy1, wx2, wy2 = window
    kept, cut = [], 0
    for cls, x1, y1, x2, y2 in boxes:
        ix1, iy1, ix2, iy2 = max(x1, wx1), max(y1, wy1), min(x2, wx2), min(y2, wy2)
        if ix2 <= ix1 or iy2 <= iy1:
            continue
        if (ix2 - ix1) * (iy2 - iy1) < MIN_VISIBLE * (x2 - x1) * (y2 - y1) or ix2 - ix1 < 1 or iy2 - iy1 < 1:
            cut += 1
            continue
        kept.append((cls, ix1 - wx1, iy1 - wy1, ix2 - wx1, iy2 - wy1))
    return kept, cut


def whole_views(width: int, height: int, slices: slicing.SliceSettings) -> int:
    """How often sliced training lists a tiled image whole: once per ``WHOLE_EVERY`` of its windows (0 without
    ``slice_whole_image``). Listed once, the whole view was one entry in 30-50 (a 960x720 image in 160 px
    tiles), and the whole-image pass, which answers for every object larger than the overlap, learnt large
    objects from that alone."""
    if not slices.whole_image:
        return 0
    return max(1, round(len(slicing.windows(width, height, slices.size, slices.overlap)) / WHOLE_EVERY))


def whole_dirs(image_dir: Path, label_dir: Path) -> tuple[Path, Path]:
    """Where a split's whole views of tiled images go (``whole_copy``): ``train-whole`` beside ``train``, as
    ``tile_dirs``."""
    return image_dir.with_name(f"{image_dir.name}-whole"), label_dir.with_name(f"{label_dir.name}-whole")


def tile_dirs(image_dir: Path, label_dir: Path) -> tuple[Path, Path]:
    """Where a split's tiles and their labels go: folders of their own beside the split's (``train-tiles``), so a
    tile's name can never be an asset's (an asset named ``x_tile0.jpg`` has its link in the split's folder), and
    no tile is ever written through an asset's link into /in. Ultralytics finds the labels by its own rule (the
    last ``/images/`` of the path made ``/labels/``)."""
    return image_dir.with_name(f"{image_dir.name}-tiles"), label_dir.with_name(f"{label_dir.name}-tiles")


def write_tiles(image_path: str, boxes: list[Box], name: str, image_dir: Path, label_dir: Path, views: int,
                slices: slicing.SliceSettings, img_size: int, stats: Counter) -> list[str]:
    """An image's list entries: its whole view ``views`` times, then its tiles. The tiles are files of their own
    with their labels (``tile_labels``), in ``tile_dirs``: every tile holding a box, and ``NEGATIVE_SHARE`` as many
    without (at least one when there are any), drawn from the image's name. The whole view is one copy shrunk to
    ``img_size`` (``whole_copy``). Decoded once, as infer decodes it (EXIF orientation applied); files saved as JPEG
    quality 95. Runs in conversion's threads (OpenCV decodes and encodes without the GIL): ``stats`` is the
    caller's to add."""
    from executor.inputs import read_image

    image, _ = read_image(image_path)
    if image is None:
        stats["images whose tiles could not be cut (undecodable)"] += 1
        return []
    height, width = image.shape[:2]
    wholes = [whole_copy(image, boxes, name, image_dir, label_dir, img_size)] * views if views else []
    positives, negatives = [], []
    for k, window in enumerate(slicing.windows(width, height, slices.size, slices.overlap)):
        labels, cut = tile_labels(boxes, window)
        stats[f"boxes cut below {MIN_VISIBLE:.0%} of their area by a tile (left out of that tile)"] += cut
        (positives if labels else negatives).append((k, window, labels))
    wanted = min(len(negatives), max(1, math.ceil(NEGATIVE_SHARE * len(positives))))
    kept_negatives = random.Random(name).sample(negatives, wanted)
    stats["negative tiles left out"] += len(negatives) - wanted
    out = []
    tile_dir, tile_label_dir = tile_dirs(image_dir, label_dir)
    for k, (x1, y1, x2, y2), labels in sorted(positives + kept_negatives):
        tile = tile_dir / f"{name}_tile{k}.jpg"
        tile.unlink(missing_ok=True)  # a re-run into the same /out: a new file, never a write through what is there
        if not cv2.imwrite(str(tile), image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {tile}")
        lines = to_lines(labels, x2 - x1, y2 - y1)
        (tile_label_dir / f"{name}_tile{k}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        out.append(str(tile))
    stats["tiles"] += len(out)
    return wholes + out


def whole_copy(image, boxes: list[Box], name: str, image_dir: Path, label_dir: Path, img_size: int) -> str:  # noqa: ANN001 - HxWx3
    """A tiled image's whole view for training, written once: shrunk so its longer side is ``img_size`` (what
    Ultralytics' loader resizes it to), with the image's labels, in ``whole_dirs``. Listed ``whole_views`` times,
    it is decoded at that size, not at the photo's: the full file, listed itself, was decoded once per entry
    (48 full decodes of a 48 MP photo per epoch)."""
    height, width = image.shape[:2]
    scale = min(1.0, img_size / max(width, height))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    copy_dir, copy_label_dir = whole_dirs(image_dir, label_dir)
    copy = copy_dir / f"{name}.jpg"
    copy.unlink(missing_ok=True)
    if not cv2.imwrite(str(copy), small, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"cannot write {copy}")
    lines = to_lines(boxes, width, height)
    (copy_label_dir / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return str(copy)


class Tiler:
    """Cuts the tiles of a split's images in threads, at most ``2 x threads`` images in flight and their decoded
    pixels within ``DECODED_BUDGET`` (one image alone may exceed it), and gives each image's list entries (its
    link, when listed whole, then its tiles) back in the order the images came, so the training list does not
    depend on thread timing. The budget, not the thread count, bounds memory: a thread holds its image decoded,
    0.3-0.6 GB for the 100-200 MP photos conversion accepts, 10-20 GB with a thread per CPU of a 32-CPU node."""

    def __init__(self, slices: slicing.SliceSettings, threads: int, img_size: int) -> None:
        self.slices, self.threads, self.img_size = slices, max(1, threads), img_size
        self.pool = ThreadPoolExecutor(self.threads) if slices.on else None
        self.pending: deque[tuple[list[str], Future | None]] = deque()
        self.decoded, self.room = 0, threading.Condition()  # bytes of the images being cut, and its guard

    def add(self, listed: list[str], tiles: tuple | None = None, pixels: int = 0) -> list[tuple[list[str], Counter]]:
        """Queue one image: ``listed`` (its link or nothing) and, with ``tiles`` (``write_tiles``' arguments before
        ``slices``), its tiles to cut from its ``pixels`` decoded; returns the entries and counts of the images done
        meanwhile, in order. Waits while the images being cut hold ``DECODED_BUDGET``."""
        future = None
        if tiles is not None:
            assert self.pool is not None
            need = 3 * pixels  # BGR uint8, as read_image decodes it
            with self.room:
                self.room.wait_for(lambda: self.decoded == 0 or self.decoded + need <= DECODED_BUDGET)
                self.decoded += need
            future = self.pool.submit(self._one, *tiles)
            future.add_done_callback(lambda _, need=need: self._release(need))
        self.pending.append((listed, future))
        done = []
        while self.pending and (len(self.pending) > 2 * self.threads or self.pending[0][1] is None
                                or self.pending[0][1].done()):
            done.append(self._take(*self.pending.popleft()))
        return done

    def _release(self, need: int) -> None:
        with self.room:
            self.decoded -= need
            self.room.notify_all()

    def _one(self, image: str, boxes: list[Box], name: str, image_dir: Path, label_dir: Path, views: int
             ) -> tuple[list[str], Counter]:
        counts: Counter = Counter()  # a Counter of its own: threads do not share the caller's
        return write_tiles(image, boxes, name, image_dir, label_dir, views, self.slices, self.img_size, counts), counts

    @staticmethod
    def _take(listed: list[str], future: Future | None) -> tuple[list[str], Counter]:
        if future is None:
            return listed, Counter()
        tiles, counts = future.result()
        return listed + tiles, counts

    def finish(self) -> list[tuple[list[str], Counter]]:
        """Every image still queued, in order; then the threads end."""
        try:
            return [self._take(*entry) for entry in self.pending]
        finally:
            self.pending.clear()
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)


@dataclass
class SplitResult:
    list_file: str
    images: int
    boxes: int
    truth: list[tuple[str, list[list[float]]]]  # validation with slicing: each image and its boxes, in its pixels


class Progress:
    """Conversion's share of the progress bar, image by image, and with slicing a log line about every 10 %
    (cutting and encoding the tiles of a large training set takes minutes)."""

    def __init__(self, total: int, report: Callable[[float], None] | None, sliced: bool) -> None:
        self.total, self.report, self.sliced = max(total, 1), report, sliced
        self.done, self.tiles, self.logged = 0, 0, 0

    def image(self, tiles: int = 0) -> None:
        self.done += 1
        self.tiles += tiles
        if self.report is not None:
            self.report(min(self.done / self.total, 1.0))
        tenth = 10 * self.done // self.total
        if self.sliced and tenth > self.logged:
            self.logged = tenth
            LOG.info("dataset conversion: %d of %d images, %d tiles cut so far", self.done, self.total, self.tiles)


def convert_split(
    index_file: str, split: str, root: Path, fmt: str, class_names: Sequence[str], stats: Counter,
    slices: slicing.SliceSettings = slicing.OFF, progress: Progress | None = None, img_size: int = 0,
) -> SplitResult:
    """Convert one index file; streams line by line, holding only the image list. With ``slices`` on, each image
    larger than one tile brings its tiles and, with ``slices.whole_image``, a copy at ``img_size`` as its whole
    view (``write_tiles``, in threads), instead of its link."""
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    extra = (*tile_dirs(image_dir, label_dir), *whole_dirs(image_dir, label_dir)) if slices.on else ()
    for folder in (image_dir, label_dir, *extra):
        folder.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress(0, None, False)
    class_index = {name: i for i, name in enumerate(class_names)}
    used_names: set[str] = set()
    next_suffix: dict[str, int] = {}  # per stem, so that many repeats of one name stay linear
    images, boxes, truth = [], 0, []
    tiler = Tiler(slices, runtime.usable_cpus(), img_size)

    def take(done: list[tuple[list[str], Counter]]) -> None:
        for entries, counts in done:
            images.extend(entries)
            stats.update(counts)
            progress.image(counts["tiles"])

    try:
        for _, fields in read_index(index_file, 2):
            image = fields[0]
            annotation = fields[1] if len(fields) > 1 else ""
            try:
                width, height = image_size(image)
            except (OSError, UnidentifiedImageError, ValueError, *ultra.NOT_AN_IMAGE_ERRORS):
                stats["unreadable images skipped"] += 1
                take(tiler.add([]))
                continue
            if annotation and os.path.isfile(annotation):
                found = read_ark(annotation, len(class_names), stats) if fmt == "ark" else read_voc(annotation, class_index, stats)
            else:
                stats["images without annotation file (negatives)"] += 1
                found = []
            clipped = clip_boxes(found, width, height, stats)
            lines = to_lines(clipped, width, height)
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
            boxes += len(lines)
            tiled = slices.on and (width > slices.size or height > slices.size)
            if slices.on and split == "val":
                truth.append((os.path.abspath(image), [[float(v) for v in box] for box in clipped]))
            if not tiled:
                take(tiler.add([str(link)]))
                continue
            views = whole_views(width, height, slices) if split == "train" else int(slices.whole_image)
            take(tiler.add([], (image, clipped, name, image_dir, label_dir, views), width * height))
    finally:
        take(tiler.finish())
    list_file = root / f"{split}.txt"
    list_file.write_text("\n".join(images) + ("\n" if images else ""), encoding="utf-8")
    return SplitResult(str(list_file), len(images), boxes, truth)


def index_lines(path: str) -> int:
    """Lines of an index file (what conversion's progress counts against), 0 when it cannot be read."""
    try:
        with open(path, "rb") as fp:
            return sum(1 for line in fp if line.strip())
    except OSError:
        return 0


def convert(
    train_index: str, val_index: str, root: str | os.PathLike, export_format: str | None, class_names: Sequence[str],
    slices: slicing.SliceSettings = slicing.OFF, progress: Callable[[float], None] | None = None, img_size: int = 0,
) -> str:
    """Build the YOLO dataset under ``root``; returns the path of its data.yaml. With ``slices`` on, both
    splits hold each large image as tiles (``write_tiles``) and, with ``slices.whole_image``, whole, shrunk to
    ``img_size`` (the training's, required with slicing), and
    ``VAL_TRUTH`` beside data.yaml lists the validation images with their boxes, for the whole-image mAP
    (``evaluate``). ``progress`` gets the share of the index lines done."""
    fmt = annotation_format(export_format)
    root = Path(root).absolute()  # Ultralytics resolves relative dataset paths against its own folders
    stats: Counter = Counter()
    counter = Progress(index_lines(train_index) + index_lines(val_index), progress, slices.on)
    if slices.on and img_size < 1:
        raise ValueError("sliced conversion needs the training's img_size")
    train = convert_split(train_index, "train", root, fmt, class_names, stats, slices, counter, img_size)
    val = convert_split(val_index, "val", root, fmt, class_names, stats, slices, counter, img_size)
    if slices.on:
        (root / VAL_TRUTH).write_text(json.dumps(val.truth), encoding="utf-8")
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()) if v) or "no defects"
    LOG.info(
        "dataset (%s): train %d images / %d boxes, val %d images / %d boxes%s; %s",
        fmt, train.images, train.boxes, val.images, val.boxes,
        f" (with tiles of {slices.size} px, overlap {slices.overlap}{'' if slices.whole_image else ', large images as tiles only'})"
        if slices.on else "", summary,
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
