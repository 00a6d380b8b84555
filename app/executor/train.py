"""The training task: convert the dataset, train an Ultralytics YOLO detector, report stages.

Ultralytics' own trainer does the work; this module only adds callbacks that
turn its checkpoints into YMIR model stages (flat, uniquely named files in
``/out/models``), write result.yaml after every save, tensorboard scalars and
progress. A stage's mAP is the validation mAP@0.5 of exactly its weights.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from easydict import EasyDict

from executor import dataset, ultra, weights
from executor.protocol import (
    ErrorCode,
    Monitor,
    Params,
    Protocol,
    Stage,
    YmirError,
    atomic_copy,
    atomic_write_text,
    class_names,
    classify_exception,
    config_error,
    gpu_ids,
    model_error,
    path_list,
    prune_unlisted,
    write_training_result,
)
from executor.runtime import select_device

LOG = logging.getLogger("executor")
FAMILIES = ("yolo11", "yolov8", "yolo12", "yolo26")
MODELS = tuple(f"{family}{size}" for family in FAMILIES for size in "nsmlx")
OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
AUGMENTATIONS = ("mosaic", "mixup", "fliplr", "flipud", "degrees", "scale", "hsv_h", "hsv_s", "hsv_v")
PLOTS = ("BoxPR_curve.png", "BoxF1_curve.png", "confusion_matrix.png", "confusion_matrix_normalized.png",
         "results.png", "labels.jpg", "train_batch0.jpg", "val_batch0_labels.jpg", "val_batch0_pred.jpg")
CONVERSION_SHARE, FINAL_SHARE = 0.05, 0.05  # of the progress bar
WORKER_ERRORS = ".training-worker-errors"  # under /out: how DDP workers hand their error to the parent


def weights_dir() -> Path:
    """Weights baked into the image at build time, one ``<model>.pt`` per model name."""
    return Path(os.environ.get("YMIR_WEIGHTS_DIR") or Path(__file__).resolve().parents[2] / "weights")


@dataclass
class TrainSettings:
    """Every training hyper-parameter, read and validated up front (the template is the source)."""

    model: str
    epochs: int
    batch_size_per_gpu: int
    num_workers_per_gpu: int
    img_size: int
    optimizer: str
    lr0: float
    patience: int
    save_period: int
    export_format: str
    export_onnx: bool
    opset: int
    file_patterns: list[str]
    seed: int
    close_mosaic: int
    augment: dict[str, float]

    @classmethod
    def read(cls, p: Params) -> TrainSettings:
        patterns = [x.strip() for x in p.str("ymir_saved_file_patterns").split(",") if x.strip()]
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise config_error(f"ymir_saved_file_patterns: '{pattern}' is not a valid regex ({exc})") from None
        export_format = p.str("export_format")
        settings = cls(
            model=p.str("model", MODELS),
            epochs=p.int("epochs", 1, 100000),
            batch_size_per_gpu=p.int("batch_size_per_gpu", 1, 4096),
            num_workers_per_gpu=p.int("num_workers_per_gpu", 0, 64),
            img_size=p.int("img_size", 32, 8192),
            optimizer=p.str("optimizer", OPTIMIZERS),
            lr0=p.float("lr0", 1e-8, 10.0),
            patience=p.int("patience", 0),
            save_period=p.int("save_period", 0),
            export_format=export_format if p.given("export_format") else "",  # absent means voc:raw
            export_onnx=p.bool("export_onnx"),
            opset=p.int("opset", 7, 30),
            file_patterns=patterns,
            seed=p.int("seed", 0),
            close_mosaic=p.int("close_mosaic", 0),
            augment={k: p.float(k, 0.0, 360.0 if k == "degrees" else 1.0) for k in AUGMENTATIONS},
        )
        settings.check_file_patterns(p.str("ymir_saved_file_patterns"))
        return settings

    def check_file_patterns(self, text: str) -> None:
        """Before training, not after it: patterns that keep none of the files training writes fail now."""
        if not self.file_patterns:
            return
        named = ["best.pt", "last.pt"] + (["best.onnx"] if self.export_onnx else [])
        period = self.save_period
        epochs = (f"epoch_{n}.pt" for n in range(period, self.epochs + 1, period)) if period > 0 else iter(())
        if not any(re.search(p, name) for name in itertools.chain(named, epochs) for p in self.file_patterns):
            raise config_error(
                f"ymir_saved_file_patterns '{text}' keeps none of the files training writes ({', '.join(named)}"
                f"{', epoch_N.pt every save_period epochs' if period > 0 else ''}), so no model would be saved: "
                "widen the patterns, or leave them empty to keep every stage")


class StageRecorder:
    """Ultralytics callbacks -> YMIR stages, tensorboard scalars and progress."""

    def __init__(self, cfg: EasyDict, settings: TrainSettings, monitor: Monitor) -> None:
        self.models_dir = Path(cfg.ymir.output.models_dir)
        self.result_file = cfg.ymir.output.training_result_file
        self.protocol = Protocol(cfg.ymir.get("protocol_version"))
        self.settings = settings
        self.monitor = monitor
        self.stages: dict[str, Stage] = {}
        self.batches_done = 0
        self.attachments: dict[str, list[str]] = {}
        self.evaluate_config: dict[str, float] = {}
        self.last_map = 0.0
        self.epochs_run = 0
        self.best_epoch = 0  # the epoch whose weights best.pt holds: the highest mAP@0.5 so far
        self.best_map = 0.0
        self.tensorboard_dir = cfg.ymir.output.tensorboard_dir
        self.errors_dir = Path(cfg.ymir.output.root_dir).absolute() / WORKER_ERRORS
        self._tb: Any = None

    # Ultralytics cloudpickles callbacks into its DDP workers: the writer is made where it is used.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tb": None}

    @property
    def tb(self) -> Any:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(self.tensorboard_dir)
        return self._tb

    def register(self, model: Any) -> None:
        # Every process, DDP workers included: rank 0 runs the first event, all ranks the second.
        for event in ("on_pretrain_routine_start", "on_pretrain_routine_end"):
            model.add_callback(event, self.report_worker_errors)
        for event in ("on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "on_model_save", "on_fit_epoch_end",
                      "on_train_end"):
            model.add_callback(event, self._main_process_only(getattr(self, event)))

    @staticmethod
    def _main_process_only(callback: Any) -> Any:
        """In DDP only rank 0 reports (RANK is set by torch.distributed in each worker)."""

        def call(trainer: Any) -> None:
            if int(os.environ.get("RANK", -1)) in (-1, 0):
                callback(trainer)

        return call

    def report_worker_errors(self, trainer: Any) -> None:
        """In a DDP worker (Ultralytics runs multi-GPU training in a subprocess, so the parent only learns
        "exit status 1"), an exception that ends the worker is also written, with its code and message, to
        a small file under /out that ``worker_errors`` reads in the parent."""
        rank = int(os.environ.get("RANK", -1))
        if rank < 0 or getattr(sys.excepthook, "ymir_rank", None) == rank:
            return
        previous, errors_dir = sys.excepthook, self.errors_dir

        def hook(kind: Any, exc: BaseException, tb: Any) -> None:
            try:
                code, message = classify_exception(exc)
                atomic_write_text(errors_dir / f"error-{rank}.json", json.dumps({"code": int(code), "message": message}))
            finally:
                previous(kind, exc, tb)

        hook.ymir_rank = rank  # type: ignore[attr-defined]
        sys.excepthook = hook

    # -- progress and tensorboard
    def on_train_epoch_start(self, trainer: Any) -> None:
        self.batches_done = 0

    def on_train_batch_end(self, trainer: Any) -> None:
        self.batches_done += 1
        fraction = ultra.epoch_fraction(trainer, self.batches_done)
        self.monitor.progress(CONVERSION_SHARE + (1 - CONVERSION_SHARE - FINAL_SHARE) * fraction)

    def on_train_epoch_end(self, trainer: Any) -> None:
        """A NaN/Inf loss in the first epoch: Ultralytics has no last.pt to recover from and trains on
        regardless, into a model that finds nothing. Fail with 300201 instead. (In later epochs its own
        recovery reloads last.pt and raises a RuntimeError naming NaN after 3 tries, mapped to 300201 too.)"""
        loss = ultra.first_epoch_loss(trainer)
        if loss is None:
            return
        if not torch_isfinite(loss):
            raise YmirError(
                ErrorCode.NAN_LOSS,
                f"training diverged: the loss became NaN/Inf in the first epoch (optimizer {self.settings.optimizer}, "
                f"lr0 {self.settings.lr0}); lower lr0, or set optimizer to auto, and check the annotations",
            )

    def on_fit_epoch_end(self, trainer: Any) -> None:
        step = ultra.epoch_number(trainer)
        scalars = ultra.epoch_scalars(trainer)
        for key, value in scalars.items():
            try:
                self.tb.add_scalar(key, float(value), step)
            except (TypeError, ValueError):
                continue
        self.tb.flush()

    # -- stages
    def _files(self, names: list[str]) -> list[str]:
        if not self.settings.file_patterns:
            return names
        return [n for n in names if any(re.search(p, n) for p in self.settings.file_patterns)]

    def _save_stage(self, name: str, source: Path, mAP: float, extra: list[str] | None = None, strip: bool = True) -> None:
        """Copy a checkpoint into a stage. ``strip`` drops the optimizer state (a load and a save, about 4x
        the cost of a plain copy): done for stages kept for good, not for the best/last of every epoch,
        which ``finish`` strips once."""
        target = f"{name}.pt"
        if strip:
            stripped_copy(source, self.models_dir / target)
        else:
            atomic_copy(source, self.models_dir / target)
        files = self._files([target] + (extra or []))
        if files:
            self.stages[name] = Stage(name, files, mAP, int(time.time()))

    def write_result(self) -> str | None:
        if not self.stages:
            return None
        return write_training_result(
            self.result_file, str(self.models_dir), self.stages.values(), self.protocol,
            self.attachments or None, self.evaluate_config or None,
        )

    def on_model_save(self, trainer: Any) -> None:
        """After Ultralytics saved last.pt (and best.pt when its own fitness, mAP@0.5:0.95, improved).

        YMIR shows and ranks stages by mAP@0.5, so best.pt is made to hold the epoch with the highest
        mAP@0.5: this epoch's checkpoint is copied over it when that improved (Ultralytics writes last.pt and
        best.pt from one buffer), and the previous choice is put back when only Ultralytics' fitness did.
        Its final evaluation then re-validates exactly that file; its early stopping is left as it is."""
        epoch, mAP = ultra.epoch_number(trainer), ultra.map50(trainer)
        last, best = ultra.checkpoints(trainer)
        self.last_map, self.epochs_run = mAP, epoch
        kept = self.models_dir / "best.pt"
        if self.best_epoch == 0 or mAP > self.best_map:
            self.best_epoch, self.best_map = epoch, mAP
            atomic_copy(last, best)
            self._save_stage("best", best, mAP, strip=False)
        elif ultra.wrote_best(trainer) and kept.exists():
            atomic_copy(kept, best)
        period = self.settings.save_period
        if period > 0 and epoch % period == 0:
            self._save_stage(f"epoch_{epoch}", last, mAP)
        self._save_stage("last", last, mAP, strip=False)
        self.write_result()

    def on_train_end(self, trainer: Any) -> None:
        self.finish(trainer)

    def finish(self, trainer: Any) -> str | None:
        """After the final evaluation of best.pt: its own mAP, the stripped files, plots, ONNX."""
        last, best = ultra.checkpoints(trainer)
        best_map = ultra.map50(trainer) if best.exists() else self.last_map
        self.evaluate_config = ultra.val_thresholds(trainer)
        self._collect_plots(ultra.save_dir(trainer))
        # Stages holding the best epoch's weights get the final evaluation's number too: one set of weights,
        # one mAP (the in-training figure differs in the last digits, and would otherwise decide the best stage).
        same = best.exists() and self.best_epoch == self.epochs_run
        if f"epoch_{self.best_epoch}" in self.stages and best.exists():
            self.stages[f"epoch_{self.best_epoch}"].mAP = best_map
        if last.exists():
            self._save_stage("last", last, best_map if same else self.last_map)
        if best.exists():
            extra = self._export_onnx(best) if self.settings.export_onnx else []
            self._save_stage("best", best, best_map, extra)
        self.tb.close()
        best_name = self.write_result()
        removed = prune_unlisted(str(self.models_dir), self.result_file)
        if removed:
            LOG.info("removed from %s the files result.yaml does not list: %s", self.models_dir, ", ".join(removed))
        return best_name

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


def torch_isfinite(value: Any) -> bool:
    """Whether every element of a loss (tensor or number) is finite."""
    import torch

    return bool(torch.isfinite(torch.as_tensor(value)).all())


def stripped_copy(source: Path, target: Path) -> None:
    """Copy a checkpoint without its optimizer state (a third of the size), atomically."""
    tmp = target.with_name(f".{target.name}.tmp")
    ultra.strip_optimizer(source, tmp)
    os.replace(tmp, target)


def starting_weights(cfg: EasyDict, model_name: str) -> Path | None:
    """YMIR's pretrained model, else weights baked into the image, else none (from scratch)."""
    offered = path_list(cfg.param.get("pretrained_model_params"))
    if offered:
        return weights.choose(offered, cfg.ymir.input.models_dir, "pretrained")
    baked = weights_dir() / f"{model_name}.pt"
    if baked.is_file():
        LOG.info("pretrained weights: %s (baked into the image)", baked)
        return baked
    LOG.warning("no pretrained weights for %s: training from scratch, which needs many more epochs", model_name)
    return None


