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

from executor import ultra
from executor.engine import owners
from executor.mining.base import Miner, MinerContext, group_rows, image_seed
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


def _flip(images: torch.Tensor, boxes: torch.Tensor, seeds: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return TF.horizontal_flip(images), TF.horizontal_flip(_boxes(boxes, images)).as_subclass(torch.Tensor)


def _scale(images: torch.Tensor, boxes: torch.Tensor, seeds: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Down-scaled into the top-left corner of a grey canvas of the same size."""
    h, w = images.shape[-2:]
    size = [max(1, int(h * SCALE)), max(1, int(w * SCALE))]
    small = TF.resize(images, size, interpolation=BILINEAR, antialias=False)
    out = TF.pad(small, [0, 0, w - size[1], h - size[0]], fill=ultra.PAD_VALUE / 255)
    return out, TF.resize(_boxes(boxes, images), size).as_subclass(torch.Tensor)


def _rotate(images: torch.Tensor, boxes: torch.Tensor, seeds: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated about the centre, black outside; each box becomes the box around its rotated corners."""
    return (TF.rotate(images, ROTATION_DEGREES, interpolation=BILINEAR),
            TF.rotate(_boxes(boxes, images), ROTATION_DEGREES).as_subclass(torch.Tensor))


def cutout_corners(h: int, w: int, seed: int) -> list[tuple[int, int]]:
    """The (x, y) of an image's two cutout squares, drawn from its own ``seed`` (so batch-independent)."""
    s = max(1, int(min(h, w) * 0.15))
    generator = torch.Generator().manual_seed(seed)
    corners = []
    for _ in range(2):
        x = int(torch.randint(0, w - s + 1, (1,), generator=generator))
        y = int(torch.randint(0, h - s + 1, (1,), generator=generator))
        corners.append((x, y))
    return corners


def _cutout(images: torch.Tensor, boxes: torch.Tensor, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two grey squares (15 % of the short side) per image, at places drawn from each image's seed; one
    masked write over the pass (the corners are drawn on the CPU, no device work per image)."""
    h, w = images.shape[-2:]
    s = max(1, int(min(h, w) * 0.15))
    corners = torch.tensor([cutout_corners(h, w, seed) for seed in seeds], dtype=torch.long).to(images.device)  # (B, 2, 2)
    cols = torch.arange(w, device=images.device)
    rows = torch.arange(h, device=images.device)
    x, y = corners[..., 0, None], corners[..., 1, None]  # (B, 2, 1)
    in_x = (cols >= x) & (cols < x + s)  # (B, 2, W)
    in_y = (rows >= y) & (rows < y + s)  # (B, 2, H)
    mask = (in_y[..., :, None] & in_x[..., None, :]).any(1)  # (B, H, W)
    return torch.where(mask[:, None], images.new_tensor(0.5), images), boxes


AUGMENTATIONS = (_flip, _cutout, _rotate, _scale)  # each maps a pass (images, boxes of all its images, seeds)


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
    tensor on ``ref``'s device, computed without a host sync. The readable definition: the miner runs
    ``pass_values``, which a test holds to it image by image."""
    distance = (box_consistency(ref, mapped, aug) - BETA).abs() if len(aug) else ref.new_zeros(len(ref), dtype=torch.float32)
    least = torch.where(wanted, distance, math.inf).amin() if len(ref) else ref.new_tensor(math.inf, dtype=torch.float32)
    return torch.where(torch.isinf(least), math.nan, least)


def pass_profiles(dets: list[torch.Tensor], nc: int) -> torch.Tensor:
    """Per image of a pass and per class, the highest score of its boxes (0 without one), ``(B, nc)``, in one
    scatter: an image's class profile is the mean of these rows over the original and augmented outputs."""
    flat = torch.cat(dets)
    slot = owners([len(d) for d in dets], flat.device) * nc + flat[:, 5].long().clamp(0, nc - 1)
    out = flat.new_zeros(len(dets) * nc, dtype=torch.float32)
    return out.scatter_reduce(0, slot, flat[:, 4].float(), "amax", include_self=True).view(len(dets), nc)


def posterior(dets: torch.Tensor) -> torch.Tensor:
    """``entropy.class_posterior`` of padded detections ``(B, R, 6 + nc)``: ``(B, R, nc + 1)``."""
    return class_posterior(dets.flatten(0, 1)).unflatten(0, dets.shape[:2])


def padded_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (B, R, 4) with every box of ``b`` (B, A, 4) of the same image: (B, R, A)."""
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp_min(0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp_min(0).prod(-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter).clamp_min(1e-9)


def pass_values(refs: list[torch.Tensor], mapped: list[torch.Tensor], augs: list[torch.Tensor],
                wanted: list[torch.Tensor]) -> torch.Tensor:
    """``augmentation_value`` for every image of a pass at once, ``(B,)``: the boxes padded per image (no
    Python loop over images, no host sync); a test checks it equals the per-image definition."""
    pad = torch.nn.utils.rnn.pad_sequence
    ref, aug = pad(refs, batch_first=True), pad(augs, batch_first=True)  # (B, R, 6 + nc), (B, A, 6 + nc)
    device = ref.device
    ref_ok = pad([torch.ones(len(r), dtype=torch.bool, device=device) for r in refs], batch_first=True)
    aug_ok = pad([torch.ones(len(a), dtype=torch.bool, device=device) for a in augs], batch_first=True)
    want = pad(wanted, batch_first=True) & ref_ok
    if aug.shape[1] == 0 or ref.shape[1] == 0:  # no box kept in any augmented image, or no reference at all
        distance = ref.new_zeros(ref.shape[:2], dtype=torch.float32)
    else:
        iou = torch.where(aug_ok[:, None, :], padded_iou(pad(mapped, batch_first=True)[..., :4].float(),
                                                         aug[..., :4].float()), -1.0)
        best_iou, match = iou.max(2)  # (B, R)
        matched = aug.gather(1, match[..., None].expand(-1, -1, aug.shape[2]))
        js = js_divergence(posterior(ref), posterior(matched))
        m = best_iou + (1 - js) * (ref[..., 4].float() + matched[..., 4].float()) / 2
        distance = torch.where(aug_ok.any(1, keepdim=True), (m - BETA).abs(), 0.0)
    least = torch.where(want, distance, math.inf).amin(1) if ref.shape[1] else ref.new_full((len(refs),), math.inf)
    return torch.where(torch.isinf(least), math.nan, least.float())


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
        counts = [len(ref) for ref in refs]
        flat = torch.cat(refs)
        wanted = list((ctx.class_weights[flat[:, 5].long()] > 0).split(counts))
        seeds = [image_seed(ctx.seed, meta.path) for meta in batch.metas]
        values, profiles = [], [pass_profiles(refs, engine.nc)]
        for augment in AUGMENTATIONS:
            images, mapped = augment(batch.images, flat[:, :4], seeds)
            augs = self.detections(engine.forward(images, batch.metas), by_rule=False)  # matched to the mapped refs
            values.append(pass_values(refs, list(mapped.split(counts)), augs, wanted))
            profiles.append(pass_profiles(augs, engine.nc))
        self.profiles.append(torch.stack(profiles).mean(0))  # on the device until state()
        score = BETA - torch.stack(values).mean(0)
        return torch.where(torch.isnan(score), NO_DETECTION, score)

    def state(self, order: torch.Tensor) -> object:
        profiles = torch.cat(self.profiles).cpu()[order] if self.profiles else torch.zeros(0, 0)
        return {"profiles": profiles, "train_shares": self.train_shares}

    def group_state(self, state: object, counts: torch.Tensor) -> object:
        """A sliced image's class profile: per class, the highest over its inputs."""
        if not isinstance(state, dict) or not len(state["profiles"]):
            return state
        return {**state, "profiles": group_rows(state["profiles"], counts, "amax")}

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
