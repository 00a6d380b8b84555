"""Slicing (``executor.slicing``): tile geometry, merging boxes across tiles, and sliced infer and mining run
for real on mosaics of the sample's images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_INFER, model_files, run_task
from contract import check_boxes_inside, check_infer_json, check_mining_tsv, check_monitor_error
from executor import protocol, slicing
from executor.inputs import CandidateImages, CandidateTiles, letterbox, loaded_chunk, read_image, tile_inputs
from executor.mining import algorithms
from PIL import Image

NAMES = ["circle", "square"]


def settings(size: int, overlap: float = 0.2, whole: bool = True) -> slicing.SliceSettings:
    return slicing.SliceSettings(size, overlap, whole)


@pytest.mark.parametrize("width, height, size, overlap", [(1000, 700, 400, 0.2), (1001, 399, 400, 0.25), (640, 640, 256, 0.0),
                                                          (5000, 300, 640, 0.5)])
def test_tiles_cover_the_image_inside_its_borders(width, height, size, overlap):
    tiles = slicing.windows(width, height, size, overlap)
    covered = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert x2 - x1 == min(size, width) and y2 - y1 == min(size, height), "every tile is slice_size across"
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    xs = sorted({x1 for x1, *_ in tiles})
    assert all(b - a <= size * (1 - overlap) + 1 for a, b in zip(xs, xs[1:], strict=False)), "neighbours overlap"
    assert xs[-1] == max(0, width - size), "the last column ends at the border"


def test_a_tile_no_smaller_than_the_image_is_no_slicing(tmp_path):
    assert slicing.windows(300, 200, 300, 0.2) == [(0, 0, 300, 200)]
    assert slicing.scan_windows(300, 200, settings(4096)) == [(0, 0, 300, 200)], "no second whole-image pass"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (plain,) = CandidateImages([str(tmp_path / "a.png")], 64)[0]
    (sliced,) = tile_inputs(0, str(tmp_path / "a.png"), 64, settings(4096))
    assert torch.equal(plain[0], sliced[0]) and plain[1] == sliced[1]


def test_tiles_are_cut_in_the_display_frame(tmp_path):
    """An EXIF-rotated JPEG is tiled as it is shown (and labelled), not as it is stored."""
    stored = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: 200 wide, 300 high
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, exif=exif)
    image, _ = read_image(str(tmp_path / "r.jpg"))
    assert image.shape[:2] == (300, 200)
    inputs = list(tile_inputs(0, str(tmp_path / "r.jpg"), 64, settings(128, 0.25, whole=False)))
    assert [m.offset for _, m in inputs] == [(x, y) for y in (0, 96, 172) for x in (0, 72)]
    for tensor, meta in inputs:
        assert (meta.width, meta.height, meta.parts) == (200, 300, len(inputs))
        x, y = meta.offset
        expected, ratio, pad = letterbox(image[y : y + 128, x : x + 128], 64)
        assert torch.equal(tensor, torch.from_numpy(expected[:, :, ::-1].transpose(2, 0, 1).copy()))
        assert (ratio, pad) == (meta.ratio, meta.pad)


@pytest.mark.parametrize("workers", [0, 2])
def test_tiles_stream_in_chunks_every_input_once(tmp_path, workers):
    """The loader gives each candidate's inputs in chunks of at most one pass, every input exactly once (the
    workers share the candidates out), and an unreadable candidate as one metadata-only item."""
    rng = np.random.default_rng(2)
    paths = []
    for k, (w, h) in enumerate([(300, 200), (130, 90), (420, 260), (90, 80)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
        paths.append(str(tmp_path / f"{k}.png"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    paths.append(str(tmp_path / "bad.jpg"))
    slices = settings(100, 0.2)
    loader = torch.utils.data.DataLoader(CandidateTiles(paths, 64, slices, 5), batch_size=None, num_workers=workers,
                                         collate_fn=loaded_chunk)
    got, bad = {}, []
    for items, unreadable in loader:
        assert 1 <= len(items) + len(unreadable) <= 5
        bad += [m.path for m in unreadable]
        for tensor, meta in items:
            assert (meta.index, meta.part) not in got
            got[meta.index, meta.part] = tensor
    assert bad == [paths[-1]]
    for index, path in enumerate(paths[:-1]):
        expected = list(tile_inputs(index, path, 64, slices))
        assert [got[index, part].shape for part in range(len(expected))] == [t.shape for t, _ in expected]
        assert all(torch.equal(got[index, m.part], t) for t, m in expected)
        assert len([key for key in got if key[0] == index]) == expected[0][1].parts


def test_tiles_are_letterboxed_only_when_asked_for(tmp_path, monkeypatch):
    """A large image's tiles are made a chunk at a time, not all at once (what keeps memory flat on 100 MP)."""
    from executor import inputs

    Image.fromarray(np.zeros((1000, 1000, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    made = []
    real = inputs.letterbox
    monkeypatch.setattr(inputs, "letterbox", lambda image, size, stride: made.append(1) or real(image, size, stride))
    chunks = iter(CandidateTiles([str(tmp_path / "big.png")], 32, settings(64, 0.0), 4))
    assert len(next(chunks)) == 4 and len(made) == 4, "the first chunk needs its own four tiles only"
    assert sum(map(len, chunks)) == 16 * 16 + 1 - 4 and len(made) == 16 * 16 + 1


def test_progress_counts_an_image_once_all_its_inputs_are_through():
    from executor.inputs import Meta
    from executor.scan import ImagesDone

    progress = ImagesDone()
    tiles = [Meta(0, "a", part=p, parts=3) for p in range(3)]
    assert progress.add(tiles[:2] + [Meta(1, "b")], []) == 1, "b is done, a waits for its third tile"
    assert progress.add([], [Meta(2, "c", problem="unreadable images")]) == 2
    assert progress.add(tiles[2:], []) == 3


def det(x1, y1, x2, y2, score, cls=0.0):
    return [x1, y1, x2, y2, score, cls]


_METAS: dict[tuple, list] = {}  # per image size and slicing: the engine's Meta of each window


def merged(tmp_path: Path, width: int, height: int, slices: slicing.SliceSettings, boxes: dict, max_det: int = 300,
           iou: float = 0.45, img_size: int | None = None) -> torch.Tensor:
    """An image's boxes merged exactly as infer, mining's infer and the stage evaluation merge them: each window's
    boxes (``boxes[window]``, image pixels) into ``slicing.ImageBoxes`` with the ``Meta`` the engine makes for that
    window (``tile_inputs`` of a real image of that size). ``img_size`` is the model's input (the tile size unless
    given, as the templates have it)."""
    metas = _metas(tmp_path, width, height, slices)  # a 12000x8000 image takes seconds to write and cut
    assert set(boxes) <= {meta.window for meta in metas}, "boxes for a window the image does not have"
    collector, out = slicing.ImageBoxes(max_det, iou, slices, img_size or slices.size), None
    for meta in metas:
        out = collector.add(torch.tensor(boxes.get(meta.window, []), dtype=torch.float32).reshape(-1, 6), meta)
    assert out is not None and not collector.parts.waiting
    return out


def rounded(boxes: torch.Tensor) -> list[list[float]]:
    return [[round(v, 3) for v in box] for box in boxes.tolist()]


def test_a_large_objects_whole_image_box_survives_pieces_that_outscore_it(tmp_path):
    """The issue's example: 720x400, 400 px tiles; the tiles' pieces score 0.8 and 0.75, the whole-image box 0.7.
    One box comes out, as large as the object: the whole-image pass's, which answers for objects larger than
    the overlap (``slicing.tile_limit``)."""
    whole = (0, 0, 720, 400)
    tiles = slicing.windows(720, 400, 400, 0.2)
    assert tiles == [(0, 0, 400, 400), (320, 0, 720, 400)]
    boxes = {tiles[0]: [det(2, 3, 400, 398, 0.8)], tiles[1]: [det(320, 3, 718, 398, 0.75)], whole: [det(1, 2, 719, 399, 0.7)]}
    assert rounded(merged(tmp_path, 720, 400, settings(400), boxes)) == [[1, 2, 719, 399, 0.7, 0]]
    # without the whole-image pass the two pieces, which share only the 80 px overlap, join across the seam
    del boxes[whole]
    assert rounded(merged(tmp_path, 720, 400, settings(400, whole=False), boxes)) == [[2, 3, 718, 398, 0.8, 0]]


@pytest.mark.parametrize("whole", [True, False])
def test_a_400_px_object_on_a_640_px_seam_is_one_box(tmp_path, whole):
    """1280x640 at 640 px tiles: columns start at 0, 512 and 640. An object from x 440 to 840 is cut by all three;
    the piece in the last tile scores highest. Beside it a small object, and the whole-image pass's loose box
    around that one."""
    tiles = slicing.windows(1280, 640, 640, 0.2)
    assert [t[0] for t in tiles] == [0, 512, 640]
    boxes = {tiles[0]: [det(440, 100, 640, 500, 0.8), det(100, 300, 120, 320, 0.7)],
             tiles[1]: [det(512, 100, 840, 500, 0.85)],
             tiles[2]: [det(640, 101, 840, 500, 0.9)]}
    if whole:  # the large object is the whole image's; the small one the tile's, the loose box stays as unsliced
        boxes[(0, 0, 1280, 640)] = [det(441, 99, 839, 501, 0.6), det(90, 290, 130, 330, 0.02)]
        expected = [[100, 300, 120, 320, 0.7, 0], [441, 99, 839, 501, 0.6, 0], [90, 290, 130, 330, 0.02, 0]]
    else:  # the pieces join: the last tile's grows left to the middle one's, then to the first one's
        expected = [[440, 101, 840, 500, 0.9, 0], [100, 300, 120, 320, 0.7, 0]]
    assert rounded(merged(tmp_path, 1280, 640, settings(640, whole=whole), boxes)) == expected


def test_beside_the_whole_image_a_tile_answers_for_objects_no_larger_than_the_overlap(tmp_path):
    """A tile's box larger than the overlap (80 px here) is left to the whole-image pass even when no edge cut it
    (it may be a part of a larger object that looks like one), and so is a small box a tile edge cut (another
    tile sees that object whole). Without the whole-image pass the tiles keep them all."""
    tile, whole = (0, 0, 400, 400), (0, 0, 720, 400)
    assert slicing.tile_limit(settings(400)) == 80 and slicing.tile_limit(settings(400, 0.0)) == 400
    boxes = {tile: [det(100, 100, 190, 150, 0.9), det(10, 10, 60, 60, 0.8), det(380, 10, 400, 30, 0.7)],
             whole: [det(500, 200, 600, 300, 0.5)]}
    assert rounded(merged(tmp_path, 720, 400, settings(400), boxes)) == [[10, 10, 60, 60, 0.8, 0], [500, 200, 600, 300, 0.5, 0]]
    assert len(merged(tmp_path, 720, 400, settings(400, whole=False), {tile: boxes[tile]})) == 3


def test_on_a_12000x8000_photo_a_mid_size_object_a_tile_saw_whole_keeps_its_box(tmp_path):
    """Issue 42's example: 12000x8000 at img_size 640, 640 px tiles. The whole-image pass shrinks the photo 18.75x:
    a 200 px object is 11 px there, and it finds nothing. A tile saw the object whole: its box is the answer
    (the overlap, 128 px, was the tiles' limit at every image size before)."""
    slices = settings(640)
    assert slicing.whole_pass_min(12000, 8000, 640) == 600 == slicing.answer_limit(slices, 12000, 8000, 640)
    tile = slicing.windows(12000, 8000, 640, 0.2)[40]
    x, y = tile[0] + 100, tile[1] + 100
    boxes = {tile: [det(x, y, x + 200, y + 150, 0.8)]}
    assert rounded(merged(tmp_path, 12000, 8000, slices, boxes)) == [[x, y, x + 200, y + 150, 0.8, 0]]
    # a 620 px box no tile edge cut is above the limit: the whole pass's (33 px there), which found a 900 px object
    big = [det(tile[0] + 10, tile[1] + 10, tile[0] + 630, tile[1] + 600, 0.9)]
    whole = [det(tile[0] - 100, tile[1] - 100, tile[0] + 800, tile[1] + 700, 0.6)]
    out = merged(tmp_path, 12000, 8000, slices, {tile: big, (0, 0, 12000, 8000): whole})
    assert rounded(out) == [[tile[0] - 100, tile[1] - 100, tile[0] + 800, tile[1] + 700, 0.6, 0]]


def test_inside_a_large_object_of_the_whole_pass_a_tiles_mid_size_view_is_a_part_of_it(tmp_path):
    """12000x8000: a tile sees a 250 px 'object' no edge cut inside a 3000 px object the whole pass found with a
    higher score: a part of it, left out. A 60 px one (under the overlap: a defect on a part) stays, and so does a
    250 px one inside a lower-scoring whole box (conf 0.001's loose boxes must not hide real objects)."""
    tile = slicing.windows(12000, 8000, 640, 0.2)[200]
    x, y = tile[0] + 100, tile[1] + 100
    part, defect = det(x, y, x + 250, y + 240, 0.9), det(x + 300, y + 300, x + 360, y + 350, 0.8)
    whole = (0, 0, 12000, 8000)
    large = det(tile[0] - 1000, tile[1] - 1000, tile[0] + 2000, tile[1] + 1500, 0.95)
    out = rounded(merged(tmp_path, 12000, 8000, settings(640), {tile: [part, defect], whole: [large]}))
    assert out == [rounded(torch.tensor([large]))[0], rounded(torch.tensor([defect]))[0]]
    loose = large[:4] + [0.05, 0]
    out = rounded(merged(tmp_path, 12000, 8000, settings(640), {tile: [part, defect], whole: [loose]}))
    assert len(out) == 3


def test_on_a_12000x8000_photo_a_mid_size_object_every_tile_cut_is_joined_across_the_seam(tmp_path):
    """A 250 px object on a seam: no tile sees it whole, the whole-image pass (13 px there) misses it. Its two
    pieces join into one box with the whole-image pass on, as they do without it; a lone piece of the wrong
    class, whose far side no tile saw, is left out. A 700 px object (37 px there) is the whole-image pass's."""
    tiles = slicing.windows(12000, 8000, 640, 0.2)
    left, right = tiles[0], tiles[1]  # columns from 0 and from 512: the seam band is x 512-640
    assert (left[0], right[0]) == (0, 512)
    pieces = {left: [det(450, 100, 640, 300, 0.7), det(500, 450, 640, 600, 0.6, 1.0)],
              right: [det(512, 102, 700, 298, 0.8)]}
    for whole in (True, False):
        out = rounded(merged(tmp_path, 12000, 8000, settings(640, whole=whole), pieces))
        expected = [[450, 102, 700, 298, 0.8, 0]] + ([] if whole else [[500, 450, 640, 600, 0.6, 1]])
        assert out == expected, whole
    large = {left: [det(300, 100, 640, 400, 0.7)], right: [det(512, 102, 1000, 398, 0.8)]}
    assert rounded(merged(tmp_path, 12000, 8000, settings(640), large)) == []
    assert rounded(merged(tmp_path, 12000, 8000, settings(640, whole=False), large)) == [[300, 102, 1000, 398, 0.8, 0]]


# A tile of a 12000x8000 photo at img_size 640 with 640 px tiles (answer limit 600 px), and boxes in it, image
# pixels: kept by a tile beside the whole-image pass (True) or the whole pass's to answer for (False).
TILE_BOXES = [((100, 100, 300, 250), True),  # a 200 px object seen whole: the whole pass (11 px there) misses it
              ((10, 10, 600, 500), True),  # 590 px: still under the limit
              ((10, 10, 630, 300), False),  # 620 px: above the limit, the whole pass's (33 px there)
              ((0, 200, 120, 260), False),  # cut by the tile's left edge: a piece, another tile sees the rest
              ((300, 500, 400, 640), False),  # cut by its bottom edge
              ((5, 5, 60, 60), True)]  # a small object near (not on) the edges


def test_mining_scores_a_tile_for_the_objects_infer_lets_it_answer_for(tmp_path):
    """``slicing.answered_here``, which decides per input which boxes a miner scores, keeps from a tile exactly the
    boxes infer's merge (``ImageBoxes``, the production call) keeps from that tile alone, on a 12000x8000 photo."""
    slices = settings(640)
    tile = slicing.windows(12000, 8000, 640, 0.2)[40]
    meta = next(m for m in _metas(tmp_path, 12000, 8000, slices) if m.window == tile)
    boxes = torch.tensor([[tile[0] + a, tile[1] + b, tile[0] + c, tile[1] + d, 0.9 - 0.1 * k, 0]
                          for k, ((a, b, c, d), _) in enumerate(TILE_BOXES)], dtype=torch.float32)
    kept = slicing.answered_here(boxes, meta, slices, 640)
    assert kept.tolist() == [answered for _, answered in TILE_BOXES]
    for box, answered in zip(boxes.tolist(), kept.tolist(), strict=True):
        assert len(merged(tmp_path, 12000, 8000, slices, {tile: [box]}, img_size=640)) == int(answered), box
    whole = next(m for m in _metas(tmp_path, 12000, 8000, slices) if m.window == (0, 0, 12000, 8000))
    assert slicing.answered_here(boxes, whole, slices, 640).all()  # the whole pass answers for all of its own
    assert slicing.answered_here(boxes, meta, settings(640, whole=False), 640).all()  # tiles only: pieces merge later


def test_a_miner_sees_only_the_boxes_each_input_answers_for(trained, tmp_path):
    """The production path: ``Miner.detections`` on a real engine and the engine's ``Meta`` of a 12000x8000 photo's
    tile and whole view, the pass's NMS output given in model-input pixels."""
    from executor import weights
    from executor.engine import Batch, Engine
    from executor.mining import MinerContext
    from executor.mining.base import MAX_DET, Miner

    slices = settings(640)
    engine = Engine(weights.choose(model_files(trained), str(tmp_path), "test"), "cpu", 640, False, ["circle", "square"],
                    slices=slices)
    miner = Miner(MinerContext(engine, torch.ones(2), 0.05, 0.45, 10, 0))
    tile = slicing.windows(12000, 8000, 640, 0.2)[40]
    metas = [m for m in _metas(tmp_path, 12000, 8000, slices) if m.window in (tile, (0, 0, 12000, 8000))]
    image = torch.tensor([[tile[0] + a, tile[1] + b, tile[0] + c, tile[1] + d] for (a, b, c, d), _ in TILE_BOXES])
    rows = []
    for meta in metas:  # the same image-pixel boxes, as each input's model input sees them
        ratio, pad, offset = torch.tensor(meta.ratio), torch.tensor(meta.pad), torch.tensor(meta.offset)
        inputs = (image - offset.repeat(2)) * ratio.repeat(2) + pad.repeat(2)
        rows.append(torch.cat([inputs, torch.full((len(inputs), 1), 0.5), torch.zeros(len(inputs), 3)], 1))
    batch = Batch(torch.zeros(2, 3, 32, 32), metas, torch.zeros(0), None, [])
    batch.nms[(0.05, 0.45, MAX_DET)] = rows
    seen = miner.detections(batch)
    by_window = {meta.window: len(found) for meta, found in zip(metas, seen, strict=True)}
    assert by_window == {tile: sum(answered for _, answered in TILE_BOXES), (0, 0, 12000, 8000): len(TILE_BOXES)}
    assert [len(found) for found in miner.detections(batch, by_rule=False)] == [len(TILE_BOXES)] * 2


def _metas(tmp_path: Path, width: int, height: int, slices: slicing.SliceSettings) -> list:
    """The engine's ``Meta`` of each window of a ``width x height`` image (cached with ``merged``'s)."""
    key = (width, height, slices.size, slices.overlap, slices.whole_image)
    if key not in _METAS:
        path = tmp_path / f"{width}x{height}.png"
        Image.new("RGB", (width, height)).save(path)
        _METAS[key] = [meta for _, meta in tile_inputs(0, str(path), 32, slices)]
    return _METAS[key]


@pytest.mark.parametrize("width, height", [(1000, 1000), (4000, 3000), (12000, 8000), (16000, 12000)])
def test_every_object_size_is_some_passs_to_answer(width, height):
    """From 1 to 200 MP at 640: the tiles answer up to ``answer_limit``, which is never below the overlap (every
    smaller object is whole in some tile) and never below what the whole-image pass cannot see up to a tile, so
    the two ranges meet with no gap: above the limit the whole pass sees the object, or no tile sees it whole."""
    slices = settings(640)
    limit = slicing.answer_limit(slices, width, height, 640)
    assert limit >= slicing.tile_limit(slices) == 128
    assert limit >= min(640, slicing.whole_pass_min(width, height, 640))
    assert limit * 640 / max(width, height) >= slicing.WHOLE_MIN or limit == 640


@pytest.mark.parametrize("whole", [True, False])
def test_max_det_keeps_the_top_of_the_full_merge(tmp_path, whole):
    """The merge stops after ``max_det`` boxes (a 7 MP image's tile boxes at conf 0.001 are tens of thousands):
    the boxes it gives are the first ``max_det`` of the merge run to the end, on many random boxes of every size
    in every window, pieces and duplicates included."""
    slices = settings(640, whole=whole)
    rng = np.random.default_rng(7)
    windows = slicing.scan_windows(2000, 1400, slices)
    boxes = {}
    for window in windows:
        x1, y1, x2, y2 = window
        sides = rng.integers(8, 500, 60)
        xs, ys = rng.integers(x1, x2 - 8, 60), rng.integers(y1, y2 - 8, 60)
        boxes[window] = [det(float(x), float(y), float(min(x + w, x2)), float(min(y + w, y2)), float(rng.random()),
                             float(rng.integers(0, 2))) for x, y, w in zip(xs, ys, sides, strict=True)]
    everything = merged(tmp_path, 2000, 1400, slices, boxes, max_det=100000)
    for k in (1, 5, 40):
        assert torch.equal(merged(tmp_path, 2000, 1400, slices, boxes, max_det=k), everything[:k]), k


def test_a_box_cut_by_a_tile_edge_is_merged_back_into_one(tmp_path):
    # tiles [0, 400) and [320, 720): tile 0 sees the object's left part, cut at its edge; tile 1 sees it whole
    tiles = slicing.windows(720, 400, 400, 0.2)
    for piece, view in ((0.6, 0.9), (0.9, 0.6)):  # the whole view first, or the piece
        boxes = {tiles[0]: [det(380, 50, 400, 90, piece), det(100, 100, 120, 120, 0.8)], tiles[1]: [det(380, 50, 460, 90, view)]}
        out = merged(tmp_path, 720, 400, settings(400, whole=False), boxes)
        assert rounded(out) == [[380, 50, 460, 90, 0.9, 0], [100, 100, 120, 120, 0.8, 0]]


def test_a_small_box_inside_a_large_one_neither_cut_is_not_joined_to_it(tmp_path):
    """A tight tile box and a loose, low-scoring whole-image box around it (the whole-image pass at conf 0.001
    makes many): the tight box is not inflated, and the loose box stays as the whole-image pass alone would
    leave it. The same rule keeps a large object's box when a smaller box inside it scores higher."""
    boxes = {(0, 0, 400, 400): [det(100, 100, 120, 120, 0.9)], (0, 0, 720, 400): [det(60, 70, 190, 160, 0.05)]}
    assert rounded(merged(tmp_path, 720, 400, settings(400), boxes)) == [[100, 100, 120, 120, 0.9, 0], [60, 70, 190, 160, 0.05, 0]]
    same = {(0, 0, 400, 400): [det(100, 100, 120, 120, 0.9)], (0, 0, 720, 400): [det(99, 101, 121, 120, 0.3)]}
    assert rounded(merged(tmp_path, 720, 400, settings(400), same)) == [[100, 100, 120, 120, 0.9, 0]], "one object, twice"


def test_cut_by_window_flags_only_the_sides_on_inner_tile_edges():
    boxes = torch.tensor([det(0, 10, 30, 40, 0.9), det(370, 10, 400, 40, 0.9), det(100, 100, 120, 120, 0.9),
                          det(330, 0, 400, 400, 0.9)])
    assert slicing.cut_by_window(boxes, (0, 0, 400, 400), 720, 400).tolist() == [
        [False] * 4, [False, False, True, False], [False] * 4, [False, False, True, False]]
    assert slicing.cut_by_window(boxes, (320, 0, 720, 400), 720, 400)[3].tolist() == [False, False, False, False]
    assert not slicing.cut_by_window(boxes, (0, 0, 720, 400), 720, 400).any(), "the whole image cuts nothing"


def test_touching_objects_of_one_tile_stay_apart_and_classes_do_not_merge(tmp_path):
    a, b = (0, 0, 400, 400), (320, 0, 720, 400)
    touching = [det(10, 10, 30, 30, 0.9), det(15, 15, 35, 35, 0.8)]
    assert len(merged(tmp_path, 720, 400, settings(400, whole=False), {a: touching})) == 2
    other_class = {a: [det(10, 10, 30, 30, 0.9)], b: [det(330, 10, 350, 30, 0.7, 1.0)],
                   (0, 0, 720, 400): [det(12, 12, 30, 30, 0.7, 1.0), det(331, 11, 350, 30, 0.6, 1.0)]}
    assert len(merged(tmp_path, 720, 400, settings(400), other_class)) == 3  # the whole pass's class-1 box joins b's
    assert len(merged(tmp_path, 720, 400, settings(400), other_class, max_det=1)) == 1  # max_det holds after merging


@pytest.mark.parametrize("key, value", [("slice_size", -1), ("slice_size", 16), ("slice_size", "big"),
                                        ("slice_overlap", 0.95), ("slice_overlap", "x"), ("slice_whole_image", "maybe")])
def test_bad_slicing_values_fail_with_300001_naming_the_key(key, value):
    template = protocol.load_template("infer")
    with pytest.raises(protocol.YmirError) as info:
        slicing.SliceSettings.read(protocol.Params(template, {**template, key: value}, {key: value}))
    assert info.value.code == protocol.ErrorCode.CONFIG and key in info.value.message


@pytest.fixture(scope="module")
def mosaics(sample_root, tmp_path_factory):
    """Four large candidates made of the sample's candidate images side by side, and two small ones."""
    sources = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    out = tmp_path_factory.mktemp("mosaics")
    paths = []
    for k in range(4):
        canvas = Image.new("RGB", (480, 256), (200, 200, 200))
        for j in range(3):
            canvas.paste(Image.open(sources[(3 * k + j) % len(sources)]).convert("RGB").resize((160, 128)), (160 * j, 128 * (j % 2)))
        canvas.save(out / f"mosaic-{k}.jpg", quality=95)
        paths.append(str(out / f"mosaic-{k}.jpg"))
    return paths + sources[:2]


def sliced_task(sample_root, trained, mosaics, tasks, extra):
    index = sample_root / "in" / "candidate-index.tsv"
    saved = index.read_text()
    index.write_text("\n".join(mosaics) + "\n")
    try:
        config = {**TINY_INFER, "conf_thres": 0.001, "model_params_path": model_files(trained), **extra}
        return run_task(sample_root, tasks, config)
    finally:
        index.write_text(saved)


def test_sliced_infer_writes_every_candidate_with_boxes_in_the_image(sample_root, trained, mosaics):
    rc, log = sliced_task(sample_root, trained, mosaics, ["infer"], {"slice_size": 128, "slice_overlap": 0.25,
                                                                     "gpu_decode": True})
    assert rc == 0, log[-2000:]
    assert "gpu_decode is ignored with slicing" in log
    result = check_infer_json(str(sample_root / "out" / "infer-result.json"), mosaics, NAMES, legacy=False)
    check_boxes_inside(result, {p.rsplit("/", 1)[-1]: Image.open(p).size for p in mosaics})
    assert sum(len(e["boxes"]) for n, e in result.items() if n.startswith("mosaic")), "boxes on the mosaics"


def test_sliced_infer_with_tiles_as_large_as_the_images_is_plain_infer(sample_root, trained, mosaics):
    outputs = []
    for extra in ({"slice_size": 0}, {"slice_size": 4096}):
        rc, log = sliced_task(sample_root, trained, mosaics, ["infer"], extra)
        assert rc == 0, log[-2000:]
        outputs.append(json.loads((sample_root / "out" / "infer-result.json").read_text()))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("algorithm", sorted(algorithms()))
def test_sliced_mining_scores_every_candidate_with_each_algorithm(sample_root, trained, mosaics, algorithm):
    rc, log = sliced_task(sample_root, trained, mosaics, ["mining", "infer"],
                          {"slice_size": 128, "mining_algorithm": algorithm, "mining_min_score": 0.001})
    assert rc == 0, log[-2000:]
    check_mining_tsv(str(sample_root / "out" / "result.tsv"), mosaics)
    check_infer_json(str(sample_root / "out" / "infer-result.json"), mosaics, NAMES, legacy=False)


def test_sliced_mining_does_not_depend_on_the_batch(sample_root, trained, mosaics):
    results = []
    for batch in (1, 5):
        rc, log = sliced_task(sample_root, trained, mosaics, ["mining"],
                              {"slice_size": 128, "mining_algorithm": "entropy", "mining_min_score": 0.001,
                               "batch_size_per_gpu": batch})
        assert rc == 0, log[-2000:]
        results.append([line.split("\t") for line in (sample_root / "out" / "result.tsv").read_text().splitlines()])
    (one, five) = results
    assert [p for p, _ in one] == [p for p, _ in five]
    assert [float(s) for _, s in one] == pytest.approx([float(s) for _, s in five], abs=1e-4)


def test_a_bad_slice_size_fails_the_task_with_300001(sample_root, trained, mosaics):
    rc, log = sliced_task(sample_root, trained, mosaics, ["infer"], {"slice_size": 8})
    assert rc != 0
    message = check_monitor_error(str(sample_root / "out" / "monitor.txt"), 300001)
    assert "slice_size" in message and "slice_size" in log.strip().splitlines()[-1]


# ---------------------------------------------------------------- training on tiles


def test_tile_labels_keep_what_the_tile_holds():
    from executor.dataset import tile_labels

    boxes = [(0, 10, 10, 30, 30), (1, 90, 10, 130, 30), (0, 95, 50, 120, 60), (1, 0, 0, 200, 100)]
    kept, cut = tile_labels(boxes, (0, 0, 100, 100))
    # inside: kept in tile pixels; half inside (25 %, 10/40 px... 10 of 40 wide): cut; 5 of 25 wide: cut;
    # the whole-image box is 50 % inside this tile: kept, clipped
    assert kept == [(0, 10, 10, 30, 30), (1, 0, 0, 100, 100)] and cut == 2
    kept, cut = tile_labels(boxes, (60, 0, 160, 100))
    assert (1, 30, 10, 70, 30) in kept and (0, 35, 50, 60, 60) in kept and cut == 0


def test_conversion_with_slicing_writes_tiles_beside_the_whole_images(sample_root, tmp_path):
    import json as json_

    from executor import dataset

    root = tmp_path / "yolo"
    data = dataset.convert(str(sample_root / "in" / "train-index.tsv"), str(sample_root / "in" / "val-index.tsv"), root,
                           "ark:raw", NAMES, settings(64, 0.25), img_size=48)
    assert data.endswith("data.yaml")
    listed = (root / "train.txt").read_text().split()
    tiles = [p for p in listed if "_tile" in p]
    wholes = [p for p in listed if "_tile" not in p]
    assert len(set(wholes)) == len((sample_root / "in" / "train-index.tsv").read_text().split("\n")) - 1
    assert all("/images/train-whole/" in p for p in wholes), "a tiled image's whole view is its copy, not its link"
    for whole in set(wholes):  # listed once per WHOLE_EVERY of its windows: 4 to 9 here, so once or twice
        original = root / "images" / "train" / Path(whole).name
        width, height = Image.open(original).size
        views = round(len(slicing.windows(width, height, 64, 0.25)) / dataset.WHOLE_EVERY)
        assert wholes.count(whole) == dataset.whole_views(width, height, settings(64, 0.25)) == max(1, views)
        assert max(Image.open(whole).size) == 48, "shrunk to img_size, once, at conversion"
        label = Path(whole.replace("/images/", "/labels/")).with_suffix(".txt").read_text()
        assert label == (root / "labels" / "train" / original.name).with_suffix(".txt").read_text()
    assert {wholes.count(w) for w in wholes} == {1, 2}, "the sample has images of 4 and of 9 windows"
    assert tiles, "the sample's images (96-160 px) are larger than 64 px tiles"
    for tile in tiles:
        image = Image.open(tile)
        assert image.size == (64, 64)
        for line in Path(tile.replace("/images/", "/labels/")).with_suffix(".txt").read_text().splitlines():
            cls, cx, cy, w, h = (float(v) for v in line.split())
            assert -1e-5 <= cx - w / 2 and cx + w / 2 <= 1 + 1e-5 and -1e-5 <= cy - h / 2 and cy + h / 2 <= 1 + 1e-5
    empty = [t for t in tiles if not Path(t.replace("/images/", "/labels/")).with_suffix(".txt").read_text().strip()]
    assert len(empty) <= len(tiles) - len(empty), "at most one tile without boxes per tile with some (and one per image)"
    truth = json_.loads((root / dataset.VAL_TRUTH).read_text())
    assert len(truth) == len((sample_root / "in" / "val-index.tsv").read_text().split("\n")) - 1
    assert all(len(box) == 5 for _, boxes in truth for box in boxes)


def test_conversion_without_the_whole_image_trains_on_tiles_only(sample_root, tmp_path):
    from executor import dataset

    root = tmp_path / "yolo"
    dataset.convert(str(sample_root / "in" / "train-index.tsv"), str(sample_root / "in" / "val-index.tsv"), root,
                    "ark:raw", NAMES, settings(64, 0.25, whole=False), img_size=64)
    listed = (root / "train.txt").read_text().split()
    assert listed and all("/images/train-tiles/" in p for p in listed), "every sample image is larger than a tile"


def test_tiles_never_take_an_assets_name_and_nothing_is_written_to_in(tmp_path):
    """An asset named like another asset's tile (``x_tile0.jpg``): its link and the tile are different files, the
    tile's labels are its own, and /in is byte for byte what it was, also after a second conversion into the
    same folder (the old layout wrote the tile through the asset's link, into /in)."""
    from conftest import snapshot
    from executor import dataset

    inside = tmp_path / "in"
    inside.mkdir()
    rng = np.random.default_rng(5)
    for name in ("x_tile0", "x"):
        Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(inside / f"{name}.jpg", quality=90)
        (inside / f"{name}.txt").write_text("0,10,10,60,60\n1,200,100,280,190\n")
    index = inside / "index.tsv"
    index.write_text("".join(f"{inside / n}.jpg\t{inside / n}.txt\n" for n in ("x_tile0", "x")))
    before = snapshot(inside)
    for _ in range(2):
        root = tmp_path / "out" / "yolo"
        dataset.convert(str(index), str(index), root, "ark:raw", NAMES, settings(128, 0.25), img_size=128)
        assert snapshot(inside) == before
        link = root / "images" / "train" / "x_tile0.jpg"
        assert link.is_symlink() and link.resolve() == (inside / "x_tile0.jpg").resolve()
        tile = root / "images" / "train-tiles" / "x_tile0.jpg"
        assert not tile.is_symlink() and Image.open(tile).size == (128, 128)
        listed = (root / "train.txt").read_text().split()
        copy = root / "images" / "train-whole" / "x_tile0.jpg"
        assert str(copy) in listed and str(tile) in listed and not copy.is_symlink()
        assert (root / "labels" / "train" / "x_tile0.txt").read_text() != (root / "labels" / "train-tiles" / "x_tile0.txt").read_text()


def test_conversion_reports_its_progress_and_its_list_does_not_depend_on_threads(sample_root, tmp_path, monkeypatch, caplog):
    import logging

    from executor import dataset, runtime

    lists = []
    for threads in (1, 3):
        monkeypatch.setattr(runtime, "usable_cpus", lambda threads=threads: threads)
        seen: list[float] = []
        root = tmp_path / f"yolo-{threads}"
        with caplog.at_level(logging.INFO, logger="executor"):
            dataset.convert(str(sample_root / "in" / "train-index.tsv"), str(sample_root / "in" / "val-index.tsv"), root,
                            "ark:raw", NAMES, settings(64, 0.25), progress=seen.append, img_size=64)
        assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 32 + 12, "one step per image, train and val"
        lists.append([Path(p).relative_to(root).as_posix() for p in (root / "train.txt").read_text().split()])
    assert lists[0] == lists[1]
    conversion = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dataset conversion:")]
    assert len(conversion) == 2 * 10 and conversion[-1].startswith("dataset conversion: 44 of 44 images")


@pytest.mark.parametrize("budget, most", [(1, 1), (100 * 3 * 160 * 160, 4)])
def test_conversion_holds_at_most_its_budget_of_decoded_images(sample_root, tmp_path, monkeypatch, budget, most):
    """Conversion's threads (4 here) cut as many images at once as ``DECODED_BUDGET`` holds decoded: with room
    for none, one at a time (an image larger than the budget goes alone); with room for many, one per thread."""
    import threading
    import time

    from executor import dataset, runtime

    monkeypatch.setattr(runtime, "usable_cpus", lambda: 4)
    monkeypatch.setattr(dataset, "DECODED_BUDGET", budget)  # the sample's images: up to 160 px
    busy, seen, lock = [0], [], threading.Lock()
    real = dataset.write_tiles

    def counting(*args, **kwargs):
        with lock:
            busy[0] += 1
            seen.append(busy[0])
        time.sleep(0.02)  # long enough for the other threads to start, if they may
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(dataset, "write_tiles", counting)
    root = tmp_path / "yolo"
    dataset.convert(str(sample_root / "in" / "train-index.tsv"), str(sample_root / "in" / "val-index.tsv"), root,
                    "ark:raw", NAMES, settings(64, 0.25), img_size=64)
    assert max(seen) == most and len(seen) == 32 + 12


def test_whole_image_map_scores_predictions_as_ultralytics_does():
    from executor import evaluate, ultra

    labels = torch.tensor([[0, 10, 10, 50, 50], [1, 60, 60, 90, 90], [0, 100, 10, 140, 40]], dtype=torch.float32)
    perfect = torch.tensor([[10, 10, 50, 50, 0.9, 0], [60, 60, 90, 90, 0.8, 1], [100, 10, 140, 40, 0.7, 0]])
    tp = evaluate.true_positives(perfect, labels)
    assert tp.tolist() == [True, True, True]
    assert ultra.mean_ap50(tp, perfect[:, 4].numpy(), perfect[:, 5].numpy(), labels[:, 0].numpy()) == pytest.approx(1.0, abs=0.01)
    wrong_class = perfect.clone()
    wrong_class[:, 5] = 1 - wrong_class[:, 5]
    assert not evaluate.true_positives(wrong_class, labels).any()
    duplicate = torch.cat([perfect[:1], perfect[:1] + torch.tensor([[1, 1, 1, 1, -0.1, 0]])])
    assert evaluate.true_positives(duplicate, labels).tolist() == [True, False], "one label, one match"


def test_stage_figures_are_ymirs_on_a_hand_made_case():
    """mAR, tp, fp and fn as YMIR's evaluator (det_eval_voc) defines them, worked out by hand: class 0 has 2 labels
    and 3 predictions in score order hit, miss, hit (recall 1/2, 1/2, 2/2: mean 2/3); class 1 has 1 label and a
    prediction that misses it (recall 0); a class-2 prediction, a class without labels, counts nowhere."""
    from executor import evaluate

    labels = torch.tensor([[0, 0, 0, 10, 10], [0, 20, 20, 30, 30], [1, 40, 40, 50, 50]], dtype=torch.float32)
    pred = torch.tensor([[0, 0, 10, 10, 0.9, 0], [60, 60, 70, 70, 0.8, 0], [20, 20, 30, 31, 0.3, 0],
                         [40, 40, 45, 45, 0.7, 1], [0, 0, 10, 10, 0.6, 2]])
    found = evaluate.figures(*evaluate.matched([(pred, labels)]))
    assert {k: found[k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 2, "fn": 1}
    assert found["mAR"] == pytest.approx((2 / 3 + 0) / 2)
    assert found["mAP"] == pytest.approx(evaluate.map50([(pred, labels)]))
    nothing = evaluate.figures(*evaluate.matched([(torch.zeros(0, 6), labels)]))
    assert nothing == {"mAP": 0.0, "mAR": 0.0, "tp": 0, "fp": 0, "fn": 3}


def test_sliced_training_reports_whole_image_map_per_stage(sample_root, tmp_path):
    """Training with tiles: result.yaml is valid, and the best stage's mAP is the whole-image mAP of exactly its
    weights, sliced as infer runs."""
    import yaml
    from conftest import TINY_TRAINING
    from contract import check_result_yaml
    from executor import dataset, evaluate

    config = {**TINY_TRAINING, "slice_size": 64, "slice_overlap": 0.25}
    rc, log = run_task(sample_root, ["training"], config)
    assert rc == 0, log[-3000:]
    check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)
    assert "whole-image mAP@0.5" in log and "with tiles of 64 px" in log and "dataset conversion: 44 of 44 images" in log
    result = yaml.safe_load((sample_root / "out" / "models" / "result.yaml").read_text())
    truth = json.loads((sample_root / "out" / "yolo-dataset" / dataset.VAL_TRUTH).read_text())
    again = evaluate.sliced_figures(sample_root / "out" / "models" / "best.pt", truth, NAMES, 64, settings(64, 0.25),
                                    "cpu", 8, 0)
    best = result["model_stages"]["best"]
    assert {k: best[k] for k in again} == pytest.approx(again, abs=1e-6)  # (mAP 0 for a 2-epoch model: see below)
    assert result["evaluate_config"] == {"conf_thr": evaluate.CONF, "iou_thr": 0.5}


def test_stage_maps_and_the_best_stage_come_from_the_whole_image_map(tmp_path):
    """With slicing, each stage's mAP is ``stage_map`` of its weights, and the best stage is chosen by it,
    whatever Ultralytics' own validation (on tiles) says."""
    import yaml
    from conftest import stage_recorder
    from executor import callbacks

    whole = {"epoch 1": 0.3, "epoch 2": 0.2, "epoch 3": 0.25}
    recorder = stage_recorder(tmp_path / "out", {"save_period": 0})
    recorder.stages.stage_map = lambda checkpoint: {"mAP": whole[Path(checkpoint).read_text()], "mAR": 0.5, "tp": 3, "fp": 1, "fn": 2}
    weights = tmp_path / "weights"
    weights.mkdir()

    class Trainer:
        last, best, best_fitness, fitness = weights / "last.pt", weights / "best.pt", 0.0, 0.0

    trainer = Trainer()
    for epoch, tiles in enumerate([0.1, 0.9, 0.5]):  # Ultralytics' mAP@0.5 on tiles: epoch 2 would be best
        trainer.epoch, trainer.metrics = epoch, {"metrics/mAP50(B)": tiles}
        trainer.last.write_text(f"epoch {epoch + 1}")
        callbacks.on_model_save(recorder, trainer)
    data = yaml.safe_load((tmp_path / "out" / "models" / "result.yaml").read_text())
    assert data["model_stages"]["best"]["mAP"] == 0.3 and data["model_stages"]["last"]["mAP"] == 0.25
    assert {k: data["model_stages"]["best"][k] for k in ("mAR", "tp", "fp", "fn")} == {"mAR": 0.5, "tp": 3, "fp": 1, "fn": 2}
    assert (tmp_path / "out" / "models" / "best.pt").read_text() == "epoch 1"


def test_the_whole_image_map_of_a_real_model_on_its_own_boxes_is_one(trained, tmp_path, mosaics):
    """The evaluator end to end with a real (weak) model: labels made of its own merged sliced boxes above a
    score rank above every other box it makes, so its mAP@0.5 against them is 1; shifted labels score less."""
    from executor import evaluate
    from executor import slicing as slicing_
    from executor.engine import Engine

    best = next(p for p in model_files(trained) if p.endswith("best.pt"))
    slices = settings(128, 0.25)
    engine = Engine(Path(best), "cpu", 64, False, NAMES, slices=slices)
    merged, own = slicing_.ImageBoxes(evaluate.MAX_DET, evaluate.IOU, slices, 64), {}
    for inputs, metas, _ in engine.batches(mosaics, 4, 0):
        batch = engine.forward(engine.prepare(inputs), metas)
        for det, meta in zip(engine.image_detections(batch, evaluate.CONF, evaluate.IOU, evaluate.MAX_DET), metas, strict=True):
            boxes = merged.add(det, meta)
            if boxes is not None:
                own[meta.path] = boxes
    top = {path: boxes[boxes[:, 4] >= float(boxes[:, 4].quantile(0.9))] for path, boxes in own.items() if len(boxes)}
    assert sum(map(len, top.values())) >= 3, "the model makes boxes to score"
    labels = [(path, [[float(b[5]), *map(float, b[:4])] for b in top.get(path, [])]) for path in mosaics]
    assert evaluate.sliced_figures(Path(best), labels, NAMES, 64, slices, "cpu", 4, 0)["mAP"] == pytest.approx(1.0, abs=0.02)
    shifted = [(path, [[c, x2, y1, 2 * x2 - x1, y2] for c, x1, y1, x2, y2 in boxes]) for path, boxes in labels]  # beside
    assert evaluate.sliced_figures(Path(best), shifted, NAMES, 64, slices, "cpu", 4, 0)["mAP"] < 0.5


# ---------------------------------------------------------------- against SAHI, the library this follows


@pytest.mark.parametrize("width, height, size, overlap", [(1000, 700, 400, 0.2), (1001, 399, 400, 0.25), (333, 2000, 100, 0.3),
                                                          (4000, 3000, 640, 0.2), (640, 480, 640, 0.2), (5000, 300, 640, 0.5)])
def test_tiles_are_sahis_tiles(width, height, size, overlap):
    from sahi.slicing import get_slice_bboxes

    theirs = get_slice_bboxes(height, width, size, size, False, overlap, overlap)
    assert sorted(slicing.windows(width, height, size, overlap)) == sorted(tuple(b) for b in theirs)


def sahi_merge(dets: torch.Tensor) -> list[list[float]]:
    """SAHI's greedy NMM with IOS 0.5, class-wise, as get_sliced_prediction merges: each kept box grows to the
    union of the boxes merged into it."""
    from sahi.postprocess.combine import batched_greedy_nmm

    keep = batched_greedy_nmm(dets.numpy(), match_metric="IOS", match_threshold=slicing.MERGE_IOS)
    out = []
    for k, merged_into in keep.items():
        group = dets[[k, *merged_into]]
        out.append([*group[:, :2].min(0).values.tolist(), *group[:, 2:4].max(0).values.tolist()])
    return sorted(out)


def test_merging_agrees_with_sahi_on_boxes_tiles_cut_and_differs_where_said(tmp_path):
    a, b, whole = (0, 0, 400, 400), (320, 0, 720, 400), (0, 0, 720, 400)
    cut = {a: [det(380, 50, 400, 90, 0.6), det(100, 100, 120, 120, 0.8)],
           b: [det(380, 50, 460, 90, 0.9), det(640, 300, 680, 330, 0.5, 1.0)]}
    ours = merged(tmp_path, 720, 400, settings(400, whole=False), cut)
    assert sorted(ours[:, :4].tolist()) == sahi_merge(torch.tensor([d for ds in cut.values() for d in ds]))
    # a loose whole-image box around a tight tile box: SAHI grows the tight box to it, ours keeps it tight
    loose = {a: [det(100, 100, 120, 120, 0.9)], whole: [det(60, 70, 190, 160, 0.05)]}
    assert sahi_merge(torch.tensor([d for ds in loose.values() for d in ds])) == [[60, 70, 190, 160]]
    assert merged(tmp_path, 720, 400, settings(400), loose)[0, :4].tolist() == [100, 100, 120, 120]
    # two pieces of a large object and the whole-image box: SAHI compares with the kept box only and leaves
    # one piece beside the whole box; ours keeps the whole-image box alone
    pieces = {a: [det(0, 0, 400, 400, 0.8)], b: [det(320, 0, 720, 400, 0.75)], whole: [det(0, 0, 720, 400, 0.7)]}
    assert sahi_merge(torch.tensor([d for ds in pieces.values() for d in ds])) == [[0, 0, 720, 400], [320, 0, 720, 400]]
    assert merged(tmp_path, 720, 400, settings(400), pieces)[:, :4].tolist() == [[0, 0, 720, 400]]
    # touching objects of one tile: SAHI merges them (it looks at every box), ours keeps them apart
    touching = {a: [det(10, 10, 30, 30, 0.9), det(15, 15, 35, 35, 0.8)]}
    assert len(sahi_merge(torch.tensor(touching[a]))) == 1
    assert len(merged(tmp_path, 720, 400, settings(400, whole=False), touching)) == 2


def test_the_readme_tile_count_for_a_4000x3000_photo():
    assert len(slicing.windows(4000, 3000, 640, 0.2)) == 48


def test_sliced_scores_combine_per_image_by_each_reduction():
    """Inputs' scores (an image's tiles, one after another) per image: sum, mean or max; an unsliced image (one
    input) keeps its score whatever the rule; NaN stays NaN."""
    from executor.mining.base import TILE_REDUCTIONS, per_image_scores

    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, float("nan")])
    counts = torch.tensor([3, 1, 2])
    expected = {"sum": [6.0, 4.0], "mean": [2.0, 4.0], "amax": [3.0, 4.0]}
    assert set(expected) == set(TILE_REDUCTIONS)
    for reduction, values in expected.items():
        out = per_image_scores(scores, counts, reduction)
        assert out[:2].tolist() == values and torch.isnan(out[2]), reduction
