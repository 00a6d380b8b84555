"""Slicing (``executor.slicing``): tile geometry, merging boxes across tiles, and sliced infer and mining run
for real on mosaics of the sample's images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_INFER, model_files, run_task
from contract import check_infer_json, check_mining_tsv, check_monitor_error
from executor import protocol, slicing
from executor.engine import CandidateImages, letterbox, read_image
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
    (sliced,) = CandidateImages([str(tmp_path / "a.png")], 64, slices=settings(4096))[0]
    assert torch.equal(plain[0], sliced[0]) and plain[1] == sliced[1]


def test_tiles_are_cut_in_the_display_frame(tmp_path):
    """An EXIF-rotated JPEG is tiled as it is shown (and labelled), not as it is stored."""
    stored = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: 200 wide, 300 high
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, exif=exif)
    image, _ = read_image(str(tmp_path / "r.jpg"))
    assert image.shape[:2] == (300, 200)
    inputs = CandidateImages([str(tmp_path / "r.jpg")], 64, slices=settings(128, 0.25, whole=False))[0]
    assert [m.offset for _, m in inputs] == [(x, y) for y in (0, 96, 172) for x in (0, 72)]
    for tensor, meta in inputs:
        assert (meta.width, meta.height, meta.parts) == (200, 300, len(inputs))
        x, y = meta.offset
        expected, ratio, pad = letterbox(image[y : y + 128, x : x + 128], 64)
        assert torch.equal(tensor, torch.from_numpy(expected[:, :, ::-1].transpose(2, 0, 1).copy()))
        assert (ratio, pad) == (meta.ratio, meta.pad)


def det(x1, y1, x2, y2, score, cls=0.0):
    return [x1, y1, x2, y2, score, cls]


def test_a_box_cut_by_a_tile_edge_is_merged_back_into_one():
    # tiles [0, 400) and [320, 720): tile 0 sees the object's left part, cut at its edge; tile 1 sees it whole
    dets = torch.tensor([det(380, 50, 400, 90, 0.6), det(380, 50, 460, 90, 0.9), det(100, 100, 120, 120, 0.8)])
    merged = slicing.merge(dets, torch.tensor([0, 1, 0]), 300)
    assert merged[:, :4].tolist() == [[380, 50, 460, 90], [100, 100, 120, 120]]
    assert merged[:, 4].tolist() == pytest.approx([0.9, 0.8])


def test_pieces_of_a_large_object_merge_into_the_whole_image_box():
    """A box equal to the whole image survives slicing: the whole-image pass sees it, the tiles see pieces."""
    whole = det(0, 0, 720, 400, 0.7)
    pieces = [det(0, 0, 400, 400, 0.8), det(320, 0, 720, 400, 0.75)]
    merged = slicing.merge(torch.tensor([*pieces, whole]), torch.tensor([0, 1, 2]), 300)
    assert merged[:, :4].tolist() == [[0, 0, 720, 400]] and float(merged[0, 4]) == pytest.approx(0.8)


def test_touching_objects_of_one_tile_stay_apart_and_classes_do_not_merge():
    dets = torch.tensor([det(10, 10, 30, 30, 0.9), det(15, 15, 35, 35, 0.8), det(12, 12, 30, 30, 0.7, 1.0)])
    assert len(slicing.merge(dets, torch.tensor([0, 0, 1]), 300)) == 3
    assert len(slicing.merge(dets, torch.tensor([0, 1, 1]), 300)) == 2  # across tiles, same class: one object
    assert len(slicing.merge(dets, torch.tensor([0, 1, 1]), 1)) == 1  # max_det holds after merging


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
    rc, log = sliced_task(sample_root, trained, mosaics, ["infer"], {"slice_size": 128, "slice_overlap": 0.25})
    assert rc == 0, log[-2000:]
    result = check_infer_json(str(sample_root / "out" / "infer-result.json"), mosaics, NAMES, legacy=False)
    sizes = {p.rsplit("/", 1)[-1]: Image.open(p).size for p in mosaics}
    for name, entry in result.items():
        width, height = sizes[name]
        for box in entry["boxes"]:
            b = box["box"]
            assert b["x"] + b["w"] <= width and b["y"] + b["h"] <= height, (name, b)
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
