"""Choosing weights among what YMIR offers: deterministic, logged, with the paths tried on failure."""

from __future__ import annotations

import os
import time

import pytest
import yaml
from executor import weights
from executor.protocol import ErrorCode, YmirError


def touch(path, age=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w")
    os.utime(path, (time.time() - age, time.time() - age))
    return str(path)


def test_best_stage_from_ymir_info(tmp_path):
    models = tmp_path / "models"
    a = touch(models / "epoch_10" / "epoch_10.pt")
    b = touch(models / "best" / "best.pt", age=100)
    (models / "ymir-info.yaml").write_text(yaml.safe_dump(
        {"executor_config": {"class_names": ["a"]}, "best_stage_name": "best",
         "stages": {"best": {"files": ["best.pt"]}, "epoch_10": {"files": ["epoch_10.pt"]}}}))
    assert str(weights.choose([a, b], str(models), "infer")) == b


def test_verifier_hands_every_top_level_file(tmp_path):
    models = tmp_path / "out" / "models"
    files = [touch(models / n) for n in ("epoch_1.pt", "last.pt", "best.pt")]
    (models / "result.yaml").write_text(yaml.safe_dump(
        {"model_stages": {"epoch_1": {"files": ["epoch_1.pt"]}, "last": {"files": ["last.pt"]}}, "best_stage_name": "epoch_1"}))
    chosen = weights.choose(files + [str(models / "result.yaml")], str(tmp_path / "in-models"), "mining")
    assert chosen.name == "epoch_1.pt"


def test_named_best_then_newest_and_relative_names(tmp_path):
    models = tmp_path / "models"
    touch(models / "old.pt", age=100)
    touch(models / "new.pt")
    assert weights.choose(["old.pt", "new.pt"], str(models), "infer").name == "new.pt"
    touch(models / "best_x.pt", age=500)
    assert weights.choose(["/elsewhere/old.pt", "new.pt", "best_x.pt"], str(models), "infer").name == "best_x.pt"


def test_missing_weights_name_the_paths_tried(tmp_path):
    with pytest.raises(YmirError) as info:
        weights.choose(["/nope/model.pt"], str(tmp_path), "infer")
    assert info.value.code == ErrorCode.MODEL and "/nope/model.pt" in info.value.message
    with pytest.raises(YmirError, match="model_params_path is empty"):
        weights.choose([], str(tmp_path), "infer")


def test_every_model_family_builds_from_the_pinned_ultralytics_offline():
    """The names the template offers exist in the pinned Ultralytics and build without any download."""
    from executor.train import FAMILIES, MODELS
    from ultralytics import YOLO

    assert len(MODELS) == 5 * len(FAMILIES)
    for family in FAMILIES:
        model = YOLO(f"{family}n.yaml")
        assert model.task == "detect" and sum(p.numel() for p in model.model.parameters()) > 1_000_000, family
