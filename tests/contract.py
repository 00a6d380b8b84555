"""Checks of output files against shared/ymir-contract.md, written independently of the app's writers."""

from __future__ import annotations

import json
import math
import os
import re

import yaml


def check_monitor_running(path: str, task_id: str, percent: float | None = None) -> None:
    lines = open(path).read().splitlines()
    assert len(lines) == 1, lines
    fields = lines[0].split("\t")
    assert fields[0] == task_id and fields[3] == "2", fields
    assert re.fullmatch(r"\d+(\.\d+)?", fields[1]) and re.fullmatch(r"[01]\.\d\d", fields[2]), fields
    assert 0.0 <= float(fields[2]) <= 1.0
    if percent is not None:
        assert float(fields[2]) == percent


def check_monitor_error(path: str, code: int) -> str:
    lines = open(path).read().splitlines()
    fields = lines[0].split("\t")
    assert fields[2:] == ["1.00", "4", str(code)], fields
    assert len(lines) >= 2 and lines[1].strip(), "an error line must be followed by a message"
    return lines[1]


def check_result_yaml(path: str, legacy: bool) -> dict:
    data = yaml.safe_load(open(path))
    models_dir = os.path.dirname(path)
    if legacy:
        assert set(data) == {"model", "map"}, data
        assert 0.0 <= data["map"] <= 1.0
        for f in data["model"]:
            assert os.path.isfile(os.path.join(models_dir, f))
        return data
    assert "model" not in data, "never both forms"
    stages = data["model_stages"]
    assert 1 <= len(stages) <= 11
    assert data["best_stage_name"] in stages
    for name, stage in stages.items():
        assert name.isidentifier() and stage["stage_name"] == name
        assert isinstance(stage["timestamp"], int)
        assert 0.0 <= stage["mAP"] <= 1.0
        # the platform's ModelStageStorage: mAP and mAR floats in [0, 1], tp, fp, fn ints >= 0 (every stage has them)
        assert set(stage) == {"stage_name", "files", "timestamp", "mAP", "mAR", "tp", "fp", "fn"}, stage
        assert isinstance(stage["mAR"], float) and 0.0 <= stage["mAR"] <= 1.0
        assert all(isinstance(stage[k], int) and stage[k] >= 0 for k in ("tp", "fp", "fn")), stage
        assert stage["files"]
        for f in stage["files"]:
            assert "/" not in f
            full = os.path.join(models_dir, f)  # flat, as the SDK and the verifier expect
            assert os.path.isfile(full) and not os.path.islink(full), full
    assert math.isclose(data["mAP"], stages[data["best_stage_name"]]["mAP"])
    for key in ("mAP",):
        assert 0.0 <= data[key] <= 1.0
    # which weights training started from (null: from scratch); ours, the platform reads its own keys only
    assert data["pretrained_weights"] is None or os.path.isabs(data["pretrained_weights"]), data["pretrained_weights"]
    for value in (data.get("evaluate_config") or {}).values():
        assert isinstance(value, (int, float))
    for section, files in (data.get("attachments") or {}).items():
        for f in files:
            assert os.path.isfile(os.path.join(models_dir, "attachments", section, f))
    return data


def check_mining_tsv(path: str, candidates: list[str]) -> list[tuple[str, float]]:
    rows = []
    for line in open(path).read().splitlines():
        image, score = line.split("\t")
        rows.append((image, float(score)))
    assert sorted(r[0] for r in rows) == sorted(candidates), "every candidate exactly once"
    scores = [s for _, s in rows]
    assert all(math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True), "highest score first"
    return rows


def check_infer_json(path: str, candidates: list[str], class_names: list[str], legacy: bool) -> dict:
    data = json.load(open(path))
    assert set(data) == {"detection"}
    detection = data["detection"]
    assert set(detection) == {os.path.basename(c) for c in candidates}
    key = "annotations" if legacy else "boxes"
    for entry in detection.values():
        assert set(entry) == {key}, entry
        for box in entry[key]:
            assert set(box) == {"class_name", "score", "box"}
            assert box["class_name"] in class_names
            assert 0.0 <= box["score"] <= 1.0
            b = box["box"]
            assert set(b) == {"x", "y", "w", "h", "rotate_angle"}
            assert all(type(b[k]) is int for k in "xywh"), b
            assert b["x"] >= 0 and b["y"] >= 0 and b["w"] >= 1 and b["h"] >= 1
    return detection


def check_boxes_inside(detection: dict, sizes: dict[str, tuple[int, int]], key: str = "boxes") -> None:
    """Every box of the images named in ``sizes`` (basename -> displayed width, height) lies inside the image."""
    for name, (width, height) in sizes.items():
        for box in detection[name][key]:
            b = box["box"]
            assert b["x"] + b["w"] <= width and b["y"] + b["h"] <= height, (name, b)
