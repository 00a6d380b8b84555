"""Slicing large images into overlapping tiles, for objects too small to survive the shrink to ``img_size``.

A 4000x3000 photo at 640 px is shrunk about 6x, and a 20 px screw falls below the detection head's
stride. With ``slice_size`` > 0, infer and mining run the model on tiles of ``slice_size`` pixels of the
original image (each letterboxed to ``img_size`` as a whole image would be), then map the boxes back to
the image and merge those of one object (``merge``). The geometry and the merge live here; the engine
(``inputs.CandidateTiles``) makes the tiles, ``scan`` merges each candidate's boxes once all its tiles
are through.

Tiles: a regular grid with ``slice_overlap`` of the side shared between neighbours; the last tile of
each row and column is shifted inward so that every tile is ``slice_size`` across and inside the image
(as SAHI's slicer does); a side shorter than ``slice_size`` is one tile of its own length. An image no
larger than one tile is a single window: the whole image, exactly as without slicing.

Ours rather than SAHI's code: SAHI slices and predicts one image at a time through its own model wrappers;
here tiles are engine inputs, batched with every other candidate's into full passes, and mining needs each
tile's head outputs. The tile grid is SAHI's (a test compares them); the merge follows SAHI's greedy NMM
where it works and differs where it did not (``merge``; tests compare both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from executor.protocol import Params, config_error

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in the image's pixels (display frame)
MERGE_IOS = 0.5  # boxes of two tiles overlapping by more than this share of the smaller are one object
# The smallest object, in pixels of the whole-image pass's input, that pass answers for (``whole_pass_min``): four
# strides of the detection head's finest level (COCO's small/medium line); with the rest of the rule, chosen over
# 16 and 24 on a benchmark seed that is not reported (docs/benchmarks.md, section 7)
WHOLE_MIN = 32


@dataclass(frozen=True)
class SliceSettings:
    size: int  # tile side in original pixels; 0: off
    overlap: float  # share of the side neighbouring tiles have in common
    whole_image: bool  # also the whole image at img_size (objects larger than a tile): infer, mining, training

    @property
    def on(self) -> bool:
        return self.size > 0

    @classmethod
    def read(cls, p: Params) -> SliceSettings:
        """From the template's keys (the same three in the training, mining and infer templates)."""
        size = p.int("slice_size", 0, 100000)
        if 0 < size < 32:
            raise config_error(f"config key 'slice_size' must be 0 (off) or at least 32 pixels, got {size}")
        overlap = p.float("slice_overlap", 0.0, 0.9)
        return cls(size, overlap, p.bool("slice_whole_image"))


OFF = SliceSettings(0, 0.0, False)  # no slicing: the one form of "off" every module takes


def starts(length: int, size: int, overlap: float) -> list[int]:
    """Where the tiles of one axis begin: every ``size x (1 - overlap)`` pixels, the last one shifted so that
    it ends at the border."""
    if length <= size:
        return [0]
    step = max(1, size - int(overlap * size))  # SAHI's step, so that the tiles are its tiles (tested)
    return [*range(0, length - size, step), length - size]  # the range stops short of the last start


def windows(width: int, height: int, size: int, overlap: float) -> list[Window]:
    """The tiles covering a ``width x height`` image, row by row; the whole image when it fits one tile."""
    if size <= 0 or (width <= size and height <= size):
        return [(0, 0, width, height)]
    return [(x, y, min(x + size, width), min(y + size, height))
            for y in starts(height, size, overlap) for x in starts(width, size, overlap)]


def scan_windows(width: int, height: int, settings: SliceSettings) -> list[Window]:
    """What infer and mining run for one image: its tiles, then the whole image when ``slice_whole_image``
    asks for it and the image is more than one tile."""
    tiles = windows(width, height, settings.size, settings.overlap)
    if settings.whole_image and len(tiles) > 1:
        tiles.append((0, 0, width, height))
    return tiles


