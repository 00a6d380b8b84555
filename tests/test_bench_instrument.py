"""The throughput benchmarks' own checks: their candidates carry objects, and a model that finds none stops them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import photos  # noqa: E402
from common import MIN_BOXES, require_boxes  # noqa: E402


def infer_result(path: Path, boxes_per_image: list[int]) -> Path:
    box = {"class_name": "circle", "score": 0.9, "box": {"x": 1, "y": 1, "w": 5, "h": 5, "rotate_angle": 0.0}}
    path.write_text(json.dumps({"detection": {f"{i}.jpg": {"boxes": [box] * n} for i, n in enumerate(boxes_per_image)}}))
    return path


def test_a_model_that_finds_too_few_boxes_stops_the_benchmark(tmp_path):
    with pytest.raises(SystemExit, match="boxes per candidate"):
        require_boxes(infer_result(tmp_path / "none.json", [0, 0, 0, 0]))
    with pytest.raises(SystemExit):
        require_boxes(infer_result(tmp_path / "few.json", [1, 0, 0, 2]))  # 0.75 per candidate
    assert MIN_BOXES == 1.0 and require_boxes(infer_result(tmp_path / "enough.json", [3, 0, 5, 2])) == 2.5


def test_photos_carry_objects_sized_for_the_model_input(tmp_path):
    plain = photos.make(tmp_path / "plain", 3, distinct=3)
    with_objects = photos.make(tmp_path / "objects", 3, distinct=3, objects_at=320)
    for a, b in zip(plain, with_objects, strict=True):
        x, y = (np.asarray(Image.open(p), dtype=np.int16) for p in (a, b))
        changed = np.abs(x - y).max(axis=2) > 40  # drawn shapes, not JPEG noise
        share = changed.mean()
        # 3-10 objects of 20-44 px at 320 px on the long side: between about 0.3 % and 20 % of the photo
        assert 0.003 < share < 0.25, share
