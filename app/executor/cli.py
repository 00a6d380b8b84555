"""Reads the merged env/config and dispatches to the task modules; owns the failure path.

On any failure monitor.txt gets the error code and the last log line says, in
plain words, what went wrong and what to change (the platform shows users only
the last 5 lines of the log).
"""

from __future__ import annotations

import logging
import sys
import traceback

from executor import runtime, ultra
from executor.protocol import (
    ErrorCode,
    Monitor,
    Params,
    YmirError,
    classify_exception,
    get_merged_config,
    monitor_location,
    tasks_to_run,
)

LOG = logging.getLogger("executor")


def run(cfg, monitor: Monitor) -> None:
    """Run the tasks of one container start, sharing the progress bar between them."""
    tasks = tasks_to_run(cfg.ymir)
    if not tasks:
        raise YmirError(ErrorCode.CONFIG, "env.yaml sets none of run_training, run_mining, run_infer")
    object_type = cfg.param.get("object_type")
    if object_type not in (None, "", 2, "2"):
        raise YmirError(ErrorCode.OBJECT_TYPE, f"object_type {object_type} is not detection (2): use a detection task")
    unknown = Params(cfg.defaults, cfg.param).unknown_keys()
    if unknown:
        LOG.info("config keys not used by this image (ignored): %s", ", ".join(unknown))
    LOG.info("tasks: %s (task_id %s)", ", ".join(tasks), cfg.ymir.get("task_id"))
    if "training" in tasks:
        from executor import train

        share = 1.0 / len(tasks)
        train.run(cfg, monitor.sub(0.0, share))
        monitor = monitor.sub(share, 1.0)
        tasks = [t for t in tasks if t != "training"]
    if "mining" in tasks:
        from executor import mine

        mine.run(cfg, monitor, with_infer="infer" in tasks)
    elif "infer" in tasks:
        from executor import infer

        infer.run(cfg, monitor)


def main(env_path: str | None = None) -> int:
    runtime.setup_logging()
    monitor: Monitor | None = None
    try:
        path, task_id = monitor_location(env_path)  # first: a config error must reach monitor.txt too
        monitor = Monitor(path, task_id) if path else None
        cfg = get_merged_config(env_path)
        runtime.setup()
        if monitor is None:
            raise YmirError(ErrorCode.CONFIG, "env.yaml names no output.monitor_file")
        monitor.progress(0.0, force=True)
        ultra.quiet()
        run(cfg, monitor)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must end in the monitor and a last line
        runtime.ignore_dead_workers()
        code, message = classify_exception(exc)
        if not isinstance(exc, YmirError):
            traceback.print_exc(file=sys.stdout)
        if monitor is not None:
            try:
                monitor.error(code, message)
            except OSError as write_error:
                LOG.error("could not write monitor.txt: %s", write_error)
        sys.stderr.flush()
        LOG.error("task failed (error %d): %s", int(code), message)
        for handler in LOG.handlers:
            handler.flush()
        return 1
