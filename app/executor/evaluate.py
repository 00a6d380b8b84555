"""The validation mAP@0.5 of a model that runs sliced: each validation image goes through exactly what
infer does with it (its tiles and the whole image through the engine, boxes mapped back and merged by
``slicing``), and the merged boxes are scored against the image's labels in its own pixels. So a stage
trained on tiles reports the number YMIR compares across stages, the detection mAP on whole images, and
stages trained with and without slicing compare.

Scoring: Ultralytics' validation settings (conf 0.001, NMS IoU 0.7, 300 boxes), a prediction is a true
positive when it takes a not yet matched label of its class at IoU >= 0.5 (labels and predictions are
matched by IoU, highest first, as Ultralytics' validator does), and Ultralytics' own AP integration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from executor import slicing, ultra
from executor.engine import Engine

CONF, IOU, MAX_DET = 0.001, 0.7, 300  # Ultralytics' validation settings
MATCH_IOU = 0.5


def true_positives(pred: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per prediction ``(n, 6)`` (xyxy, score, class), whether it matches a label ``(m, 5)`` (class, xyxy) of its
    class at IoU >= 0.5, each label matched once, pairs taken by IoU, highest first."""
    tp = np.zeros(len(pred), dtype=bool)
    if not len(pred) or not len(labels):
        return tp
    iou = box_iou(labels[:, 1:5].float(), pred[:, :4].float())
    iou = torch.where(labels[:, None, 0] == pred[None, :, 5], iou, 0.0)
    pairs = torch.nonzero(iou >= MATCH_IOU)
    if not len(pairs):
        return tp
    order = iou[pairs[:, 0], pairs[:, 1]].argsort(descending=True, stable=True)
    used_label, used_pred = set(), set()
    for label, p in pairs[order].tolist():
        if label not in used_label and p not in used_pred:
            used_label.add(label)
            used_pred.add(p)
            tp[p] = True
    return tp


def sliced_map50(weights: Path, images: Sequence[tuple[str, list[list[float]]]], names: Sequence[str], img_size: int,
                 slices: slicing.SliceSettings, device: str, batch_size: int, workers: int) -> float:
    """mAP@0.5 of ``weights`` on ``images`` (path, labels as [class, x1, y1, x2, y2] in the image's pixels)."""
    engine = Engine(weights, device, img_size, False, names, slices=slices)
    paths = [path for path, _ in images]
    merged = slicing.ImageBoxes(MAX_DET)
    predictions: dict[int, torch.Tensor] = {}
    for inputs, metas, _ in engine.batches(paths, batch_size, workers):
        if inputs is None:
            continue
        batch = engine.forward(engine.prepare(inputs), metas)
        for det, meta in zip(engine.image_detections(batch, CONF, IOU, MAX_DET), metas, strict=True):
            boxes = merged.add(det, meta)
            if boxes is not None:
                predictions[meta.index] = boxes
    return map50((predictions.get(index, torch.zeros(0, 6)), torch.tensor(labels, dtype=torch.float32).reshape(-1, 5))
                 for index, (_, labels) in enumerate(images))


def map50(images: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """mAP@0.5 over images given as (predictions ``(n, 6)``, labels ``(m, 5)``), in each image's pixels."""
    tp, conf, pred_cls, target_cls = [], [], [], []
    for pred, labels in images:
        tp.append(true_positives(pred, labels))
        conf.append(pred[:, 4].numpy())
        pred_cls.append(pred[:, 5].numpy())
        target_cls.append(labels[:, 0].numpy())
    return ultra.mean_ap50(np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls), np.concatenate(target_cls))
