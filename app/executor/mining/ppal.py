"""ppal: a two-stage miner in the spirit of PPAL (Yang et al., "Plug and Play Active Learning for Object
Detection", CVPR 2024).

Stage 1, difficulty-calibrated uncertainty. Each kept box's uncertainty (``entropy``'s class-aware one)
is weighted by how hard its classes were for the model: 1 - the class's AP@0.5 on the validation set of
the training that made it, which the model carries (``executor.class_stats``; without it every class
counts alike, which the log says). An image's uncertainty is the sum over its boxes: YMIR's budget counts
images, so an image with more unsure boxes of hard classes brings more labels per pick.

Stage 2, category-conditioned diversity. The candidates are the ``2 x mining_budget`` most uncertain images,
and never an image without uncertainty (no kept box of a wanted class): such an image is as far from every
other as an image can be, so farthest-first would take it first (with a pool smaller than twice the budget,
the template's default on small pools, it took a third of the top from empty frames). Each kept box gets a
feature (RoIAlign of the head's input maps over the box, every level, randomly projected, L2-normalised); the
similarity of images A and B is the mean, over A's boxes, of the best cosine similarity with a box of B *of the
same class*, made symmetric. Greedy selection over the candidates takes, each time, the image with the largest
uncertainty x typicality x distance (typicality: its mean similarity to the other candidates, up to 256 of them; distance = 1 - its
similarity to the nearest image already taken), starting from the largest uncertainty x typicality; they come
first in that order, then every other image by its uncertainty, the images without any last. Ours where the
paper's k-center greedy takes the farthest image alone: weighting by uncertainty makes
every prefix of the list a good pick, whatever ``mining_budget`` says; YMIR's topk is not passed to the
executor, and farthest-first over a budget larger than the topk filled the top with the pool's outliers.
"""

from __future__ import annotations

import logging
import math

import torch
from torchvision.ops import roi_align

from executor.engine import owners
from executor.mining.base import Miner, MinerContext, group_rows
from executor.mining.entropy import box_uncertainty, per_image

LOG = logging.getLogger("executor")
DIM = 64
MAX_BOXES = 20  # per image, by score: enough for the similarity, bounded memory
CANDIDATES = 2.0  # stage 2 looks at this many times the budget
REFERENCES = 256  # typicality is measured against at most this many candidates
PRUNE_AT = 2  # the boxes of images that can no longer be candidates are dropped when this many times them are kept


