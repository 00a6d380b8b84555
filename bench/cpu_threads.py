"""torch's CPU thread count under a CPU quota: the infer task with torch at N threads against 1.

Ultralytics' predictor runs min(8, os.cpu_count() - 1) threads, and os.cpu_count() sees the node's cores, not
the container's quota or affinity; the engine takes the same formula of the CPUs it may use
(``runtime.cpu_threads``). This measures what the difference costs. Run it inside a CPU quota, as root
for example with cgroup v1: ``mkdir /sys/fs/cgroup/cpu/q; echo 100000 > /sys/fs/cgroup/cpu/q/cpu.cfs_quota_us;
sh -c 'echo $$ > /sys/fs/cgroup/cpu/q/cgroup.procs; exec python bench/cpu_threads.py'`` (a quota of 1 CPU).
Arms alternate after a warm-up; 96 real-sized JPEGs at 320 px, the benchmarks' model.

Usage: python bench/cpu_threads.py [--threads 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import photos
from common import machine, require_boxes, run_tasks, sample, trained_model
from executor import runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="the count Ultralytics would take on a large node")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    arms = (1, args.threads)
    where = machine()  # before the arms set torch's thread count
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=0, val=0, candidates=args.images)
        model = trained_model("cpu")
        photos.use_as_candidates(root, photos.make(Path(tmp) / "photos", args.images, objects_at=320))
        config = {"img_size": 320, "batch_size_per_gpu": 16, "num_workers_per_gpu": -1, "conf_thres": 0.25,
                  "gpu_id": "", "gpu_count": 0, "model_params_path": [str(model)]}
        run_tasks(root, ["infer"], config)  # warm-up, untimed
        boxes = require_boxes(root / "out" / "infer-result.json")
        times: dict[int, list[float]] = {n: [] for n in arms}
        original = runtime.cpu_threads
        try:
            for k in range(args.repeats):
                for n in arms if k % 2 == 0 else arms[::-1]:
                    runtime.cpu_threads = lambda n=n: n
                    times[n].append(run_tasks(root, ["infer"], config))
                    print(f"torch threads {n}, run {k + 1}: {times[n][-1]:.2f} s", flush=True)
        finally:
            runtime.cpu_threads = original
    print(f"\nmachine: {where}; {args.images} real-sized JPEGs at 320 px ({boxes:.2f} boxes each), decoding workers "
          f"{runtime.decode_workers(-1, 1)}, runs alternated, best of {args.repeats}")
    print("| torch threads | seconds (best) | mean | vs 1 thread |\n| --- | --- | --- | --- |")
    for n in arms:
        print(f"| {n} | {min(times[n]):.2f} | {sum(times[n]) / len(times[n]):.2f} | {min(times[n]) / min(times[1]):.2f}x |")


if __name__ == "__main__":
    main()
