"""The throughput benchmarks' own checks: their candidates carry objects, and a model that finds none stops them."""

from __future__ import annotations

import json
import re
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


FAKE_PYTHON = """#!/bin/sh
# stands in for python on a GPU machine: a few lines per step, and gpu_check's one log per run under --keep
echo "arm A $*"; echo "a line nobody needs"
if [ -n "${BENCH_RESULTS:-}" ]; then mkdir -p "$BENCH_RESULTS"; echo '{}' > "$BENCH_RESULTS/step-$$.json"; fi  # save_result
while [ $# -gt 0 ]; do
  if [ "$1" = --keep ]; then mkdir -p "$2"; for i in $(seq 1 15); do echo "run $i" > "$2/run-$i.log"; done; fi
  shift
done
"""


@pytest.mark.parametrize("script", ["gpu_session.sh", "gpu_bench.sh", "active_learning_gpu.sh"])
def test_a_device_call_returns_every_step_in_at_most_8_files(tmp_path, script):
    """The device tool returns at most 8 files from $OUT: gpu-check's 15 run logs used to go there one by one,
    and which 8 came back was not ours to choose. Each step's lines and one archive of every full log."""
    import subprocess
    import tarfile

    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out = tmp_path / "out" / "gpu"
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "WHEELS": str(tmp_path / "no-wheels"), "TMPDIR": str(tmp_path)}
    seeds = ["digits.npz", "100", "10"] if script == "active_learning_gpu.sh" else []  # 10 seeds, a process each
    subprocess.run(["bash", f"bench/{script}", str(out), *seeds], cwd=root, env=env, check=True, capture_output=True,
                   timeout=60)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) <= 8, sorted(p.name for p in files)
    if seeds:
        with tarfile.open(out / "logs.tar.gz") as archive:
            logs = [name for name in archive.getnames() if name.startswith("./seed-")]
        assert len(logs) == 10 and (out / "report.md").read_text().startswith("arm A "), logs
        return
    steps = {p.stem for p in files} - {"gpu", "logs.tar"}
    assert "model" in steps and "infer-throughput" in steps and len(steps) >= 4, steps
    for step in steps:
        assert (out / f"{step}.txt").read_text().startswith("arm A "), step  # the lines that matter, kept
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = archive.getnames()
    assert all(f"./{step}.log" in names for step in steps), names  # every full log, the unneeded line too
    assert sum(name.startswith("./results/") and name.endswith(".json") for name in names) >= len(steps), names  # raw
    if script == "gpu_session.sh":
        assert sum(name.startswith("./gpu-check/run-") for name in names) == 15, names
        text = "".join((root / "bench" / name).read_text() for name in (script, "gpu_common.sh"))  # model_first's there
        limits = [int(n) for n in re.findall(r"\btimeout (\d+) \"\$PY\"", text)]
        assert len(limits) == 5 and sum(limits) <= 540, limits  # 9 minutes: the GPU issue's bound for the device call
    # mining cost: what the GPU issue's target names (mining + infer) for every algorithm, the template's
    # default first, so a step cut by its time limit has measured what users run (random first, it would not)
    from executor import mining, protocol

    args = (out / "mining-cost.txt").read_text().split()
    algorithms = args[args.index("--algorithms") + 1].split(",")
    assert "--joint-only" in args and algorithms[0] == protocol.load_template("mining")["mining_algorithm"], args
    assert sorted(algorithms) == sorted(mining.algorithms()), algorithms


def test_gpu_check_runs_the_checks_only_names_in_its_order():
    """The GPU call runs gpu-check under a time limit: what it names first (the two-shards check, which has
    never run on a GPU) must run before the six mining checks, not in the checks' listed order."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).with_name("gpu_check.py"))
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    steps = [f"{key}-{i}" for i, key in enumerate(gpu_check.STEPS)]  # stand-ins, one per check
    ran = [step.rsplit("-", 1)[0] for step in gpu_check.chosen(steps, "two-shards,infer,mining")]
    assert ran == ["training", "two-shards", "infer", "infer", *["mining"] * len(gpu_check.ALGORITHMS)], ran
    with pytest.raises(SystemExit, match="unknown mining-cost"):
        gpu_check.chosen(steps, "infer,mining-cost")


def test_a_seeds_folder_is_the_same_in_every_run_and_held_by_one_run_at_a_time(tmp_path):
    """bench/active_learning.py: random's picks hash the images' paths, so a rerun of a seed must see the same
    paths; a second run of the seed at once is refused, and a killed run's leftovers are cleared."""
    from active_learning import seed_root

    with seed_root(7, tmp_path) as first:
        (first / "left").write_text("by a killed run")
        with pytest.raises(SystemExit, match="in use by another run of seed 7"), seed_root(7, tmp_path):
            pass
        with seed_root(8, tmp_path) as other:
            assert other != first
    (first).mkdir()
    (first / "left").write_text("by a killed run")
    with seed_root(7, tmp_path) as again:
        assert again == first and not (again / "left").exists()
    assert not first.exists()
