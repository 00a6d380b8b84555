"""Run-time hygiene: air-gapped, non-root, no home directory, /in read-only.

``setup`` must run before torch, matplotlib or ultralytics are imported: they
read these variables at import time.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from executor import ultra

LOG = logging.getLogger("executor")

_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # ultralytics: no online checks, no downloads
    "YOLO_AUTOINSTALL": "false",  # ultralytics: never pip-install at run time
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
    "HF_HUB_OFFLINE": "1",
    "TORCH_HUB_DISABLE_AUTOFETCH": "1",
    "WANDB_MODE": "disabled",
    "MLFLOW_TRACKING_URI": "",
    "PYTHONUNBUFFERED": "1",
}


def _writable(path: str | None) -> bool:
    return bool(path) and os.path.isdir(path) and os.access(path, os.W_OK)


def setup(cache_root: str | None = None) -> Path:
    """Point every settings and cache directory at a writable place and go offline.

    ``cache_root`` defaults to a fresh temp dir: caches never go under /in, and
    with no writable $HOME (the platform runs ``--user uid:gid``) a temp dir works.
    That temp dir is removed when the process exits (the fonts copied there are
    1.5 MB, and a developer's machine runs the image's code many times).
    """
    if cache_root is None:
        cache_root = tempfile.mkdtemp(prefix="ymir-executor-")
        atexit.register(shutil.rmtree, cache_root, ignore_errors=True)
    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    dirs = {
        "YOLO_CONFIG_DIR": root / "ultralytics",
        "MPLCONFIGDIR": root / "matplotlib",
        "TORCH_HOME": root / "torch",
        "XDG_CACHE_HOME": root / "cache",
        "XDG_CONFIG_HOME": root / "config",
        "TRITON_CACHE_DIR": root / "triton",
        "TORCHINDUCTOR_CACHE_DIR": root / "torchinductor",  # else $TMPDIR/torchinductor_<user>, left behind
    }
    for key, path in dirs.items():
        if not _writable(os.environ.get(key)):
            path.mkdir(parents=True, exist_ok=True)
            os.environ[key] = str(path)
    if not _writable(os.environ.get("HOME")):
        os.environ["HOME"] = str(root)
    _install_fonts(Path(os.environ["YOLO_CONFIG_DIR"]))
    allow_large_images()
    return root


def allow_large_images() -> None:
    """Lift PIL's decompression-bomb guard (an error above 179 MP, a warning above 89 MP): it protects
    services that open strangers' uploads, while this executor opens the user's own dataset, where a
    200 MP orthophoto or panorama is ordinary (slicing exists for them). With the guard, such an image
    ended the training conversion with an error and was dropped by Ultralytics' label check as corrupt.
    OpenCV, which decodes the pixels, has its own limit of 2^30 pixels."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def _install_fonts(config_dir: Path) -> None:
    """Ultralytics looks for Arial.ttf in its settings folder for plots, and asks the network for it when it
    is missing (a 3 s request each time, in an air-gapped cluster); give it a local font there instead."""
    try:
        import matplotlib

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except Exception:  # noqa: BLE001 - plots then fall back to PIL's default font
        return
    if not font.is_file():
        return
    target_dir = config_dir / ultra.SETTINGS_SUBDIR
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in ultra.FONTS:
        target = target_dir / name
        if not target.exists():
            shutil.copyfile(font, target)


