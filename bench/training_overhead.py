"""Training overhead: this project's training task vs Ultralytics' own ``model.train`` on the same
converted data and settings (benchmark issue, item 4). Target: <= 1.05x.

A: the executor's training task (conversion, training, stages, tensorboard, result.yaml);
B: the same conversion plus ``YOLO(<model>.yaml).train(...)`` with the same arguments.
Data-loading workers: each at its own default, as users run them (the template's ``num_workers_per_gpu``,
Ultralytics' ``workers``); on the CPU Ultralytics' trainer starts none either way.
Runs alternate A, B, A, B so drift hits both.

Usage: python bench/training_overhead.py [--epochs 5] [--repeats 2] [--device cpu|0]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import machine, run_tasks, sample, save_result
from executor import dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or a GPU number")
    args = parser.parse_args()
    gpu = "" if args.device == "cpu" else args.device
    settings = {"gpu_id": gpu, "gpu_count": 1 if gpu else 0, "model": "yolo11n",
                "epochs": args.epochs, "img_size": args.img_size, "batch_size_per_gpu": 16,
                "save_period": 10, "patience": 0, "export_format": "ark:raw"}
    from ultralytics import YOLO

    def plain(root: Path, epochs: int) -> float:
        target = root / "plain"
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        data = dataset.convert(str(root / "in" / "train-index.tsv"), str(root / "in" / "val-index.tsv"), target / "data",
                               "ark:raw", sample.CLASS_NAMES)
        YOLO("yolo11n.yaml").train(data=data, epochs=epochs, batch=16, imgsz=args.img_size, seed=0,
                                   deterministic=True, device=args.device, project=str(target), name="train", exist_ok=True,
                                   plots=True, verbose=False, patience=epochs + 1,
                                   close_mosaic=min(10, epochs))  # as the task passes it
        return time.perf_counter() - start

    a, b = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=192, val=48, candidates=1)
        # Untimed: the first training in a process pays for CUDA's context, kernel loading and caches (on the
        # H200 a single-repeat run without this put the executor first and measured it 3.1x slower).
        plain(root, 1)
        for k in range(1, args.repeats + 1):  # a line per run as it ends: a run cut short by a time limit keeps them
            a.append(run_tasks(root, ["training"], settings))
            print(f"arm A executor training task, run {k}: {a[-1]:.1f} s", flush=True)
            b.append(plain(root, args.epochs))
            print(f"arm B conversion + Ultralytics model.train, run {k}: {b[-1]:.1f} s ({a[-1] / b[-1]:.3f}x)", flush=True)
    print(f"\nmachine: {machine()}; yolo11n from scratch, 192 train / 48 val images at {args.img_size} px, "
          f"{args.epochs} epochs, device {args.device}, runs alternated, best of {args.repeats}")
    print("| run | seconds | ratio |\n| --- | --- | --- |")
    print(f"| A executor training task | {min(a):.1f} | {min(a) / min(b):.3f}x |")
    print(f"| B conversion + Ultralytics model.train | {min(b):.1f} | 1.000x |")
    save_result(f"training-overhead-{args.img_size}px-{args.epochs}ep-{'gpu' if gpu else 'cpu'}",
                {"epochs": args.epochs, "img_size": args.img_size, "device": args.device, "seconds": {"A": a, "B": b},
                 "ratio_best": min(a) / min(b), "ratio_per_run": [x / y for x, y in zip(a, b, strict=True)]})


if __name__ == "__main__":
    main()