def intersection_over_smaller(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m): the area two boxes share over the smaller box's area (1 when one holds the other)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
    return inter / torch.minimum(area_a[:, None], area_b[None, :]).clamp_min(1e-9)


def cut_by_window(dets: torch.Tensor, window: Window, width: int, height: int, margin: float = 2.0) -> torch.Tensor:
    """Per box ``(n, >= 4)`` in image pixels and per side (columns left, top, right, bottom: xyxy's order),
    ``(n, 4)`` bool: whether that side lies on an edge of the box's window that is inside the image. There the
    tile cut the object, which may go on beyond it: the box's extent on that side is unknown, on the others the
    window saw where the object ends."""
    x1, y1, x2, y2 = window
    cut = torch.zeros(len(dets), 4, dtype=torch.bool, device=dets.device)
    if x1 > 0:
        cut[:, 0] = dets[:, 0] <= x1 + margin
    if y1 > 0:
        cut[:, 1] = dets[:, 1] <= y1 + margin
    if x2 < width:
        cut[:, 2] = dets[:, 2] >= x2 - margin
    if y2 < height:
        cut[:, 3] = dets[:, 3] >= y2 - margin
    return cut


def across_a_seam(box: torch.Tensor, cut: torch.Tensor, dets: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
    """Per box of ``dets``, whether it and ``box`` are two pieces of one object that two neighbouring tiles cut
    apart: ``box`` is cut on one side, the other piece on the facing side, they overlap across the seam (each
    reaches into the other's tile), the other goes on beyond ``box``, and along the seam they cover the same
    span (overlap over the shorter above ``MERGE_IOS``). Intersection over the smaller alone misses them: two
    pieces of an object wider than about three overlaps share only the overlap band."""
    out = torch.zeros(len(dets), dtype=torch.bool)
    for axis in (0, 1):  # 0: a vertical seam (pieces side by side), 1: a horizontal one
        lo, hi, across_lo, across_hi = axis, axis + 2, 1 - axis, 3 - axis
        span = (torch.minimum(box[across_hi], dets[:, across_hi]) - torch.maximum(box[across_lo], dets[:, across_lo])).clamp_min(0)
        shorter = torch.minimum(box[across_hi] - box[across_lo], dets[:, across_hi] - dets[:, across_lo]).clamp_min(1e-9)
        aligned = span / shorter > MERGE_IOS
        after = cut[hi] & cuts[:, lo] & (dets[:, lo] < box[hi]) & (dets[:, hi] > box[hi])  # the other piece goes on after box
        before = cut[lo] & cuts[:, hi] & (dets[:, hi] > box[lo]) & (dets[:, lo] < box[lo])
        out |= aligned & (after | before)
    return out


def merge(dets: torch.Tensor, window: torch.Tensor, max_det: int, cut: torch.Tensor, iou: float,
          wanted: Callable[[torch.Tensor, torch.Tensor], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's boxes from all its windows, ``(n, 6)`` (x1 y1 x2 y2 score class, image pixels; ``window`` the
    index of the window each came from; ``cut`` where a tile edge cut it, ``cut_by_window``), merged into one box
    per object, greedily by score. Each kept box absorbs the boxes of its class from *other* windows that are

    - the same object seen whole by another window: IoU above ``iou``, the task's NMS threshold (as one pass's
      NMS would suppress them);
    - a piece of it, or it a piece of them: a tile edge cut one of the two and it lies mostly inside the other
      (intersection over the smaller above ``MERGE_IOS``), or they continue each other across a seam
      (``across_a_seam``). Two boxes no edge cut are never joined by this rule: a small box inside a large one
      is then another object or a fragment, and joining them cost the large object its box whenever the small
      one scored higher (a whole-image model on tiles: large-object mAP@0.5 0.15 against 0.80 unsliced);

    and looks again with its new extent until nothing more joins. It grows to the union of what it absorbed on
    the sides a tile edge cut it, and only there (on an uncut side its window saw where the object ends); a
    side that grows takes the flag of the box it grew to, so a piece grows to the next piece and on to the
    object's far end. Boxes of the kept box's own window went through that window's NMS together and are left
    alone, so touching objects in one tile stay apart. SAHI's greedy NMM (intersection over the smaller for
    every pair, union on every side) is the model; docs/benchmarks.md, section 7, measures both.
    Returns at most ``max_det`` boxes, by score, the score of each the highest of its group's, and per box the
    sides still open: where a tile edge cut it and no absorbed box showed where the object ends. With ``wanted``
    (a merged box and its open sides), only the boxes it wants, the first ``max_det`` of them: the loop stops
    there, so an image's tens of thousands of tile boxes at conf 0.001 cost ``max_det`` steps, not one each."""
    if len(dets) <= 1:
        keep = [wanted is None or wanted(d, c) for d, c in zip(dets, cut, strict=True)]
        return dets[keep][:max_det], cut[keep][:max_det]
    order = dets[:, 4].argsort(descending=True, stable=True)
    dets, window, cut = dets[order], window[order], cut[order]
    pieces = cut.any(1)
    absorbed = torch.zeros(len(dets), dtype=torch.bool)
    kept, kept_open = [], []
    for i in range(len(dets)):  # greedy over boxes by score, on the CPU (one image's boxes)
        if absorbed[i]:
            continue
        absorbed[i] = True
        box, open_sides = dets[i].clone(), cut[i].clone()
        joinable = ~absorbed & (dets[:, 5] == box[5]) & (window != window[i])
        while True:
            same = box_iou(box[None, :4], dets[:, :4])[0] > iou
            inside = intersection_over_smaller(box[None, :4], dets[:, :4])[0] > MERGE_IOS
            group = joinable & (same | (inside & (pieces | bool(open_sides.any()))) | across_a_seam(box, open_sides, dets, cut))
            if not bool(group.any()):
                break
            absorbed |= group
            joinable &= ~group
            members, member_cuts = dets[group], cut[group]
            for side in range(4):  # an open side grows to the furthest absorbed box, and takes its flag
                if not bool(open_sides[side]):
                    continue
                values = members[:, side]
                far = int(values.argmin() if side < 2 else values.argmax())
                if (values[far] < box[side]) if side < 2 else (values[far] > box[side]):
                    box[side] = values[far]
                    open_sides[side] = member_cuts[far, side]
        if wanted is not None and not wanted(box, open_sides):
            continue
        kept.append(box)
        kept_open.append(open_sides)
        if len(kept) == max_det:
            break
    if not kept:
        return dets[:0], cut[:0]
    return torch.stack(kept), torch.stack(kept_open)


