"""Shared set-up for the benchmarks: a sample, a trained model, running the executor in-process."""

from __future__ import annotations

import platform
import shutil
import sys
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
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def run_tasks(root: Path, tasks: list[str], config: dict) -> float:
    """Run the executor in this process (as app/start.py would); returns seconds."""
    from executor import cli

    shutil.rmtree(root / "out", ignore_errors=True)
    env_path = sample.write_task(root, tasks, config)
    cfg = get_merged_config(str(env_path))
    start = time.perf_counter()
    cli.run(cfg, Monitor(cfg.ymir.output.monitor_file, "bench"))
    return time.perf_counter() - start


def trained_model(root: Path, img_size: int, epochs: int = 1) -> Path:
    """A model trained by the executor on the sample at ``root`` (kept under root/model)."""
    model = root / "model" / "best.pt"
    if not model.exists():
        run_tasks(root, ["training"], {"epochs": epochs, "img_size": img_size, "batch_size_per_gpu": 16,
                                       "num_workers_per_gpu": 2, "save_period": 0, "export_format": "ark:raw"})
        model.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "out" / "models" / "best.pt", model)
    return model
