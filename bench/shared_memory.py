"""Infer with too little /dev/shm (Docker's default of 64 MB), side by side in one run.

A: ample shared memory (this machine's /dev/shm): the decoding workers hand their inputs over in it;
P: a 64 MB /dev/shm (or ``--shm``): the workers hand their inputs over by pipe (``inputs.shared_memory_handover``);
M: a 64 MB /dev/shm with ``num_workers_per_gpu: 0``: decoding in the main process, what the executor did
   with too little shared memory before the pipe (the positive control: A must beat it, or workers buy
   nothing on this machine and the benchmark cannot show what the pipe keeps).
Each arm runs ``app/start.py`` in a subprocess (the small /dev/shm is a tmpfs in a mount namespace: needs
root), on real-sized JPEGs carrying objects the model finds (``photos``) at the templates' 640 px (or ``--img-size``) and batch 16; best of
``--repeats``.

Usage: python bench/shared_memory.py [--images 96] [--repeats 2] [--img-size 640] [--shm 64m]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import photos
from common import ROOT, machine, require_boxes, sample, save_result, trained_model

sys.path.insert(0, str(ROOT / "tests"))
from small_shm import under_small_shm  # noqa: E402  (the tests' own mount-namespace wrapper)


def timed(env_path: Path, shm: str | None, workers: int) -> float:
    command = [sys.executable, str(ROOT / "app" / "start.py")]
    if shm:
        command = under_small_shm(command, shm)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-2000:]
    if shm and workers:
        assert "hand their images over by pipe" in proc.stdout, "the small /dev/shm was not seen"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=640, help="the templates' 640 by default")
    parser.add_argument("--shm", default="64m", help="the small /dev/shm of P and M (Docker's default 64m)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (a tmpfs /dev/shm in a mount namespace)")
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=0, val=0, candidates=4)
        model = trained_model()
        photos.use_as_candidates(root, photos.make(Path(tmp) / "photos", args.images, objects_at=args.img_size))
        base = {"img_size": args.img_size, "batch_size_per_gpu": 16, "conf_thres": 0.25, "gpu_id": "", "gpu_count": 0,
                "model_params_path": [str(model)]}
        arms = [("A ample /dev/shm, workers -1", -1, None), (f"P {args.shm} /dev/shm, workers -1 (by pipe)", -1, args.shm),
                (f"M {args.shm} /dev/shm, workers 0 (the fallback before the pipe)", 0, args.shm)]
        best: dict[str, float] = {}
        runs: dict[str, list[float]] = {name: [] for name, _, _ in arms}
        for round_ in range(args.repeats + 1):  # the first round warms the page cache and is not counted
            for name, workers, shm in arms:
                env_path = sample.write_task(root, ["infer"], {**base, "num_workers_per_gpu": workers})
                seconds = timed(env_path, shm, workers)
                found = require_boxes(root / "out" / "infer-result.json")
                if round_:
                    best[name] = min(best.get(name, seconds), seconds)
                    runs[name].append(seconds)
                    print(f"arm {name}: {seconds:.2f} s", flush=True)
        print(f"machine: {machine()}; {args.images} real-sized JPEGs, {args.img_size} px, batch 16, best of {args.repeats}; "
              f"{found:.2f} boxes per candidate")
        print("| arm | seconds | vs M |")
        print("| --- | --- | --- |")
        for name, _, _ in arms:
            print(f"| {name} | {best[name]:.2f} | {best[arms[2][0]] / best[name]:.2f}x |")
        save_result(f"shared-memory-{args.shm}-{args.img_size}px", {"images": args.images, "img_size": args.img_size,
                    "shm": args.shm, "boxes_per_candidate": found, "seconds": runs,
                    "vs_M_best": {n: best[arms[2][0]] / best[n] for n, _, _ in arms}})


if __name__ == "__main__":
    main()
