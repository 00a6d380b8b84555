"""Slicing large images into overlapping tiles, for objects too small to survive the shrink to ``img_size``.

A 4000x3000 photo at 640 px is shrunk about 6x, and a 20 px screw falls below the detection head's
stride. With ``slice_size`` > 0, infer and mining run the model on tiles of ``slice_size`` pixels of the
original image (each letterboxed to ``img_size`` as a whole image would be), then map the boxes back to
the image and merge those that tiles cut or saw twice. The geometry and the merge live here; the engine
(``engine.CandidateTiles``) makes the tiles, ``scan`` merges each candidate's boxes once all its tiles
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

from dataclasses import dataclass

import torch

from executor.protocol import Params, config_error

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in the image's pixels (display frame)
MERGE_IOS = 0.5  # boxes of two tiles overlapping by more than this share of the smaller are one object


@dataclass(frozen=True)
class SliceSettings:
    size: int  # tile side in original pixels; 0: off
    overlap: float  # share of the side neighbouring tiles have in common
    whole_image: bool  # infer and mining: also run the whole image at img_size (large objects)

    @property
    def on(self) -> bool:
        return self.size > 0

    @staticmethod
    def active(slices: SliceSettings | None) -> SliceSettings | None:
        """``slices`` when slicing is on, else None: what the engine and the conversion test against."""
        return slices if slices is not None and slices.on else None

    @classmethod
    def read(cls, p: Params, whole_image: bool = True) -> SliceSettings:
        """From the template's keys; training has no whole-image pass (``whole_image`` False)."""
        size = p.int("slice_size", 0, 100000)
        if 0 < size < 32:
            raise config_error(f"config key 'slice_size' must be 0 (off) or at least 32 pixels, got {size}")
        overlap = p.float("slice_overlap", 0.0, 0.9)
        return cls(size, overlap, p.bool("slice_whole_image") if whole_image else False)


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
    """Per box ``(n, >= 4)`` in image pixels, whether it touches an edge of its window that lies inside the image:
    a box the tile cut, whose object may go on in a neighbouring tile."""
    x1, y1, x2, y2 = window
    cut = torch.zeros(len(dets), dtype=torch.bool)
    if x1 > 0:
        cut |= dets[:, 0] <= x1 + margin
    if y1 > 0:
        cut |= dets[:, 1] <= y1 + margin
    if x2 < width:
        cut |= dets[:, 2] >= x2 - margin
    if y2 < height:
        cut |= dets[:, 3] >= y2 - margin
    return cut


def merge(dets: torch.Tensor, window: torch.Tensor, max_det: int, cut: torch.Tensor | None = None) -> torch.Tensor:
    """One image's boxes from all its windows, ``(n, 6)`` (x1 y1 x2 y2 score class, image pixels; ``window``
    the index of the window each came from; ``cut`` whether a tile edge cut it, ``cut_by_window``), merged:
    highest score first, each kept box absorbs the boxes of the same class from *other* windows that overlap
    it by more than ``MERGE_IOS`` of the smaller one. It grows to hold the absorbed boxes that a tile edge
    cut, and looks again with its grown extent until nothing more joins: the pieces of an object two tiles
    cut become one box. Boxes no edge cut are duplicates and only suppressed: growing by them let a
    low-scoring, loose box (the whole-image pass at conf 0.001 makes many) inflate a tight one. Boxes of the
    kept box's own window went through that window's NMS together and are left alone, so touching objects
    in one tile stay apart. SAHI's greedy NMM with IOS is the model; where ours differs (it grows by every
    merged box, from the first box's extent only, and merges within a tile too) the tests say so. Returns
    at most ``max_det`` boxes, by score."""
    if len(dets) <= 1:
        return dets[:max_det]
    cut = torch.ones(len(dets), dtype=torch.bool) if cut is None else cut
    order = dets[:, 4].argsort(descending=True, stable=True)
    dets, window, cut = dets[order], window[order], cut[order]
    absorbed = torch.zeros(len(dets), dtype=torch.bool)
    kept = []
    for i in range(len(dets)):  # greedy over boxes by score, on the CPU (one image's boxes)
        if absorbed[i]:
            continue
        absorbed[i] = True
        box = dets[i].clone()
        joinable = ~absorbed & (dets[:, 5] == box[5]) & (window != window[i])
        while True:
            group = joinable & (intersection_over_smaller(box[None, :4], dets[:, :4])[0] > MERGE_IOS)
            if not bool(group.any()):
                break
            absorbed |= group
            joinable &= ~group
            grow = group & cut
            if bool(grow.any()):
                box[0:2] = torch.minimum(box[0:2], dets[grow, 0:2].min(0).values)
                box[2:4] = torch.maximum(box[2:4], dets[grow, 2:4].max(0).values)
        kept.append(box)
        if len(kept) == max_det:
            break
    return torch.stack(kept)


class ImageBoxes:
    """Collects a sliced image's boxes input by input (passes leave in shape order, so an image's tiles may
    come in several passes) and gives the image's merged boxes once all its inputs are in. Unsliced images
    (one input) pass straight through. Inputs are ``engine.Meta``: ``index``, ``part`` and ``parts``."""

    def __init__(self, max_det: int) -> None:
        self.max_det = max_det
        self.waiting: dict[int, list[tuple[torch.Tensor, int, torch.Tensor]]] = {}

    def add(self, det: torch.Tensor, meta) -> torch.Tensor | None:  # noqa: ANN001 - engine.Meta (engine imports us)
        """The image's boxes ``(n, 6)`` in its pixels, clipped to it, when ``meta`` was its last input, else None.
        Clipped before merging: a tile's box reaching far outside the image would otherwise grow the merged box."""
        det = det.clone()
        det[:, [0, 2]] = det[:, [0, 2]].clamp(0, meta.width)
        det[:, [1, 3]] = det[:, [1, 3]].clamp(0, meta.height)
        if meta.parts == 1:
            return det
        got = self.waiting.setdefault(meta.index, [])
        got.append((det, meta.part, cut_by_window(det, meta.window, meta.width, meta.height)))
        if len(got) < meta.parts:
            return None
        del self.waiting[meta.index]
        window = torch.cat([torch.full((len(d),), part) for d, part, _ in got])
        return merge(torch.cat([d for d, _, _ in got]), window, self.max_det, torch.cat([c for _, _, c in got]))
