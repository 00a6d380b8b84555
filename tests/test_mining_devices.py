"""Device and dtype discipline of every mining algorithm, checked without a GPU.

On a GPU the engine's outputs live on ``cuda`` and, with ``half: true``, in float16. PyTorch's ``meta``
device stands in for ``cuda`` here: any tensor left on the CPU by mistake and mixed with the batch's
raises, as it would on a GPU. The engine is replaced by a stand-in that returns fixed head outputs and
detections (the real engine is exercised end to end by the task tests and by ``make gpu-check``).
"""

from __future__ import annotations

import math

import pytest
import torch
from executor.engine import Batch
from executor.inputs import Meta
from executor.mining import MinerContext, algorithms
from executor.mining.base import to_list
from executor.mining.entropy import box_uncertainty

NC, B = 2, 3
LEVELS = [(8, 8), (4, 4), (2, 2)]  # strides 8, 16, 32 of a 64 x 64 input


def head_outputs(device: str, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    anchors = sum(h * w for h, w in LEVELS)
    images = torch.rand(B, 3, 64, 64, generator=g)
    feats = [torch.randn(B, 16, h, w, generator=g) for h, w in LEVELS]
    logits = torch.randn(B, NC, anchors, generator=g)
    return images.to(device, dtype), [f.to(device, dtype) for f in feats], logits.to(device, dtype)


def detections(device: str) -> list[torch.Tensor]:
    """As the engine gives them to miners: x1 y1 x2 y2 score class, then every class's score."""
    rows = [[[4, 4, 20, 20, 0.9, 0, 0.9, 0.2], [30, 30, 50, 60, 0.55, 1, 0.3, 0.55]], [[10, 10, 40, 30, 0.4, 1, 0.1, 0.4]], []]
    return [torch.tensor(r, dtype=torch.float32).reshape(-1, 6 + NC).to(device) for r in rows]


class StandInEngine:
    """The two calls miners make of the engine, on one device; ``forward`` keeps the batch's head outputs."""

    def __init__(self, device: str, dets: list[torch.Tensor], feats: list[torch.Tensor], logits: torch.Tensor) -> None:
        self.device = torch.device(device)
        self.dets, self.feats, self.logits = dets, feats, logits
        self.nc, self.class_stats = NC, None

    def forward(self, images: torch.Tensor, metas: list[Meta]) -> Batch:
        assert images.device == self.device
        return Batch(images, metas, self.logits, self.logits, self.feats)

    def model_detections(self, batch: Batch, conf: float, iou: float, max_det: int) -> list[torch.Tensor]:
        assert batch.images.device == self.device
        return [d.clone() for d in self.dets]


def miner_and_batch(algorithm: str, device: str, dtype: torch.dtype, poison: bool = False):
    images, feats, logits = head_outputs(device, dtype)
    dets = detections(device)
    if poison:  # image 1: an fp16 overflow in its features and class maps, a NaN score among its boxes
        feats[0][1, 0, 0, 0] = math.inf
        logits[1, 0, :5] = math.nan
        dets[1][0, 4] = math.nan
    engine = StandInEngine(device, dets, feats, logits)
    weights = torch.tensor([1.0, 0.5])  # built on the CPU, as scan.py does
    ctx = MinerContext(engine, weights, 0.001, 0.45, 10, 0)
    metas = [Meta(i, f"/in/{i}.jpg", 64, 64) for i in range(B)]
    return algorithms()[algorithm](ctx), Batch(images, metas, logits, logits, feats)


def test_the_reported_reproduction_no_longer_raises():
    """Issue 13: CPU class weights indexed with class ids of boxes on another device."""
    det = torch.tensor([[0, 0, 10, 10, 0.5, 1, 0.1, 0.5]], dtype=torch.float32, device="meta")
    out = box_uncertainty(det, torch.tensor([1.0, 1.0]))
    assert out.device.type == "meta" and out.dtype == torch.float32 and out.shape == (1,)


def test_the_context_puts_class_weights_on_the_engines_device():
    engine = StandInEngine("meta", [], [], torch.empty(0))
    ctx = MinerContext(engine, torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0, 0.5, 1, 0)
    assert ctx.class_weights.device.type == "meta" and ctx.class_weights.dtype == torch.float32
    assert MinerContext(None, torch.ones(2), 0.0, 0.5, 1, 0).class_weights.device.type == "cpu"


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("algorithm", sorted(algorithms()))
def test_scores_stay_on_the_engines_device_in_float32(algorithm, dtype):
    miner, batch = miner_and_batch(algorithm, "meta", dtype)
    scores = miner.image_scores(batch)
    assert scores.device.type == "meta" and scores.dtype == torch.float32 and scores.shape == (B,)


@pytest.mark.parametrize("algorithm", sorted(algorithms()))
def test_float16_inputs_give_finite_scores(algorithm):
    miner, batch = miner_and_batch(algorithm, "cpu", torch.float16)
    scores = to_list(miner.device_scores(batch))
    assert len(scores) == B and all(isinstance(s, float) and math.isfinite(s) for s in scores), scores
    assert all(s is not None for s in miner.finish(scores))


@pytest.mark.parametrize("algorithm", sorted(algorithms()))
def test_a_nan_ranks_its_image_last_and_leaves_the_others_alone(algorithm):
    clean_miner, clean_batch = miner_and_batch(algorithm, "cpu", torch.float16)
    miner, batch = miner_and_batch(algorithm, "cpu", torch.float16, poison=True)
    clean, scores = to_list(clean_miner.device_scores(clean_batch)), to_list(miner.device_scores(batch))
    if algorithm == "random":  # reads no model output: the image keeps its score (test_random_ignores_the_model)
        assert scores == clean
        return
    assert scores[1] is None
    assert scores[0] == pytest.approx(clean[0], abs=1e-6) and scores[2] == pytest.approx(clean[2], abs=1e-6)
    final = miner.finish(scores)
    assert final[1] is None and all(math.isfinite(final[i]) for i in (0, 2))


def test_random_ignores_the_model_with_infer_as_without(tmp_path):
    """One rule for random: an image ranks by its seeded value whatever the model's head makes of it (with infer
    a forward pass runs and its features may overflow; without infer no model runs at all)."""
    from executor.mining.random_score import random_value

    miner, batch = miner_and_batch("random", "cpu", torch.float16, poison=True)
    assert to_list(miner.device_scores(batch)) == [pytest.approx(random_value(0, m.path)) for m in batch.metas]


def test_scan_counts_and_ranks_non_finite_scores_last(tmp_path):
    """The worker's count and result.tsv's order, from a scan result holding a None score."""
    from executor.protocol import write_mining_result

    counts = write_mining_result(str(tmp_path / "result.tsv"), [("/a/1.jpg", 0.2), ("/a/2.jpg", None), ("/a/3.jpg", 0.9)])
    lines = (tmp_path / "result.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["/a/3.jpg", "/a/1.jpg", "/a/2.jpg"]
    assert counts == {"scored": 2, "unreadable": 1, "duplicates": 0}


class PassEngine(StandInEngine):
    """A stand-in whose detections change from pass to pass (``dets`` per pass, in order)."""

    def __init__(self, passes: list[list[torch.Tensor]], feats: list[torch.Tensor], logits: torch.Tensor) -> None:
        super().__init__("cpu", [], feats, logits)
        self.passes = iter(passes)

    def model_detections(self, batch: Batch, conf: float, iou: float, max_det: int) -> list[torch.Tensor]:
        return next(self.passes)


def test_ppal_drops_what_can_no_longer_be_a_candidate_and_ranks_as_if_it_kept_everything(monkeypatch):
    """ppal keeps box features only for images that may still be among its candidates (``PPAL.prune``: a pool of
    any size holds a few times ``2 x mining_budget`` images' boxes), and its ranking equals keeping them all:
    60 images in passes of 3 with budget 2, some without boxes, some tied, one non-finite, pruned every 8."""
    from executor.mining import ppal

    g = torch.Generator().manual_seed(5)
    passes = []
    for p in range(20):
        dets = []
        for i in range(B):
            n = [0, 1, 2, 3][(p + i) % 4]
            score = torch.rand(n, generator=g) * 0.9 + 0.05
            if p == 7 and i == 1:
                score[:] = 0.5  # ties with the next image
            if p == 7 and i == 2:
                score = torch.full((n,), 0.5)
            boxes = torch.rand(n, 2, generator=g) * 30
            cls = (torch.rand(n, generator=g) > 0.5).float()
            dets.append(torch.cat([boxes, boxes + 10, score[:, None], cls[:, None], torch.stack([score, 1 - score], 1)], 1))
        passes.append(dets)
    images, feats, logits = head_outputs("cpu", torch.float32)
    results, kept = [], []
    for prune_at in (1, 10**9):
        monkeypatch.setattr(ppal, "PRUNE_AT", prune_at)
        engine = PassEngine([[d.clone() for d in dets] for dets in passes], feats, logits)
        miner = ppal.PPAL(MinerContext(engine, torch.ones(NC), 0.001, 0.45, 2, 0))
        scores: list[float | None] = []
        for p in range(len(passes)):
            poisoned = [f.clone() for f in feats]
            if p == 11:
                poisoned[0][0, 0, 0, 0] = math.nan  # image 0 of pass 11: non-finite features, ranked last
            batch = Batch(images, [Meta(3 * p + i, f"/in/{3 * p + i}.jpg", 64, 64) for i in range(B)], logits, logits, poisoned)
            scores += to_list(miner.device_scores(batch))
        kept.append(sum(miner.counts))
        if prune_at == 1:  # every final candidate (the 4 most uncertain valid images) still holds its boxes
            valid = sorted((s for s in scores if s is not None and s > 0), reverse=True)
            candidates = [i for i, s in enumerate(scores) if s is not None and s >= valid[3]]
            assert candidates and all(miner.counts[i] > 0 for i in candidates), (candidates, miner.counts)
        results.append(miner.finish(scores))
    assert results[0] == results[1] and results[0][33] is None
    assert kept[0] < kept[1] / 2, kept  # pruned: far fewer boxes kept than the 60 images have
