"""The interface every mining algorithm implements, and the helpers they share.

A ``Miner`` sees every forward pass of the candidates (the same pass infer uses
when both tasks run) and scores each readable image, higher meaning more worth
labelling. ``finish`` may rescore all images at the end (the diversity method
needs the whole set).

Devices and dtypes, decided here once: everything a miner receives lives on the
engine's device (``MinerContext.device``): the batch, the detections and the
class weights, which the context moves there when it is made. A miner computes
its scores there in float32, whatever the model's precision (fp16 on GPUs), and
returns them as one ``(B,)`` tensor from ``image_scores``. Only ``score``, here
in the base class, brings them to the CPU, and there an image whose score or
head features are not finite (an fp16 overflow, a broken image) becomes ``None``:
it ranks last and is counted, without touching its batch-mates' scores.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from executor import slicing
from executor.engine import owners, to_image_frame

MAX_DET = 300  # boxes per image a miner sees (infer takes its boxes from these when it keeps no more)

if TYPE_CHECKING:
    from executor.class_stats import ClassStats
    from executor.engine import Batch, Engine


@dataclass
class MinerContext:
    engine: Engine | None  # None when only merging shards' results
    class_weights: torch.Tensor  # per model class; 0 for classes the task does not ask for
    min_score: float  # boxes below this are not considered
    iou: float
    budget: int
    seed: int

    def __post_init__(self) -> None:
        self.class_weights = torch.as_tensor(self.class_weights).to(self.device, torch.float32)

    @property
    def class_stats(self) -> ClassStats | None:
        """What the model carries about its classes (``executor.class_stats``); None without an engine."""
        return getattr(self.engine, "class_stats", None)

    @property
    def device(self) -> torch.device:
        """Where the engine's outputs live; the CPU for a miner that only merges shards."""
        return self.engine.device if self.engine is not None else torch.device("cpu")


class Miner:
    """Scores images; subclasses override ``image_scores`` and optionally ``finish``."""

    name = ""
    # Whether the score comes from the model's outputs: only then do its head's non-finite features (an fp16
    # overflow) make the score meaningless and rank the image last. ``random`` reads none, with infer or without.
    reads_the_model = True
    # What the benchmark found against this algorithm, logged as a warning when a user picks it (``mine.run``):
    # the docs are not where a user who set ``mining_algorithm`` reads. Empty: nothing against it.
    caveat = ""

    def __init__(self, ctx: MinerContext) -> None:
        self.ctx = ctx

    def image_scores(self, batch: Batch) -> torch.Tensor:
        """One float32 score per image of the batch, ``(B,)``, computed on the batch's device."""
        raise NotImplementedError

    def device_scores(self, batch: Batch) -> torch.Tensor:
        """The batch's scores, ``(B,)`` float32 on its device, NaN for an image whose score or features are not
        finite: kept there until the shard ends (``to_list``), so scoring a pass waits for nothing."""
        values = self.image_scores(batch).detach().float()
        if not self.reads_the_model:
            return values
        return torch.where(torch.isfinite(values) & finite_features(batch), values, math.nan)

    # How the scores of one image's inputs combine when it is sliced (``executor.slicing``; ``per_image_scores``):
    # "amax" for algorithms that score an image by its most informative part, "mean" for those that add up its
    # boxes (their sum grows with the tile count; measured on a pool of two resolutions, bench/sliced_mining.py).
    tile_reduce = "amax"

    def finish(self, scores: list[float | None]) -> list[float | None]:
        return scores

    def group_state(self, state: object, counts: torch.Tensor) -> object:
        """``state(order)`` made per input (a tile, with slicing), turned per image: ``counts[i]`` consecutive
        rows belong to image i. Without slicing every count is 1, and states are returned as they are."""
        return state

    def state(self, order: torch.Tensor) -> object:
        """What ``finish`` needs from this shard, saved by a worker (picklable, on the CPU), its images in
        candidate order: ``order[k]`` is the pass-order position (the order ``score`` saw them in) of the shard's
        k-th image. ``finish`` then gets the scores in that order too, so its ties never follow the batching."""
        return None

    def merge_states(self, states: list[object]) -> None:
        """Take the shards' states (shards in candidate order) before ``finish``."""

    def detections(self, batch: Batch, by_rule: bool = True) -> list[torch.Tensor]:
        """Post-NMS boxes in model-input pixels, ``(n, 6 + nc)`` float32 on the device: x1 y1 x2 y2 score class,
        then the box's score for every class. With slicing, only those each input answers for under infer's rule
        of which pass answers for which object (``slicing.answered_here``); ``by_rule=False``: all of them (a
        pass over transformed inputs, whose boxes are not in the input's own frame)."""
        engine = self.ctx.engine
        dets = engine.model_detections(batch, self.ctx.min_score, self.ctx.iou, MAX_DET)
        if not by_rule or all(meta.parts == 1 for meta in batch.metas):  # unsliced: every input is a whole image
            return dets
        counts = [len(det) for det in dets]
        frame = to_image_frame(torch.cat([det[:, :4] for det in dets]), counts, batch.metas).split(counts)
        return [det[slicing.answered_here(boxes, meta, engine.slices, engine.inputs.img_size)]
                for det, boxes, meta in zip(dets, frame, batch.metas, strict=True)]


