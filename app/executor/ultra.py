"""Every Ultralytics internal the executor touches, in one place (written against Ultralytics 8.4.190).

The public ``YOLO`` API is not enough for some jobs (a batched engine of our own, YMIR's stages from the
trainer's events), so the executor reads some of Ultralytics' internals. Each one is here, behind a small
function, and each has a test named after it in ``tests/test_ultra.py``: an Ultralytics upgrade that
changes one fails that test instead of a user's run. Ultralytics itself is imported lazily, inside the
functions, so that ``runtime.setup`` can set its environment first.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no import of torch here: runtime.setup must run before it
    import torch

MAP50 = "metrics/mAP50(B)"  # the detection validator's key for box mAP@0.5
MAX_IMG_SIZE = 8192  # the largest img_size the templates accept
# Ultralytics' NMS keeps classes apart by shifting each class's boxes by class x max_wh pixels; its default,
# 7680, is below the largest input (MAX_IMG_SIZE), where a box of one class would then suppress another's.
NMS_CLASS_OFFSET = 2 * MAX_IMG_SIZE
PAD_VALUE = 114  # the grey of Ultralytics' letterbox padding (``LetterBox``), also cald's canvas
MIN_STRIDE = 32  # Ultralytics' predictor pads inputs to a multiple of max(the model's largest stride, 32)
# Ultralytics' detection validation: conf 0.001 (its validator's default when none is given), the NMS IoU and
# the boxes per image of its default.yaml (a test checks both against the installed Ultralytics)
VAL_CONF, VAL_IOU, VAL_MAX_DET = 0.001, 0.7, 300
VAL_MULTI_LABEL = True  # its validator's NMS keeps a box once per class scoring above conf (a test reads it there)
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")  # plots download these into the settings folder unless present
SETTINGS_SUBDIR = "Ultralytics"  # its settings folder is $YOLO_CONFIG_DIR/Ultralytics (settings.json, fonts)
QUIET_SETTINGS = {"sync": False, "tensorboard": False, "wandb": False, "mlflow": False, "clearml": False,
                  "comet": False, "dvc": False, "raytune": False}  # telemetry and loggers off
# Training batches that Ultralytics' loaders hold in shared memory at once (``build_dataloader``, its trainer's
# ``get_dataloader``): per worker, 4 prefetched training batches, and 2 each of twice the batch for the two
# validation workers it starts per training worker; besides, the training batch in use and a validation batch.
TRAINING_LOADER_BATCHES = (4 + 2 * 2 * 2, 1 + 2)
# Once ultralytics is imported, PIL.Image.open imports pi_heif (not installed) for any file PIL cannot
# identify, so a file that is not an image raises ImportError there instead of UnidentifiedImageError.
NOT_AN_IMAGE_ERRORS: tuple[type[BaseException], ...] = (ImportError,)


def quiet() -> None:
    """Turn off Ultralytics' telemetry and third-party loggers in its settings."""
    from ultralytics.utils import SETTINGS

    SETTINGS.update({k: v for k, v in QUIET_SETTINGS.items() if k in SETTINGS})


# ---------------------------------------------------------------- image sizes as training sees them


def exif_size(image: Any) -> tuple[int, int]:
    """``(width, height)`` of an open PIL image in the displayed frame, as Ultralytics' dataset checks see it
    (for WebP and TIFF it decodes the image, since whether OpenCV rotates those varies by version)."""
    from ultralytics.data.utils import exif_size as ultralytics_exif_size

    return tuple(ultralytics_exif_size(image))


# ---------------------------------------------------------------- the batched engine


