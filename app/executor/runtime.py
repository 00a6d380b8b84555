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
from dataclasses import dataclass
from pathlib import Path

from executor import ultra
from executor.protocol import ErrorCode, YmirError

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
    raise_open_file_limit()
    return root


def release_freed_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``); False where the C library has
    none (musl). Why: glibc serves a pass's tensors of up to 32 MB from its heap once it has freed one that size
    (its threshold for mapping a block on its own adapts upward), and the few small objects each pass keeps land
    among them, so the holes they leave stay resident: the scan's RSS grew with the pool, 1.54x from 20,000 to
    100,000 candidates (docs/benchmarks.md section 3). A trim returns the holes' pages and changes nothing in how
    memory is handed out; a low fixed threshold kept the heap flat too, at 1.77x the time."""
    import ctypes

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


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


CUDA_DRIVER_VERSION = "/proc/driver/nvidia/version"  # the kernel module's version line, where a driver is loaded
CUDA_13_DRIVER = "580.65"  # the oldest Linux driver that runs CUDA 13.x (NVIDIA's CUDA compatibility table)


@dataclass
class GpuProbe:
    """What this process sees of the GPUs: how many CUDA can use, and the versions to name when it can use none."""

    count: int
    torch_cuda: str | None  # the CUDA runtime this image's torch is built for ('13.0'); None for a CPU-only build
    driver: str  # the NVIDIA kernel module's version ('' when no driver is loaded in this container)
    driver_cuda: str  # the newest CUDA the driver supports ('12.2'; '' when unknown)
    said: str  # what torch warned while probing (its words for a driver too old), '' when nothing


def _driver_versions() -> tuple[str, str]:
    """(kernel module version, newest CUDA the driver supports), each '' when it cannot be read. From the
    driver's own files, without initialising CUDA: libcuda's ``cuDriverGetVersion`` needs no context."""
    import ctypes
    import re

    try:
        found = re.search(r"Kernel Module\s+([\d.]+)", Path(CUDA_DRIVER_VERSION).read_text())
        module = found.group(1) if found else ""
    except OSError:
        module = ""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) != 0:
            return module, ""
        return module, f"{version.value // 1000}.{version.value % 1000 // 10}"
    except (OSError, AttributeError):
        return module, ""


def probe_gpus() -> GpuProbe:
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    driver, driver_cuda = _driver_versions()  # read whatever the count: a missing GPU is named with them
    words = " ".join(" ".join(str(w.message).split()) for w in said if "cuda" in str(w.message).lower())
    return GpuProbe(count, torch.version.cuda, driver, driver_cuda, words[:300])


def visible(probe: GpuProbe) -> str:
    """The GPUs the container sees, as a message names them: '1 GPU (index 0)', '2 GPUs (indices 0-1)'."""
    if probe.count == 1:
        return "1 GPU (index 0)"
    return f"{probe.count} GPUs (indices 0-{probe.count - 1})"


def no_usable_gpu(gpu_ids: list[int], probe: GpuProbe) -> YmirError:
    """The failure when ``gpu_id`` asks for GPUs and CUDA can use none of them: 300102 when the container sees
    GPUs but not those (the message names the visible indices), 300101 when a driver is there but CUDA cannot run
    on it (in practice a driver older than the image's CUDA), 300102 when no GPU reached the container at all;
    the message names what was seen and what to change. Why not the CPU: a YMIR task given GPUs would train for
    days there, with one warning line in a long log."""
    asked = ",".join(map(str, gpu_ids))
    built = f"this image's torch is built for CUDA {probe.torch_cuda}" if probe.torch_cuda else "this image's torch has no CUDA"
    cpu = "or set gpu_id empty (gpu_count 0) to run on the CPU, far slower"
    if probe.count:
        driver = f"NVIDIA driver {probe.driver}" if probe.driver else "the NVIDIA driver"
        return YmirError(ErrorCode.NO_GPU, f"gpu_id '{asked}' asks for GPUs the container does not see: it sees "
                         f"{visible(probe)} ({driver}); set gpu_id to visible indices or start the container with "
                         f"those GPUs, {cpu}")
    if not probe.driver and not probe.driver_cuda:
        return YmirError(ErrorCode.NO_GPU, f"gpu_id '{asked}' asks for GPUs but none is visible in the container (no "
                         f"NVIDIA driver loaded; {built}): start it with the GPUs (nvidia-docker, docker run --gpus), "
                         f"{cpu}")
    seen = f"NVIDIA driver {probe.driver or 'of unknown version'}" + (
        f" (supports CUDA up to {probe.driver_cuda})" if probe.driver_cuda else "")
    fix = (f"update the node's NVIDIA driver to {CUDA_13_DRIVER} or newer" if (probe.torch_cuda or "").startswith("13.")
           else "update the node's NVIDIA driver to one that supports it")
    said = f"; torch said: {probe.said}" if probe.said else ""
    return YmirError(ErrorCode.CUDA, f"gpu_id '{asked}' asks for GPUs but CUDA can use none: {seen}, {built}{said}; "
                     f"{fix}, {cpu}")


def select_device(gpu_ids: list[int], probe: GpuProbe | None = None) -> tuple[str, int]:
    """The device string for torch/ultralytics and the number of GPUs used. An empty ``gpu_id`` is the CPU;
    GPUs asked for of which CUDA can use none is a failure (``no_usable_gpu``), some of them a warning."""
    if not gpu_ids:
        return "cpu", 0
    probe = probe_gpus() if probe is None else probe
    usable = [g for g in gpu_ids if g < probe.count]
    if not usable:
        raise no_usable_gpu(gpu_ids, probe)
    if len(usable) < len(gpu_ids):
        LOG.warning("gpu_id asks for GPUs %s, which the container does not see (it sees %s); using %s",
                    sorted(set(gpu_ids) - set(usable)), visible(probe), usable)
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
    1.15x slower than 1 (``bench/cpu_threads.py``, docs/benchmarks.md, section 1)."""
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
    """Data-loading (image-decoding) processes per device, one rule for training, mining and infer: the CPUs this
    container may use (``usable_cpus``) are shared among the ``devices`` (GPUs; the CPU counts as one); -1 takes
    that share (at most 16), a number asks for that many, at most the share (0 with fewer CPUs than GPUs:
    loading in the main process, as Ultralytics does). The log says when a number asked for is lowered."""
    cpus, devices = usable_cpus(), max(1, devices)
    if asked < 0:
        return max(1, min(16, cpus // devices))
    share = cpus // devices
    if asked > share:
        LOG.info("num_workers_per_gpu %d: %d data-loading workers per device, the CPUs this container may use (%d) "
                 "shared among %d device(s)", asked, share, cpus, devices)
    return min(asked, share)


OPEN_FILES_CAP = 1 << 16  # the soft open-file limit ``raise_open_file_limit`` asks for at most


def raise_open_file_limit() -> None:
    """The soft open-file limit raised to the hard one (at most ``OPEN_FILES_CAP``), as the process may do
    itself: containers often start with a soft limit of 1024 under a far higher hard one, and every DataLoader
    worker, queue and shared tensor in transit is an open file somewhere. Logged when raised."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CAP if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CAP)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return
        LOG.info("open-file limit raised from %d to %d (the hard limit is %s)", soft, target,
                 "unlimited" if hard == resource.RLIM_INFINITY else hard)


def share_memory_by_name() -> None:
    """DataLoader workers hand tensors over in shared memory named by file, not by open descriptor. Under
    torch's default ``file_descriptor`` strategy the main process holds one open descriptor per live shared
    tensor, and the scan holds one per decoded image in its queues and prefetched batches (workers x 2 x batch
    plus 6 batches): at batch 32 with 2 workers that is over 300, past a container's open-file limit ("Too
    many open files"; 1024 with 16 workers). By name, it holds none, whatever the batch or worker count; torch's
    ``torch_shm_manager`` removes what a killed process leaves. Also faster here (0.2 against 0.5 ms per small
    image handed over). Set in the process that starts the DataLoader: its forked workers inherit it."""
    import torch.multiprocessing

    if torch.multiprocessing.get_sharing_strategy() != "file_system":
        torch.multiprocessing.set_sharing_strategy("file_system")


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
