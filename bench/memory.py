"""Memory: peak RSS of infer and mining at N and 10 x N candidates (benchmark issue, item 3).

Each run is a fresh ``app/start.py`` process; its peak RSS (and its DataLoader workers', counted
separately by the kernel) comes from ``wait4``. Target: growth <= 1.2x from N to 10 x N.

Usage: python bench/memory.py [--n 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, sample, trained_model


def peak_rss_mb(env_path: Path) -> float:
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "start.py")], stdout=subprocess.DEVNULL,
                            env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"run failed with status {status}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=32, val=8, candidates=args.n * 10)
        model = trained_model(root, 128)
        index = root / "in" / "candidate-index.tsv"
        everything = index.read_text()
        for tasks, extra in ((["infer"], {}), (["mining"], {"mining_algorithm": "entropy"}),
                             (["mining"], {"mining_algorithm": "diversity"}), (["mining", "infer"], {"mining_algorithm": "aldd"})):
            peaks = []
            for count in (args.n, args.n * 10):
                index.write_text("\n".join(everything.splitlines()[:count]) + "\n")
                config = {"img_size": 128, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2,
                          "model_params_path": [str(model)], **extra}
                peaks.append(peak_rss_mb(sample.write_task(root, tasks, config)))
            rows.append((" + ".join(tasks) + (f" ({extra['mining_algorithm']})" if extra else ""), *peaks))
    print(f"\nmachine: {machine()}; peak RSS of the main process, MB")
    print(f"| run | {args.n} candidates | {args.n * 10} candidates | growth |\n| --- | --- | --- | --- |")
    for name, small, large in rows:
        print(f"| {name} | {small:.0f} | {large:.0f} | {large / small:.2f}x |")


if __name__ == "__main__":
    main()
