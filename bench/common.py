"""Shared set-up for the benchmarks: a sample, a trained model, running the executor in-process."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from executor import runtime  # noqa: E402

runtime.setup()
runtime.setup_logging()

from executor import sample  # noqa: E402
from executor.protocol import Monitor, get_merged_config  # noqa: E402


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def commit() -> str:
    """The checkout's commit, with '+' when its tracked files have changes: which code a figure measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


RESULTS = ROOT / "bench" / "results"


def save_result(name: str, payload: dict) -> Path:
    """A benchmark's raw result as ``bench/results/<name>.json`` (``$BENCH_RESULTS/<name>.json`` when set): the
    machine, the commit, the command line and ``payload`` (every run, not only the figure the docs quote), written atomically."""
    record = {"benchmark": Path(sys.argv[0]).name, "argv": sys.argv[1:], "machine": machine(), "commit": commit(),
              "date": time.strftime("%Y-%m-%d"), **payload}
    folder = Path(os.environ.get("BENCH_RESULTS") or RESULTS)  # a device call packs them with its logs
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    print(f"raw result: {path}", flush=True)
    return path


def run_tasks(root: Path, tasks: list[str], config: dict) -> float:
    """Run the executor in this process (as app/start.py would); returns seconds."""
    from executor import cli

    shutil.rmtree(root / "out", ignore_errors=True)
    env_path = sample.write_task(root, tasks, config)
    cfg = get_merged_config(str(env_path))
    start = time.perf_counter()
    cli.run(cfg, Monitor(cfg.ymir.output.monitor_file, "bench"))
    return time.perf_counter() - start


# The benchmarks' model: trained by the executor on a sample of its own until it finds the sample's objects
# (a 1-epoch model, used before, found none, so no benchmark measured any per-box cost). About 90 s on 2 CPU
# cores; kept in BENCH_CACHE (default: the temp dir) and reused, keyed by this recipe.
MODEL_RECIPE = {"train": 160, "val": 40, "epochs": 20, "img_size": 128, "batch_size_per_gpu": 16, "seed": 0}
MIN_BOXES = 1.0  # per candidate at conf 0.25: below this a benchmark does not measure what users run


def trained_model(device: str = "cpu") -> Path:
    """The benchmarks' model (``MODEL_RECIPE``), trained once on ``device`` and cached."""
    key = hashlib.sha1(json.dumps(MODEL_RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("BENCH_CACHE") or Path(tempfile.gettempdir()) / "ymir-bench-cache")
    model = cache / f"model-{key}.pt"
    if model.exists():
        return model
    recipe = dict(MODEL_RECIPE)
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=recipe.pop("train"), val=recipe.pop("val"), candidates=1)
        gpu = "" if device == "cpu" else device
        run_tasks(root, ["training"], {**recipe, "num_workers_per_gpu": 2, "save_period": 0, "export_format": "ark:raw",
                                       "gpu_id": gpu, "gpu_count": 1 if gpu else 0})
        cache.mkdir(parents=True, exist_ok=True)
        partial = model.with_suffix(".partial")
        shutil.copyfile(root / "out" / "models" / "best.pt", partial)
        partial.replace(model)
    return model


def boxes_per_candidate(infer_result: Path) -> float:
    """The mean number of boxes per candidate in an infer-result.json."""
    detection = json.loads(infer_result.read_text())["detection"]
    return sum(len(entry["boxes"]) for entry in detection.values()) / max(1, len(detection))


def require_boxes(infer_result: Path) -> float:
    """``boxes_per_candidate``, or exit saying the instrument does not measure per-box costs."""
    found = boxes_per_candidate(infer_result)
    if found < MIN_BOXES:
        sys.exit(f"the benchmark's model finds {found:.2f} boxes per candidate (at least {MIN_BOXES} needed): "
                 "the figures would leave out every per-box cost; check MODEL_RECIPE and photos.OBJECT_SIDE")
    return found


if __name__ == "__main__":  # python bench/common.py [--device 0]: train (or find) the benchmarks' model
    import argparse

    parser = argparse.ArgumentParser(description="train the benchmarks' model once (cached in BENCH_CACHE)")
    parser.add_argument("--device", default="cpu")
    started = time.perf_counter()
    path = trained_model(parser.parse_args().device)
    print(f"model: {path} ({time.perf_counter() - started:.0f} s)")
