"""The three result files: result.yaml (training), result.tsv (mining), infer-result.json (infer)."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from executor.protocol.config import Protocol
from executor.protocol.files import AtomicFile, atomic_write_text, atomic_writer

MAX_STAGES = 11  # the platform keeps the 10 most recent stages plus the best


def asset_id(image_path: str) -> str:
    """The platform keys results on the file name without extension (the content hash)."""
    return os.path.splitext(os.path.basename(image_path))[0]


@dataclass
class Stage:
    name: str
    files: list[str]
    mAP: float
    timestamp: int = field(default_factory=lambda: int(time.time()))
    # what else YMIR shows of a stage: mAR in [0, 1], tp, fp and fn counts (protocol >= 1.0.0 only)
    figures: dict[str, float] = field(default_factory=dict)


STAGE_FIGURES = {"mAR": float, "tp": int, "fp": int, "fn": int}  # the platform's names and types, beside mAP


def stage_identifier(name: str) -> str:
    """Stage names must be Python identifiers ('epoch-10' -> 'epoch_10')."""
    ident = re.sub(r"\W", "_", str(name))
    if not ident or ident[0].isdigit():
        ident = f"stage_{ident}"
    return ident


def write_training_result(
    path: str,
    models_dir: str,
    stages: Iterable[Stage],
    protocol: Protocol,
    attachments: dict[str, list[str]] | None = None,
    evaluate_config: dict[str, float] | None = None,
    pretrained_weights: str | None = None,
) -> str:
    """Write result.yaml; returns the best stage's name.

    Protocol >= 1 also records ``pretrained_weights``, the weights training started from (null: from scratch),
    for whoever reads the file; the platform reads its own keys only, the legacy form holds nothing else.

    Keeps at most 11 stages (the 10 newest and the best: best by mAP, then newest, then the one named best),
    checks every listed file is a regular file in ``models_dir`` (or its stage folder).
    """
    by_name: dict[str, Stage] = {}
    for stage in stages:
        name = stage_identifier(stage.name)
        mAP = float(stage.mAP)
        if not (math.isfinite(mAP) and 0.0 <= mAP <= 1.0):
            raise ValueError(f"stage {name} has mAP {stage.mAP}, outside [0, 1]")
        for f in stage.files:
            if os.path.isabs(f) or os.sep in f:
                raise ValueError(f"stage {name} file {f!r} must be a bare file name")
            found = [os.path.join(models_dir, name, f), os.path.join(models_dir, f)]
            if not any(os.path.isfile(p) and not os.path.islink(p) for p in found):
                raise FileNotFoundError(f"stage {name} lists {f}, which is not a regular file in {models_dir}")
        figures = {k: STAGE_FIGURES[k](v) for k, v in stage.figures.items() if k in STAGE_FIGURES}
        if not 0.0 <= figures.get("mAR", 0.0) <= 1.0 or any(figures.get(k, 0) < 0 for k in ("tp", "fp", "fn")):
            raise ValueError(f"stage {name} has figures {figures}: mAR outside [0, 1] or a negative count")
        by_name[name] = Stage(name, list(stage.files), mAP, int(stage.timestamp), figures)
    if not by_name:
        raise ValueError("a training result needs at least one model stage")
    best = max(by_name.values(), key=lambda s: (s.mAP, s.timestamp, s.name == "best"))
    newest = sorted(by_name.values(), key=lambda s: s.timestamp, reverse=True)
    kept = [s for s in newest if s is not best][: MAX_STAGES - 1] + [best]
    kept.sort(key=lambda s: s.timestamp)
    if protocol.legacy:
        data: dict[str, Any] = {"model": list(best.files), "map": best.mAP}
    else:
        data = {
            "model_stages": {
                s.name: {"stage_name": s.name, "files": s.files, "timestamp": s.timestamp, "mAP": s.mAP, **s.figures}
                for s in kept
            },
            "best_stage_name": best.name,
            "mAP": best.mAP,
        }
        if attachments:
            data["attachments"] = attachments
        if evaluate_config:
            data["evaluate_config"] = {k: float(v) for k, v in evaluate_config.items()}
        data["pretrained_weights"] = pretrained_weights
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return best.name


def prune_unlisted(models_dir: str, result_file: str) -> list[str]:
    """Delete the top-level files of ``models_dir`` that result.yaml does not list (YMIR packs the folder);
    returns their names. Folders (attachments, stage folders) and result.yaml itself stay."""
    with open(result_file, encoding="utf-8") as fp:
        data = yaml.safe_load(fp) or {}
    listed = set(data.get("model") or [])
    for stage in (data.get("model_stages") or {}).values():
        listed.update(stage.get("files") or [])
    removed = []
    for entry in sorted(os.listdir(models_dir)):
        path = os.path.join(models_dir, entry)
        if entry not in listed and entry != os.path.basename(result_file) and (os.path.islink(path) or os.path.isfile(path)):
            os.unlink(path)
            removed.append(entry)
    return removed


# ---------------------------------------------------------------- mining result


def write_mining_result(path: str, scores: Iterable[tuple[str, float | None]]) -> dict[str, int]:
    """Write result.tsv, highest score first; each candidate once.

    ``None`` (or a non-finite score) marks an unreadable image: it goes last,
    with a score below every real one. Returns counts for the log.
    """
    seen: set[str] = set()
    good: list[tuple[str, float]] = []
    bad: list[str] = []
    duplicates = 0
    for image, score in scores:
        if image in seen:
            duplicates += 1
            continue
        seen.add(image)
        if score is None or not math.isfinite(float(score)):
            bad.append(image)
        else:
            good.append((image, float(score)))
    good.sort(key=lambda item: -item[1])  # stable: ties keep index order
    floor = (min(s for _, s in good) if good else 0.0) - 1.0
    with atomic_writer(path) as fp:
        for image, score in good:
            fp.write(f"{image}\t{score:.8g}\n")
        for image in bad:
            fp.write(f"{image}\t{floor:.8g}\n")
    return {"scored": len(good), "unreadable": len(bad), "duplicates": duplicates}


# ---------------------------------------------------------------- infer result


def ymir_box(xyxy: Sequence[float], width: int, height: int) -> dict[str, Any] | None:
    """Integer ``x, y, w, h`` clipped to the image, ``w, h >= 1``; None if nothing is left."""
    if width < 1 or height < 1:
        return None
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    x, y = min(int(math.floor(x1)), width - 1), min(int(math.floor(y1)), height - 1)
    w = max(1, min(int(round(x2)) - x, width - x))
    h = max(1, min(int(round(y2)) - y, height - y))
    return {"x": x, "y": y, "w": w, "h": h, "rotate_angle": 0.0}


class InferResultWriter:
    """Streams infer-result.json to a temp file, renamed into place on ``close``.

    Results are written as they come so memory does not grow with the
    candidate count. Keys are image basenames with extension.
    """

    def __init__(self, path: str, protocol: Protocol, class_names: Sequence[str]) -> None:
        self.path = path
        self.box_key = "annotations" if protocol.legacy else "boxes"
        self.class_names = set(class_names)
        self.keys: set[str] = set()
        self.duplicates = 0
        self._file = AtomicFile(path)
        self._fp = self._file.fp
        self._fp.write('{"detection": {')

    def add(self, image_path: str, detections: Iterable[tuple[str, float, Sequence[float]]], width: int, height: int) -> None:
        """``detections`` holds ``(class_name, score, (x1, y1, x2, y2))`` in image pixels."""
        key = os.path.basename(image_path)
        if key in self.keys:
            self.duplicates += 1
            return
        boxes = []
        for name, score, xyxy in detections:
            if name not in self.class_names:
                raise ValueError(f"class {name!r} is not one of the task's class_names")
            box = ymir_box(xyxy, width, height)
            score = float(score)
            if box is None or not math.isfinite(score):
                continue
            boxes.append({"class_name": name, "score": round(min(max(score, 0.0), 1.0), 5), "box": box})
        self._fp.write(("," if self.keys else "") + json.dumps(key) + ":" + json.dumps({self.box_key: boxes}))
        self.keys.add(key)

    def close(self) -> None:
        self._fp.write("}}\n")
        self._file.commit()

    def abort(self) -> None:
        self._file.discard()
