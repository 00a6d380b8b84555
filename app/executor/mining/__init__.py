"""Mining algorithms behind one small interface (``base``), one per file; ``algorithms()`` names them.

See ``executor.mining.base`` for the interface and for where tensors live (the engine's device) and in
which dtype scores are computed (float32).
"""

from __future__ import annotations

from executor.mining.aldd import ALDD
from executor.mining.base import Miner, MinerContext, binary_entropy, finite_features
from executor.mining.cald import CALD
from executor.mining.diversity import Diversity
from executor.mining.entropy import Entropy
from executor.mining.ppal import PPAL
from executor.mining.random_score import RandomScore

__all__ = ["Miner", "MinerContext", "algorithms", "binary_entropy", "finite_features"]


def algorithms() -> dict[str, type[Miner]]:
    return {m.name: m for m in (RandomScore, Entropy, ALDD, CALD, Diversity, PPAL)}
