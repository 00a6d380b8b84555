"""The infer task: boxes for every candidate, streamed to infer-result.json.

One pass of ``scan`` over the candidates (the batched ``engine`` underneath); memory stays flat however
many candidates there are. Every candidate gets an entry; unreadable images get an empty list and are
counted in the log.
"""

from __future__ import annotations

import logging

from easydict import EasyDict

from executor import scan
from executor.engine import EngineSettings, InferSettings
from executor.protocol import Monitor, Params, Protocol

LOG = logging.getLogger("executor")


def run(cfg: EasyDict, monitor: Monitor) -> None:
    params = Params(cfg.defaults, cfg.param, cfg.config)
    job = scan.job(cfg, EngineSettings.read(params), InferSettings.read(params), None, "infer")
    paths = scan.candidates(cfg)
    result = scan.run(job, paths, scan.devices(cfg), monitor, cfg.ymir.output.infer_result_file,
                      Protocol(cfg.ymir.get("protocol_version")))
    problems = ", ".join(f"{k}: {v}" for k, v in sorted(result.problems.items())) or "none"
    LOG.info("infer done: %d images, %d boxes; problems: %s", len(paths), result.boxes, problems)
    monitor.progress(1.0, force=True)