def build_model(name: str, start: Path | None) -> Any:
    """The model to train. Pretrained weights bring their own architecture: a yolo11s model fine-tuned while
    the template still says yolo11n stays a yolo11s (building yolo11n and loading the weights into it would
    keep only the few tensors whose shapes match, a training from scratch in all but name). A class list
    other than the checkpoint's is fine: Ultralytics rebuilds the head and transfers the rest."""
    if start is None:
        return ultra.new_model(name)
    try:
        model = ultra.load_model(start)
    except Exception as exc:  # noqa: BLE001 - any load failure is a model problem for the user
        raise model_error(
            f"cannot load {start} as pretrained weights ({type(exc).__name__}: {str(exc)[:160]}); choose a model "
            "trained by this image, or none to start from the image's own weights"
        ) from exc
    architecture = ultra.architecture(model)
    if architecture and architecture != name:
        LOG.info("pretrained weights %s are a %s model: training %s (the template's model '%s' applies only when "
                 "no pretrained weights are given)", start.name, architecture, architecture, name)
    return model


def run(cfg: EasyDict, monitor: Monitor) -> None:
    params = Params(cfg.defaults, cfg.param, cfg.config)
    settings = TrainSettings.read(params)
    names = class_names(cfg.param)
    device, gpus = select_device(gpu_ids(cfg.param))
    started = time.time()

    out_root = Path(cfg.ymir.output.root_dir).absolute()  # a relative project would land under ./runs
    data_yaml = dataset.convert(
        cfg.ymir.input.training_index_file, cfg.ymir.input.val_index_file, out_root / "yolo-dataset",
        settings.export_format, names,
    )
    monitor.progress(CONVERSION_SHARE, force=True)
    Path(cfg.ymir.output.models_dir).mkdir(parents=True, exist_ok=True)
    model = build_model(settings.model, starting_weights(cfg, settings.model))
    recorder = StageRecorder(cfg, settings, monitor)
    recorder.register(model)
    with worker_errors(recorder.errors_dir):
        train_model(model, settings, data_yaml, device, gpus, out_root)
    monitor.progress(1.0, force=True)
    # result.yaml was written by the callbacks, in this process or in Ultralytics' DDP rank 0.
    try:
        result = yaml.safe_load(open(cfg.ymir.output.training_result_file)) or {}
    except FileNotFoundError:
        raise YmirError(ErrorCode.MODEL, "training ended without saving any model stage; see the log above") from None
    best = result.get("best_stage_name") or "best"
    stage = (result.get("model_stages") or {}).get(best, {})
    LOG.info("training done: best stage '%s' mAP@0.5 %.4f, %d epochs, %.0f s", best,
             float(stage.get("mAP", result.get("map", 0.0))), epochs_run(ultra.save_dir(model.trainer)), time.time() - started)


