"""Memory: peak RSS of infer and mining at N and 10 x N candidates (benchmark issue, item 3).

Each run is a fresh ``app/start.py`` process. Two figures per run: its peak RSS (from ``wait4``; on
this stack it is often reached while torch is imported, before any candidate is read) and its RSS at
the end of the run (the last ``/proc`` sample, taken every 20 ms), which grows with anything the scan
keeps per candidate. Target: growth <= 1.2x from N to 10 x N. Also the most PSS the run's decoding workers
(its descendant processes) held together (PSS counts the pages they share once), sampled once a second: at
every 20 ms, with the main process's PSS read too (ddbf19f), the sampling took most of a core.

``--large``: what slicing holds on very large images. The engine's input pipeline (``Engine.batches``: the
decoding workers, the shared memory they hand tiles over in, the per-shape queues), run in this process
with a 0.1 s pause per pass standing in for the forward pass, on one photo of 4, 25 and 100 MP sliced at
640 px (``img_size: 640``), and, for comparison, plain on as many 640x640 JPEGs as the sliced photo has
model inputs. The model is left out so that its activations (hundreds of MB that vary from pass to pass)
do not hide what the pipeline holds. Figures: the most PSS added over the run's start, in the main
process and in all processes together (sampled every 20 ms; PSS counts shared memory once; the second is
noisy, +-200 MB, as the two workers start and touch their pages at different moments). Target: what the
main process holds does not grow with the photo (under 100 MB at every size; the tiles of a 100 MP photo
weigh 470 MB): the workers hold the decoded photo and a few passes' tiles, no more.

``--counts A B``: the same runs at pool sizes users have (issue 43, item 3: 20,000 and 100,000), each also
timed (wall seconds of the whole process, per candidate); ``--unique U`` draws U candidates and hard-links them
under new names up to the largest count (decoding, scoring and writing cost the same per name; drawing 100,000
would take longer than the runs), ``--runs`` picks runs by name. Target: time per candidate and RSS at the end
flat in the pool size (<= 1.2x from A to B): no step grows faster than the pool.

Usage: python bench/memory.py [--n 200] [--counts A B] [--unique U] [--runs infer,ppal,...] [--large]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, require_boxes, sample, save_result, trained_model

WORKER_SAMPLES = 50  # RSS samples (20 ms apart) per sample of the workers' PSS: one a second


def rss_mb(env_path: Path) -> tuple[float, float, float, float]:
    """(peak RSS, RSS at the end of the run) of one run's main process, in MB, its wall seconds, and the most PSS its
    descendants (the decoding workers) held together."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "start.py")], stdout=subprocess.DEVNULL,
                            env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    last = workers = 0.0
    samples = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as fp:
                last = next(int(line.split()[1]) for line in fp if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):  # exiting: keep the previous sample
            pass
        samples += 1
        if samples % WORKER_SAMPLES == 0:  # PSS is dear to read: it would take a core's share from the timed run
            workers = max(workers, process_pss(proc.pid, skip_root=True)[1])
        time.sleep(0.02)
    if status:
        raise SystemExit(f"run failed with status {status}")
    return usage.ru_maxrss / 1024, last, time.perf_counter() - started, workers


def pss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as fp:
        return next(int(line.split()[1]) for line in fp if line.startswith("Pss:")) / 1024


def process_pss(root: int | None = None, skip_root: bool = False) -> tuple[float, float]:
    """PSS in MB of a process (this one by default), and of it and its descendants (the decoding workers) together.
    ``skip_root``: the root's own PSS is not read (0): reading it walks its page tables, about 50 ms at 1 GB."""
    root = root or os.getpid()
    sizes, todo = {}, [root]
    while todo:
        pid = todo.pop()
        try:
            sizes[pid] = 0.0 if skip_root and pid == root else pss_mb(pid)
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fp:
                    todo += [int(child) for child in fp.read().split()]
        except (OSError, StopIteration):  # gone between listing and reading
            pass
    return sizes.get(root, 0.0), sum(sizes.values())


