"""`make gpu-check`: every GPU path of the executor, run for real on CUDA, in one go (a few minutes).

On the project's sample data, each check runs ``app/start.py`` in a subprocess exactly as the platform
starts the image, then checks the outputs against the contract as the tests do (``tests/contract.py``):
training with AMP (3 epochs), fine-tuning from that result, infer with ``half`` true and false, infer with
``gpu_decode: true`` on real-sized JPEGs of mixed shapes (the GPU decoder's inputs against the CPU path's),
the nvJPEG stream hazard (with a positive control), each mining algorithm with ``half: true``, mining + infer
together, sliced mining + infer on real-sized JPEGs (``slice_size: 640``), two candidate shards (the
spawned-worker path; on GPUs 0 and 1 with GPU 0's memory checked when there are two), training and mining +
infer under Docker's default 64 MB /dev/shm (fewer training workers, images by pipe; needs root), a first-epoch NaN
(pretrained weights holding NaN) and a forced out-of-memory (yolo11x at 4096 px, the largest batch): each
of the last two must end with its own error code.

Prints one line per check and a closing count; exits 1 on any failure, 2 without CUDA.
``--allow-cpu`` rehearses the script on a machine without a GPU (the out-of-memory check is skipped);
it proves nothing about CUDA.

Usage: python tests/gpu_check.py [--gpu 0] [--keep DIR] [--allow-cpu]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "app"), str(HERE)]

from executor import runtime  # noqa: E402

runtime.setup()

from contract import (  # noqa: E402
    check_boxes_inside,
    check_infer_json,
    check_mining_tsv,
    check_monitor_error,
    check_result_yaml,
)
from executor import sample  # noqa: E402
from small_shm import under_small_shm  # noqa: E402

ALGORITHMS = ("random", "entropy", "aldd", "cald", "diversity", "ppal")
STEPS = ("training", "fine-tune", "infer", "infer", "gpu-decode", "decode-hazard", *["mining"] * len(ALGORITHMS),
         "mining-infer", "sliced", "two-shards", "small-shm", "nan", "oom")
TRAINING = {"model": "yolo11n", "epochs": 3, "img_size": 320, "batch_size_per_gpu": 16, "num_workers_per_gpu": 4,
            "save_period": 1, "export_format": "ark:raw"}
# conf 0.001: a model trained for 3 epochs scores its boxes low; fp16 and fp32 must find about as many.
SCAN = {"img_size": 320, "batch_size_per_gpu": 16, "num_workers_per_gpu": 4, "conf_thres": 0.001}
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ultralytics colours its log prefixes


class Check:
    def __init__(self, root: Path, gpu: str, keep: Path | None) -> None:
        self.root, self.gpu, self.keep = root, gpu, keep
        self.candidates = [p for p in (root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
        self.models: list[str] = []

    def run(self, name: str, tasks: list[str], config: dict, gpu: str | None = None,
            shm: str | None = None) -> tuple[int, str]:
        """``app/start.py`` as the platform starts it, with a fresh /out (kept under --keep for reading); with
        ``shm``, under a /dev/shm of that size (a mount namespace: needs root)."""
        out = self.root / "out"
        shutil.rmtree(out, ignore_errors=True)
        gpu = self.gpu if gpu is None else gpu
        base = {"gpu_id": gpu, "gpu_count": len(gpu.split(",")) if gpu else 0}
        env_path = sample.write_task(self.root, tasks, {**base, **config})
        logs = self.keep or self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "w") as fp:  # streamed: a run cut short still leaves its log
            command = [sys.executable, str(ROOT / "app" / "start.py")]
            if shm:
                command = under_small_shm(command, shm)
            proc = subprocess.run(command, stdout=fp, stderr=subprocess.STDOUT,
                                  env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)}, timeout=600)
        return proc.returncode, ANSI.sub("", (logs / f"{name}.log").read_text(errors="replace"))

    def ok(self, name: str, tasks: list[str], config: dict, gpu: str | None = None, model: bool = True,
           shm: str | None = None) -> str:
        rc, log = self.run(name, tasks, config, gpu, shm)
        assert rc == 0, f"exit {rc}: {last_line(log)}"
        if self.gpu and model:  # training: Ultralytics' banner names CUDA:0; infer and mining: "model ... on cuda:0"
            assert "CUDA:" in log or " on cuda:" in log, "the log names no CUDA device"
        return log

    def failed_with(self, name: str, tasks: list[str], config: dict, code: int) -> str:
        rc, log = self.run(name, tasks, config)
        assert rc != 0, "the run succeeded"
        message = check_monitor_error(str(self.root / "out" / "monitor.txt"), code)
        line = last_line(log)
        assert line.startswith(f"task failed (error {code})") or f"task failed (error {code})" in line, line
        return message[:120]

    # -- the checks, in order (later ones use the model the first trains)
    def train_amp(self) -> str:
        log = self.ok("train", ["training"], TRAINING)
        data = check_result_yaml(str(self.root / "out" / "models" / "result.yaml"), legacy=False)
        self.models = sorted(str(p) for p in (self.root / "out" / "models").iterdir() if p.is_file())
        kept = self.root / "trained"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(self.root / "out" / "models", kept)
        self.models = sorted(str(p) for p in kept.iterdir() if p.is_file())
        amp = re.search(r"AMP: checks[^\n]*", log)  # Ultralytics runs its AMP check only when AMP is on (CUDA)
        assert not self.gpu or (amp and "checks failed" not in amp.group(0)), "AMP was not on: " + (amp.group(0) if amp else "no AMP check")
        best = data["best_stage_name"]
        return (f"stages {sorted(data['model_stages'])}, best '{best}' mAP {data['model_stages'][best]['mAP']:.3f}; "
                + (amp.group(0)[:60] if amp else "no AMP (CPU)"))

    def fine_tune(self) -> str:
        log = self.ok("fine-tune", ["training"], {**TRAINING, "epochs": 2, "pretrained_model_params": self.models})
        data = check_result_yaml(str(self.root / "out" / "models" / "result.yaml"), legacy=False)
        transferred = re.search(r"Transferred (\d+)/(\d+) items", log)
        return f"mAP {data['model_stages'][data['best_stage_name']]['mAP']:.3f}" + (
            f", {transferred.group(0)}" if transferred else "")

    def infer(self, half: bool) -> str:
        self.ok(f"infer-half-{half}", ["infer"], {**SCAN, "half": half, "model_params_path": self.models})
        result = check_infer_json(str(self.root / "out" / "infer-result.json"), self.candidates, sample.CLASS_NAMES,
                                  legacy=False)
        boxes = sum(len(v["boxes"]) for v in result.values())
        return f"{boxes} boxes at conf {SCAN['conf_thres']}" + ("; " + self.half_matches_float() if half else "")

    def half_matches_float(self) -> str:
        """The same batch through the engine in float16 and float32: the head's boxes and class scores agree.
        (Box counts are no test: a model trained for 3 epochs scores thousands of boxes near any threshold,
        and fp16 rounding moves many across it; on the H200, 1248 boxes in fp16 against 934 in fp32.)"""
        import torch
        from executor.engine import Engine

        best = Path(next(p for p in self.models if p.endswith("best.pt")))
        passes = Engine(best, "cpu", SCAN["img_size"], False, sample.CLASS_NAMES).batches(self.candidates[:16], 16, 0)
        images, metas, _ = next(p for p in passes if p[0] is not None)  # the first pass, as the engine makes it
        outputs = []
        for half in (False, True):
            engine = Engine(best, self.gpu or "cpu", SCAN["img_size"], half, sample.CLASS_NAMES)
            outputs.append(engine.forward(engine.prepare(images), metas).decoded.float())
            del engine
        torch.cuda.empty_cache() if self.gpu else None
        full, half = outputs
        box_error = float((full[:, :4] - half[:, :4]).abs().max())
        score_error = float((full[:, 4:] - half[:, 4:]).abs().max())
        assert box_error <= 2.0 and score_error <= 0.02, f"fp16 differs from fp32: boxes {box_error:.3f} px, scores {score_error:.4f}"
        return f"fp16 vs fp32 on one batch: boxes within {box_error:.3f} px, class scores within {score_error:.4f}"

    def mine(self, algorithm: str) -> str:
        log = self.ok(f"mining-{algorithm}", ["mining"], {**SCAN, "half": True, "mining_algorithm": algorithm,
                                                           "model_params_path": self.models},
                      model=algorithm != "random")  # mining alone with random needs no model
        check_mining_tsv(str(self.root / "out" / "result.tsv"), self.candidates)
        return mining_line(log)

    def mine_and_infer(self) -> str:
        log = self.ok("mining-infer", ["mining", "infer"], {**SCAN, "half": True, "model_params_path": self.models})
        check_mining_tsv(str(self.root / "out" / "result.tsv"), self.candidates)
        check_infer_json(str(self.root / "out" / "infer-result.json"), self.candidates, sample.CLASS_NAMES, legacy=False)
        return mining_line(log)

    def sliced(self) -> str:
        """Mining + infer with ``slice_size: 640`` on real-sized JPEGs (1-12 MP, tiles streamed from the workers,
        ``gpu_decode`` on, which slicing leaves to the CPU path): every candidate in both results, boxes inside
        each image."""
        from PIL import Image

        sys.path.insert(0, str(ROOT / "bench"))
        import photos

        paths = photos.make(self.root / "sliced", 9)
        index = self.root / "in" / "candidate-index.tsv"
        saved = index.read_text()
        index.write_text("\n".join(paths) + "\n")
        try:
            log = self.ok("sliced", ["mining", "infer"], {**SCAN, "half": True, "gpu_decode": True, "slice_size": 640,
                                                          "mining_algorithm": "entropy", "model_params_path": self.models})
        finally:
            index.write_text(saved)
        check_mining_tsv(str(self.root / "out" / "result.tsv"), paths)
        result = check_infer_json(str(self.root / "out" / "infer-result.json"), paths, sample.CLASS_NAMES, legacy=False)
        check_boxes_inside(result, {Path(p).name: Image.open(p).size for p in paths})
        return f"{sum(len(e['boxes']) for e in result.values())} boxes on {len(paths)} photos; " + mining_line(log)

    def small_shm(self) -> str:
        """Training (Ultralytics' loaders start workers on a GPU, not on the CPU) and mining + infer under Docker's
        default /dev/shm of 64 MB: training completes with the workers that fit, mining + infer with its workers
        handing images over by pipe, each saying so; before, a lost batch left the task waiting forever."""
        if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
            return "skipped: a mount namespace needs root and unshare -m"
        found = []
        for name, tasks, config in (("small-shm-training", ["training"], {**TRAINING, "epochs": 1, "save_period": 0}),
                                    ("small-shm-scan", ["mining", "infer"], {**SCAN, "batch_size_per_gpu": 32,
                                                                                 "model_params_path": self.models})):
            log = self.ok(name, tasks, config, shm="64m")
            if tasks == ["training"]:
                check_result_yaml(str(self.root / "out" / "models" / "result.yaml"), legacy=False)
            said = re.search(r"/dev/shm has \d+ MB free, too little for (\d+ data-loading workers[^:]*: using \d+|"
                             r"\d+ decoding workers' batches[^:]*: they hand their images over by pipe)", log)
            if not said and not self.gpu and tasks == ["training"]:
                found.append("training: no loader workers on the CPU")
                continue
            assert said, "the log does not say what /dev/shm holds too little for"
            found.append(f"{tasks[0]}: {said.group(1)}")
        check_mining_tsv(str(self.root / "out" / "result.tsv"), self.candidates)
        check_infer_json(str(self.root / "out" / "infer-result.json"), self.candidates, sample.CLASS_NAMES, legacy=False)
        return "; ".join(found)

    def two_shards(self) -> str:
        """Two spawned shards: on GPUs 0 and 1 when the machine has two, and then device 0 must hold no more
        than one shard's memory (a shard that never called set_device put its context there); else both on
        GPU 0 (the spawned-worker path alone)."""
        import torch

        distinct = bool(self.gpu) and torch.cuda.device_count() >= 2
        config = {**SCAN, "half": True, "model_params_path": self.models}
        if distinct:
            one, _ = self.watch_device_0(lambda: self.ok("one-shard", ["mining", "infer"], config, gpu="0"))
        gpu = "0,1" if distinct else (f"{self.gpu},{self.gpu}" if self.gpu else "")
        two_shards = lambda: self.ok("two-shards", ["mining", "infer"], config, gpu=gpu)  # noqa: E731
        two, log = self.watch_device_0(two_shards) if distinct else (0, two_shards())
        check_mining_tsv(str(self.root / "out" / "result.tsv"), self.candidates)
        check_infer_json(str(self.root / "out" / "infer-result.json"), self.candidates, sample.CLASS_NAMES, legacy=False)
        assert not self.gpu or "on 2 devices" in log, "the candidates were not split over two workers"
        if not distinct:
            return mining_line(log) + ("; one GPU: both shards on GPU 0, device placement not checked" if self.gpu else "")
        assert two <= one * 1.2 + 64, f"GPU 0 held {two} MiB with shards on GPUs 0 and 1, {one} MiB with one shard"
        return f"{mining_line(log)}; GPU 0 at most {two} MiB with shards on 0 and 1 ({one} MiB with one shard)"

    def watch_device_0(self, run: Callable[[], str]) -> tuple[int, str]:
        """``run()`` while nvidia-smi is polled: the most memory GPU 0's compute processes held together (MiB)."""
        import threading

        peak, done = [0], threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                out = subprocess.run(["nvidia-smi", "-i", "0", "--query-compute-apps=used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
                peak[0] = max(peak[0], sum(int(v) for v in out.split() if v.isdigit()))

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            log = run()
        finally:
            done.set()
            thread.join()
        return peak[0], log

    def gpu_decode(self) -> str:
        """Infer with ``gpu_decode: true`` on real-sized JPEGs of mixed shapes and EXIF orientations, with a truncated
        JPEG, a CMYK JPEG and a PNG among them: every candidate in infer-result.json, and the engine's inputs
        (size, scale, padding, pixels) those of the CPU path."""
        import numpy as np
        import torch
        from executor.engine import Engine
        from PIL import Image

        sys.path.insert(0, str(ROOT / "bench"))
        import photos

        folder = self.root / "decode"
        paths = photos.make(folder, 15)
        rotated = folder / "rotated.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.open(paths[0]).save(rotated, quality=90, exif=exif)
        data = Path(paths[1]).read_bytes()
        (folder / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
        Image.open(paths[2]).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
        Image.open(paths[3]).save(folder / "p.png")
        paths += [str(rotated), *(str(folder / n) for n in ("cut.jpg", "cmyk.jpg", "p.png"))]
        index = self.root / "in" / "candidate-index.tsv"
        saved = index.read_text()
        index.write_text("\n".join(paths) + "\n")
        try:
            self.ok("gpu-decode", ["infer"], {**SCAN, "half": True, "gpu_decode": True, "model_params_path": self.models})
        finally:
            index.write_text(saved)
        check_infer_json(str(self.root / "out" / "infer-result.json"), paths, sample.CLASS_NAMES, legacy=False)
        best = Path(next(p for p in self.models if p.endswith("best.pt")))
        seen = []
        for on_device in (False, True):
            engine = Engine(best, self.gpu or "cpu", 640, False, sample.CLASS_NAMES, decode_on_device=on_device)
            found = {}
            for images, metas, _ in engine.batches(paths, 8, 4):
                for image, meta in zip(images if images is not None else [], metas, strict=True):
                    found[meta.path] = (image.cpu().int(), (meta.width, meta.height, meta.ratio, meta.pad))
            seen.append(found)
            del engine
        cpu, dev = seen
        assert set(cpu) == set(dev) == set(paths), "an image was lost on one path"
        worst, mean = 0, []
        for path in paths:
            assert cpu[path][1] == dev[path][1], f"{path}: {cpu[path][1]} on the CPU path, {dev[path][1]} on the GPU"
            diff = (cpu[path][0] - dev[path][0]).abs()
            worst, mean = max(worst, int(diff.max())), mean + [float(diff.float().mean())]
        assert float(np.mean(mean)) < 1.0, f"GPU-decoded inputs differ from the CPU path's by {np.mean(mean):.2f} on average"
        torch.cuda.empty_cache() if self.gpu else None
        return (f"{len(paths)} candidates (1-12 MP, EXIF 6, truncated, CMYK, PNG) all present; inputs equal in size, "
                f"scale and padding, pixels within {worst} (mean {np.mean(mean):.3f}) grey levels of the CPU path")

    def decode_hazard(self) -> str:
        """The Hopper nvJPEG hazard (pytorch/vision PR #9606): tensors freed while reductions over them are still
        queued, then a batched decode. Our decoder runs on a stream of its own (``decode.Decoder``: the freed blocks
        belong to the caller's stream) and must corrupt nothing; the bare
        torchvision call is the positive control (it corrupts on GPUs with the hardware decoder)."""
        import torch
        from executor import decode
        from torchvision.io import ImageReadMode, decode_jpeg

        if not self.gpu:
            return "skipped without a GPU"
        sys.path.insert(0, str(ROOT / "bench"))
        import photos

        device = torch.device(f"cuda:{self.gpu}")
        paths = photos.make(self.root / "hazard", 8, distinct=8)[:8]
        encoded = [decode.read_encoded(p) for p in paths]
        size = max(int(e.data.numel()) for e in encoded)  # in the ballpark of the decoder's output blocks
        ours = {"ours": lambda: decode.decode(encoded, device),
                "bare torchvision": lambda: decode_jpeg([e.data for e in encoded], mode=ImageReadMode.RGB, device=device)}
        counts = {}
        for name, run in ours.items():
            corrupted = 0
            for _ in range(30):
                work = torch.randn(2048, 2048, device=device)
                for _ in range(30):
                    work = torch.tanh(work @ work)  # ~tens of ms queued on the stream
                tensors = [torch.full((3 * size,), float(k), device=device) for k in range(8)]
                sums = [t.sum() for t in tensors]  # queued after the work
                del tensors  # freed while the reductions still wait: the allocator may hand these blocks on
                run()
                corrupted += any(float(v) != float(k) * 3 * size for k, v in enumerate(sums))
            counts[name] = corrupted
        assert counts["ours"] == 0, f"the decoder corrupted queued work in {counts['ours']} of 30 rounds"
        control = counts["bare torchvision"]
        return (f"0 of 30 rounds corrupted on the decoder's own stream; on the caller's stream {control} of 30"
                + ("" if control else " (the hazard did not show on this card: the control proves nothing here)"))

    def nan_first_epoch(self) -> str:
        import torch

        poisoned = self.root / "nan" / "best.pt"
        poisoned.parent.mkdir(exist_ok=True)
        checkpoint = torch.load(next(p for p in self.models if p.endswith("best.pt")), weights_only=False)
        for key in ("model", "ema"):
            if checkpoint.get(key) is not None:
                first = next(checkpoint[key].parameters())
                first.data.fill_(float("nan"))
        torch.save(checkpoint, poisoned)
        return self.failed_with("nan", ["training"], {**TRAINING, "epochs": 2, "pretrained_model_params": [str(poisoned)]},
                                300201)

    def out_of_memory(self) -> str:
        if not self.gpu:
            return "skipped without a GPU"
        # Ultralytics halves the batch up to 3 times on a first-epoch OOM (64 -> 8 images here); yolo11x needs
        # about 1 GB per image at 640 px, so 8 images at 4096 px (~40x the pixels) still cannot fit in 141 GB.
        config = {**TRAINING, "model": "yolo11x", "epochs": 1, "img_size": 4096, "batch_size_per_gpu": 4096,
                  "num_workers_per_gpu": 4}
        return self.failed_with("oom", ["training"], config, 300103)


def last_line(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return re.sub(r"^\S+ \S+ (INFO|ERROR|WARNING) ", "", text)


def mining_line(log: str) -> str:
    found = re.search(r"mining done \((\w+)\): (\d+) images scored, (\d+) ranked last", log)
    assert found, "no mining summary in the log"
    return found.group(0)


def chosen(steps: list, only: str) -> list:
    """The steps ``--only`` names (by their ``STEPS`` key), in its order: a call cut by its time limit has run the
    checks it put first. Training runs first whatever it says: the others need its model."""
    order = ["training", *[key for key in only.split(",") if key != "training"]]
    if unknown := sorted(set(order) - set(STEPS)):
        raise SystemExit(f"gpu-check: --only: unknown {', '.join(unknown)} (known: {', '.join(dict.fromkeys(STEPS))})")
    keyed = [(order.index(key), i, step) for i, (step, key) in enumerate(zip(steps, STEPS, strict=True)) if key in order]
    return [step for _, _, step in sorted(keyed)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="0", help="the GPU number to use")
    parser.add_argument("--keep", type=Path, help="keep every run's log in this folder")
    parser.add_argument("--allow-cpu", action="store_true", help="rehearse on CPU (proves nothing about CUDA)")
    parser.add_argument("--only", help="comma-separated check names, run in this order (training always runs, first): "
                        + ",".join(dict.fromkeys(STEPS)))
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        if not args.allow_cpu:
            print("gpu-check: no CUDA device is visible (torch.cuda.is_available() is False); nothing was checked")
            return 2
        gpu = ""
        print("gpu-check: REHEARSAL ON CPU (--allow-cpu): proves nothing about CUDA")
    else:
        gpu = args.gpu
        print(f"gpu-check: {torch.cuda.get_device_name(int(gpu))}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = sample.generate(Path(tmp), train=64, val=16, candidates=48)
        check = Check(root, gpu, args.keep)
        steps: list[tuple[str, Callable[[], str]]] = [
            ("training, AMP, 3 epochs", check.train_amp),
            ("fine-tuning from it", check.fine_tune),
            ("infer half: false", lambda: check.infer(False)),
            ("infer half: true", lambda: check.infer(True)),
            ("infer gpu_decode: true, real-sized mixed JPEGs", check.gpu_decode),
            ("nvJPEG stream hazard", check.decode_hazard),
            *[(f"mining {a}, half: true", lambda a=a: check.mine(a)) for a in ALGORITHMS],
            ("mining + infer, half: true", check.mine_and_infer),
            ("sliced mining + infer, real-sized JPEGs", check.sliced),
            ("two shards (on GPUs 0 and 1 when there are two)", check.two_shards),
            ("Docker's default 64 MB /dev/shm: training and mining + infer", check.small_shm),
            ("first-epoch NaN -> 300201", check.nan_first_epoch),
            ("out of memory -> 300103", check.out_of_memory),
        ]
        if args.only:
            steps = chosen(steps, args.only)
        failed = 0
        for name, step in steps:
            began = time.time()
            try:
                detail, status = step(), "PASS"
            except Exception as exc:  # noqa: BLE001 - every check reports, the next one still runs
                detail, status = f"{type(exc).__name__}: {exc}", "FAIL"
                failed += 1
                if not isinstance(exc, AssertionError):
                    traceback.print_exc()
                if not check.models and name.startswith("training"):
                    print(f"{status} {name} ({time.time() - began:.0f} s): {detail}")
                    print("gpu-check: training failed, the other checks need its model")
                    return 1
            print(f"{status} {name} ({time.time() - began:.0f} s): {detail}", flush=True)
    print(f"gpu-check: {len(steps) - failed} passed, {failed} failed in {time.time() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
