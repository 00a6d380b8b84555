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
from executor.engine import CandidateImages, CandidateTiles, letterbox, loaded_chunk, read_image, tile_inputs
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
    from executor import engine

    Image.fromarray(np.zeros((1000, 1000, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    made = []
    real = engine.letterbox
    monkeypatch.setattr(engine, "letterbox", lambda image, size: made.append(1) or real(image, size))
    chunks = iter(CandidateTiles([str(tmp_path / "big.png")], 32, settings(64, 0.0), 4))
    assert len(next(chunks)) == 4 and len(made) == 4, "the first chunk needs its own four tiles only"
    assert sum(map(len, chunks)) == 16 * 16 + 1 - 4 and len(made) == 16 * 16 + 1


def test_progress_counts_an_image_once_all_its_inputs_are_through():
    from executor.engine import Meta
    from executor.scan import ImagesDone

    progress = ImagesDone()
    tiles = [Meta(0, "a", part=p, parts=3) for p in range(3)]
    assert progress.add(tiles[:2] + [Meta(1, "b")], []) == 1, "b is done, a waits for its third tile"
    assert progress.add([], [Meta(2, "c", problem="unreadable images")]) == 2
    assert progress.add(tiles[2:], []) == 3


def det(x1, y1, x2, y2, score, cls=0.0):
    return [x1, y1, x2, y2, score, cls]


def test_a_box_cut_by_a_tile_edge_is_merged_back_into_one():
    # tiles [0, 400) and [320, 720): tile 0 sees the object's left part, cut at its edge; tile 1 sees it whole
    dets = torch.tensor([det(380, 50, 400, 90, 0.6), det(380, 50, 460, 90, 0.9), det(100, 100, 120, 120, 0.8)])
    merged = slicing.merge(dets, torch.tensor([0, 1, 0]), 300)
    assert merged[:, :4].tolist() == [[380, 50, 460, 90], [100, 100, 120, 120]]
    assert merged[:, 4].tolist() == pytest.approx([0.9, 0.8])


def test_a_loose_box_no_edge_cut_does_not_grow_a_tight_one():
    """The whole-image pass at a low threshold makes loose boxes around real objects: they are suppressed as
    duplicates, not merged in (which would inflate the tight box to the loose one's extent)."""
    tight = det(100, 100, 120, 120, 0.9)
    loose = det(60, 70, 190, 160, 0.05)
    merged = slicing.merge(torch.tensor([tight, loose]), torch.tensor([0, 1]), 300, torch.tensor([False, False]))
    assert merged[:, :4].tolist() == [[100, 100, 120, 120]]


def test_cut_by_window_flags_only_inner_tile_edges():
    boxes = torch.tensor([det(0, 10, 30, 40, 0.9), det(370, 10, 400, 40, 0.9), det(100, 100, 120, 120, 0.9)])
    assert slicing.cut_by_window(boxes, (0, 0, 400, 400), 720, 400).tolist() == [False, True, False]
    assert slicing.cut_by_window(boxes, (0, 0, 720, 400), 720, 400).tolist() == [False, False, False]


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
                           "ark:raw", NAMES, settings(64, 0.25))
    assert data.endswith("data.yaml")
    listed = (root / "train.txt").read_text().split()
    tiles = [p for p in listed if "_tile" in p]
    wholes = [p for p in listed if "_tile" not in p]
    assert len(wholes) == len((sample_root / "in" / "train-index.tsv").read_text().split("\n")) - 1
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
    assert "whole-image mAP@0.5" in log and "with tiles of 64 px" in log
    result = yaml.safe_load((sample_root / "out" / "models" / "result.yaml").read_text())
    truth = json.loads((sample_root / "out" / "yolo-dataset" / dataset.VAL_TRUTH).read_text())
    again = evaluate.sliced_map50(sample_root / "out" / "models" / "best.pt", truth, NAMES, 64, settings(64, 0.25),
                                  "cpu", 8, 0)
    assert result["model_stages"]["best"]["mAP"] == pytest.approx(again, abs=1e-6)  # (0 for a 2-epoch model: see below)


def test_stage_maps_and_the_best_stage_come_from_the_whole_image_map(tmp_path):
    """With slicing, each stage's mAP is ``stage_map`` of its weights, and the best stage is chosen by it,
    whatever Ultralytics' own validation (on tiles) says."""
    import yaml
    from conftest import stage_recorder
    from executor import callbacks

    whole = {"epoch 1": 0.3, "epoch 2": 0.2, "epoch 3": 0.25}
    recorder = stage_recorder(tmp_path / "out", {"save_period": 0})
    recorder.stages.stage_map = lambda checkpoint: whole[Path(checkpoint).read_text()]
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
    merged, own = slicing_.ImageBoxes(evaluate.MAX_DET), {}
    for inputs, metas, _ in engine.batches(mosaics, 4, 0):
        batch = engine.forward(engine.prepare(inputs), metas)
        for det, meta in zip(engine.image_detections(batch, evaluate.CONF, evaluate.IOU, evaluate.MAX_DET), metas, strict=True):
            boxes = merged.add(det, meta)
            if boxes is not None:
                own[meta.path] = boxes
    top = {path: boxes[boxes[:, 4] >= float(boxes[:, 4].quantile(0.9))] for path, boxes in own.items() if len(boxes)}
    assert sum(map(len, top.values())) >= 3, "the model makes boxes to score"
    labels = [(path, [[float(b[5]), *map(float, b[:4])] for b in top.get(path, [])]) for path in mosaics]
    assert evaluate.sliced_map50(Path(best), labels, NAMES, 64, slices, "cpu", 4, 0) == pytest.approx(1.0, abs=0.02)
    shifted = [(path, [[c, x2, y1, 2 * x2 - x1, y2] for c, x1, y1, x2, y2 in boxes]) for path, boxes in labels]  # beside
    assert evaluate.sliced_map50(Path(best), shifted, NAMES, 64, slices, "cpu", 4, 0) < 0.5


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
    for k, merged in keep.items():
        group = dets[[k, *merged]]
        out.append([*group[:, :2].min(0).values.tolist(), *group[:, 2:4].max(0).values.tolist()])
    return sorted(out)


def test_merging_agrees_with_sahi_on_boxes_tiles_cut_and_differs_where_said():
    cut = torch.tensor([det(380, 50, 400, 90, 0.6), det(380, 50, 460, 90, 0.9), det(100, 100, 120, 120, 0.8),
                        det(700, 300, 740, 330, 0.5, 1.0), det(700, 300, 720, 330, 0.45, 1.0)])
    ours = slicing.merge(cut, torch.tensor([0, 1, 0, 1, 2]), 300)
    assert sorted(ours[:, :4].tolist()) == sahi_merge(cut)
    # two pieces of a large object and the whole-image box: SAHI compares with the kept box only and leaves
    # one piece beside the whole box; ours grows and looks again (see slicing.merge)
    pieces = torch.tensor([det(0, 0, 400, 400, 0.8), det(320, 0, 720, 400, 0.75), det(0, 0, 720, 400, 0.7)])
    assert sahi_merge(pieces) == [[0, 0, 720, 400], [320, 0, 720, 400]]
    assert slicing.merge(pieces, torch.tensor([0, 1, 2]), 300)[:, :4].tolist() == [[0, 0, 720, 400]]
    # touching objects of one tile: SAHI merges them (it looks at every box), ours keeps them apart
    touching = torch.tensor([det(10, 10, 30, 30, 0.9), det(15, 15, 35, 35, 0.8)])
    assert len(sahi_merge(touching)) == 1 and len(slicing.merge(touching, torch.tensor([0, 0]), 300)) == 2


def test_the_readme_tile_count_for_a_4000x3000_photo():
    assert len(slicing.windows(4000, 3000, 640, 0.2)) == 48
