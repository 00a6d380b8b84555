"""Memory: peak RSS of infer and mining at N and 10 x N candidates (benchmark issue, item 3).

Each run is a fresh ``app/start.py`` process. Two figures per run: its peak RSS (from ``wait4``; on
this stack it is often reached while torch is imported, before any candidate is read) and its RSS at
the end of the run (the last ``/proc`` sample, taken every 20 ms), which grows with anything the scan
keeps per candidate. Target: growth <= 1.2x from N to 10 x N.

Usage: python bench/memory.py [--n 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, sample, trained_model


def rss_mb(env_path: Path) -> tuple[float, float]:
    """(peak RSS, RSS at the end of the run) of one run, in MB."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "start.py")], stdout=subprocess.DEVNULL,
                            env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    last = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as fp:
                last = next(int(line.split()[1]) for line in fp if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):  # exiting: keep the previous sample
            pass
        time.sleep(0.02)
    if status:
        raise SystemExit(f"run failed with status {status}")
    return usage.ru_maxrss / 1024, last


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
            runs = []
            for count in (args.n, args.n * 10):
                index.write_text("\n".join(everything.splitlines()[:count]) + "\n")
                config = {"img_size": 128, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2,
                          "model_params_path": [str(model)], **extra}
                runs.append(rss_mb(sample.write_task(root, tasks, config)))
            rows.append((" + ".join(tasks) + (f" ({extra['mining_algorithm']})" if extra else ""), *runs))
    n, n10 = args.n, args.n * 10
    print(f"\nmachine: {machine()}; RSS of the main process, MB: peak, and at the end of the run")
    print(f"| run | peak, {n} | peak, {n10} | growth | end, {n} | end, {n10} | growth |\n|---|---|---|---|---|---|---|")
    for name, (peak, end), (peak10, end10) in rows:
        print(f"| {name} | {peak:.0f} | {peak10:.0f} | {peak10 / peak:.2f}x | {end:.0f} | {end10:.0f} | {end10 / end:.2f}x |")


if __name__ == "__main__":
    main()
