"""cald: Consistency-based Active Learning for Detection (Yu et al., CVPRW 2022), as published.

Stage 1, per image. The model's boxes on the image (the references) are compared with its boxes on
augmented copies (horizontal flip, cutout, a 5 degree rotation, down-scaling to 0.8: the paper's four,
made with torchvision's transforms v2 on images and ``BoundingBoxes`` in the model-input frame, so that
each reference box maps exactly). Per reference box j and augmentation, with its best-IoU match in the
augmented output:

    m_j = IoU + (1 - JS(p_j, q_j)) (s_j + s'_j) / 2

where p, q are the two boxes' class distributions (with background: see ``entropy.class_posterior``),
JS the Jensen-Shannon divergence (nats) and s the top scores; m is 2 for a perfectly stable box. The
augmentation's value is ``min_j |m_j - beta|`` with the paper's beta = 1.3 (0 when the augmented image
keeps no box at all), and the image's is its mean over augmentations: the smaller, the more informative
(a box neither stable nor plainly noise). Score = beta - that mean.

Stage 2 (the paper's "mutual information" step). The paper takes, from the ``1.2 x mining_budget`` best images
of stage 1, the ``mining_budget`` whose predicted class distribution (per class the highest score of its boxes,
averaged over the original and the augmentations, as shares) differs most (JS) from the training set's class
distribution, which the model carries (``executor.class_stats``). Here the same, one pick at a time: the t-th
pick is the most divergent image not yet taken among stage 1's best ``ceil(1.2 t)``, so every prefix of the
list comes from stage 1's top and the list does not depend on ``mining_budget`` (YMIR's topk is not passed to
the executor; with the paper's single window and the template's budget on a small pool, stage 2 ordered the
whole pool by divergence and filled the top with frames holding one stray box). After ``mining_budget`` picks
the rest follow in stage-1 order. A model without class statistics skips stage 2 (logged).

Three choices of ours, where the paper's code differs: the windows of stage 2 (above), images with no box of a wanted class (weight > 0)
rank last (the paper's code ranks them first, which fills the top with empty images), and the class
distributions are shares of scores, not softmaxes of counts. Per-image randomness (the cutout squares)
comes from the image's path, so scores do not depend on the batch.
"""

from __future__ import annotations

import heapq
import logging
import math

import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from executor.mining.base import Miner, MinerContext, image_seed
from executor.mining.entropy import class_posterior

LOG = logging.getLogger("executor")
BETA = 1.3  # the paper's base point for m
MUTUAL_RANGE = 1.2  # stage 2 looks at this many times the budget
ROTATION_DEGREES = 5.0
SCALE = 0.8
NO_DETECTION = -1.0
BILINEAR = InterpolationMode.BILINEAR


def _boxes(boxes: torch.Tensor, images: torch.Tensor) -> tv_tensors.BoundingBoxes:
    """Boxes in the images' frame, unclamped (a rotated box may leave the canvas, as its object does)."""
    return tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(images.shape[-2:]), clamping_mode=None)