def pipeline_added_mb(engine, paths: list[str]) -> tuple[float, float, int]:  # noqa: ANN001 - executor.engine.Engine
    """(most PSS added in this process, in all processes, inputs) while ``engine.batches`` runs over ``paths``."""
    import threading

    base_main, base_all = process_pss()
    peak = [0.0, 0.0]
    running = True

    def sample() -> None:
        while running:
            main, total = process_pss()
            peak[0], peak[1] = max(peak[0], main - base_main), max(peak[1], total - base_all)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    inputs = 0
    for images, metas, _ in engine.batches(paths, 16, 2):
        inputs += len(metas)
        if images is not None:
            time.sleep(0.1)  # the forward pass's place
    running = False
    sampler.join()
    return peak[0], peak[1], inputs


def large(root: Path, model: Path) -> None:
    """The input pipeline's memory on 4, 25 and 100 MP photos, sliced, against plain on as many 640 px inputs."""
    import numpy as np
    from executor import slicing
    from executor.engine import Engine
    from executor.sample import CLASS_NAMES
    from photos import sources
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own 100 MP file (the executor decodes with OpenCV, which has no such cap)
    photo = Image.open(sources()[0]).convert("RGB")
    slices = slicing.SliceSettings(640, 0.2, True)
    sliced_engine = Engine(model, "cpu", 640, False, CLASS_NAMES, slices=slices)
    plain_engine = Engine(model, "cpu", 640, False, CLASS_NAMES)
    rows = []
    for megapixels in (4, 25, 100):
        side = round((megapixels * 1e6) ** 0.5)
        big = root / f"photo-{megapixels}mp.jpg"
        photo.resize((side, side), Image.BILINEAR).save(big, quality=85)
        tile = root / "tile.jpg"
        Image.fromarray(np.asarray(Image.open(big).crop((0, 0, 640, 640)))).save(tile, quality=85)
        sliced = pipeline_added_mb(sliced_engine, [str(big)])
        plain = []
        for i in range(sliced[2]):
            plain.append(str(root / "tiles" / f"{megapixels}-{i:04d}.jpg"))
            Path(plain[-1]).parent.mkdir(exist_ok=True)
            os.link(tile, plain[-1])
        rows.append((megapixels, side * side * 3 / 2**20, sliced, pipeline_added_mb(plain_engine, plain)))
    print(f"\nmachine: {machine()}; PSS added by the input pipeline, MB: in the main process / in all processes")
    print("| photo | inputs (tiles + whole) | decoded image | its tiles' model inputs | sliced | plain, as many 640 px "
          "inputs |\n|---|---|---|---|---|---|")
    for megapixels, image_mb, (s_main, s_all, inputs), (p_main, p_all, _) in rows:
        print(f"| {megapixels} MP | {inputs} | {image_mb:.0f} | {inputs * 640 * 640 * 3 / 2**20:.0f} | {s_main:.0f} / {s_all:.0f} "
              f"| {p_main:.0f} / {p_all:.0f} |")
    save_result("memory-large", {"pss_mb": [{"megapixels": mp, "decoded_mb": image_mb, "inputs": s[2], "sliced_main": s[0],
                                             "sliced_all": s[1], "plain_main": p[0], "plain_all": p[1]}
                                            for mp, image_mb, s, p in rows]})


RUNS = {"infer": (["infer"], {}), "entropy": (["mining"], {"mining_algorithm": "entropy"}),
        "diversity": (["mining"], {"mining_algorithm": "diversity"}), "ppal": (["mining"], {"mining_algorithm": "ppal"}),
        "aldd + infer": (["mining", "infer"], {"mining_algorithm": "aldd"}),
        "ppal + infer": (["mining", "infer"], {"mining_algorithm": "ppal"})}
DEFAULT_RUNS = "infer,entropy,diversity,ppal,aldd + infer"