def train_model(model: Any, settings: TrainSettings, data_yaml: str, device: str, gpus: int, out_root: Path) -> None:
    """Ultralytics' trainer with the task's settings (with several GPUs it runs DDP in a subprocess)."""
    model.train(
        data=data_yaml,
        epochs=settings.epochs,
        batch=settings.batch_size_per_gpu * max(gpus, 1),
        workers=settings.num_workers_per_gpu,
        imgsz=settings.img_size,
        optimizer=settings.optimizer,
        lr0=settings.lr0,
        patience=settings.patience or settings.epochs + 1,
        save_period=-1,  # epoch stages are kept by StageRecorder
        seed=settings.seed,
        deterministic=True,
        close_mosaic=min(settings.close_mosaic, settings.epochs),
        device=device,
        project=str(out_root / "ultralytics"),
        name="train",
        exist_ok=True,
        plots=True,
        verbose=False,
        **settings.augment,
    )


@contextmanager
def worker_errors(errors_dir: Path) -> Iterator[None]:
    """Turn a failed DDP subprocess into the error its worker reported (see ``report_worker_errors``):
    the first worker to fail holds the cause; the others were stopped by the launcher after it."""
    shutil.rmtree(errors_dir, ignore_errors=True)
    try:
        yield
    except subprocess.CalledProcessError as exc:
        reports = sorted(errors_dir.glob("error-*.json"), key=lambda p: p.stat().st_mtime)
        if reports:
            found = json.loads(reports[0].read_text())
            raise YmirError(ErrorCode(found["code"]), found["message"]) from exc
        raise YmirError(ErrorCode.MODEL, f"multi-GPU training failed in a worker process (exit status {exc.returncode}) "
                        "before it could report why; the traceback is in the log above") from exc
    finally:
        shutil.rmtree(errors_dir, ignore_errors=True)


def epochs_run(save_dir: str | Path) -> int:
    """Epochs Ultralytics logged (early stopping may end sooner), read from its results.csv."""
    try:
        return max(0, len(Path(save_dir, "results.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0
