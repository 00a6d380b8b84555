"""aldd: Active Learning for Deep Detection (Aghdam et al., ICCV 2019), on the anchor-free head.

For each head level the sigmoid class-probability map ``p`` (B, C, H, W) gives a
per-pixel disagreement ``U = H(avgpool(p)) - avgpool(H(p))`` (entropy of the
neighbourhood mean minus mean entropy: high where nearby pixels disagree, the
paper's proxy for an unstable prediction). ``U`` is max-pooled into coarse
cells, averaged per class, averaged over levels, and the classes are combined
with ``class_distribution_scores`` as weights.

What it measures on YOLO: the paper assumes smooth per-pixel class maps (an SSD's), where disagreement
between neighbours marks an unstable prediction. Ultralytics' task-aligned head is peaky: a confident
object lights a few cells and their edges, so ``U`` is largest around confident, large objects and
the score grows with confidence and object size more than with doubt. Kept because users know it from
other executors; its benchmark result is in docs/benchmarks.md, section 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from executor.mining.base import Miner, binary_entropy

NEIGHBOURHOOD = 3  # avg-pool kernel (pixels of a level)
CELLS = 4  # max-pool the level into about CELLS x CELLS cells


def aldd_scores(level_probs: list[torch.Tensor], class_weights: torch.Tensor) -> torch.Tensor:
    """One float32 score per image, ``(B,)``, from per-level probability maps (B, C, H, W), on their device."""
    per_level = []
    for p in level_probs:
        p = p.float()
        mean_p = F.avg_pool2d(p, NEIGHBOURHOOD, stride=1, padding=NEIGHBOURHOOD // 2, count_include_pad=False)
        mean_h = F.avg_pool2d(binary_entropy(p), NEIGHBOURHOOD, stride=1, padding=NEIGHBOURHOOD // 2,
                              count_include_pad=False)
        u = (binary_entropy(mean_p) - mean_h).clamp_min(0)
        kernel = max(1, min(u.shape[-2:]) // CELLS)
        per_level.append(F.max_pool2d(u, kernel, stride=kernel, ceil_mode=True).mean(dim=(2, 3)))  # (B, C)
    per_class = torch.stack(per_level).mean(0)
    weights = class_weights.to(per_class.device, torch.float32)
    return (per_class * weights).sum(1) / weights.sum().clamp_min(1e-9)


class ALDD(Miner):
    name = "aldd"
    caveat = ("mining_algorithm aldd: over 4 rounds of 75 from a 3,000-image pool it picked worse than random in "
              "every round (docs/benchmarks.md, section 5), where ppal, the default, and diversity stayed ahead of "
              "random in every round")

    def image_scores(self, batch) -> torch.Tensor:
        if batch.class_logits is None or not batch.feats:
            raise RuntimeError("aldd needs the class maps of an Ultralytics detection head")
        sizes = [f.shape[-2] * f.shape[-1] for f in batch.feats]
        chunks = batch.class_logits.float().sigmoid().split(sizes, dim=2)
        maps = [c.reshape(c.shape[0], c.shape[1], f.shape[-2], f.shape[-1]) for c, f in zip(chunks, batch.feats, strict=True)]
        return aldd_scores(maps, self.ctx.class_weights)
