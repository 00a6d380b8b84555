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
uncertainty x distance (distance = 1 - its similarity to the nearest image already taken), starting from the most
uncertain; they come first in that order, then every other image by its uncertainty, the images without any
last. Ours where the paper's k-center greedy takes the farthest image alone: weighting by uncertainty makes
every prefix of the list a good pick, whatever ``mining_budget`` says; YMIR's topk is not passed to the
executor, and farthest-first over a budget larger than the topk filled the top with the pool's outliers.

The labelled bank. A model trained by this image carries its training images, described the same way
(``executor.bank``): they count as already picked, so each candidate's distance starts at 1 - its similarity to
the nearest of them (the core-set view: the labelled set is the first set of centres). A near-copy of a labelled
image then waits behind every candidate unlike what the model has seen. Without a bank (a model trained
elsewhere or by an older version of this image, an epoch stage, sliced training or mining) the distance starts
at 1, which the log says.
"""

from __future__ import annotations

import logging
import math

import torch

from executor.bank import DIM, MAX_BOXES, Bank, describe, projection
from executor.engine import owners
from executor.mining.base import Miner, MinerContext, finite_features, group_rows
from executor.mining.entropy import box_uncertainty, per_image

LOG = logging.getLogger("executor")
CANDIDATES = 2.0  # stage 2 looks at this many times the budget
PRUNE_AT = 2  # the boxes of images that can no longer be candidates are dropped when this many times them are kept
BANK_CHUNK = 1024  # bank boxes compared at once: (candidate boxes x 1024) floats, whatever the bank


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


def bank_similarity(features: torch.Tensor, classes: torch.Tensor, owner: torch.Tensor, n_images: int,
                    bank: Bank) -> torch.Tensor:
    """Each image's similarity to the most similar image of ``bank``, ``(n_images,)`` in [0, 1]: the measure of
    ``similarity_to`` between an image and a bank image, the bank's boxes taken a chunk of images at a time."""
    best = features.new_zeros(n_images)
    if not len(features) or not len(bank.features):
        return best
    counts = torch.bincount(owner, minlength=n_images)
    has_boxes = counts > 0
    bank_owner = owners(bank.counts)
    bounds = torch.cat([torch.zeros(1, dtype=torch.long), bank.counts.cumsum(0)])
    first = 0
    while first < bank.images:
        last = first + 1  # images [first, last): at least one, at most BANK_CHUNK boxes unless one image has more
        while last < bank.images and int(bounds[last + 1] - bounds[first]) <= BANK_CHUNK:
            last += 1
        rows = slice(int(bounds[first]), int(bounds[last]))
        theirs, their_owner = bank.features[rows].float(), bank_owner[rows] - first
        sim = (features @ theirs.T).clamp_min(0)  # (mine, theirs) cosine, negatives as no match
        sim = torch.where(classes[:, None] == bank.classes[rows][None], sim, 0.0)
        chunk = last - first
        # forward: each of an image's boxes -> its best same-class box of the bank image, averaged over the image
        best_there = sim.new_zeros(len(features), chunk).scatter_reduce(1, their_owner.expand_as(sim), sim, "amax",
                                                                         include_self=True)
        forward = sim.new_zeros(n_images, chunk).index_add(0, owner, best_there) / counts.clamp_min(1)[:, None]
        # backward: each bank box -> its best same-class box of the image, averaged over the bank image
        best_here = sim.new_zeros(n_images, sim.shape[1]).scatter_reduce(0, owner[:, None].expand_as(sim), sim, "amax",
                                                                          include_self=True)
        their_counts = bank.counts[first:last]
        backward = sim.new_zeros(n_images, chunk).index_add(1, their_owner, best_here) / their_counts.clamp_min(1)
        pair = torch.where(has_boxes[:, None] & (their_counts > 0)[None], (forward + backward) / 2, 0.0)
        best = torch.maximum(best, pair.max(1).values)
        first = last
    return best.clamp(max=1.0)  # float16 features: a copy's cosine can exceed 1 by a rounding step


