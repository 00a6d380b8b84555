"""entropy: how unsure the model is of the boxes it keeps after NMS, class confusion included.

Each kept box (score >= ``mining_min_score``) carries its score for every class (YOLO scores each
class with its own sigmoid). Its uncertainty is the entropy of its class posterior with background:
the box is an object with probability ``s`` (its top score), shared among the classes in proportion
to their scores, and background with ``1 - s``; normalised by ``log(nc + 1)`` to [0, 1] and weighted by
the classes' ``class_distribution_scores`` in the same shares. A box unsure whether it is an object
scores high, and so does a sure box torn between a 3 and an 8 (the binary entropy of the top score
alone, used before, cannot see that). With one class it is the binary entropy of the score.
The image scores its largest box (max, not sum, so a cluttered image is not favoured for its box
count alone); an image with no box scores 0. Raw pre-NMS anchors are never used: thousands of
near-zero anchors would drown the signal.
"""

from __future__ import annotations

import math

import torch

from executor.engine import owners
from executor.mining.base import Miner


def class_shares(det: torch.Tensor) -> torch.Tensor:
    """Per box ``(n, 6 + nc)``: its class scores as shares summing to 1, ``(n, nc)`` float32. Detections
    without the class columns (``(n, 6)``) count their top class only."""
    scores = det[:, 6:].float().clamp(0, 1)
    if scores.shape[1] == 0:
        return torch.ones(len(det), 1, device=det.device)
    return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)


def class_posterior(det: torch.Tensor) -> torch.Tensor:
    """Per box, ``(n, nc + 1)`` float32: object with probability s (its top score), shared among the classes
    as their scores are, then background with ``1 - s``."""
    top = det[:, 4].float().clamp(0, 1)
    return torch.cat([class_shares(det) * top[:, None], (1 - top)[:, None]], 1)


def box_uncertainty(det: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Per kept box: the normalised entropy of its class posterior with background, times its classes'
    weights in their shares (float32 ``(n,)`` on ``det``'s device; the weights follow the boxes, so no
    caller can mix devices)."""
    posterior = class_posterior(det)
    entropy = torch.special.entr(posterior).sum(1) / math.log(posterior.shape[1])
    weights = class_weights.to(det.device, torch.float32)
    shares = class_shares(det)
    if shares.shape[1] == len(weights):
        weight = (shares * weights).sum(1)
    else:  # no class columns: the top class's weight
        weight = weights[det[:, 5].long().clamp(0, len(weights) - 1)]
    return entropy * weight


def per_image(dets: list[torch.Tensor], values: torch.Tensor, reduce: str) -> torch.Tensor:
    """Per-box ``values`` (of ``torch.cat(dets)``) reduced per image ("amax" or "sum"), 0 for an image with no
    box: ``(B,)`` float32, in one scatter over the pass (no Python loop over images, no host sync)."""
    owner = owners([len(d) for d in dets], values.device)
    out = values.new_zeros(len(dets), dtype=torch.float32)
    return out.scatter_reduce(0, owner, values.float(), reduce, include_self=True)


def image_entropy(dets: list[torch.Tensor], class_weights: torch.Tensor) -> torch.Tensor:
    """Per image, its largest box uncertainty (0 with no box): ``(B,)`` float32 on the boxes' device."""
    return per_image(dets, box_uncertainty(torch.cat(dets), class_weights), "amax")


class Entropy(Miner):
    name = "entropy"

    def image_scores(self, batch) -> torch.Tensor:
        return image_entropy(self.detections(batch), self.ctx.class_weights)