def linked_pool(root: Path, unique: int, count: int) -> None:
    """The candidate index grown to ``count`` names by hard-linking its first ``unique`` images (new names, same
    bytes)."""
    index = root / "in" / "candidate-index.tsv"
    drawn = index.read_text().splitlines()[:unique]
    lines = []
    for i in range(count):
        source = Path(drawn[i % len(drawn)])
        if i < len(drawn):
            lines.append(str(source))
            continue
        target = source.with_name(f"{source.stem}-{i}{source.suffix}")
        if not target.exists():
            os.link(source, target)
        lines.append(str(target))
    index.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--counts", type=int, nargs=2, help="the two pool sizes (default: N and 10 x N)")
    parser.add_argument("--unique", type=int, help="candidates drawn (default: all), hard-linked up to the largest count")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--large", action="store_true", help="sliced infer on 4-100 MP photos (see above)")
    args = parser.parse_args()
    if args.large:
        with tempfile.TemporaryDirectory() as tmp:
            root = sample.generate(Path(tmp), train=0, val=0, candidates=2)
            large(root, trained_model())
        return
    n, n10 = args.counts or (args.n, args.n * 10)
    rows, found = [], float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=0, val=0, candidates=min(args.unique or n10, n10))
        linked_pool(root, args.unique or n10, n10)
        model = trained_model()
        index = root / "in" / "candidate-index.tsv"
        everything = index.read_text()
        for name in args.runs.split(","):
            tasks, extra = RUNS[name]
            runs = []
            for count in (n, n10):
                index.write_text("\n".join(everything.splitlines()[:count]) + "\n")
                config = {"img_size": 128, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2,
                          "model_params_path": [str(model)], **extra}
                runs.append(rss_mb(sample.write_task(root, tasks, config)))
                print(f"{name}, {count} candidates: peak {runs[-1][0]:.0f} MB, end {runs[-1][1]:.0f} MB, "
                      f"{runs[-1][2]:.1f} s; decoding workers' PSS at most {runs[-1][3]:.0f} MB", flush=True)
            rows.append((" + ".join(tasks) + (f" ({extra['mining_algorithm']})" if extra else ""), *runs))
            if "infer" in tasks:  # the results streamed to disk hold boxes, as users' results do
                found = require_boxes(root / "out" / "infer-result.json")
    print(f"\nmachine: {machine()}; RSS of the main process, MB: peak, and at the end of the run; "
          f"{found:.2f} boxes per candidate")
    print(f"| run | peak, {n} | peak, {n10} | growth | end, {n} | end, {n10} | growth | ms per candidate, {n} | {n10} | "
          f"growth | workers' PSS, {n} | {n10} | growth |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (peak, end, wall, workers), (peak10, end10, wall10, workers10) in rows:
        print(f"| {name} | {peak:.0f} | {peak10:.0f} | {peak10 / peak:.2f}x | {end:.0f} | {end10:.0f} | {end10 / end:.2f}x "
              f"| {1000 * wall / n:.2f} | {1000 * wall10 / n10:.2f} | {wall10 / n10 / (wall / n):.2f}x "
              f"| {workers:.0f} | {workers10:.0f} | {workers10 / max(workers, 1e-9):.2f}x |")
    save_result(f"memory-{n}" + (f"-{n10}" if args.counts else ""),
                {"candidates": [n, n10], "unique": args.unique or n10, "boxes_per_candidate": found,
                 "rss_mb": [{"run": name, "peak": [peak, peak10], "end": [end, end10]}
                            for name, (peak, end, _, _), (peak10, end10, _, _) in rows],
                 "wall_s": [{"run": name, "wall": [wall, wall10]} for name, (_, _, wall, _), (_, _, wall10, _) in rows],
                 "workers_pss_mb": [{"run": name, "peak": [workers, workers10]}
                                    for name, (_, _, _, workers), (_, _, _, workers10) in rows]})


if __name__ == "__main__":
    main()
