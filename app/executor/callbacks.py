"""YMIR reporting as Ultralytics callbacks, in the style of Ultralytics' own ``utils/callbacks/*.py``.

One short function per trainer event, gathered by ``callbacks()`` at the bottom. Each gets the ``Report``
(what the events share: the settings, the monitor, the stage book, tensorboard) and the trainer.
Ultralytics cloudpickles callbacks into its DDP workers: the Report travels with them (its tensorboard
writer is made where it is used), and only rank 0 reports, except the hand-over of a worker's error.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from easydict import EasyDict

from executor import runtime, ultra
from executor.protocol import ErrorCode, Monitor, YmirError, atomic_write_text, classify_exception
from executor.stages import StageBook

CONVERSION_SHARE, FINAL_SHARE = 0.05, 0.05  # of the progress bar
WORKER_ERRORS = ".training-worker-errors"  # under /out: how DDP workers hand their error to the parent


class Report:
    """What the callbacks share."""

    def __init__(self, cfg: EasyDict, settings: Any, monitor: Monitor, stage_map: Any = None,
                 started_from: str | None = None) -> None:
        self.settings = settings  # TrainSettings
        self.monitor = monitor
        self.stages = StageBook(cfg, settings, stage_map, started_from)
        self.tensorboard_dir = cfg.ymir.output.tensorboard_dir
        self.errors_dir = Path(cfg.ymir.output.root_dir).absolute() / WORKER_ERRORS
        self.batches_done = 0
        self._tb: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tb": None}  # a live writer does not pickle

    @property
    def tb(self) -> Any:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(self.tensorboard_dir)
        return self._tb


def on_pretrain_routine_start(report: Report, trainer: Any) -> None:
    """In a DDP worker (Ultralytics runs multi-GPU training in a subprocess, so the parent only learns
    "exit status 1"), an exception that ends the worker is also written, with its code and message, to a
    small file under /out that ``train.worker_errors`` reads in the parent."""
    rank = int(os.environ.get("RANK", -1))
    if rank < 0 or getattr(sys.excepthook, "ymir_rank", None) == rank:
        return
    previous, errors_dir = sys.excepthook, report.errors_dir

    def hook(kind: Any, exc: BaseException, tb: Any) -> None:
        try:
            code, message = classify_exception(exc)
            atomic_write_text(errors_dir / f"error-{rank}.json", json.dumps({"code": int(code), "message": message}))
        finally:
            previous(kind, exc, tb)

    hook.ymir_rank = rank  # type: ignore[attr-defined]
    sys.excepthook = hook


on_pretrain_routine_end = on_pretrain_routine_start  # rank 0 runs the first event, every rank the second


def container_threads(trainer_or_validator: Any) -> None:
    """On the CPU, torch's threads are Ultralytics' count of the CPUs this container may use
    (``runtime.cpu_threads``): its ``select_device``, run by the trainer and by the final validation of
    best.pt, counts the node's cores (under a 1-CPU quota 8 threads made training 2.68x slower)."""
    if ultra.trainer_device(trainer_or_validator).type == "cpu":
        import torch

        torch.set_num_threads(runtime.cpu_threads())


def on_train_epoch_start(report: Report, trainer: Any) -> None:
    report.batches_done = 0
    container_threads(trainer)  # the trainer's select_device set the node's count


def on_val_start(report: Report, validator: Any) -> None:
    container_threads(validator)  # the final validation's select_device set it again
    ultra.keep_val_stats(validator)  # for each stage's mAR, tp, fp and fn


def on_train_batch_end(report: Report, trainer: Any) -> None:
    report.batches_done += 1
    fraction = ultra.epoch_fraction(trainer, report.batches_done)
    report.monitor.progress(CONVERSION_SHARE + (1 - CONVERSION_SHARE - FINAL_SHARE) * fraction)


def on_train_epoch_end(report: Report, trainer: Any) -> None:
    """A NaN/Inf loss in the first epoch: Ultralytics has no last.pt to recover from and trains on
    regardless, into a model that finds nothing. Fail with 300201 instead. (In later epochs its own
    recovery reloads last.pt and raises a RuntimeError naming NaN after 3 tries, mapped to 300201 too.)"""
    import torch

    loss = ultra.first_epoch_loss(trainer)
    if loss is not None and not bool(torch.isfinite(torch.as_tensor(loss)).all()):
        raise YmirError(
            ErrorCode.NAN_LOSS,
            f"training diverged: the loss became NaN/Inf in the first epoch (optimizer {report.settings.optimizer}, "
            f"lr0 {report.settings.lr0}); lower lr0, or set optimizer to auto, and check the annotations",
        )


def on_fit_epoch_end(report: Report, trainer: Any) -> None:
    step = ultra.epoch_number(trainer)
    for key, value in ultra.epoch_scalars(trainer).items():
        try:
            report.tb.add_scalar(key, float(value), step)
        except (TypeError, ValueError):
            continue
    report.tb.flush()


def on_model_save(report: Report, trainer: Any) -> None:
    report.stages.epoch_saved(trainer)


def on_train_end(report: Report, trainer: Any) -> None:
    report.stages.finish(trainer)
    report.tb.close()


def main_process_only(callback: Any) -> Any:
    """In DDP only rank 0 reports (RANK is set by torch.distributed in each worker)."""

    def call(trainer: Any) -> None:
        if int(os.environ.get("RANK", -1)) in (-1, 0):
            callback(trainer)

    return call


EVERY_PROCESS = {"on_pretrain_routine_start": on_pretrain_routine_start, "on_pretrain_routine_end": on_pretrain_routine_end}
RANK_ZERO = {"on_train_epoch_start": on_train_epoch_start, "on_val_start": on_val_start, "on_train_batch_end": on_train_batch_end,
             "on_train_epoch_end": on_train_epoch_end, "on_fit_epoch_end": on_fit_epoch_end,
             "on_model_save": on_model_save, "on_train_end": on_train_end}


def callbacks(report: Report) -> dict[str, Any]:
    """Event name -> callback, for ``model.add_callback``."""
    return {**{event: partial(fn, report) for event, fn in EVERY_PROCESS.items()},
            **{event: main_process_only(partial(fn, report)) for event, fn in RANK_ZERO.items()}}