def load_detector(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A checkpoint's model, fused for inference, on ``device`` (raises on anything that is not one), and
    the checkpoint's other entries (``{}`` for a bare model file)."""
    from ultralytics.nn.tasks import BaseModel, load_checkpoint

    model, checkpoint = load_checkpoint(str(path), device=device, fuse=False)
    # fused as Ultralytics' own predictor does it (its PyTorch backend, verbose off): load_checkpoint's fuse
    # prints the model summary, whose FLOPs count runs the model 4 times (0.1 s, 7 % of a small infer task)
    if hasattr(model, "fuse"):
        model = model.fuse(verbose=False) if isinstance(model, BaseModel) else model.fuse()
    return model, checkpoint if isinstance(checkpoint, dict) else {}


def model_stride(model: torch.nn.Module) -> int:
    """The multiple a model's input sides are padded to: its largest stride, at least ``MIN_STRIDE``, as
    Ultralytics' ``AutoBackend`` takes it."""
    stride = getattr(model, "stride", None)
    return max(int(stride.max()) if stride is not None else MIN_STRIDE, MIN_STRIDE)


def model_end2end(model: torch.nn.Module) -> bool:
    """Whether the head outputs final boxes (yolo26, yolov10: no NMS, ``(B, max_det, 6)``)."""
    return bool(getattr(model, "end2end", False))


def model_names(model: torch.nn.Module) -> list[str]:
    """The model's class names in its index order."""
    return [str(n) for _, n in sorted(dict(getattr(model, "names", {})).items())]


def cpu_threads() -> int:
    """The CPU thread count Ultralytics' predictor uses (importing ultralytics pins OpenMP to 1 thread)."""
    from ultralytics.utils import NUM_THREADS

    return NUM_THREADS


def split_head_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """A detection model's eval output -> (decoded boxes and scores ``(B, 4 + nc, anchors)`` or
    ``(B, max_det, 6)`` for end-to-end heads, class logits ``(B, nc, anchors)`` before the sigmoid, the
    head's input feature maps). The head returns ``(decoded, {"scores", "feats", ...})``; end-to-end heads
    (yolo26) nest that under ``one2many`` / ``one2one``."""
    decoded, raw = out if isinstance(out, (tuple, list)) else (out, {})
    if isinstance(raw, dict) and "one2one" in raw:
        raw = raw["one2many"] or raw["one2one"]
    logits = raw.get("scores") if isinstance(raw, dict) else None
    feats = list(raw.get("feats", [])) if isinstance(raw, dict) else []
    return decoded, logits, feats


def nms(decoded: torch.Tensor, conf: float, iou: float, max_det: int, end2end: bool,
        class_scores: int = 0, multi_label: bool = False) -> list[torch.Tensor]:
    """Per image ``(n, 6)``: x1 y1 x2 y2 score class, Ultralytics' own NMS (a no-op filter for end-to-end heads).
    With ``class_scores=nc`` ``(n, 6 + nc)``: each kept box's score for every class follows (for class-aware
    mining), carried through the NMS as Ultralytics' "extra" columns. End-to-end heads output the top
    class only: its score stands in that class's column, the others are 0. ``multi_label``: a box once per
    class above ``conf``, as Ultralytics' validator keeps them (not with ``class_scores``)."""
    import torch
    from ultralytics.utils import nms as ultralytics_nms

    # No time limit: past Ultralytics' (2 s + 0.05 s per image) it warns and leaves the batch's remaining images
    # without boxes, which would be an infer result lost and a wrong mining score.
    def suppress(x: torch.Tensor, **kwargs: Any) -> list[torch.Tensor]:
        return ultralytics_nms.non_max_suppression(x, conf, iou, max_det=max_det, max_time_img=math.inf,
                                                   max_wh=NMS_CLASS_OFFSET, **kwargs)

    if not class_scores:
        return suppress(decoded, end2end=end2end, multi_label=multi_label)
    if end2end or decoded.shape[-1] == 6:
        out = []
        for det in suppress(decoded, end2end=True):
            vectors = det.new_zeros(len(det), class_scores)
            vectors.scatter_(1, det[:, 5:6].long(), det[:, 4:5])
            out.append(torch.cat([det[:, :6], vectors], 1))
        return out
    return suppress(torch.cat([decoded, decoded[:, 4:]], 1), nc=decoded.shape[1] - 4)


# ---------------------------------------------------------------- models for training


def new_model(name: str) -> Any:
    from ultralytics import YOLO

    return YOLO(f"{name}.yaml")


def load_model(path: str | Path) -> Any:
    """A ``YOLO`` from a checkpoint; raises ValueError when it is not a detection model."""
    from ultralytics import YOLO

    model = YOLO(str(path))
    if model.task != "detect":
        raise ValueError(f"a {model.task} model, not a detection model")
    return model


def architecture(model: Any) -> str:
    """The model's architecture name (``yolo11s``), from the model yaml it was built from; '' if unknown."""
    return Path(str(getattr(model.model, "yaml", {}).get("yaml_file", ""))).stem


def export_onnx(weights: Path, opset: int, img_size: int) -> str:
    """The exported file's path (Ultralytics writes it beside the weights)."""
    from ultralytics import YOLO

    return YOLO(str(weights)).export(format="onnx", opset=opset, imgsz=img_size, simplify=False, device="cpu")


def strip_optimizer(source: Path, target: Path, updates: dict[str, Any] | None = None) -> None:
    """Write ``source`` without its optimizer state (a third of the size) to ``target``, with ``updates``
    added to the checkpoint's dictionary (Ultralytics' own loaders ignore keys they do not know)."""
    from ultralytics.utils.torch_utils import strip_optimizer as ultralytics_strip

    ultralytics_strip(str(source), str(target), updates=updates)


# ---------------------------------------------------------------- what the training callbacks read


def epoch_fraction(trainer: Any, batches_done: int) -> float:
    """How far training is, in [0, 1], after ``batches_done`` batches of the current epoch."""
    batches = max(len(trainer.train_loader), 1)
    return (trainer.epoch + min(batches_done / batches, 1.0)) / max(trainer.epochs, 1)


def first_epoch_loss(trainer: Any) -> torch.Tensor | None:
    """The loss of the last batch, in the run's first epoch only (None otherwise, or before any batch)."""
    if trainer.epoch != getattr(trainer, "start_epoch", 0):
        return None
    return trainer.loss


def epoch_scalars(trainer: Any) -> dict[str, Any]:
    """The epoch's mean training losses, validation metrics and learning rates, by name."""
    return {**trainer.label_loss_items(trainer.tloss, prefix="train"), **trainer.metrics, **trainer.lr}


def trainer_device(trainer: Any) -> torch.device:
    """The device a trainer trains on, or a validator validates on."""
    import torch

    return torch.device(trainer.device)


def epoch_number(trainer: Any) -> int:
    """The epoch that just ended, counted from 1."""
    return trainer.epoch + 1


def map50(trainer: Any) -> float:
    """The latest validation mAP@0.5 (of the epoch's weights, or of best.pt after the final evaluation)."""
    return float((trainer.metrics or {}).get(MAP50, 0.0))


def checkpoints(trainer: Any) -> tuple[Path, Path]:
    """(last.pt, best.pt) as Ultralytics writes them each epoch."""
    return Path(trainer.last), Path(trainer.best)


def wrote_best(trainer: Any) -> bool:
    """Whether Ultralytics wrote best.pt this epoch (its fitness, mAP@0.5:0.95, improved): its own test."""
    return trainer.best_fitness == trainer.fitness


def save_dir(trainer: Any) -> Path:
    return Path(trainer.save_dir)


def class_names(trainer: Any) -> list[str]:
    """The trained classes, in the model's index order."""
    names = trainer.data["names"]
    return [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def train_class_counts(trainer: Any) -> list[int]:
    """Boxes per class in the training set, as the trainer's dataset read them."""
    import numpy as np

    labels = getattr(getattr(getattr(trainer, "train_loader", None), "dataset", None), "labels", None) or []
    classes = [np.asarray(label["cls"]).reshape(-1) for label in labels]
    counts = np.bincount(np.concatenate(classes).astype(int), minlength=len(trainer.data["names"])) if classes else []
    return [int(c) for c in counts][: len(trainer.data["names"])] or [0] * len(trainer.data["names"])


def val_class_ap50(trainer: Any) -> list[float | None]:
    """AP@0.5 per class from the latest validation (None for a class the validation set does not hold)."""
    validator = getattr(trainer, "validator", None)
    box = getattr(getattr(validator, "metrics", None), "box", None)
    out: list[float | None] = [None] * len(trainer.data["names"])
    if box is None:
        return out
    for i, c in enumerate(getattr(box, "ap_class_index", [])):
        if 0 <= int(c) < len(out):
            out[int(c)] = float(box.ap50[i])
    return out


def keep_val_stats(validator: Any) -> None:
    """From now on, each validation of ``validator`` keeps its statistics (``val_stats``): the detection validator
    concatenates them in ``metrics.process`` and clears them before any callback sees them. Once per validator."""
    metrics = getattr(validator, "metrics", None)
    if metrics is None or getattr(metrics, "_ymir_keeps", False):
        return
    process = metrics.process

    def keeping(*args: Any, **kwargs: Any) -> Any:
        stats = process(*args, **kwargs)
        validator._ymir_stats = {k: stats[k].copy() for k in ("tp", "conf", "pred_cls", "target_cls")} if stats else None
        return stats

    metrics.process, metrics._ymir_keeps = keeping, True


def val_stats(trainer: Any) -> tuple[Any, Any, Any, Any] | None:
    """The latest validation's statistics (``keep_val_stats``): per prediction whether it matched at IoU 0.5 (the
    first of the validator's IoU thresholds), its score and class, and every label's class; None when none kept."""
    stats = getattr(getattr(trainer, "validator", None), "_ymir_stats", None)
    if not stats:
        return None
    return stats["tp"][:, 0], stats["conf"], stats["pred_cls"], stats["target_cls"]


# ---------------------------------------------------------------- scoring detections (sliced validation)


def true_positives(pred_boxes: Any, pred_classes: Any, true_boxes: Any, true_classes: Any, threshold: float) -> Any:
    """Per prediction, whether it is a true positive at IoU ``threshold``, by the detection validator's own rule:
    its ``box_iou`` and its ``match_predictions`` (greedy over the predictions in descending confidence order,
    each taking the unclaimed label of its class it overlaps most; ``use_scipy`` off, the validator's default).
    Predictions must come in descending confidence order. Returns a bool numpy array ``(n,)``."""
    from types import SimpleNamespace

    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import box_iou

    iou = box_iou(true_boxes.float(), pred_boxes.float())
    matcher = SimpleNamespace(iouv=torch.tensor([threshold]))  # the only attribute match_predictions reads
    return BaseValidator.match_predictions(matcher, pred_classes, true_classes, iou)[:, 0].numpy()


def mean_ap50(tp: Any, conf: Any, pred_cls: Any, target_cls: Any) -> float:
    """mAP@0.5 over the classes that have targets, by Ultralytics' own precision-recall integration
    (``ap_per_class``), as its validator computes the mAP@0.5 of unsliced stages. Arrays: ``tp`` (n,) bool,
    ``conf`` and ``pred_cls`` (n,), ``target_cls`` (m,)."""
    import numpy as np
    from ultralytics.utils.metrics import ap_per_class

    if len(target_cls) == 0 or len(tp) == 0:
        return 0.0
    ap = ap_per_class(np.asarray(tp, dtype=bool)[:, None], np.asarray(conf), np.asarray(pred_cls),
                      np.asarray(target_cls))[5]
    return float(ap[:, 0].mean()) if ap.size else 0.0
