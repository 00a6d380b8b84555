"""The mining task: score every candidate and write result.tsv, best first.

When infer runs in the same container, both are served from one forward pass
per batch (every algorithm uses the plain pass; cald adds its augmented ones).
An unreadable image is listed last and counted.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass

import torch
from easydict import EasyDict

from executor.dataset import image_size
from executor.infer import Batch, EngineSettings, InferSettings, InferSink, candidates, load_engine
from executor.mining import MinerContext, algorithms
from executor.protocol import Monitor, Params, class_names, write_mining_result

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
        LOG.info("mining done (random): %d images scored, %d unreadable", counts["scored"], counts["unreadable"])
        monitor.progress(1.0, force=True)
        return

    engine = load_engine(cfg, engine_settings, "mining")
    weight_of = dict(zip(names, settings.class_weights, strict=True))
    class_weights = torch.tensor([weight_of.get(n, 0.0) if n else 0.0 for n in engine.class_map])
    context = MinerContext(engine, class_weights, settings.min_score, engine_settings.iou, settings.budget, seed)
    miner = algorithms()[algorithm](context)
    sink = InferSink(cfg, engine, infer_settings, engine_settings.iou) if infer_settings else None
    readable: list[str] = []
    scores: list[float] = []
    unreadable: list[str] = []
    problems: Counter = Counter()
    done = 0
    try:
        for images, metas, bad in engine.batches(paths, engine_settings.batch_size, engine_settings.workers):
            batch: Batch | None = None
            if images is not None:
                batch = engine.forward(engine.prepare(images), metas)
                scores += miner.score(batch)
                readable += [m.path for m in metas]
            for meta in bad:
                unreadable.append(meta.path)
                problems[meta.problem] += 1
            if sink is not None:
                sink.add(batch, bad)
            done += len(metas) + len(bad)
            monitor.progress(done / len(paths))
    except BaseException:
        if sink is not None:
            sink.writer.abort()
        raise
    scores = miner.finish(scores)
    ranked = list(zip(readable, scores, strict=True)) + [(p, None) for p in unreadable]
    counts = write_mining_result(result_file, ranked)
    LOG.info(
        "mining done (%s): %d images scored, %d unreadable (%s)", algorithm, counts["scored"],
        counts["unreadable"], ", ".join(f"{k}: {v}" for k, v in sorted(problems.items())) or "none",
    )
    if sink is not None:
        sink.close(len(paths))
    monitor.progress(1.0, force=True)
