"""random: a seeded uniform score, the baseline every other method must beat."""

from __future__ import annotations

import torch

from executor.mining import Miner, MinerContext


class RandomScore(Miner):
    name = "random"

    def __init__(self, ctx: MinerContext) -> None:
        super().__init__(ctx)
        self.generator = torch.Generator().manual_seed(ctx.seed * 1000 + ctx.rank)

    def score(self, batch) -> list[float]:
        return torch.rand(len(batch.metas), generator=self.generator).tolist()
