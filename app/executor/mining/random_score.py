"""random: a seeded uniform score, the baseline every other method must beat."""

from __future__ import annotations

import torch

from executor.mining.base import Miner, MinerContext


class RandomScore(Miner):
    name = "random"

    def __init__(self, ctx: MinerContext) -> None:
        super().__init__(ctx)
        self.generator = torch.Generator().manual_seed(ctx.seed * 1000 + ctx.rank)

    def image_scores(self, batch) -> torch.Tensor:
        # Drawn on the CPU (one seeded stream whatever the device), then placed with the batch.
        return torch.rand(len(batch.metas), generator=self.generator).to(batch.images.device)
