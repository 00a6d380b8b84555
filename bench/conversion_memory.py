"""Peak memory of sliced conversion on 100-200 MP photos with 16 threads (issue 42, item 4): conversion's decoded
images within ``dataset.DECODED_BUDGET`` (now) against the budget lifted (before: one decoded image per thread).

Data, made offline: ``--images`` JPEGs of 100 to 200 MP (12000x9000 to 16000x12500), smooth upscales of the photos
installed packages ship (decoding memory is the pixel count, not the content), each with a few boxes. Each arm
converts them in a process of its own under ``/usr/bin/time -v`` with ``runtime.usable_cpus`` at 16 (a GPU node's
share of CPUs); the figure is the peak RSS beyond the process's own before conversion starts (torch and OpenCV
imported), both read in the child.

Usage: python bench/conversion_memory.py [--images 6] [--threads 16]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import photos
from common import ROOT, save_result
from PIL import Image

SIZES = [(12000, 9000), (13000, 10000), (14000, 10500), (15000, 11000), (16000, 12000), (16000, 12500)]
BUDGET_MIB = 2048  # the target: at most this beyond the process's baseline


def make(root: Path, count: int) -> Path:
    Image.MAX_IMAGE_PIXELS = None
    lines = []
    for k in range(count):
        width, height = SIZES[k % len(SIZES)]
        with Image.open(photos.sources()[k % 3]) as im:
            image = im.convert("RGB").resize((width, height), Image.BILINEAR)
        path = root / f"big-{k}.jpg"
        image.save(path, quality=85)
        del image
        note = path.with_suffix(".txt")
        rng = np.random.default_rng(k)
        note.write_text("".join(f"{int(rng.integers(0, 2))},{x},{y},{x + 300},{y + 300}\n"
                                for x, y in zip(rng.integers(0, width - 300, 8), rng.integers(0, height - 300, 8), strict=True)))
        lines.append(f"{path}\t{note}")
    index = root / "index.tsv"
    index.write_text("\n".join(lines) + "\n")
    return index


def child(index: str, out: str, threads: int, lifted: bool) -> None:
    """In the measured process: conversion as training runs it, at ``threads`` CPUs; prints the baseline RSS."""
    sys.path.insert(0, str(ROOT / "app"))
    from executor import dataset, runtime, slicing

    runtime.allow_large_images()
    runtime.usable_cpus = lambda: threads  # a GPU node's share of CPUs, on this machine
    if lifted:
        dataset.DECODED_BUDGET = 1 << 62
    status = Path("/proc/self/status").read_text()
    baseline = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    dataset.convert(index, index, out, "ark:raw", ["a", "b"], slicing.SliceSettings(640, 0.2, True), img_size=640)
    print(json.dumps({"baseline_kib": baseline}))


def measure(index: Path, out: Path, threads: int, lifted: bool) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", str(index), str(out), str(threads)]
    run = subprocess.run(command + (["--lifted"] if lifted else []), capture_output=True, text=True, check=True)
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    baseline = json.loads(run.stdout.strip().splitlines()[-1])["baseline_kib"]
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", run.stderr).group(1)
    return {"peak_mib": peak / 1024, "baseline_mib": baseline / 1024, "beyond_baseline_mib": (peak - baseline) / 1024,
            "wall": wall}


def main() -> None:
    if "--child" in sys.argv:
        index, out, threads = sys.argv[2:5]
        child(index, out, int(threads), "--lifted" in sys.argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    results: dict = {"images": [list(SIZES[k % len(SIZES)]) for k in range(args.images)], "threads": args.threads,
                     "budget_mib": BUDGET_MIB, "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = make(root, args.images)
        for arm, lifted in (("before (budget lifted)", True), ("after (DECODED_BUDGET)", False)):
            results["arms"][arm] = measure(index, root / f"out-{int(lifted)}", args.threads, lifted)
            row = results["arms"][arm]
            print(f"{arm}: peak RSS {row['peak_mib']:.0f} MiB, {row['beyond_baseline_mib']:.0f} MiB beyond the baseline "
                  f"({row['baseline_mib']:.0f} MiB), {row['wall']}", flush=True)
    after = results["arms"]["after (DECODED_BUDGET)"]["beyond_baseline_mib"]
    results["within_budget"] = after <= BUDGET_MIB
    print(f"after: {after:.0f} MiB beyond the baseline, target <= {BUDGET_MIB} MiB: {'met' if results['within_budget'] else 'NOT met'}")
    save_result(f"conversion-memory-{args.images}x100-200MP-{args.threads}-threads", results)


if __name__ == "__main__":
    main()
