"""How many image-decoding processes a scan starts: from the CPUs this process may use, not the machine's, and
as many as fit in its shared memory."""

from __future__ import annotations

import os

import pytest
from executor import runtime


def no_cgroup(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "CGROUP_CPU_MAX", str(tmp_path / "none"))
    monkeypatch.setattr(runtime, "CGROUP_V1_QUOTA", str(tmp_path / "none-v1"))


def test_usable_cpus_follow_the_affinity_mask(monkeypatch, tmp_path):
    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5, 7})
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    assert runtime.usable_cpus() == 3


def test_usable_cpus_follow_the_container_quota(monkeypatch, tmp_path):
    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs -> 3
    monkeypatch.setattr(runtime, "CGROUP_CPU_MAX", str(tmp_path / "cpu.max"))
    assert runtime.usable_cpus() == 3
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime.usable_cpus() == 64
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("800000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    monkeypatch.setattr(runtime, "CGROUP_CPU_MAX", str(tmp_path / "none"))
    monkeypatch.setattr(runtime, "CGROUP_V1_QUOTA", str(v1 / "cpu.cfs_quota_us"))
    assert runtime.usable_cpus() == 8


def test_decode_workers_share_the_cpus_among_the_gpus(monkeypatch, tmp_path):
    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert runtime.decode_workers(-1, 8) == 8 and runtime.decode_workers(-1, 1) == 16 and runtime.decode_workers(-1, 0) == 16
    assert runtime.decode_workers(4, 8) == 4 and runtime.decode_workers(0, 1) == 0
    assert runtime.decode_workers(16, 8) == 8  # a number asked for is shared among the GPUs too, as in training
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert runtime.decode_workers(-1, 1) == 2 and runtime.decode_workers(-1, 8) == 1 and runtime.decode_workers(6, 1) == 2
    assert runtime.decode_workers(6, 8) == 0  # fewer CPUs than GPUs: loading in the main process


def test_training_mining_and_infer_share_one_worker_rule(monkeypatch, tmp_path):
    """An explicit num_workers_per_gpu is capped by the same share of the CPUs in every task: training's loaders
    (``train.loader_workers``) and the scan's (``scan.run`` takes ``runtime.decode_workers``), and -1 means the
    same in the training template as in the others."""
    from executor import protocol
    from executor.train import TrainSettings, loader_workers

    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 64 << 30)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)))
    # 12 CPUs: -1 is the share (12, 6, 3 per GPU), a number at most the share, in training as in the scan
    expected = {(-1, 1): 12, (-1, 2): 6, (-1, 4): 3, (0, 1): 0, (2, 4): 2, (5, 4): 3, (8, 1): 8, (8, 2): 6, (40, 1): 12}
    for (asked, gpus), workers in expected.items():
        settings = TrainSettings.read(protocol.Params(protocol.load_template("training"), {"num_workers_per_gpu": asked}))
        assert loader_workers(settings, gpus) == workers == runtime.decode_workers(asked, gpus), (asked, gpus)


def test_workers_are_as_many_as_fit_in_shared_memory(caplog):
    mb = 1 << 20
    fit = runtime.workers_in_shared_memory
    assert fit(4, 10 * mb, 20 * mb, free=16 << 30) == 4  # YMIR's 16 GB: all of them, nothing said
    assert not caplog.records
    assert fit(4, 10 * mb, 20 * mb, free=60 * mb) == 2  # 0.75 x 60 = 45 MB: 20 for the main process, 2 x 10
    assert "too little for 4 data-loading workers" in caplog.text and "shm_size" in caplog.text
    assert fit(4, 10 * mb, 20 * mb, free=60 * mb, processes=2) == 0  # two shards: 22.5 MB each
    assert fit(4, 10 * mb, 20 * mb, free=mb) == 0
    assert fit(0, 10 * mb, 20 * mb, free=mb) == 0 and fit(4, 0, 0, free=0) == 4  # nothing to fit: as asked
    assert isinstance(runtime.shared_memory_free(), int)


def test_training_counts_ultralytics_loaders_on_a_gpu_and_the_sliced_evaluation_anywhere(monkeypatch):
    from executor import protocol
    from executor.train import TrainSettings, loader_workers

    def settings(**values):
        return TrainSettings.read(protocol.Params(protocol.load_template("training"), values))

    template = settings()  # batch 16 at 640 px: 19.7 MB a batch; 8 workers asked
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 64)  # a GPU node: the CPUs do not cap here
    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 64 << 20)  # Docker's default
    assert loader_workers(template, gpus=1) == 0  # one worker alone holds 12 batches in Ultralytics' loaders
    assert loader_workers(template, gpus=0) == template.num_workers_per_gpu  # no shared memory counted on the CPU
    assert loader_workers(settings(slice_size=640), gpus=0) == 0  # the stage evaluation's loader does
    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 16 << 30)  # YMIR's default shm_size, one GPU
    assert loader_workers(template, gpus=1) == template.num_workers_per_gpu
    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 2 << 30)  # --shm-size 2g, for 8 GPUs
    assert loader_workers(settings(batch_size_per_gpu=4), gpus=8) == 3  # 192 MB each: (192 - 14.7) / 59 MB


