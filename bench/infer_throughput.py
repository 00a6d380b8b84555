"""Infer throughput, side by side in one process (benchmark issue, item 1).

A: this project's infer task (index in, infer-result.json out, model load included);
B: a plain Ultralytics ``YOLO.predict`` loop over the same images, model, size, batch and device
   (model load included, as in A);
C: the model's bare forward pass on pre-decoded tensors (the ceiling, no decoding or NMS).

Usage: python bench/infer_throughput.py [--quick] [--device cpu|0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import machine, run_tasks, sample, trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 480 images at 320 px")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int)
    parser.add_argument("--img-size", type=int)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    images = args.images or (480 if args.quick else 2000)
    img_size = args.img_size or (320 if args.quick else 640)

    import torch
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=32, val=8, candidates=images)
        model_path = trained_model(root, 128)
        paths = [p for p in (root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
        gpu = "" if args.device == "cpu" else args.device
        config = {"img_size": img_size, "batch_size_per_gpu": args.batch, "num_workers_per_gpu": args.workers,
                  "conf_thres": 0.25, "gpu_id": gpu, "gpu_count": 0 if not gpu else 1, "model_params_path": [str(model_path)]}

        def ours() -> float:
            return run_tasks(root, ["infer"], config)

        def plain() -> float:
            start = time.perf_counter()
            yolo = YOLO(str(model_path))  # loading the model counts, as it does for A
            for i in range(0, len(paths), args.batch):
                yolo.predict(paths[i : i + args.batch], imgsz=img_size, conf=0.25, iou=0.45, batch=args.batch,
                             device=args.device, verbose=False, half=gpu != "")
            return time.perf_counter() - start

        from executor.engine import CandidateImages, Engine, collate

        engine = Engine(model_path, args.device if gpu else "cpu", img_size, True, sample.CLASS_NAMES)
        decoded = CandidateImages(paths, img_size)  # the engine's own decoding and letterbox, done up front
        batches = [images for i in range(0, len(paths), args.batch)
                   for images, _ in collate([decoded[j] for j in range(i, min(i + args.batch, len(paths)))])[0]]

        def ceiling() -> float:
            start = time.perf_counter()
            for batch in batches:
                engine.forward(engine.prepare(batch), [])
            if engine.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        results = {}
        for name, fn in (("A executor infer task", ours), ("B plain YOLO.predict loop", plain), ("C bare forward (ceiling)", ceiling)):
            fn()  # warm-up: first model load, allocator, caches
            results[name] = min(fn() for _ in range(args.repeats))
        print(f"\nmachine: {machine()}; {images} images {img_size} px, batch {args.batch}, workers {args.workers}, "
              f"device {args.device}, best of {args.repeats}")
        print("| run | seconds | images/s | vs B |\n| --- | --- | --- | --- |")
        base = results["B plain YOLO.predict loop"]
        for name, seconds in results.items():
            print(f"| {name} | {seconds:.2f} | {images / seconds:.1f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
