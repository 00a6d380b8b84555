"""torch's CPU thread count under a CPU quota: the infer task with torch at N threads against 1.

Ultralytics' predictor runs min(8, os.cpu_count() - 1) threads, and os.cpu_count() sees the node's cores, not
the container's quota or affinity; the engine takes the same formula of the CPUs it may use
(``runtime.cpu_threads``). This measures what the difference costs. Run it inside a CPU quota, as root
for example with cgroup v1: ``mkdir /sys/fs/cgroup/cpu/q; echo 100000 > /sys/fs/cgroup/cpu/q/cpu.cfs_quota_us;
sh -c 'echo $$ > /sys/fs/cgroup/cpu/q/cgroup.procs; exec python bench/cpu_threads.py'`` (a quota of 1 CPU).
Arms alternate after a warm-up. Infer: 96 real-sized JPEGs at 320 px, the benchmarks' model. Training: yolo11n
from scratch on 96 + 24 sample images at 128 px, 2 epochs. In both arms Ultralytics' own count is N, as on a large
node (its ``select_device`` sets it wherever it runs); the arm sets ``runtime.cpu_threads``, which the engine and
the training callbacks use.

Usage: python bench/cpu_threads.py [--task infer|training] [--threads 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import photos
from common import machine, require_boxes, run_tasks, sample, save_result, trained_model
from executor import runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="the count Ultralytics would take on a large node")
    parser.add_argument("--task", choices=("infer", "training"), default="infer")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    arms = (1, args.threads)
    where = machine()  # before the arms set torch's thread count
    with tempfile.TemporaryDirectory() as tmp:
        if args.task == "infer":
            root = sample.generate(Path(tmp), train=0, val=0, candidates=args.images)
            model = trained_model("cpu")
            photos.use_as_candidates(root, photos.make(Path(tmp) / "photos", args.images, objects_at=320))
            config = {"img_size": 320, "batch_size_per_gpu": 16, "num_workers_per_gpu": -1, "conf_thres": 0.25,
                      "gpu_id": "", "gpu_count": 0, "model_params_path": [str(model)]}
        else:
            root = sample.generate(Path(tmp), train=args.images, val=args.images // 4, candidates=1)
            config = {"model": "yolo11n", "epochs": 2, "img_size": 128, "batch_size_per_gpu": 16, "save_period": 10,
                      "patience": 0, "export_format": "ark:raw", "gpu_id": "", "gpu_count": 0}
        from ultralytics.utils import torch_utils

        original, ultralytics_count = runtime.cpu_threads, torch_utils.NUM_THREADS
        times: dict[int, list[float]] = {n: [] for n in arms}
        try:
            torch_utils.NUM_THREADS = args.threads  # Ultralytics' count on a large node, in both arms
            run_tasks(root, [args.task], config)  # warm-up, untimed
            if args.task == "infer":
                what = f"{args.images} real-sized JPEGs at 320 px ({require_boxes(root / 'out' / 'infer-result.json'):.2f} boxes each)"
            else:
                what = f"training yolo11n on {args.images} + {args.images // 4} sample images at 128 px, 2 epochs"
            for k in range(args.repeats):
                for n in arms if k % 2 == 0 else arms[::-1]:
                    runtime.cpu_threads = lambda n=n: n
                    times[n].append(run_tasks(root, [args.task], config))
                    print(f"torch threads {n}, run {k + 1}: {times[n][-1]:.2f} s", flush=True)
        finally:
            runtime.cpu_threads, torch_utils.NUM_THREADS = original, ultralytics_count
    print(f"\nmachine: {where}; {what}, decoding workers {runtime.decode_workers(-1, 1)}, runs alternated, "
          f"best of {args.repeats}")
    print("| torch threads | seconds (best) | mean | vs 1 thread |\n| --- | --- | --- | --- |")
    for n in arms:
        print(f"| {n} | {min(times[n]):.2f} | {sum(times[n]) / len(times[n]):.2f} | {min(times[n]) / min(times[1]):.2f}x |")
    save_result(f"cpu-threads-{args.task}", {"where": where, "what": what, "seconds": {str(n): times[n] for n in arms},
                                           "vs_1_thread_best": {str(n): min(times[n]) / min(times[1]) for n in arms}})


if __name__ == "__main__":
    main()
