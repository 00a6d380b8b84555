"""The error codes the platform knows, the error users can act on, and how any exception maps to a code."""

from __future__ import annotations

import errno
import os
import re
import traceback
from enum import IntEnum


class ErrorCode(IntEnum):
    """Error codes the platform knows (written to monitor.txt on failure)."""

    CONFIG = 300001
    DATASET = 300002
    IMAGE = 300003
    MODEL = 300004
    OBJECT_TYPE = 300005
    CUDA = 300101
    NO_GPU = 300102
    OUT_OF_MEMORY = 300103
    NAN_LOSS = 300201


# torch's words when a DataLoader worker cannot put a batch into /dev/shm, or is killed on touching it. The
# errno after a shared-memory file's name varies with the torch version: 2.14 says "No space left on device",
# 2.11 "No such file or directory" for the same full /dev/shm, older ones "unable to write to file </torch_…>"
SHARED_MEMORY_FULL = re.compile(r"shared memory\S*( for file \S+)?: no space left|out of shared memory"
                                r"|unable to (allocate shared memory\S* for|write to) file </torch_")

# torch's words when a DataLoader worker or a spawned scan shard vanished without a Python error: on Linux that
# is a signal, and a SIGKILL of a child while its parent lives is, in practice, the kernel's out-of-memory killer
WORKER_KILLED = re.compile(r"dataloader worker \(pid(\(s\))? [\d, ]+\) (exited unexpectedly|is killed by signal: "
                           r"killed)|terminated with signal sigkill")


class YmirError(Exception):
    """A failure the user can act on: a code for the platform, a sentence for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message


def config_error(message: str) -> YmirError:
    return YmirError(ErrorCode.CONFIG, message)


def dataset_error(message: str) -> YmirError:
    return YmirError(ErrorCode.DATASET, message)


def model_error(message: str) -> YmirError:
    return YmirError(ErrorCode.MODEL, message)


def lost_a_worker(exc: BaseException) -> bool:
    """Whether ``exc`` is the main process's end of a pipe or socket to a child process (a DataLoader worker, a
    scan shard) that closed under it: what a worker the kernel killed shows when the main process was reading
    from it (a batch's file descriptors, its queue) instead of DataLoader's "worker killed" RuntimeError.
    Only from multiprocessing's code: the executor opens no other connection."""
    if not isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
        return False
    return any(f"{os.sep}multiprocessing{os.sep}" in frame.f_code.co_filename  # no source read: no I/O here
               for frame, _ in traceback.walk_tb(exc.__traceback__))


def classify_exception(exc: BaseException) -> tuple[ErrorCode, str]:
    """Map any exception to the platform's error code and a plain message."""
    if isinstance(exc, YmirError):
        return exc.code, " ".join(exc.message.split())
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    lowered = text.lower()
    if SHARED_MEMORY_FULL.search(lowered):  # a DataLoader worker's: torch's own words, whatever the exception
        return (
            ErrorCode.OUT_OF_MEMORY,
            "the container's shared memory (/dev/shm) is full: give the task more (YMIR: shm_size in its config; "
            "docker run: --shm-size 8g), or lower num_workers_per_gpu or batch_size_per_gpu",
        )
    if WORKER_KILLED.search(lowered) or lost_a_worker(exc):
        return (
            ErrorCode.OUT_OF_MEMORY,
            f"a worker process died without an error of its own ({text[:120]}), most likely killed by the kernel for "
            "lack of memory: give the container more memory, or lower num_workers_per_gpu or batch_size_per_gpu",
        )
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "outofmemory" in lowered:
        return (
            ErrorCode.OUT_OF_MEMORY,
            f"out of memory ({text[:200]}); lower batch_size_per_gpu or img_size, "
            "or num_workers_per_gpu",
        )
    if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
        return (ErrorCode.MODEL, f"too many open files ({text[:160]}): raise the container's open-file limit (docker "
                "run --ulimit nofile=65536:65536), or lower num_workers_per_gpu")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ErrorCode.MODEL, f"no space left on the output disk ({text[:200]}); free space where /out is mounted"
    if "cuda" in lowered or "cudnn" in lowered or "nccl" in lowered:
        return ErrorCode.CUDA, f"CUDA failure ({text[:200]}); check the GPU driver and gpu_id"
    if re.search(r"\bnan\b", lowered):
        return ErrorCode.NAN_LOSS, f"training diverged ({text[:200]}); lower lr0 or check the annotations"
    # An internal error is reported as a model error: it is the code nearest to
    # "the algorithm failed", and the log above it holds the traceback.
    return ErrorCode.MODEL, f"unexpected error: {text[:300]}"