def setup_logging() -> None:
    """One stream, plain lines: the platform appends stdout to ymir-executor-out.log."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    LOG.handlers[:] = [handler]
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def select_device(gpu_ids: list[int]) -> tuple[str, int]:
    """The device string for torch/ultralytics and the number of GPUs used.

    A GPU asked for but absent is a warning and CPU, not a crash.
    """
    import torch

    if not gpu_ids:
        return "cpu", 0
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    usable = [g for g in gpu_ids if g < available]
    if not usable:
        LOG.warning("gpu_id asks for GPU %s but %d GPU(s) are visible: running on CPU", gpu_ids, available)
        return "cpu", 0
    if len(usable) < len(gpu_ids):
        LOG.warning("GPUs %s are not visible; using %s", sorted(set(gpu_ids) - set(usable)), usable)
    return ",".join(str(g) for g in usable), len(usable)


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "<quota> <period>" or "max <period>"
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"  # cgroup v1: -1 for none


def _cgroup_cpus() -> int | None:
    """CPUs the container's CPU quota allows (rounded up), or None without a quota."""
    try:
        quota, period = Path(CGROUP_CPU_MAX).read_text().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path(CGROUP_V1_QUOTA).read_text())
        period = int(Path(CGROUP_V1_QUOTA).with_name("cpu.cfs_period_us").read_text())
        return None if quota <= 0 else max(1, -(-quota // period))
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask and its container's CPU quota, not the machine's
    count (``os.cpu_count`` sees all 128 cores of a node on which a container may use 8)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(count, quota) if quota else count)


def cpu_threads() -> int:
    """torch's CPU threads for the forward pass: Ultralytics' predictor's count, min(8, CPUs - 1), of the CPUs
    this container may use. Ultralytics counts the node's cores: under a 1-CPU quota its 8 threads ran infer
    1.17x slower than 1 (``bench/cpu_threads.py``, docs/benchmarks.md, section 1)."""
    return min(ultra.cpu_threads(), max(1, usable_cpus() - 1))


SHARED_MEMORY = "/dev/shm"  # where DataLoader workers put the tensors they hand to the main process
SHARED_MEMORY_SHARE = 0.75  # of its free space at the start that the loaders may plan to use
SHARED_MEMORY_ADVICE = "give the container more shared memory (YMIR: shm_size in the task's config; docker run: --shm-size 8g)"


def shared_memory_free() -> int | None:
    """Free bytes in the container's shared memory (Docker's default is 64 MB; YMIR gives ``shm_size``, 16 GB
    per GPU by default), or None where there is none to measure."""
    try:
        stat = os.statvfs(SHARED_MEMORY)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def shared_memory_fit(workers: int, per_worker: int, fixed: int, processes: int = 1, free: int | None = None) -> int:
    """How many of ``workers`` fit (``workers_in_shared_memory``), without a word in the log."""
    free = shared_memory_free() if free is None else free
    if workers <= 0 or per_worker <= 0 or free is None:
        return workers
    budget = SHARED_MEMORY_SHARE * free / max(1, processes)
    return min(workers, max(0, int((budget - fixed) // per_worker)))


def workers_in_shared_memory(workers: int, per_worker: int, fixed: int, processes: int = 1,
                             free: int | None = None) -> int:
    """At most ``workers`` DataLoader workers, as many as fit in shared memory: each holds up to ``per_worker``
    bytes of tensors there, the main process up to ``fixed``, and ``processes`` such loaders share it. Why: a
    worker whose batch finds /dev/shm full loses it, and the main process waits for it forever (YMIR has no
    timeout); with no workers, nothing goes through shared memory. Fewer workers are slower, so the log says
    how to give the container more. ``free`` defaults to ``shared_memory_free()``."""
    free = shared_memory_free() if free is None else free
    fit = shared_memory_fit(workers, per_worker, fixed, processes, free)
    if fit >= workers:
        return workers
    mb = 1 << 20
    LOG.warning("%s has %d MB free%s, too little for %d data-loading workers (up to %d MB each, %d MB for the main "
                "process): using %d, which is slower; %s", SHARED_MEMORY, free // mb,
                f" for {processes} processes" if processes > 1 else "", workers, -(-per_worker // mb),
                -(-fixed // mb), fit, SHARED_MEMORY_ADVICE)
    return fit


def decode_workers(asked: int, devices: int) -> int:
    """Image-decoding processes per device: ``asked``, or with -1 the usable CPUs shared among the devices
    (at most 16 each); never more than the usable CPUs."""
    cpus = usable_cpus()
    if asked < 0:
        return max(1, min(16, cpus // max(1, devices)))
    return min(asked, cpus)


def ignore_dead_workers() -> None:
    """On the failure path: no more errors from worker processes that die now. torch's SIGCHLD handler (set by
    every DataLoader with workers) raises in the main thread wherever it lands when a worker has died, so a
    killed worker whose loss first reached the main process another way (its connection reset) raised again
    inside the error handling, and the task's last line and monitor.txt could be lost. A second raise while
    turning it off is swallowed: the first error is the one reported."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGCHLD"):
        return
    for _ in range(3):
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return
        except Exception:  # noqa: BLE001 - the handler's own raise, landing here
            continue