def tile_limit(settings: SliceSettings) -> float:
    """The largest box (its longer side, image pixels) some tile is sure to see whole wherever it lies: the overlap
    (``slice_overlap x slice_size``); with ``slice_overlap`` 0 no object is sure to be whole in a tile, and a tile
    answers for every box it sees whole."""
    return settings.overlap * settings.size if settings.overlap > 0 else float(settings.size)


def whole_pass_min(width: int, height: int, img_size: int) -> float:
    """The smallest object (its longer side, in the image's pixels) the whole-image pass answers for: ``WHOLE_MIN``
    pixels of its input, where the image is shrunk by ``img_size / max(width, height)``. 58 px on a 1152x648
    image at 640, 600 px on a 12000x8000 photo (a 200 px object is 11 px there: no box)."""
    return WHOLE_MIN * max(width, height) / img_size


def answer_limit(settings: SliceSettings, width: int, height: int, img_size: int) -> float:
    """With the whole-image pass, the largest object (its longer side, image pixels) the tiles answer for in a
    ``width x height`` image: what some tile is sure to see whole (``tile_limit``) or, on images so large that the
    whole-image pass cannot see objects of that size (``whole_pass_min``), what it cannot see, up to a tile (an
    object larger than a tile reaches the tiles only in pieces, and pieces joined across the seams scored far
    below the whole-image pass even where it saw such objects at 9-32 px). The whole-image pass answers for the
    larger ones. One rule for every image size, measured over image sizes and object sizes (docs/benchmarks.md,
    section 7). Below the limit a large object's pieces are not the tiles' to report: tiles' boxes of large
    objects, mostly pieces of the wrong class, outscored the whole-image boxes, and sliced large-object mAP@0.5
    fell to a fifth of unsliced (SNIP's valid ranges, Singh and Davis, CVPR 2018, make the same split by scale)."""
    return max(tile_limit(settings), min(float(settings.size), whole_pass_min(width, height, img_size)))