def test_cpu_threads_are_ultralytics_count_of_the_containers_cpus(monkeypatch, tmp_path):
    """Ultralytics' predictor runs min(8, os.cpu_count() - 1) threads: 8 on a big node whatever the container may
    use. The engine takes the same formula of the usable CPUs."""
    from executor import ultra

    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.setattr(ultra, "cpu_threads", lambda: 8)  # Ultralytics' count on that node
    for cpus, threads in ((1, 1), (2, 1), (6, 5), (9, 8), (128, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
        assert runtime.cpu_threads() == threads, cpus


def test_training_loaders_on_gpus_have_no_more_workers_than_the_containers_cpus(monkeypatch, tmp_path, caplog):
    """Ultralytics caps its loaders' workers at ``os.cpu_count() // GPUs``: the node's cores. A container limited
    to 6 CPUs (affinity or quota) on that node gets at most 6 // GPUs workers per GPU, and the log says so; the
    template's default is Ultralytics' own, 8."""
    import logging

    from executor import protocol
    from executor.train import TrainSettings, loader_workers

    def settings(**values):
        return TrainSettings.read(protocol.Params(protocol.load_template("training"), values))

    monkeypatch.setattr(runtime, "shared_memory_free", lambda: 64 << 30)  # plenty: only the CPUs cap
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    assert settings().num_workers_per_gpu == 8
    with caplog.at_level(logging.INFO, logger="executor"):
        assert loader_workers(settings(), gpus=1) == 6
    assert "8: 6 data-loading workers per device, the CPUs this container may use (6) shared among 1 device(s)" in caplog.text
    assert loader_workers(settings(), gpus=2) == 3
    assert loader_workers(settings(), gpus=8) == 0  # fewer CPUs than GPUs: loading in the main process, as Ultralytics does
    assert loader_workers(settings(num_workers_per_gpu=2), gpus=2) == 2  # what fits stays as asked
    assert loader_workers(settings(), gpus=0) == 6  # as the scan's rule (on the CPU Ultralytics' trainer starts none)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(128)))
    assert loader_workers(settings(), gpus=1) == 8


def test_the_sliced_stage_evaluation_decodes_with_no_more_workers_than_cpus(monkeypatch, tmp_path):
    """Training's whole-image stage mAP (slicing) decodes in as many workers as the scan would: the usable CPUs
    cap ``num_workers_per_gpu`` (8 by default; 2 usable CPUs here)."""
    import json

    from executor import dataset, protocol
    from executor.train import TrainSettings, stage_map

    no_cgroup(monkeypatch, tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / dataset.VAL_TRUTH).write_text(json.dumps([]))
    settings = TrainSettings.read(protocol.Params(protocol.load_template("training"), {"slice_size": 640}))
    assert settings.num_workers_per_gpu == 8
    assert stage_map(settings, ["a"], "cpu", tmp_path).keywords["workers"] == 2


def test_cpu_training_epochs_run_at_the_engines_thread_count(monkeypatch):
    """Ultralytics' trainer and its final validation set torch to min(8, os.cpu_count() - 1) threads (the node's
    cores); each epoch and each validation on the CPU start at ``runtime.cpu_threads`` instead. A GPU trainer's
    CPU threads are left alone."""
    from types import SimpleNamespace

    import torch
    from executor import callbacks

    report = SimpleNamespace(batches_done=7)
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(runtime, "cpu_threads", lambda: 1)
        torch.set_num_threads(3)  # what Ultralytics' select_device would set on a 4-core node
        callbacks.on_train_epoch_start(report, SimpleNamespace(device=torch.device("cpu")))
        assert torch.get_num_threads() == 1 and report.batches_done == 0
        torch.set_num_threads(3)  # the final validation's select_device again
        callbacks.on_val_start(report, SimpleNamespace(device=torch.device("cpu")))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        callbacks.on_train_epoch_start(report, SimpleNamespace(device=torch.device("cuda", 0)))
        callbacks.on_val_start(report, SimpleNamespace(device=torch.device("cuda", 0)))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def probe(count=0, torch_cuda="13.0", driver="", driver_cuda="", said=""):
    return runtime.GpuProbe(count, torch_cuda, driver, driver_cuda, said)


def test_gpus_asked_for_and_not_usable_fail_with_what_was_seen_and_what_to_change():
    """gpu_id asks for GPUs: a driver too old for the image's CUDA 13 is 300101 naming both versions, no GPU in the
    container is 300102; neither runs on the CPU. An empty gpu_id is the CPU, without a probe."""
    import pytest
    from executor.protocol import ErrorCode, YmirError

    assert runtime.select_device([], probe=None) == ("cpu", 0)
    too_old = probe(driver="535.104.05", driver_cuda="12.2",
                    said="CUDA initialization: The NVIDIA driver on your system is too old (found version 12020).")
    with pytest.raises(YmirError) as info:
        runtime.select_device([0], too_old)
    assert info.value.code == ErrorCode.CUDA == 300101
    for words in ("gpu_id '0'", "NVIDIA driver 535.104.05", "CUDA up to 12.2", "built for CUDA 13.0", "too old",
                  "to 580.65 or newer", "gpu_id empty"):
        assert words in info.value.message, words
    with pytest.raises(YmirError) as info:
        runtime.select_device([0, 1], probe())
    assert info.value.code == ErrorCode.NO_GPU == 300102
    assert "gpu_id '0,1'" in info.value.message and "none is visible" in info.value.message
    assert runtime.select_device([0, 1], probe(count=2)) == ("0,1", 2)
    assert runtime.select_device([0, 3], probe(count=2)) == ("0", 1)  # some of them: those, with a warning


@pytest.mark.parametrize("visible, asked, code, words", [
    (0, [1], 300102, ["gpu_id '1'", "none is visible", "no NVIDIA driver loaded"]),
    (1, [1], 300102, ["gpu_id '1'", "it sees 1 GPU (index 0)", "NVIDIA driver 580.82", "set gpu_id to visible indices"]),
    (2, [2, 3], 300102, ["gpu_id '2,3'", "it sees 2 GPUs (indices 0-1)", "NVIDIA driver 580.82"]),
])
def test_a_gpu_index_the_container_does_not_see_names_the_visible_ones(visible, asked, code, words):
    """Issue 44: one visible GPU and gpu_id '1' said no GPU was visible and no driver loaded. With 0, 1 and 2
    visible GPUs (the probe faked), the message names what the container sees and the driver it found."""
    import pytest
    from executor.protocol import YmirError

    seen = probe(count=visible, driver="580.82" if visible else "", driver_cuda="13.0" if visible else "")
    with pytest.raises(YmirError) as info:
        runtime.select_device(asked, seen)
    assert info.value.code == code
    for text in words:
        assert text in info.value.message, (text, info.value.message)


def test_some_gpus_not_seen_are_named_in_a_warning(caplog):
    assert runtime.select_device([0, 1, 2], probe(count=2, driver="580.82")) == ("0,1", 2)
    assert "GPUs [2], which the container does not see (it sees 2 GPUs (indices 0-1)); using [0, 1]" in caplog.text


def test_the_probe_reads_this_machine():
    """What the probe says of this machine is what torch and the driver's own files say."""
    import torch

    seen = runtime.probe_gpus()
    assert seen.count == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert seen.torch_cuda == torch.version.cuda
    assert (seen.driver, seen.driver_cuda) == runtime._driver_versions()


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(caplog):
    """In a child process (the limit is the process's): soft 256 under hard 4096 becomes 4096, logged."""
    import subprocess
    import sys

    code = ("import logging, resource, sys; sys.path.insert(0, 'app'); from executor import runtime; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)); runtime.setup_logging(); "
            "runtime.raise_open_file_limit(); print(resource.getrlimit(resource.RLIMIT_NOFILE))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=runtime.Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "(4096, 4096)" in proc.stdout and "open-file limit raised from 256 to 4096" in proc.stdout


def test_releasing_the_freed_heap_hands_its_holes_back():
    """In a child process: 2,000 blocks of 128 KB from the heap, of which every tenth stays in use (as a few
    objects a pass keeps do among its tensors): the 1,800 freed stay resident until ``release_freed_heap``."""
    import subprocess
    import sys

    code = """if True:
        import ctypes, sys
        sys.path.insert(0, 'app')
        from executor import runtime
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks under 1 MB from the heap, as once glibc freed one
        def rss():
            return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmRSS:')) >> 10
        blocks = [libc.malloc(128 << 10) for _ in range(2000)]
        for block in blocks:
            ctypes.memset(block, 1, 128 << 10)
        for i, block in enumerate(blocks):
            if i % 10:
                libc.free(block)
        before = rss()
        print(runtime.release_freed_heap(), before, rss())
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=runtime.Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    released, before, after = proc.stdout.split()
    assert released == "True" and int(before) - int(after) > 150, proc.stdout  # MB: of the 225 freed
