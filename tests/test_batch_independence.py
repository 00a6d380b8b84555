"""An image's boxes and mining scores must not depend on its batch: batch size, batch-mates or GPU count.

Each loaded batch runs as one forward pass per letterboxed shape (``Engine.batches``), so no image is ever
padded to a batch-mate's shape. Checked with the real engine and a real (tiny) model on images of five
shapes, scored one by one and all in one batch.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import model_files
from executor import weights
from executor.engine import Engine
from executor.mining import MinerContext, algorithms
from executor.mining.base import to_list
from PIL import Image

SHAPES = [(160, 96), (96, 160), (128, 128), (200, 60), (64, 64), (160, 96)]


@pytest.fixture(scope="module")
def images(tmp_path_factory, sample_root):
    """Crops of the sample's images, resized to shapes that letterbox differently."""
    sources = [p.split("\t")[0] for p in (sample_root / "in" / "train-index.tsv").read_text().splitlines() if p]
    out = tmp_path_factory.mktemp("shapes")
    paths = []
    for i, size in enumerate(SHAPES):
        path = out / f"{i}.png"
        Image.open(sources[i]).convert("RGB").resize(size).save(path)
        paths.append(str(path))
    return paths


def scan(engine: Engine, paths: list[str], batch_size: int, algorithm: str):
    ctx = MinerContext(engine, torch.ones(engine.nc), 0.001, 0.45, 4, 0)
    miner = algorithms()[algorithm](ctx)
    scores, boxes, order, shapes = [], [], [], set()
    for images, metas, _ in engine.batches(paths, batch_size, 0):
        shapes.add(len({tuple(images.shape)}))
        batch = engine.forward(engine.prepare(images), metas)
        scores += to_list(miner.device_scores(batch))
        boxes += engine.image_detections(batch, 0.001, 0.45, 300)
        order += [m.path for m in metas]
    by_path = {p: (s, b) for p, s, b in zip(order, scores, boxes, strict=True)}
    return [by_path[p] for p in paths], miner


@pytest.mark.parametrize("algorithm", sorted(algorithms()))
def test_scores_and_boxes_do_not_depend_on_the_batch(trained, tmp_path, images, algorithm):
    best = weights.choose(model_files(trained), str(tmp_path), "test")
    engine = Engine(best, "cpu", 96, False, ["circle", "square"])
    alone, _ = scan(engine, images, 1, algorithm)
    together, miner = scan(engine, images, len(images), algorithm)
    for (score_1, boxes_1), (score_n, boxes_n) in zip(alone, together, strict=True):
        assert math.isclose(score_1, score_n, rel_tol=1e-4, abs_tol=1e-6), (algorithm, score_1, score_n)
        assert boxes_1.shape == boxes_n.shape and torch.allclose(boxes_1, boxes_n, atol=1e-3)
    assert any(len(b) for _, b in together), "the model finds boxes, so the check has something to compare"


def test_one_batch_of_mixed_shapes_runs_one_pass_per_shape(trained, tmp_path, images):
    best = weights.choose(model_files(trained), str(tmp_path), "test")
    engine = Engine(best, "cpu", 96, False, ["circle", "square"])
    passes = list(engine.batches(images, len(images), 0))
    assert sum(len(metas) for _, metas, _ in passes) == len(images)
    assert all(len({m.path for m in metas}) == len(metas) for _, metas, _ in passes)
    assert len(passes) == len({tuple(images.shape) for images, _, _ in passes}) == 4  # (160,96) twice, 4 shapes


def test_passes_are_full_on_mixed_shapes(trained, tmp_path, images):
    """24 candidates of 4 letterboxed shapes, interleaved, batch 4: images wait in a queue per shape, so every
    pass holds 4 images of one shape (loaded batches of 4 mixed shapes ran passes of 1 or 2) and each candidate
    runs once."""
    best = weights.choose(model_files(trained), str(tmp_path), "test")
    engine = Engine(best, "cpu", 96, False, ["circle", "square"])
    many = images * 4
    passes = list(engine.batches(many, 4, 0))
    assert [len(metas) for _, metas, _ in passes] == [4] * 6
    assert sorted(m.index for _, metas, _ in passes for m in metas) == list(range(len(many)))
    assert all(len({tuple(images.shape)}) == 1 and images.shape[0] == len(metas) for images, metas, _ in passes)
