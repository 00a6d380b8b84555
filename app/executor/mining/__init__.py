"""Mining algorithms behind one small interface, one per file.

A ``Miner`` sees every forward pass of the candidates (the same pass infer uses
when both tasks run) and returns one score per readable image, higher meaning
more worth labelling. ``finish`` may rescore all images at the end (the
diversity method needs the whole set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from executor.infer import Batch, Engine


@dataclass
class MinerContext:
    engine: Engine | None  # None when only merging shards' results
    class_weights: torch.Tensor  # per model class; 0 for classes the task does not ask for
    min_score: float  # boxes below this are not considered
    iou: float
    budget: int
    seed: int
    rank: int = 0  # which shard (GPU) this miner scores; merged miners use 0


class Miner:
    """Scores images; subclasses override ``score`` and optionally ``finish``."""

    name = ""

    def __init__(self, ctx: MinerContext) -> None:
        self.ctx = ctx

    def score(self, batch: Batch) -> list[float]:
        raise NotImplementedError

    def finish(self, scores: list[float]) -> list[float]:
        return scores

    def state(self) -> object:
        """What ``finish`` needs from this shard, saved by a worker (picklable)."""
        return None

    def merge_states(self, states: list[object]) -> None:
        """Take the shards' states, in candidate order, before ``finish``."""

    def detections(self, batch: Batch) -> list[torch.Tensor]:
        """Post-NMS boxes in model-input pixels, ``(n, 6)``: x1 y1 x2 y2 score class."""
        return self.ctx.engine.detect(batch, self.ctx.min_score, self.ctx.iou, 300, to_image=False)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of a Bernoulli probability, in bits (1 at p = 0.5, 0 at 0 or 1)."""
    p = p.float().clamp(1e-6, 1 - 1e-6)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


def algorithms() -> dict[str, type[Miner]]:
    from executor.mining.aldd import ALDD
    from executor.mining.cald import CALD
    from executor.mining.diversity import Diversity
    from executor.mining.entropy import Entropy
    from executor.mining.random_score import RandomScore

    return {m.name: m for m in (RandomScore, Entropy, ALDD, CALD, Diversity)}