class ImageParts:
    """What each of an image's inputs brings, held until all of them are in: passes leave in shape order, so a
    sliced image's tiles may come in several passes. The one tracker of "all of an image's inputs are in",
    for the progress bar (``scan.ImagesDone``) and the merged boxes (``ImageBoxes``). Inputs are
    ``inputs.Meta``: ``index`` and ``parts``."""

    def __init__(self) -> None:
        self.waiting: dict[int, list] = {}  # per image still waiting for some of its inputs

    def add(self, meta, item: object = None) -> list | None:  # noqa: ANN001 - inputs.Meta (inputs imports us)
        """Everything ``meta``'s image brought, in the order it came, when ``meta`` was its last input; else None."""
        if meta.parts == 1:
            return [item]
        got = self.waiting.setdefault(meta.index, [])
        got.append(item)
        return self.waiting.pop(meta.index) if len(got) == meta.parts else None


class ImageBoxes:
    """Collects a sliced image's boxes input by input (passes leave in shape order, so an image's tiles may
    come in several passes) and gives the image's merged boxes once all its inputs are in: what infer, the
    infer of a mining task and the stage evaluation write. Unsliced images (one input) pass straight through.
    Inputs are ``inputs.Meta``: ``index``, ``part``, ``parts`` and ``window``.

    Which pass answers for which object: the tiles' boxes are first merged into objects (``merge``: pieces a tile
    edge cut join across the seams). Without the whole-image pass those are the image's boxes. With it, the tiles
    answer for the objects whose extent they know on every side (no side left open by a cut) and no larger than
    ``answer_limit``, the whole-image pass for the rest, with all of its own boxes; a second ``merge`` joins what
    both passes found (IoU above ``iou``)."""

    def __init__(self, max_det: int, iou: float, settings: SliceSettings, img_size: int) -> None:
        self.max_det, self.iou, self.settings, self.img_size = max_det, iou, settings, img_size
        self.parts = ImageParts()  # per input: (boxes, part, cut)

    def add(self, det: torch.Tensor, meta) -> torch.Tensor | None:  # noqa: ANN001 - inputs.Meta (inputs imports us)
        """The image's boxes ``(n, 6)`` in its pixels, clipped to it, when ``meta`` was its last input, else None.
        Clipped before merging: a tile's box reaching far outside the image would otherwise grow the merged box."""
        det = det.clone()
        det[:, [0, 2]] = det[:, [0, 2]].clamp(0, meta.width)
        det[:, [1, 3]] = det[:, [1, 3]].clamp(0, meta.height)
        if meta.parts == 1:
            return det
        whole = tuple(meta.window) == (0, 0, meta.width, meta.height)
        got = self.parts.add(meta, (det, meta.part, cut_by_window(det, meta.window, meta.width, meta.height), whole))
        if got is None:
            return None
        tiles = [entry for entry in got if not entry[3]]
        wholes = [entry for entry in got if entry[3]]
        if not wholes:
            return _merged(tiles, self.max_det, self.iou)[0]
        limit = answer_limit(self.settings, meta.width, meta.height, self.img_size)

        def answered(box: torch.Tensor, open_sides: torch.Tensor) -> bool:
            return not bool(open_sides.any()) and max(float(box[2] - box[0]), float(box[3] - box[1])) <= limit

        # The tiles' first max_det answered objects are enough: each is a group of its own below, so any later,
        # lower-scoring one could only come after max_det boxes of at least its score (fewer once the parts of
        # large objects are left out: then the lowest-scoring ones may be missing, at conf 0.001 only).
        found = _merged(tiles, self.max_det, self.iou, answered)[0]
        found = found[~inside_the_whole_pass(found, torch.cat([d for d, *_ in wholes]), tile_limit(self.settings), limit)]
        ours = (found, -1, torch.zeros(len(found), 4, dtype=torch.bool), False)  # one window: merged already
        return _merged([ours, *((d, part, torch.zeros_like(c), w) for d, part, c, w in wholes)], self.max_det,
                       self.iou)[0]


