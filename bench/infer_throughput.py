"""Infer throughput, side by side in one process (benchmark issue, item 1; GPU issue, item 5).

A: this project's infer task (index in, infer-result.json out, model load included); on a GPU also
   A' with ``gpu_decode: true`` (JPEGs decoded by nvJPEG);
B: a plain Ultralytics ``YOLO.predict`` loop over the same images, model, size, batch and device
   (model load included, as in A);
C: the model's bare forward pass on pre-decoded, pre-letterboxed **full** batches of one shape each (the
   ceiling: no decoding, no NMS, no partial passes);
F: the engine's input pipeline alone (``Engine.batches``: decoding, letterbox, per-shape queues; no model)
   with one decoding worker: how fast one CPU core feeds the model, the figure that matters where the GPU
   waits on decoding; timed on the first ``FEED`` images and scaled to the run's count.

Candidates: real-sized JPEGs (1-12 MP, mixed aspect ratios: ``photos``) carrying objects the model finds (3 to 10
each) unless ``--toy`` (the sample's small images, as the figures before the GPU issue were measured). The
model finds at least ``common.MIN_BOXES`` per candidate at conf 0.25, or the benchmark stops (the 1-epoch model
of the earlier figures found none: they count no per-box cost; docs/benchmarks.md says which those are).

Usage: python bench/infer_throughput.py [--quick] [--device cpu|0] [--toy]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import photos
from common import machine, require_boxes, run_tasks, sample, save_result, trained_model

FEED = 96  # images the input-pipeline arm (F) times; its seconds are scaled to the run's image count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 480 toy or 96 real-sized images at 320 px")
    parser.add_argument("--toy", action="store_true", help="the sample's small images instead of real-sized JPEGs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int)
    parser.add_argument("--img-size", type=int)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=-1, help="num_workers_per_gpu (-1: the template's automatic default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default="", help="name of the raw result in bench/results (default: from the options)")
    args = parser.parse_args()
    images = args.images or ((480 if args.toy else 96) if args.quick else 2000)
    img_size = args.img_size or (320 if args.quick else 640)

    import torch
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=0, val=0, candidates=images)
        model_path = trained_model(args.device)
        if not args.toy:
            photos.use_as_candidates(root, photos.make(Path(tmp) / "photos", images, objects_at=img_size))
        paths = [p for p in (root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
        gpu = "" if args.device == "cpu" else args.device
        config = {"img_size": img_size, "batch_size_per_gpu": args.batch, "num_workers_per_gpu": args.workers,
                  "conf_thres": 0.25, "gpu_id": gpu, "gpu_count": 0 if not gpu else 1, "model_params_path": [str(model_path)]}

        def ours() -> float:
            return run_tasks(root, ["infer"], config)

        def ours_gpu_decode() -> float:
            return run_tasks(root, ["infer"], {**config, "gpu_decode": True})

        plain_boxes: list[int] = []

        def plain(images: list[str] = paths) -> float:
            start = time.perf_counter()
            yolo = YOLO(str(model_path))  # loading the model counts, as it does for A
            boxes = 0
            for i in range(0, len(images), args.batch):
                results = yolo.predict(images[i : i + args.batch], imgsz=img_size, conf=0.25, iou=0.45, batch=args.batch,
                                       device=args.device, verbose=False, quantize=16 if gpu else None)  # fp16 on a GPU
                boxes += sum(len(r.boxes) for r in results)
            plain_boxes.append(boxes)
            return time.perf_counter() - start

        from executor.engine import Engine
        from executor.inputs import CandidateImages

        engine = Engine(model_path, args.device if gpu else "cpu", img_size, True, sample.CLASS_NAMES)
        decoded = CandidateImages(paths, img_size)  # the engine's own decoding and letterbox, done up front
        by_shape: dict[tuple[int, ...], list] = {}
        by_file: dict[tuple[int, int], torch.Tensor] = {}  # the photos are hard links to a few files: decoded once each
        for i, path in enumerate(paths):
            stat = Path(path).stat()
            if (stat.st_dev, stat.st_ino) not in by_file:
                ((by_file[stat.st_dev, stat.st_ino], _),) = decoded[i]
            tensor = by_file[stat.st_dev, stat.st_ino]
            by_shape.setdefault(tuple(tensor.shape), []).append(tensor)
        batches = [torch.stack(group[i : i + args.batch]) for group in by_shape.values()
                   for i in range(0, len(group), args.batch)]  # full passes but the last of each shape
        del by_shape, by_file

        def ceiling() -> float:
            start = time.perf_counter()
            for batch in batches:
                engine.forward(engine.prepare(batch), [])
            if engine.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        fed = paths[:FEED]

        def feed() -> float:
            """Seconds for all the images at the rate one worker decodes the first FEED (to keep GPU calls short)."""
            start = time.perf_counter()
            for _ in engine.batches(fed, args.batch, 1):
                pass
            return (time.perf_counter() - start) * len(paths) / len(fed)

        arms = [("A executor infer task", ours), ("B plain YOLO.predict loop", plain), ("C bare forward (ceiling)", ceiling),
                ("F input pipeline alone, 1 worker", feed)]
        if gpu:
            arms.insert(1, ("A' executor infer task, gpu_decode: true", ours_gpu_decode))
        results: dict[str, float] = {}
        runs: dict[str, list[float]] = {name: [] for name, _ in arms}
        for _, fn in arms:  # warm-up: first model load, allocator, caches (A's reads every file into the page cache)
            plain(paths[: 4 * args.batch]) if fn is plain else fn()  # B decodes in this process: the slowest by far
        # the instrument's check, on the last infer task's result: the model finds what users' models find, boxes
        found = require_boxes(root / "out" / "infer-result.json")
        print(f"boxes: {found:.2f} per candidate at conf 0.25", flush=True)
        for _ in range(args.repeats):  # arms alternated, round by round: a drifting machine moves them alike
            for name, fn in arms:
                runs[name].append(fn())
                results[name] = min(runs[name])
                print(f"arm {name}: {results[name]:.2f} s for {images} images", flush=True)  # a run cut short keeps it
        print(f"\nmachine: {machine()}; {images} images {img_size} px, batch {args.batch}, workers {args.workers}, "
              f"device {args.device}, best of {args.repeats}, arms alternated; "
              f"{'toy sample images' if args.toy else photos.describe(paths)}; "
              f"ceiling: {len(batches)} passes; boxes per candidate: A {found:.2f}, B {plain_boxes[-1] / len(paths):.2f} "
              "(like for like when they are close)")
        print("| run | seconds | images/s | vs B | vs C |\n| --- | --- | --- | --- | --- |")
        base, top = results["B plain YOLO.predict loop"], results["C bare forward (ceiling)"]
        for name, seconds in results.items():
            print(f"| {name} | {seconds:.2f} | {images / seconds:.1f} | {base / seconds:.2f}x | {top / seconds:.2f}x |")
        name = args.json or (f"infer-throughput-{'toy' if args.toy else 'photos'}-{images}-{img_size}px-"
                             f"{'cpu' if not gpu else 'gpu'}")
        save_result(name, {"images": images, "img_size": img_size, "batch": args.batch, "workers": args.workers,
                           "device": args.device, "boxes_per_candidate": {"A": found, "B": plain_boxes[-1] / len(paths)},
                           "seconds": runs, "best": results,
                           "speedup_vs_plain_best": {k: base / v for k, v in results.items()},
                           "speedup_vs_plain_per_round": {k: [b / a for a, b in zip(v, runs["B plain YOLO.predict loop"],
                                                                                   strict=True)] for k, v in runs.items()}})


if __name__ == "__main__":
    main()
