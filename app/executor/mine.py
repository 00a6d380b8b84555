"""The mining task: score every candidate and write result.tsv, best first.

When infer runs in the same container, both are served from one forward pass
per batch (every algorithm uses the plain pass; cald adds its augmented ones).
An unreadable image is listed last and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from easydict import EasyDict

from executor.dataset import image_size
from executor.infer import EngineSettings, InferSettings, candidates, devices, scan_job
from executor.mining import algorithms
from executor.protocol import Monitor, Params, Protocol, class_names, write_mining_result

LOG = logging.getLogger("executor")


def _readable(path: str) -> bool:
    try:
        image_size(path)
        return True
    except Exception:  # noqa: BLE001 - any failure to read the header means unreadable
        return False


@dataclass
class MiningSettings:
    algorithm: str
    class_weights: list[float]  # in class_names order
    min_score: float
    budget: int
    seed: int

    @classmethod
    def read(cls, p: Params, class_count: int) -> MiningSettings:
        return cls(
            algorithm=p.str("mining_algorithm", sorted(algorithms())),
            class_weights=p.floats("class_distribution_scores", class_count),
            min_score=p.float("mining_min_score", 0.0, 1.0),
            budget=p.int("diversity_budget", 0),
            seed=p.int("seed", 0),
        )


def run(cfg: EasyDict, monitor: Monitor, with_infer: bool = False) -> None:
    params = Params(cfg.defaults, cfg.param, cfg.config)
    names = class_names(cfg.param)
    settings = MiningSettings.read(params, len(names))
    algorithm, seed = settings.algorithm, settings.seed
    engine_settings = EngineSettings.read(params)
    infer_settings = InferSettings.read(params) if with_infer else None
    paths = candidates(cfg)
    result_file = cfg.ymir.output.mining_result_file

    if algorithm == "random" and not with_infer:
        rng = random.Random(seed)  # no model needed: a seeded score, and a header read to put unreadable images last
        counts = write_mining_result(result_file, [(p, rng.random() if _readable(p) else None) for p in paths])
        LOG.info("mining done (random): %d images scored, %d ranked last (unreadable)", counts["scored"],
                 counts["unreadable"])
        monitor.progress(1.0, force=True)
        return

    from executor import scan

    mining = scan.MiningJob(algorithm, dict(zip(names, settings.class_weights, strict=True)), settings.min_score,
                            settings.budget, seed)
    job = scan_job(cfg, engine_settings, infer_settings, mining, "mining")
    infer_file = cfg.ymir.output.infer_result_file if with_infer else None
    result = scan.run(job, paths, devices(cfg), monitor, infer_file, Protocol(cfg.ymir.get("protocol_version")))
    ranked = list(zip(result.readable, result.scores, strict=True)) + [(p, None) for p in result.unreadable]
    counts = write_mining_result(result_file, ranked)
    problems = ", ".join(f"{k}: {v}" for k, v in sorted(result.problems.items())) or "none"
    LOG.info("mining done (%s): %d images scored, %d ranked last (%s)", algorithm, counts["scored"], counts["unreadable"],
             problems)
    if with_infer:
        LOG.info("infer done: %d images, %d boxes; problems: %s", len(paths), result.boxes, problems)
    monitor.progress(1.0, force=True)