def answered_here(boxes: torch.Tensor, meta, settings: SliceSettings, img_size: int) -> torch.Tensor:  # noqa: ANN001
    """Per box of one input (``(n, >= 4)``, the image's pixels, on any device), whether this input answers for it
    under ``ImageBoxes``' rule: what mining scores per input (``mining.base.Miner.detections``), where the merge
    across inputs does not run. With the whole-image pass, a tile answers for the boxes no tile edge cut and no
    larger than ``answer_limit`` (the parts of larger objects, mostly of the wrong class and uncertain, are the
    whole pass's to answer for), the whole-image pass for all of its own; an unsliced image's one input, and
    every tile without the whole-image pass (its pieces join only in the merge), for all. Not applied per input:
    the merge itself, and ``inside_the_whole_pass``, which needs the whole pass's boxes beside a tile's."""
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    if meta.parts == 1 or not settings.whole_image or tuple(meta.window) == (0, 0, meta.width, meta.height):
        return keep
    clipped = boxes[:, :4].clone()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clamp(0, meta.width)  # as ImageBoxes clips before it decides
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clamp(0, meta.height)
    side = torch.maximum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
    limit = answer_limit(settings, meta.width, meta.height, img_size)
    return ~cut_by_window(clipped, meta.window, meta.width, meta.height).any(1) & (side <= limit)


def inside_the_whole_pass(found: torch.Tensor, whole: torch.Tensor, small: float, limit: float) -> torch.Tensor:
    """Per tile object of ``found``, whether it is a view of a part of an object the whole-image pass answers for:
    larger than ``small`` (the overlap) and lying mostly inside (intersection over the smaller above ``MERGE_IOS``)
    a higher-scoring box of the whole pass larger than ``limit``. Inside a large object a tile sees corners and
    edges that look like mid-size objects of their own, no tile edge cuts them, and they outscored the real
    objects (3000-12000 px photos at 640, scaled: docs/benchmarks.md, section 7). Objects smaller than the overlap
    inside a large one (a defect on a part) stay the tiles'."""
    if not len(found) or not len(whole):
        return torch.zeros(len(found), dtype=torch.bool)
    side = torch.maximum(found[:, 2] - found[:, 0], found[:, 3] - found[:, 1])
    whole = whole[torch.maximum(whole[:, 2] - whole[:, 0], whole[:, 3] - whole[:, 1]) > limit]
    if not len(whole):
        return torch.zeros(len(found), dtype=torch.bool)
    covers = (intersection_over_smaller(found[:, :4], whole[:, :4]) > MERGE_IOS) & (whole[None, :, 4] >= found[:, None, 4])
    return (side > small) & covers.any(1)


def _merged(entries: list[tuple[torch.Tensor, int, torch.Tensor, bool]], max_det: int, iou: float,
            wanted: Callable[[torch.Tensor, torch.Tensor], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``merge`` over per-input entries (boxes, part, cut, whole)."""
    if not entries:
        return torch.zeros(0, 6), torch.zeros(0, 4, dtype=torch.bool)
    window = torch.cat([torch.full((len(d),), part) for d, part, *_ in entries])
    return merge(torch.cat([d for d, *_ in entries]), window, max(1, max_det),
                 torch.cat([c for _, _, c, _ in entries]), iou, wanted)
