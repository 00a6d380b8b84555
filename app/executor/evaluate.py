"""The validation mAP@0.5 of a model that runs sliced: each validation image goes through exactly what
infer does with it (its tiles and the whole image through the engine, boxes mapped back and merged by
``slicing``), and the merged boxes are scored against the image's labels in its own pixels. So a stage
trained on tiles reports the number YMIR compares across stages, the detection mAP on whole images, and
stages trained with and without slicing compare.

Scoring: Ultralytics' validation settings (conf 0.001, NMS IoU 0.7, 300 boxes, a box kept once per class above
conf: its multi-label NMS), its validator's own
matching (``ultra.true_positives``: predictions in descending confidence order, each taking the unclaimed
label of its class it overlaps most at IoU >= 0.5) and its AP integration: one rule for the stages of
training with and without slicing (a test compares this module with Ultralytics' validator on the same
predictions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from executor import slicing, ultra
from executor.engine import Engine

CONF, IOU, MAX_DET = ultra.VAL_CONF, ultra.VAL_IOU, ultra.VAL_MAX_DET  # Ultralytics' validation settings
MATCH_IOU = 0.5


def true_positives(pred: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per prediction ``(n, 6)`` (xyxy, score, class), whether it matches a label ``(m, 5)`` (class, xyxy) at IoU
    >= 0.5 by Ultralytics' validator's rule (``ultra.true_positives``), in the predictions' own order."""
    tp = np.zeros(len(pred), dtype=bool)
    if not len(pred) or not len(labels):
        return tp
    order = pred[:, 4].argsort(descending=True, stable=True)  # the validator matches in confidence order
    tp[order.numpy()] = ultra.true_positives(pred[order, :4], pred[order, 5], labels[:, 1:5], labels[:, 0], MATCH_IOU)
    return tp


def sliced_figures(weights: Path, images: Sequence[tuple[str, list[list[float]]]], names: Sequence[str], img_size: int,
                   slices: slicing.SliceSettings, device: str, batch_size: int, workers: int) -> dict[str, float]:
    """The stage figures (``figures``) of ``weights`` on ``images`` (path, labels as [class, x1, y1, x2, y2] in the
    image's pixels)."""
    engine = Engine(weights, device, img_size, False, names, slices=slices)
    paths = [path for path, _ in images]
    merged = slicing.ImageBoxes(MAX_DET, IOU, engine.slices, img_size)
    predictions: dict[int, torch.Tensor] = {}
    for inputs, metas, _ in engine.batches(paths, batch_size, workers):
        if inputs is None:
            continue
        batch = engine.forward(engine.prepare(inputs), metas)
        for det, meta in zip(engine.image_detections(batch, CONF, IOU, MAX_DET, ultra.VAL_MULTI_LABEL), metas,
                             strict=True):
            boxes = merged.add(det, meta)
            if boxes is not None:
                predictions[meta.index] = boxes
    return figures(*matched((predictions.get(index, torch.zeros(0, 6)), torch.tensor(labels, dtype=torch.float32).reshape(-1, 5))
                            for index, (_, labels) in enumerate(images)))


def matched(images: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Over images given as (predictions ``(n, 6)``, labels ``(m, 5)``), in each image's pixels: whether each
    prediction matches at IoU 0.5, its score and class, and every label's class (the validator's statistics)."""
    tp, conf, pred_cls, target_cls = [], [], [], []
    for pred, labels in images:
        tp.append(true_positives(pred, labels))
        conf.append(pred[:, 4].numpy())
        pred_cls.append(pred[:, 5].numpy())
        target_cls.append(labels[:, 0].numpy())
    return np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls), np.concatenate(target_cls)


def map50(images: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """mAP@0.5 over images given as (predictions ``(n, 6)``, labels ``(m, 5)``), in each image's pixels."""
    return ultra.mean_ap50(*matched(images))


def figures(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> dict[str, float]:
    """What YMIR shows of a model stage, from matched predictions (``matched``, or Ultralytics' validator's own
    statistics): ``mAP`` (Ultralytics' mAP@0.5, the number stages are ranked by) and, as YMIR's evaluator
    (``det_eval_voc``) defines them per class over the predictions above ``CONF`` at IoU ``MATCH_IOU``, ``mAR`` (the
    mean over the classes with labels of each class's mean recall along its predictions in descending score)
    and ``tp``, ``fp``, ``fn`` (summed over those classes; a prediction of a class without labels counts nowhere)."""
    keep = conf >= CONF
    tp, conf, pred_cls = tp[keep], conf[keep], pred_cls[keep]
    recalls, counts = [], {"tp": 0, "fp": 0, "fn": 0}
    for cls in np.unique(target_cls):
        labels = int((target_cls == cls).sum())
        mine = pred_cls == cls
        hits = tp[mine][np.argsort(-conf[mine], kind="stable")]
        found = int(hits.sum())
        recalls.append(float(np.mean(np.cumsum(hits) / labels)) if len(hits) else 0.0)
        counts["tp"] += found
        counts["fp"] += len(hits) - found
        counts["fn"] += labels - found
    return {"mAP": ultra.mean_ap50(tp, conf, pred_cls, target_cls), "mAR": float(np.mean(recalls)) if recalls else 0.0,
            **counts}