def box_features(feats: list[torch.Tensor], image_size: tuple[int, int], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per image, ``(n, sum of channels)`` float32: each box's RoIAlign (1x1) on every head level."""
    rois = [b[:, :4].float() for b in boxes]
    per_level = []
    for level in feats:
        stride = image_size[1] / level.shape[-1]
        per_level.append(roi_align(level.float(), rois, output_size=1, spatial_scale=1 / stride, aligned=True).flatten(1))
    pooled = torch.cat(per_level, 1) if per_level else torch.zeros(0, 0)
    return list(pooled.split([len(r) for r in rois]))


def similarity_to(pick: int, features: torch.Tensor, classes: torch.Tensor, owner: torch.Tensor, n_images: int) -> torch.Tensor:
    """Category-conditioned matching similarity of image ``pick`` with every image, ``(n_images,)`` in [0, 1]:
    the mean of (pick's boxes -> best same-class box of the other) and (the other's boxes -> best same-class
    box of pick); 0 with no box on either side."""
    mine = owner == pick
    if not bool(mine.any()):
        return features.new_zeros(n_images)
    sim = (features[mine] @ features.T).clamp_min(0)  # (p, N) cosine, negatives as no match
    sim = torch.where(classes[mine][:, None] == classes[None], sim, 0.0)
    forward = sim.new_zeros(sim.shape[0], n_images).scatter_reduce(1, owner.expand_as(sim), sim, "amax", include_self=True)
    backward_box = sim.max(0).values  # (N,): each box's best same-class match among pick's boxes
    counts = torch.bincount(owner, minlength=n_images).clamp_min(1).float()
    backward = features.new_zeros(n_images).index_add(0, owner, backward_box) / counts
    has_boxes = torch.bincount(owner, minlength=n_images) > 0
    return torch.where(has_boxes, (forward.mean(0) + backward) / 2, 0.0)


def typicality(features: torch.Tensor, classes: torch.Tensor, owner: torch.Tensor, n_images: int) -> torch.Tensor:
    """Each image's mean similarity to the other images, ``(n_images,)`` in [0, 1]: how typical it is among them
    (information density, Settles and Craven 2008), so that typical images come first (issue 43, item 2). Against
    at most ``REFERENCES`` of them, evenly spaced in the given order: the cost stays a fraction of the greedy's,
    whatever the budget, and the mean of 256 values in [0, 1] is close enough to rank by."""
    references = torch.arange(0, n_images, max(1, math.ceil(n_images / REFERENCES)))
    total = features.new_zeros(n_images)
    for image in references.tolist():  # the similarity is symmetric: a reference's row is its column
        total += similarity_to(image, features, classes, owner, n_images)
    is_reference = torch.zeros(n_images, dtype=torch.bool)
    is_reference[references] = True
    has_boxes = torch.bincount(owner, minlength=n_images) > 0
    itself = (is_reference & has_boxes).float()  # a reference's similarity to itself is not typicality
    return (total - itself).clamp_min(0) / (len(references) - is_reference.float()).clamp_min(1)


def select(uncertainty: torch.Tensor, features: torch.Tensor, classes: torch.Tensor, owner: torch.Tensor,
           budget: int) -> torch.Tensor:
    """Scores whose descending order is: the greedy picks (largest uncertainty x typicality x distance) among the candidates
    (the most uncertain images, at most ``CANDIDATES x budget``, none without uncertainty), then the rest by
    uncertainty (0 without any)."""
    n = len(uncertainty)
    by_uncertainty = uncertainty.argsort(descending=True, stable=True)  # ties: candidate order
    uncertain = int((uncertainty > 0).sum())
    candidates = by_uncertainty[: min(uncertain, math.ceil(CANDIDATES * budget))]
    position = torch.full((n,), -1, dtype=torch.long)
    position[candidates] = torch.arange(len(candidates))
    keep = position[owner] >= 0  # only the candidates' boxes take part in the similarities
    features, classes, local = features[keep], classes[keep], position[owner[keep]]
    scores = uncertainty / (uncertainty.max().clamp_min(1e-12) + 1)  # the rest: below 1, by uncertainty
    weight = uncertainty[candidates] * typicality(features, classes, local, len(candidates))  # typical first
    distance = torch.ones(len(candidates))
    taken = torch.zeros(len(candidates), dtype=torch.bool)
    for rank in range(min(budget, len(candidates))):
        pick = int(torch.where(taken, -math.inf, weight * distance).argmax())
        taken[pick] = True
        scores[candidates[pick]] = 1 + budget - rank  # above every non-pick, in pick order
        distance = torch.minimum(distance, 1 - similarity_to(pick, features, classes, local, len(candidates)))
    return scores


def ragged_take(values: list[torch.Tensor], counts: torch.Tensor, order: torch.Tensor) -> list[torch.Tensor]:
    """Rows of several tensors grouped per image (``counts[i]`` rows for image i, images one after another),
    with the images put in ``order``."""
    owner = owners(counts)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    rows = rank[owner].argsort(stable=True)
    return [v[rows] for v in values]


class PPAL(Miner):
    name = "ppal"

    def __init__(self, ctx: MinerContext) -> None:
        super().__init__(ctx)
        stats = ctx.class_stats
        self.calibrated = stats is not None
        self.difficulty = torch.tensor(stats.difficulty() if stats else [1.0] * len(ctx.class_weights), dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.projection: torch.Tensor | None = None
        self.counts: list[int] = []  # boxes kept per image, in pass order (0: none, or dropped by ``prune``)
        # the kept boxes, a set per batch (one after ``prune``), on the device until state(): features (n, DIM)
        # float16, classes (n,), and per image holding boxes: its pass position and box count
        self.kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        # beside each set, per image: its final score (``device_scores``; -inf when not finite), +inf for a sliced
        # input, whose image's score is the mean of inputs not all seen yet: never dropped
        self.keys: list[torch.Tensor] = []
        self.since_prune = 0

    def image_scores(self, batch) -> torch.Tensor:
        weights = self.ctx.class_weights * self.difficulty.to(self.ctx.class_weights.device)
        dets = [det[det[:, 4].argsort(descending=True)[:MAX_BOXES]] for det in self.detections(batch)]
        features = torch.cat(box_features(batch.feats, tuple(batch.images.shape[-2:]), dets))
        if self.projection is None:  # drawn on the CPU (seeded), then kept beside the features
            self.projection = torch.randn(features.shape[1], DIM, generator=self.generator) / DIM**0.5
        self.projection = self.projection.to(features.device)
        projected = torch.nn.functional.normalize(features @ self.projection, dim=1)
        classes = torch.cat([det[:, 5].long() for det in dets])  # the NMS's class: the top of the class scores
        positions = torch.arange(len(self.counts), len(self.counts) + len(dets), device=projected.device)
        self.counts += [len(det) for det in dets]
        self.kept.append((projected.half(), classes, positions, torch.tensor([len(det) for det in dets], device=positions.device)))
        return per_image(dets, box_uncertainty(torch.cat(dets), weights), "sum")

    def device_scores(self, batch) -> torch.Tensor:
        """The base class's scores, which are also what ``prune`` ranks the batch's images by."""
        scores = super().device_scores(batch)
        whole = torch.tensor([meta.parts == 1 for meta in batch.metas], device=scores.device)
        self.keys.append(torch.where(whole, scores.nan_to_num(nan=-math.inf), math.inf))
        self.since_prune += len(batch.metas)
        if self.since_prune > PRUNE_AT * self.bound():
            self.prune()
        return scores

    def bound(self) -> int:
        """The most images stage 2 looks at (its candidates)."""
        return math.ceil(CANDIDATES * self.ctx.budget)

    def prune(self) -> None:
        """Drop the boxes of every whole image that can no longer be a candidate: ``bound()`` images already seen
        are more uncertain (a whole image's score is final once seen), or it has no uncertainty. What is kept
        stays within a few times the candidates, whatever the pool (issue 43, item 3), and each step looks at that
        much only; the ranking is the same (tested)."""
        features, classes, positions, counts = (torch.cat(parts) for parts in zip(*self.kept, strict=True))
        uncertainty = torch.cat(self.keys)
        known = uncertainty[uncertainty < math.inf]
        k = self.bound()
        threshold = known.topk(k).values[-1] if len(known) > k else -math.inf  # the k-th most uncertain
        drop = (uncertainty < threshold) | (uncertainty <= 0)
        for position in positions[drop].tolist():
            self.counts[position] = 0
        boxes = ~torch.repeat_interleave(drop, counts)
        self.kept, self.keys = [(features[boxes], classes[boxes], positions[~drop], counts[~drop])], [uncertainty[~drop]]
        self.since_prune = 0

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The kept boxes as one set on the CPU: boxes per image, box features (float16), box classes."""
        counts = torch.tensor(self.counts, dtype=torch.long)
        features = torch.cat([f.cpu() for f, *_ in self.kept]) if self.kept else torch.zeros(0, DIM).half()
        classes = torch.cat([c.cpu() for _, c, *_ in self.kept]) if self.kept else torch.zeros(0, dtype=torch.long)
        return counts, features, classes

    def state(self, order: torch.Tensor) -> object:
        counts, features, classes = self.flat()
        features, classes = ragged_take([features, classes], counts, order)
        return {"features": features, "classes": classes, "counts": counts[order], "calibrated": self.calibrated}

    tile_reduce = "mean"  # sliced: the mean of its inputs' uncertainty (the sum grows with the tile count; measured)

    def group_state(self, state: object, counts: torch.Tensor) -> object:
        """A sliced image's boxes are those of all its inputs (already one after another): only the counts
        per image change."""
        if not isinstance(state, dict):
            return state
        return {**state, "counts": group_rows(state["counts"], counts, "sum")}

    def merge_states(self, states: list[object]) -> None:
        parts = [s for s in states if isinstance(s, dict)]
        self.counts = [n for s in parts for n in s["counts"].tolist()]
        self.kept = [(s["features"], s["classes"], *[torch.zeros(0)] * 2) for s in parts]  # flat() reads the first two
        self.calibrated = all(s["calibrated"] for s in parts)

    def finish(self, scores: list[float | None]) -> list[float | None]:
        if not self.calibrated:
            LOG.info("ppal: the model carries no per-class validation AP (trained by an older version of this image, "
                     "or an epoch stage): every class counts as equally hard")
        if not self.kept:
            return scores
        counts, features, classes = self.flat()
        features = features.float()
        owner = owners(counts)  # image index of each box
        valid = [i for i, s in enumerate(scores) if s is not None]
        if not valid:
            return scores
        index = torch.full((len(counts),), -1, dtype=torch.long)
        index[valid] = torch.arange(len(valid))
        keep = index[owner] >= 0  # boxes of images with a finite score
        picked = select(torch.tensor([scores[i] for i in valid]), features[keep], classes[keep], index[owner[keep]],
                        self.ctx.budget)
        out: list[float | None] = [None] * len(scores)
        for i, value in zip(valid, picked.tolist(), strict=True):
            out[i] = value
        return out
