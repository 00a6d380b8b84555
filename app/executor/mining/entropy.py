"""entropy: how unsure the model is of the boxes it keeps after NMS.

Each kept box (score >= ``mining_min_score``) contributes the binary entropy of
its score times its class weight; the image scores the largest contribution
(max, not sum, so a cluttered image is not favoured for its box count alone).
An image with no box scores 0. Raw pre-NMS anchors are never used: thousands of
near-zero anchors would drown the signal.
"""

from __future__ import annotations

import torch

from executor.mining.base import Miner, binary_entropy


def box_entropies(det: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Per kept box ``(n, 6)``: the binary entropy of its score times its class weight (float32, on
    ``det``'s device; the weights follow the boxes, so no caller can mix devices)."""
    weights = class_weights.to(det.device, torch.float32)
    return binary_entropy(det[:, 4]) * weights[det[:, 5].long().clamp(0, len(weights) - 1)]


def image_entropy(dets: list[torch.Tensor], class_weights: torch.Tensor) -> torch.Tensor:
    """Per image, its largest box entropy (0 with no box): ``(B,)`` float32 on the boxes' device."""
    return torch.stack([box_entropies(det, class_weights).max() if len(det) else det.new_zeros((), dtype=torch.float32)
                        for det in dets])


class Entropy(Miner):
    name = "entropy"

    def image_scores(self, batch) -> torch.Tensor:
        return image_entropy(self.detections(batch), self.ctx.class_weights)
