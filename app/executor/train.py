"""The training task: convert the dataset, train an Ultralytics YOLO detector, report stages.

Ultralytics' own trainer does the work; ``callbacks`` turns its events into YMIR's progress, tensorboard
scalars and model stages (``stages``: flat, uniquely named files in ``/out/models`` and result.yaml).
This module reads the settings, builds the model and runs the trainer.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from easydict import EasyDict

from executor import callbacks, dataset, evaluate, inputs, runtime, slicing, ultra, weights
from executor.protocol import (
    ErrorCode,
    Monitor,
    Params,
    YmirError,
    class_names,
    config_error,
    gpu_ids,
    model_error,
    path_list,
)

LOG = logging.getLogger("executor")
FAMILIES = ("yolo11", "yolov8", "yolo12", "yolo26")
MODELS = tuple(f"{family}{size}" for family in FAMILIES for size in "nsmlx")
OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
AUGMENTATIONS = ("mosaic", "mixup", "fliplr", "flipud", "degrees", "scale", "hsv_h", "hsv_s", "hsv_v")


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
    slices: slicing.SliceSettings  # training on tiles (``dataset.write_tiles``); stage mAPs then from ``evaluate``

    @classmethod
    def read(cls, p: Params) -> TrainSettings:
        patterns_text = p.str("ymir_saved_file_patterns")
        patterns = [x.strip() for x in patterns_text.split(",") if x.strip()]
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
            num_workers_per_gpu=p.int("num_workers_per_gpu", -1, 64),
            img_size=p.int("img_size", 32, ultra.MAX_IMG_SIZE),
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
            slices=slicing.SliceSettings.read(p),
        )
        settings.check_file_patterns(patterns_text)
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


def starting_weights(cfg: EasyDict, model_name: str) -> Path | None:
    """YMIR's pretrained model, else weights baked into the image (a default build bakes the template's model:
    Dockerfile, ``WEIGHTS``), else none (from scratch). The choice is logged and written to result.yaml."""
    offered = path_list(cfg.param.get("pretrained_model_params"))
    if offered:
        return weights.choose(offered, cfg.ymir.input.models_dir, "pretrained")
    baked = weights_dir() / f"{model_name}.pt"
    if baked.is_file():
        LOG.info("pretrained weights: %s (baked into the image)", baked)
        return baked
    LOG.warning("no pretrained weights for %s: training from scratch, which needs many more epochs (the image was "
                "built without %s.pt in %s; YMIR can also hand a pretrained model)", model_name, model_name, weights_dir())
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
    device, gpus = runtime.select_device(gpu_ids(cfg.param))
    settings = dataclasses.replace(settings, num_workers_per_gpu=loader_workers(settings, gpus))
    started = time.time()
    start = starting_weights(cfg, settings.model)  # said among the log's first lines, before the long conversion

    out_root = Path(cfg.ymir.output.root_dir).absolute()  # a relative project would land under ./runs
    data_yaml = dataset.convert(
        cfg.ymir.input.training_index_file, cfg.ymir.input.val_index_file, out_root / "yolo-dataset",
        settings.export_format, names, settings.slices, lambda done: monitor.progress(callbacks.CONVERSION_SHARE * done),
        settings.img_size,
    )
    monitor.progress(callbacks.CONVERSION_SHARE, force=True)
    Path(cfg.ymir.output.models_dir).mkdir(parents=True, exist_ok=True)
    model = build_model(settings.model, start)
    report = callbacks.Report(cfg, settings, monitor, stage_map(settings, names, device, out_root / "yolo-dataset"),
                              str(start) if start else None)
    for event, callback in callbacks.callbacks(report).items():
        model.add_callback(event, callback)
    with worker_errors(report.errors_dir):
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


def stage_map(settings: TrainSettings, names: list[str], device: str, dataset_root: Path) -> Any:
    """With slicing, what a stage's figures are: the whole-image mAP@0.5 (and mAR, tp, fp, fn) of its weights on the validation images,
    run as infer runs them (tiles and, with ``slice_whole_image``, the whole image; ``evaluate``).
    None without slicing: the stage's mAP is then Ultralytics' own validation mAP@0.5."""
    if not settings.slices.on:
        return None
    truth = json.loads((dataset_root / dataset.VAL_TRUTH).read_text())  # [image path, [[class, x1, y1, x2, y2]]]
    # decoding workers as the scan caps them (the usable CPUs), as Ultralytics caps its own loaders' workers
    return functools.partial(evaluate.sliced_figures, images=truth, names=names, img_size=settings.img_size,
                             slices=settings.slices, device=device.split(",")[0], batch_size=settings.batch_size_per_gpu,
                             workers=runtime.decode_workers(settings.num_workers_per_gpu, 1))


def loader_workers(settings: TrainSettings, gpus: int) -> int:
    """The data-loading workers per GPU: the rule mining and infer follow (``runtime.decode_workers``: the CPUs
    this container may use shared among the GPUs; Ultralytics caps its loaders at ``os.cpu_count() // GPUs``,
    which counts the node's cores, not the container's quota or affinity), and no more than fit in shared
    memory (``runtime.workers_in_shared_memory``): Ultralytics' training and validation loaders on GPUs (on
    the CPU its trainer starts none) and, with slicing, the stage evaluation's (``evaluate``), each GPU's
    loaders at once. An input is at most img_size x img_size x 3 bytes (Ultralytics' mosaic and letterbox make
    squares or less)."""
    workers = runtime.decode_workers(settings.num_workers_per_gpu, gpus)
    batch = settings.batch_size_per_gpu * 3 * settings.img_size ** 2
    per_worker, fixed = (n * batch for n in ultra.TRAINING_LOADER_BATCHES) if gpus else (0, 0)
    if settings.slices.on:
        evaluation = inputs.loader_shared_memory(settings.batch_size_per_gpu, settings.img_size)
        per_worker, fixed = per_worker + evaluation[0], fixed + evaluation[1]
    return runtime.workers_in_shared_memory(workers, per_worker, fixed, processes=max(gpus, 1))


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
        save_period=-1,  # epoch stages are kept by callbacks/stages
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