def _flip(images: torch.Tensor, boxes: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return TF.horizontal_flip(images), TF.horizontal_flip(_boxes(boxes, images)).as_subclass(torch.Tensor)


def _scale(images: torch.Tensor, boxes: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Down-scaled into the top-left corner of a grey canvas of the same size."""
    h, w = images.shape[-2:]
    size = [max(1, int(h * SCALE)), max(1, int(w * SCALE))]
    small = TF.resize(images, size, interpolation=BILINEAR, antialias=False)
    out = TF.pad(small, [0, 0, w - size[1], h - size[0]], fill=114 / 255)
    return out, TF.resize(_boxes(boxes, images), size).as_subclass(torch.Tensor)


def _rotate(images: torch.Tensor, boxes: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated about the centre, black outside; each box becomes the box around its rotated corners."""
    return (TF.rotate(images, ROTATION_DEGREES, interpolation=BILINEAR),
            TF.rotate(_boxes(boxes, images), ROTATION_DEGREES).as_subclass(torch.Tensor))


def _cutout(images: torch.Tensor, boxes: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two grey squares (15 % of the short side) at places drawn from ``seed`` (the image's own)."""
    out = images.clone()
    h, w = images.shape[-2:]
    s = max(1, int(min(h, w) * 0.15))
    generator = torch.Generator().manual_seed(seed)
    grey = out.new_tensor(0.5)  # on the images' device, in their dtype
    for i in range(out.shape[0]):
        for _ in range(2):
            x = int(torch.randint(0, w - s + 1, (1,), generator=generator))
            y = int(torch.randint(0, h - s + 1, (1,), generator=generator))
            TF.erase(out[i], y, x, s, s, grey, inplace=True)
    return out, boxes


AUGMENTATIONS = (_flip, _cutout, _rotate, _scale)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of distributions along the last dimension, in nats (0 .. log 2)."""
    m = (p + q) / 2
    return ((torch.special.entr(m) * 2 - torch.special.entr(p) - torch.special.entr(q)) / 2).sum(-1).clamp_min(0)


def box_consistency(ref: torch.Tensor, mapped: torch.Tensor, aug: torch.Tensor) -> torch.Tensor:
    """Per reference box: m = IoU with its best match among ``aug`` + (1 - JS of their class distributions)
    x their mean top score (2 = perfectly stable); ``(n,)`` float32, 0 for every box when ``aug`` is empty."""
    if len(aug) == 0:
        return ref.new_zeros(len(ref), dtype=torch.float32)
    best_iou, match = box_iou(mapped[:, :4].float(), aug[:, :4].float()).max(1)
    js = js_divergence(class_posterior(ref), class_posterior(aug)[match])
    return best_iou + (1 - js) * (ref[:, 4].float() + aug[match, 4].float()) / 2


def augmentation_value(ref: torch.Tensor, mapped: torch.Tensor, aug: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """One augmentation's value for one image: ``min |m - beta|`` over its wanted reference boxes; 0 when the
    augmented image keeps no box (as the paper's code); NaN when no reference box is wanted. A 0-d float32
    tensor on ``ref``'s device, computed without a host sync."""
    distance = (box_consistency(ref, mapped, aug) - BETA).abs() if len(aug) else ref.new_zeros(len(ref), dtype=torch.float32)
    least = torch.where(wanted, distance, math.inf).amin() if len(ref) else ref.new_tensor(math.inf, dtype=torch.float32)
    return torch.where(torch.isinf(least), math.nan, least)


def class_profile(dets: list[torch.Tensor], nc: int) -> torch.Tensor:
    """Per class, the highest score of its boxes, averaged over the outputs (original and augmented)."""
    rows = []
    for det in dets:
        row = det.new_zeros(nc, dtype=torch.float32)
        if len(det):
            row.scatter_reduce_(0, det[:, 5].long().clamp(0, nc - 1), det[:, 4].float(), reduce="amax")
        rows.append(row)
    return torch.stack(rows).mean(0)


def stage_two(scores: list[float | None], profiles: torch.Tensor, train_shares: torch.Tensor, budget: int) -> list[float | None]:
    """Up to ``budget`` picks first (scores above every stage-1 score), the t-th the image whose class profile
    diverges most from the training set's class shares among stage 1's best ``ceil(MUTUAL_RANGE t)`` not yet
    taken (ties: stage-1 order); then the rest as they were."""
    ranked = sorted((i for i, s in enumerate(scores) if s is not None and s > NO_DETECTION), key=lambda i: -scores[i])
    picks = min(budget, len(ranked))
    head = ranked[: min(len(ranked), math.ceil(MUTUAL_RANGE * picks))]
    if not head:
        return scores
    shares = profiles[head] / profiles[head].sum(1, keepdim=True).clamp_min(1e-12)
    divergence = js_divergence(shares, train_shares.to(shares.dtype).expand_as(shares)).tolist()
    out, window, entered = list(scores), [], 0
    for t in range(1, picks + 1):
        while entered < min(len(head), math.ceil(MUTUAL_RANGE * t)):
            heapq.heappush(window, (-divergence[entered], entered))
            entered += 1
        _, position = heapq.heappop(window)
        out[head[position]] = BETA + 1 + picks - t  # stage-1 scores are at most beta
    return out


class CALD(Miner):
    name = "cald"

    def __init__(self, ctx: MinerContext) -> None:
        super().__init__(ctx)
        self.profiles: list[torch.Tensor] = []
        stats = ctx.class_stats
        self.train_shares = torch.tensor(stats.train_shares()) if stats is not None else None

    def image_scores(self, batch) -> torch.Tensor:
        engine, ctx = self.ctx.engine, self.ctx
        refs = self.detections(batch)
        wanted = [ctx.class_weights[ref[:, 5].long()] > 0 for ref in refs]
        seeds = [image_seed(ctx.seed, meta.path) for meta in batch.metas]
        values, outputs = [], [[ref] for ref in refs]
        for augment in AUGMENTATIONS:
            per_image = [augment(batch.images[i : i + 1], refs[i][:, :4], seeds[i]) for i in range(len(refs))]
            aug_dets = self.detections(engine.forward(torch.cat([im for im, _ in per_image]), batch.metas))
            values.append(torch.stack([augmentation_value(ref, mapped, aug, w) for ref, (_, mapped), aug, w
                                       in zip(refs, per_image, aug_dets, wanted, strict=True)]))
            for i, aug in enumerate(aug_dets):
                outputs[i].append(aug)
        self.profiles.append(torch.stack([class_profile(o, engine.nc) for o in outputs]))  # on the device until state()
        score = BETA - torch.stack(values).mean(0)
        return torch.where(torch.isnan(score), NO_DETECTION, score)

    def state(self, order: torch.Tensor) -> object:
        profiles = torch.cat(self.profiles).cpu()[order] if self.profiles else torch.zeros(0, 0)
        return {"profiles": profiles, "train_shares": self.train_shares}

    def merge_states(self, states: list[object]) -> None:
        self.profiles = [s["profiles"] for s in states if isinstance(s, dict) and len(s["profiles"])]
        self.train_shares = next((s["train_shares"] for s in states if isinstance(s, dict)
                                  and s["train_shares"] is not None), None)

    def finish(self, scores: list[float | None]) -> list[float | None]:
        if self.train_shares is None:
            LOG.info("cald: the model carries no training-set class statistics (trained by an older version of "
                     "this image, or an epoch stage): stage 2 skipped, images ranked by consistency alone")
            return scores
        if not self.profiles:
            return scores
        return stage_two(scores, torch.cat([p.cpu() for p in self.profiles]), self.train_shares, self.ctx.budget)
