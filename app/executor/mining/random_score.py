"""random: a seeded uniform score, the baseline every other method must beat."""

from __future__ import annotations

import torch

from executor.mining.base import Miner, image_seed


class RandomScore(Miner):
    name = "random"

    def image_scores(self, batch) -> torch.Tensor:
        # One draw per image from its path and the seed: the same list whatever the batch size, batch-mates
        # or GPU count. Made on the CPU, then placed with the batch.
        values = [image_seed(self.ctx.seed, meta.path) / 2**63 for meta in batch.metas]
        return torch.tensor(values, dtype=torch.float32).to(batch.images.device)
