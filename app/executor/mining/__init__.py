"""Mining algorithms behind one small interface (``base``), one per file; ``algorithms()`` names them.

See ``executor.mining.base`` for the interface and for where tensors live (the engine's device) and in
which dtype scores are computed (float32).
"""

from __future__ import annotations

from dataclasses import dataclass

from executor.mining.aldd import ALDD
from executor.mining.base import Miner, MinerContext, binary_entropy, finite_features
from executor.mining.cald import CALD
from executor.mining.diversity import Diversity
from executor.mining.entropy import Entropy
from executor.mining.ppal import PPAL
from executor.mining.random_score import RandomScore
from executor.protocol import Params

__all__ = ["Miner", "MinerContext", "MiningSettings", "algorithms", "binary_entropy", "finite_features"]


def algorithms() -> dict[str, type[Miner]]:
    return {m.name: m for m in (RandomScore, Entropy, ALDD, CALD, Diversity, PPAL)}


@dataclass
class MiningSettings:
    """The mining template's own keys, read once (the engine's are ``engine.EngineSettings``)."""

    algorithm: str
    class_weights: dict[str, float]  # by task class name
    min_score: float
    budget: int
    seed: int

    @classmethod
    def read(cls, p: Params, names: list[str]) -> MiningSettings:
        weights_in_order = p.floats("class_distribution_scores", len(names))
        return cls(
            algorithm=p.str("mining_algorithm", sorted(algorithms())),
            class_weights=dict(zip(names, weights_in_order, strict=True)),
            min_score=p.float("mining_min_score", 0.0, 1.0),
            budget=p.int("mining_budget", 0),
            seed=p.int("seed", 0),
        )
