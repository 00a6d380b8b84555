"""random: a seeded uniform score per image, the baseline every other method must beat."""

from __future__ import annotations

import torch

from executor.mining.base import Miner, image_seed


def random_value(seed: int, path: str) -> float:
    """An image's random score in [0, 1), from the seed and its path alone: the same with and without infer
    (mining alone needs no model and calls this directly), whatever the batch, batch-mates, GPU count or the
    other candidates. 24 bits, so that float32 (the miners' dtype) holds it exactly."""
    return (image_seed(seed, path) >> 39) / 2**24


class RandomScore(Miner):
    name = "random"
    reads_the_model = False  # ranked as mining without infer ranks it, where no model runs

    def image_scores(self, batch) -> torch.Tensor:
        # Made on the CPU, then placed with the batch.
        values = [random_value(self.ctx.seed, meta.path) for meta in batch.metas]
        return torch.tensor(values, dtype=torch.float32).to(batch.images.device)