def select(uncertainty: torch.Tensor, features: torch.Tensor, classes: torch.Tensor, owner: torch.Tensor,
           budget: int, bank: Bank | None = None) -> torch.Tensor:
    """Scores whose descending order is: the greedy picks (largest uncertainty x distance) among the candidates
    (the most uncertain images, at most ``CANDIDATES x budget``, none without uncertainty), then the rest by
    uncertainty (0 without any). With a ``bank``, its images count as picked before the first pick."""
    n = len(uncertainty)
    by_uncertainty = uncertainty.argsort(descending=True, stable=True)  # ties: candidate order
    uncertain = int((uncertainty > 0).sum())
    candidates = by_uncertainty[: min(uncertain, math.ceil(CANDIDATES * budget))]
    position = torch.full((n,), -1, dtype=torch.long)
    position[candidates] = torch.arange(len(candidates))
    keep = position[owner] >= 0  # only the candidates' boxes take part in the similarities
    features, classes, local = features[keep], classes[keep], position[owner[keep]]
    scores = uncertainty / (uncertainty.max().clamp_min(1e-12) + 1)  # the rest: below 1, by uncertainty
    weight = uncertainty[candidates]  # in descending order: ties go to the more uncertain
    distance = torch.ones(len(candidates))
    if bank is not None:
        distance = 1 - bank_similarity(features, classes, local, len(candidates), bank)
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
        sliced = ctx.bank is not None and ctx.engine.slices.on  # tiles: no candidate is like a training image
        self.bank = None if sliced or ctx.bank is None else ctx.bank.above(ctx.min_score)
        self.no_bank = "sliced inputs" if sliced else "none in the model"
        self.projection: torch.Tensor | None = None
        self.counts: list[int] = []  # boxes kept per image, in pass order (0: none, or dropped by ``prune``)
        # the kept boxes, a set per batch (one after ``prune``), on the device until state(): features (n, DIM)
        # float16, classes (n,), and per image holding boxes: its pass position, box count and uncertainty (+inf for
        # a sliced input, whose image's score is the mean of inputs not all seen yet: never dropped)
        self.kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.since_prune = 0

    def image_scores(self, batch) -> torch.Tensor:
        weights = self.ctx.class_weights * self.difficulty.to(self.ctx.class_weights.device)
        dets = [det[det[:, 4].argsort(descending=True)[:MAX_BOXES]] for det in self.detections(batch)]
        if self.projection is None:  # the bank's, so that candidates and bank compare; else seeded by the mining seed
            in_dim = sum(level.shape[1] for level in batch.feats)
            if self.bank is not None and self.bank.in_dim != in_dim:
                self.bank, self.no_bank = None, f"the bank's features have {self.bank.in_dim} channels, the model {in_dim}"
            self.projection = projection(in_dim, self.bank.seed if self.bank is not None else self.ctx.seed)
        projected = describe(batch.feats, tuple(batch.images.shape[-2:]), dets, self.projection)
        classes = torch.cat([det[:, 5].long() for det in dets])  # the NMS's class: the top of the class scores
        uncertainty = per_image(dets, box_uncertainty(torch.cat(dets), weights), "sum")
        device = uncertainty.device
        whole = torch.tensor([meta.parts == 1 for meta in batch.metas], device=device)
        positions = torch.arange(len(self.counts), len(self.counts) + len(dets), device=device)
        self.counts += [len(det) for det in dets]
        final = torch.isfinite(uncertainty) & finite_features(batch)  # else ranked last (``Miner.device_scores``)
        self.kept.append((projected.half(), classes, positions, torch.tensor([len(det) for det in dets], device=device),
                          torch.where(whole, torch.where(final, uncertainty.float(), -math.inf), math.inf)))
        self.since_prune += len(dets)
        if self.since_prune > PRUNE_AT * self.bound():
            self.prune()
        return uncertainty

    def bound(self) -> int:
        """The most images stage 2 looks at (its candidates)."""
        return math.ceil(CANDIDATES * self.ctx.budget)

    def prune(self) -> None:
        """Drop the boxes of every whole image that can no longer be a candidate: ``bound()`` images already seen
        are more uncertain (a whole image's score is final once seen), or it has no uncertainty. What is kept
        stays within a few times the candidates, whatever the pool (issue 43, item 3), and each step looks at that
        much only; the ranking is the same (tested)."""
        features, classes, positions, counts, uncertainty = (torch.cat(parts) for parts in zip(*self.kept, strict=True))
        known = uncertainty[uncertainty < math.inf]
        k = self.bound()
        threshold = known.topk(k).values[-1] if len(known) > k else -math.inf  # the k-th most uncertain
        drop = (uncertainty < threshold) | (uncertainty <= 0)
        for position in positions[drop].tolist():
            self.counts[position] = 0
        boxes = ~torch.repeat_interleave(drop, counts)
        self.kept = [(features[boxes], classes[boxes], positions[~drop], counts[~drop], uncertainty[~drop])]
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
        return {"features": features, "classes": classes, "counts": counts[order], "calibrated": self.calibrated,
                "bank": self.bank, "no_bank": self.no_bank}

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
        self.kept = [(s["features"], s["classes"], *[torch.zeros(0)] * 3) for s in parts]  # flat() reads the first two
        self.calibrated = all(s["calibrated"] for s in parts)
        banks = [s["bank"] for s in parts if s.get("bank") is not None]
        self.bank = banks[0] if banks and len(banks) == len(parts) else None  # every shard ran the same model
        self.no_bank = next((s["no_bank"] for s in parts if s.get("bank") is None), self.no_bank)

    def finish(self, scores: list[float | None]) -> list[float | None]:
        if not self.calibrated:
            LOG.info("ppal: the model carries no per-class validation AP (trained by an older version of this image, "
                     "or an epoch stage): every class counts as equally hard")
        if self.bank is None:
            LOG.info("ppal: no labelled bank (%s; a model trained by an older version of this image, an epoch stage "
                     "or sliced training has none): candidates close to the training images are not held back",
                     self.no_bank)
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
                        self.ctx.budget, self.bank)
        if self.bank is not None:
            LOG.info("ppal: the labelled bank (%d training images) counts as already picked", self.bank.images)
        out: list[float | None] = [None] * len(scores)
        for i, value in zip(valid, picked.tolist(), strict=True):
            out[i] = value
        return out
