"""diversity: uncertainty-weighted k-center greedy over pooled head features.

Uncertainty alone picks 100 near-copies of the same hard scene. Here each image
gets a feature (the detection head's input maps, average-pooled per level,
concatenated, randomly projected to 128 dimensions and L2-normalised) and an
uncertainty u: the *sum* of its kept boxes' uncertainties (``entropy``'s class-aware
box uncertainty; ``entropy`` takes the max). YMIR's budget counts images, so an image with more
unsure boxes brings more labels per pick (no benchmark has shown either the sum or
the max to pick better than random: docs/benchmarks.md, section 5).
Greedy selection repeatedly takes the
image maximising (0.1 + u) x distance to the nearest image already taken, for
``mining_budget`` picks; that product never grows, so it is the image's
score, and the images left over score their product at the end. The result is
a full ranking in which the first ``topk`` lines cover the candidates. Images
with u = 0 (no kept box of a wanted class) come after all the others, whatever
the budget: they carry no uncertainty, only distance.
"""

from __future__ import annotations

import torch

from executor.mining.base import Miner, MinerContext, group_rows
from executor.mining.entropy import box_uncertainty, per_image

DIM = 128
UNCERTAINTY_FLOOR = 0.1  # a sure image still counts a little for coverage
MAX_DISTANCE = 2.0  # between unit vectors


def uncertainty_mass(dets: list[torch.Tensor], class_weights: torch.Tensor) -> torch.Tensor:
    """Per image: the summed class-weighted entropy of its kept boxes (0 with none), ``(B,)`` float32."""
    return per_image(dets, box_uncertainty(torch.cat(dets), class_weights), "sum")


def _greedy(features: torch.Tensor, weight: torch.Tensor, budget: int) -> torch.Tensor:
    """k-center greedy by weight x distance: scores (>= 0) whose descending order is the pick order, then the rest."""
    n = len(features)
    distance = torch.full((n,), MAX_DISTANCE, device=features.device)
    scores = torch.empty(n, device=features.device)
    taken = torch.zeros(n, dtype=torch.bool, device=features.device)
    for _ in range(min(budget, n)):
        value = torch.where(taken, -1.0, weight * distance)
        pick = int(value.argmax())
        scores[pick], taken[pick] = value[pick], True
        distance = torch.minimum(distance, (features - features[pick]).norm(dim=1))
    rest = ~taken
    scores[rest] = (weight * distance)[rest]
    return scores


def greedy_scores(features: torch.Tensor, uncertainty: torch.Tensor, budget: int) -> torch.Tensor:
    """Scores whose descending order is the greedy pick order (then the rest). Images without uncertainty (no kept
    box of a wanted class) come after every image with some, in a greedy order of their own: far from everything,
    they would otherwise be taken for coverage alone (a pool of empty frames filled the top with them)."""
    features = features.float()
    uncertainty = uncertainty.float().to(features.device)
    some = uncertainty > 0
    scores = torch.empty(len(features), device=features.device)
    scores[some] = _greedy(features[some], UNCERTAINTY_FLOOR + uncertainty[some], budget)
    none_budget = max(0, budget - int(some.sum()))
    floor = torch.full((int((~some).sum()),), UNCERTAINTY_FLOOR, device=features.device)
    scores[~some] = _greedy(features[~some], floor, none_budget) - (UNCERTAINTY_FLOOR * MAX_DISTANCE + 1)  # < 0
    return scores


class Diversity(Miner):
    name = "diversity"

    def __init__(self, ctx: MinerContext) -> None:
        super().__init__(ctx)
        self.projection: torch.Tensor | None = None
        self.features: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def image_scores(self, batch) -> torch.Tensor:
        pooled = torch.cat([f.float().mean(dim=(2, 3)) for f in batch.feats], dim=1)
        if self.projection is None:  # drawn on the CPU (seeded), then kept beside the features
            self.projection = torch.randn(pooled.shape[1], DIM, generator=self.generator) / DIM**0.5
        self.projection = self.projection.to(pooled.device)
        self.features.append(torch.nn.functional.normalize(pooled @ self.projection, dim=1))  # a row per image
        return uncertainty_mass(self.detections(batch), self.ctx.class_weights)

    def state(self, order: torch.Tensor) -> object:
        return torch.cat(self.features).cpu()[order] if self.features else torch.zeros(0, DIM)

    def merge_states(self, states: list[object]) -> None:
        self.features = [s for s in states if isinstance(s, torch.Tensor)]

    tile_reduce = "mean"  # sliced: the mean of its inputs' uncertainty mass (the sum grows with the tile count; measured)

    def group_state(self, state: object, counts: torch.Tensor) -> object:
        """A sliced image's feature: the mean of its inputs' features, normalised again."""
        if not isinstance(state, torch.Tensor) or bool((counts == 1).all()):
            return state  # unsliced: the features are already normalised
        return torch.nn.functional.normalize(group_rows(state, counts, "sum"), dim=1)

    def finish(self, scores: list[float | None]) -> list[float | None]:
        """Greedy picks among the images with a finite score and features; the others stay ``None``."""
        valid = [i for i, s in enumerate(scores) if s is not None]
        if not valid:
            return scores
        features = torch.cat([f.cpu() for f in self.features])[valid]
        picked = greedy_scores(features, torch.tensor([scores[i] for i in valid]), self.ctx.budget).tolist()
        out: list[float | None] = [None] * len(scores)
        for i, value in zip(valid, picked, strict=True):
            out[i] = value
        return out