def image_seed(seed: int, path: str) -> int:
    """A 63-bit number from the mining seed and an image's path: per-image randomness (random's score,
    cald's cutout) that does not depend on the image's batch, batch-mates or shard."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{path}".encode(), digest_size=8).digest(), "big") >> 1


def to_list(scores: torch.Tensor) -> list[float | None]:
    """Scores from ``Miner.device_scores`` on the CPU, ``None`` for the non-finite ones (ranked last)."""
    values = scores.cpu()
    return [float(v) if ok else None for v, ok in zip(values.tolist(), torch.isfinite(values).tolist(), strict=True)]


def group_rows(values: torch.Tensor, counts: torch.Tensor, reduce: str) -> torch.Tensor:
    """Rows of ``values`` (``counts[i]`` consecutive rows for image i: a sliced image's inputs) reduced per image
    by ``reduce`` ("sum", "mean" or "amax"), ``(len(counts), ...)``; ``values`` itself when every count is 1 (no
    slicing). The one grouping the scores and every miner's ``group_state`` use."""
    if bool((counts == 1).all()):
        return values
    owner = owners(counts, values.device).view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return values.new_zeros((len(counts), *values.shape[1:])).scatter_reduce(0, owner, values, reduce, include_self=False)


TILE_REDUCTIONS = ("sum", "mean", "amax")


def per_image_scores(scores: torch.Tensor, counts: torch.Tensor, reduce: str) -> torch.Tensor:
    """Scores per input (tiles of images, ``counts[i]`` consecutive rows for image i) combined per image by
    ``reduce`` (``TILE_REDUCTIONS``: the sum, mean or max of its inputs' scores); NaN for an image with any
    non-finite input (ranked last, counted)."""
    if bool((counts == 1).all()):
        return scores
    finite = torch.isfinite(scores)
    out = group_rows(torch.where(finite, scores, 0.0), counts, reduce)
    bad = group_rows((~finite).to(scores.dtype), counts, "amax") > 0
    return torch.where(bad, math.nan, out)


def finite_features(batch: Batch) -> torch.Tensor:
    """Per image, whether every value of its head input maps is finite (``(B,)`` bool, on the batch's device)."""
    ok = torch.ones(len(batch.metas), dtype=torch.bool, device=batch.images.device)
    for level in batch.feats:
        ok = ok & torch.isfinite(level).flatten(1).all(1)
    return ok


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of a Bernoulli probability, in bits (1 at p = 0.5, 0 at 0 or 1), in float32: aldd's per-pixel
    maps (the clamp leaves 3e-5 where ``torch.special.entr``, which the box uncertainty uses, gives 0)."""
    p = p.float().clamp(1e-6, 1 - 1e-6)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
