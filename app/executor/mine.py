"""The mining task: score every candidate and write result.tsv, best first.

When infer runs in the same container, both are served from one ``scan`` (one forward pass per
batch; cald adds its augmented ones). An unreadable image is listed last and counted.
"""

from __future__ import annotations

import logging
from collections import Counter

from easydict import EasyDict

from executor import scan
from executor.engine import EngineSettings, InferSettings
from executor.mining import MiningSettings, algorithms
from executor.mining.random_score import random_value
from executor.protocol import Monitor, Params, Protocol, class_names, write_mining_result

LOG = logging.getLogger("executor")


def run(cfg: EasyDict, monitor: Monitor, with_infer: bool = False) -> None:
    params = Params(cfg.defaults, cfg.param, cfg.config)
    settings = MiningSettings.read(params, class_names(cfg.param))
    engine_settings = EngineSettings.read(params)
    infer_settings = InferSettings.read(params) if with_infer else None
    paths = scan.candidates(cfg)
    result_file = cfg.ymir.output.mining_result_file
    caveat = algorithms()[settings.algorithm].caveat
    if caveat:
        LOG.warning(caveat)

    if settings.algorithm == "random" and not with_infer:
        # No model needed: each image's score comes from the seed and its path, as with infer; the scan's
        # decoder finds the unreadable images.
        problems = scan.decode_problems(paths, engine_settings.workers)
        scan.require_a_readable_image(len(paths), sum(map(bool, problems)), Counter(p for p in problems if p))
        counts = write_mining_result(result_file, [(p, None if why else random_value(settings.seed, p))
                                                   for p, why in zip(paths, problems, strict=True)])
        LOG.info("mining done (random): %d images scored, %d ranked last (unreadable)", counts["scored"],
                 counts["unreadable"])
        monitor.progress(1.0, force=True)
        return

    job = scan.job(cfg, engine_settings, infer_settings, settings, "mining")
    infer_file = cfg.ymir.output.infer_result_file if with_infer else None
    result = scan.run(job, paths, scan.devices(cfg), monitor, infer_file, Protocol(cfg.ymir.get("protocol_version")))
    counts = write_mining_result(result_file, ranking(result))
    problems = ", ".join(f"{k}: {v}" for k, v in sorted(result.problems.items())) or "none"
    LOG.info("mining done (%s): %d images scored, %d ranked last (%s)", settings.algorithm, counts["scored"],
             counts["unreadable"], problems)
    if with_infer:
        LOG.info("infer done: %d images, %d boxes; problems: %s", len(paths), result.boxes, problems)
    monitor.progress(1.0, force=True)


def ranking(result: scan.ScanResult) -> list[tuple[str, float | None]]:
    """(image, score) in candidate order, the unreadable last (None): result.tsv's sort is stable, so equal
    scores stay in candidate order whatever the batch size or GPU count."""
    return list(zip(result.readable, result.scores, strict=True)) + [(p, None) for p in result.unreadable]
