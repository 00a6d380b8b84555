"""YMIR model stages from Ultralytics' checkpoints: flat, uniquely named files in /out/models and result.yaml.

A stage's mAP is the validation mAP@0.5 of exactly its weights, with the other figures YMIR shows of a stage
(mAR, tp, fp, fn; ``evaluate.figures``) from the same predictions. ``best`` is the epoch with the highest
mAP@0.5, the number YMIR ranks stages by. result.yaml is rewritten atomically after every save, so a kill
at any moment leaves a valid file; at the end, the files it does not list are removed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from easydict import EasyDict

from executor import evaluate, ultra
from executor.class_stats import KEY, ClassStats
from executor.protocol import Protocol, Stage, atomic_copy, prune_unlisted, write_training_result

LOG = logging.getLogger("executor")
Figures = dict[str, float]  # a stage's mAP and, when known, mAR, tp, fp, fn (``evaluate.figures``)
PLOTS = ("BoxPR_curve.png", "BoxF1_curve.png", "confusion_matrix.png", "confusion_matrix_normalized.png",
         "results.png", "labels.jpg", "train_batch0.jpg", "val_batch0_labels.jpg", "val_batch0_pred.jpg")


class StageBook:
    """The stages written so far, which epoch ``best`` holds, and result.yaml."""

    def __init__(self, cfg: EasyDict, settings: Any, stage_map: Callable[[Path], Figures] | None = None,
                 started_from: str | None = None) -> None:
        # A checkpoint's figures when they are not Ultralytics' validation's: with slicing, on whole images
        # (``train.stage_map``).
        self.stage_map = stage_map
        self.models_dir = Path(cfg.ymir.output.models_dir)
        self.result_file = cfg.ymir.output.training_result_file
        self.protocol = Protocol(cfg.ymir.get("protocol_version"))
        self.settings = settings  # TrainSettings: file_patterns, save_period, export_onnx, opset, img_size
        self.stages: dict[str, Stage] = {}
        self.attachments: dict[str, list[str]] = {}
        self.evaluate_config: dict[str, float] = {}
        self.started_from = started_from  # the pretrained weights training started from; None: from scratch
        self.last: Figures = {"mAP": 0.0}
        self.epochs_run = 0
        self.best_epoch = 0  # the epoch whose weights best.pt holds: the highest mAP@0.5 so far
        self.best_map = 0.0

    def save(self, name: str, source: Path, figures: Figures, extra: list[str] | None = None, strip: bool = True,
             stats: ClassStats | None = None) -> None:
        """Copy a checkpoint into a stage. ``strip`` drops the optimizer state (a load and a save, about 4x
        the cost of a plain copy): done for stages kept for good, not for the best/last of every epoch,
        which ``finish`` strips once, adding the class statistics (``executor.class_stats``)."""
        target = f"{name}.pt"
        if strip:
            stripped_copy(source, self.models_dir / target, {KEY: stats.to_dict()} if stats else None)
        else:
            atomic_copy(source, self.models_dir / target)
        files = self._kept([target] + (extra or []))
        if files:
            self.stages[name] = Stage(name, files, figures["mAP"], int(time.time()),
                                      {k: v for k, v in figures.items() if k != "mAP"})

    def _kept(self, names: list[str]) -> list[str]:
        if not self.settings.file_patterns:
            return names
        return [n for n in names if any(re.search(p, n) for p in self.settings.file_patterns)]

    def write(self) -> str | None:
        if not self.stages:
            return None
        return write_training_result(
            self.result_file, str(self.models_dir), self.stages.values(), self.protocol,
            self.attachments or None, self.evaluate_config or None, self.started_from,
        )

    def epoch_saved(self, trainer: Any) -> None:
        """After Ultralytics saved last.pt (and best.pt when its own fitness, mAP@0.5:0.95, improved).

        best.pt is made to hold the epoch with the highest mAP@0.5: this epoch's checkpoint is copied over
        it when that improved (Ultralytics writes last.pt and best.pt from one buffer), and the previous
        choice is put back when only Ultralytics' fitness did. Its final evaluation then re-validates
        exactly that file; its early stopping is left as it is."""
        epoch = ultra.epoch_number(trainer)
        last, best = ultra.checkpoints(trainer)
        found = self.figures_of(last, trainer)
        self.last, self.epochs_run = found, epoch
        kept = self.models_dir / "best.pt"
        if self.best_epoch == 0 or found["mAP"] > self.best_map:
            self.best_epoch, self.best_map = epoch, found["mAP"]
            atomic_copy(last, best)
            self.save("best", best, found, strip=False)
        elif ultra.wrote_best(trainer) and kept.exists():
            atomic_copy(kept, best)
        period = self.settings.save_period
        if period > 0 and epoch % period == 0:
            self.save(f"epoch_{epoch}", last, found)
        self.save("last", last, found, strip=False)
        self.write()

    def finish(self, trainer: Any) -> str | None:
        """After the final evaluation of best.pt: its own mAP, the stripped files, plots, ONNX."""
        last, best = ultra.checkpoints(trainer)
        best_found = self.figures_of(best, trainer) if best.exists() else self.last
        self.evaluate_config = {"conf_thr": evaluate.CONF, "iou_thr": evaluate.MATCH_IOU}  # what the figures count at
        self._collect_plots(ultra.save_dir(trainer))
        stats = ClassStats(ultra.class_names(trainer), ultra.train_class_counts(trainer), ultra.val_class_ap50(trainer))
        # Stages holding the best epoch's weights get the final evaluation's number too: one set of weights,
        # one mAP (the in-training figure differs in the last digits, and would otherwise decide the best stage).
        same = best.exists() and self.best_epoch == self.epochs_run
        if f"epoch_{self.best_epoch}" in self.stages and best.exists():
            stage = self.stages[f"epoch_{self.best_epoch}"]
            stage.mAP, stage.figures = best_found["mAP"], {k: v for k, v in best_found.items() if k != "mAP"}
        if last.exists():
            self.save("last", last, best_found if same else self.last, stats=stats)
        if best.exists():
            extra = self._export_onnx(best) if self.settings.export_onnx else []
            self.save("best", best, best_found, extra, stats=stats)
        best_name = self.write()
        removed = prune_unlisted(str(self.models_dir), self.result_file)
        if removed:
            LOG.info("removed from %s the files result.yaml does not list: %s", self.models_dir, ", ".join(removed))
        return best_name

    def figures_of(self, checkpoint: Path, trainer: Any) -> Figures:
        """The figures of the weights Ultralytics just validated (``checkpoint`` holds them): its validation's mAP@0.5
        and, from its predictions, mAR, tp, fp and fn; with slicing, all of them on whole images (``stage_map``)."""
        if self.stage_map is None:
            stats = ultra.val_stats(trainer)
            found = evaluate.figures(*stats) if stats is not None else {}
            return {**found, "mAP": ultra.map50(trainer)}
        found = self.stage_map(checkpoint)
        LOG.info("%s: whole-image mAP@0.5 %.4f, sliced as infer runs (Ultralytics' validation on tiles and whole "
                 "images: %.4f)", checkpoint.name, found["mAP"], ultra.map50(trainer))
        return found

    def _collect_plots(self, save_dir: Path) -> None:
        target = self.models_dir / "attachments" / "images"
        names = []
        for name in PLOTS:
            if (save_dir / name).is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(save_dir / name, target / name)
                names.append(name)
        if names:
            self.attachments = {"images": names}

    def _export_onnx(self, best: Path) -> list[str]:
        """``["best.onnx"]``, or none when the export fails: the trained stages are good without it."""
        try:
            exported = ultra.export_onnx(best, self.settings.opset, self.settings.img_size)
            atomic_copy(exported, self.models_dir / "best.onnx")
        except Exception as exc:  # noqa: BLE001 - any export failure leaves the .pt stages as they are
            LOG.warning("ONNX export failed (%s: %s): the stages are kept without best.onnx; another opset may work",
                        type(exc).__name__, str(exc)[:200])
            return []
        return ["best.onnx"]


def stripped_copy(source: Path, target: Path, updates: dict[str, Any] | None = None) -> None:
    """Copy a checkpoint without its optimizer state (a third of the size), with ``updates``, atomically."""
    tmp = target.with_name(f".{target.name}.tmp")
    ultra.strip_optimizer(source, tmp, updates)
    os.replace(tmp, target)
