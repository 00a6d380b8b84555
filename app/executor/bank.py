"""The labelled bank: the images a model was trained on, described as ``ppal`` describes candidates, carried
inside the model's own checkpoint.

Why: over YMIR's rounds, the images labelled in earlier rounds are the next model's training set. A candidate
that is a near-copy of one of them (the next frame of a labelled video, a second shot of a labelled scene)
teaches the model little, yet an uncertainty score ranks it as high as its labelled twin was ranked: on the
large-pool rounds benchmark about 9 of ``ppal``'s 75 picks per round from round 2 on were copies of a scene
already labelled (docs/benchmarks.md, section 5). ``ppal`` counts the bank's images as already picked (the
core-set view: the labelled set is the first set of centres).

Training writes it into ``best`` and ``last`` (as ``executor.class_stats``; epoch stages carry neither), from
one pass of those weights over at most ``IMAGES`` training images (a seeded sample beyond that: its size and
the time to make it and to use it are bounded whatever the training set). Per image: its ``MAX_BOXES``
highest-scoring boxes' features as ``ppal`` computes them (``box_features``, projected by ``projection(seed)``:
mining projects its candidates with the same matrix), their classes and scores (mining keeps those above its own
``mining_min_score``). Stored in the checkpoint, it travels with the weights whatever YMIR does with stage files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision.ops import roi_align

KEY = "ymir_labelled_bank"
DIM = 64  # a box's projected feature
MAX_BOXES = 20  # per image, by score: enough for the similarity, bounded memory
IMAGES = 2000  # training images described at most
MIN_SCORE = 0.001  # boxes kept (the validation's conf, below any mining_min_score worth setting); mining applies its own
NMS_IOU = 0.45  # the NMS of the pass that makes it: the mining template's iou_thres
SEED = 0  # the bank's projection


def projection(in_dim: int, seed: int) -> torch.Tensor:
    """The random projection of box features to ``DIM`` (seeded, on the CPU)."""
    return torch.randn(in_dim, DIM, generator=torch.Generator().manual_seed(seed)) / DIM**0.5


def box_features(feats: list[torch.Tensor], image_size: tuple[int, int], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per image, ``(n, sum of channels)`` float32: each box's RoIAlign (1x1) on every head level."""
    rois = [b[:, :4].float() for b in boxes]
    per_level = []
    for level in feats:
        stride = image_size[1] / level.shape[-1]
        per_level.append(roi_align(level.float(), rois, output_size=1, spatial_scale=1 / stride, aligned=True).flatten(1))
    pooled = torch.cat(per_level, 1) if per_level else torch.zeros(0, 0)
    return list(pooled.split([len(r) for r in rois]))


def describe(feats: list[torch.Tensor], image_size: tuple[int, int], dets: list[torch.Tensor],
             matrix: torch.Tensor) -> torch.Tensor:
    """The boxes of a pass (``dets`` per image, model-input pixels) as unit rows, ``(n, DIM)`` float32."""
    features = torch.cat(box_features(feats, image_size, dets))
    return torch.nn.functional.normalize(features @ matrix.to(features.device), dim=1)


@dataclass
class Bank:
    features: torch.Tensor  # (n, DIM) float16, unit rows: every box of every described image, image after image
    classes: torch.Tensor  # (n,) int64, the model's class of each box
    scores: torch.Tensor  # (n,) float32
    counts: torch.Tensor  # (images,) int64: boxes per image
    seed: int  # of the projection
    in_dim: int  # box features before the projection (the model's head channels)

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features.half(), "classes": self.classes.to(torch.int16), "scores": self.scores.half(),
                "counts": self.counts.int(), "seed": self.seed, "in_dim": self.in_dim, "dim": DIM}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> Bank | None:
        """The bank a checkpoint carries, or None (none, or not one this version can use)."""
        found = checkpoint.get(KEY)
        if not isinstance(found, dict) or found.get("dim") != DIM:
            return None
        try:
            bank = cls(found["features"].half(), found["classes"].long(), found["scores"].float(), found["counts"].long(),
                       int(found["seed"]), int(found["in_dim"]))
        except (KeyError, TypeError, AttributeError, ValueError):
            return None
        boxes = len(bank.features)
        consistent = (bank.features.dim() == 2 and bank.features.shape[1] == DIM and len(bank.classes) == boxes
                      and len(bank.scores) == boxes and int(bank.counts.sum()) == boxes)
        return bank if consistent else None

    @property
    def images(self) -> int:
        return len(self.counts)

    def above(self, min_score: float) -> Bank:
        """The boxes scoring at least ``min_score`` (images keep their places, some with no box)."""
        keep = self.scores >= min_score
        owner = torch.repeat_interleave(torch.arange(len(self.counts)), self.counts)
        counts = torch.bincount(owner[keep], minlength=len(self.counts))
        return Bank(self.features[keep], self.classes[keep], self.scores[keep], counts, self.seed, self.in_dim)
