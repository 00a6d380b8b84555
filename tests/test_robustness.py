"""What real installations throw at the executor: each case completes (defect counted) or fails fast
with the right code and a last log line a user can act on. See docs/robustness.md."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY_INFER, TINY_TRAINING, model_files, run_task, sample, stage_recorder
from contract import check_infer_json, check_mining_tsv, check_monitor_error, check_result_yaml
from executor import callbacks
from small_shm import under_small_shm


def last_line(log: str) -> str:
    return [line for line in log.splitlines() if line.strip()][-1]


def test_gpu_requested_but_absent_fails_instead_of_running_on_the_cpu(trained, tmp_path):
    """This machine has no GPU: gpu_id '0' is 300102 with a last line saying what to change, not a task that runs
    for days on the CPU. The driver-too-old case (300101): ``test_runtime``, with the probe faked."""
    for task, values in (("infer", TINY_INFER), ("training", TINY_TRAINING)):
        root = sample.generate(tmp_path / task, train=2, val=1, candidates=2)
        rc, log = run_task(root, [task], {**values, "gpu_id": "0", "gpu_count": 1, "model_params_path": model_files(trained)})
        assert rc != 0, log[-2000:]
        message = check_monitor_error(str(root / "out" / "monitor.txt"), 300102)
        assert "gpu_id '0'" in message and "gpu_id empty" in last_line(log), last_line(log)


def test_mining_and_infer_at_batch_32_stay_within_a_low_open_file_limit(trained, tmp_path):
    """Decoded images in transit are shared tensors; under torch's default sharing strategy the main process held
    an open file per tensor (workers x 2 x batch plus its queues), and this run failed with "Too many open
    files" at ``ulimit -n 96`` on 2 cores. The limit is scaled to the decoding workers the machine starts (each
    is a few pipes of the main process's); plain and sliced, soft and hard limit alike (no raising helps)."""
    from executor import runtime

    workers = runtime.decode_workers(-1, 1)
    limit = 64 + 16 * workers
    root = sample.generate(tmp_path, train=1, val=1, candidates=200)
    paths = [p for p in (root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    for extra in ({}, {"slice_size": 48, "slice_overlap": 0.25}):
        rc, log = run_task(root, ["mining", "infer"], {"img_size": 64, "batch_size_per_gpu": 32, "mining_algorithm": "entropy",
                                                      "model_params_path": model_files(trained), **extra},
                           shell=f"ulimit -n {limit}")
        assert rc == 0, log[-3000:]
        assert "Too many open files" not in log
        check_mining_tsv(str(root / "out" / "result.tsv"), paths)
        check_infer_json(str(root / "out" / "infer-result.json"), paths, sample.CLASS_NAMES, legacy=False)


def test_no_writable_home_and_unknown_keys(trained, sample_root, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    env_path = sample.write_task(sample_root, ["infer"], {**TINY_INFER, "model_params_path": model_files(trained),
                                                         "some_old_key": 3})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "MPLCONFIGDIR", "XDG_", "TORCH", "TRITON_"))}
    temp = tmp_path / "temp"
    temp.mkdir()
    env.update({"HOME": "/nonexistent", "DEFAULT_ENV_FILE_PATH": str(env_path), "TMPDIR": str(temp)})
    proc = subprocess.run([sys.executable, str(ROOT / "app" / "start.py")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "config keys not used by this image (ignored): some_old_key" in proc.stdout
    assert not list(temp.iterdir()), "the settings and caches folder in the temp dir outlived the run"


def test_empty_candidate_index(trained, tmp_path):
    root = sample.generate(tmp_path, train=2, val=1, candidates=1)
    (root / "in" / "candidate-index.tsv").write_text("\n\n")
    rc, log = run_task(root, ["infer"], {**TINY_INFER, "model_params_path": model_files(trained)})
    assert rc != 0 and "lists no image" in check_monitor_error(str(root / "out" / "monitor.txt"), 300002)
    assert "lists no image" in last_line(log)


def test_missing_training_index(tmp_path):
    root = sample.generate(tmp_path, train=2, val=1, candidates=1)
    (root / "in" / "train-index.tsv").unlink()
    rc, log = run_task(root, ["training"], TINY_TRAINING)
    assert rc != 0 and "train-index.tsv does not exist" in check_monitor_error(str(root / "out" / "monitor.txt"), 300002)


def test_wrong_object_type(sample_root):
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, "object_type": 3})
    assert rc != 0 and "detection" in check_monitor_error(str(sample_root / "out" / "monitor.txt"), 300005)


def test_mining_and_infer_first_failure_reported_once(sample_root):
    rc, log = run_task(sample_root, ["mining", "infer"], {**TINY_INFER, "model_params_path": ["/missing/best.pt"]})
    assert rc != 0
    check_monitor_error(str(sample_root / "out" / "monitor.txt"), 300004)
    assert log.count("task failed (error") == 1


def test_no_task_requested(sample_root):
    rc, log = run_task(sample_root, [], {})
    assert rc != 0 and "run_training" in check_monitor_error(str(sample_root / "out" / "monitor.txt"), 300001)


def test_pretrained_model_with_other_classes_is_fine_tuned(trained, sample_root):
    """A yolo11n model trained on ['circle', 'square'] starts a training on ['square'] alone, while the
    template names another architecture: the checkpoint's architecture wins and its weights carry over."""
    import re

    import torch

    config = {**TINY_TRAINING, "epochs": 1, "save_period": 0, "class_names": ["square"], "model": "yolov8n",
              "pretrained_model_params": model_files(trained)}
    rc, log = run_task(sample_root, ["training"], config)
    assert rc == 0, log[-2000:]
    assert "pretrained weights:" in log and "(the best stage named by" in log
    assert "are a yolo11n model: training yolo11n (the template's model 'yolov8n' applies only when" in log
    done, total = map(int, re.search(r"Transferred (\d+)/(\d+) items", log).groups())
    assert done >= 0.95 * total, "fine-tuned, not trained from scratch"
    check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)
    checkpoint = torch.load(sample_root / "out" / "models" / "best.pt", weights_only=False)
    assert checkpoint["model"].yaml["yaml_file"] == "yolo11n.yaml" and checkpoint["model"].names == {0: "square"}


def _kill_at_random(root, tasks, config, seconds: float):
    env_path = sample.write_task(root, tasks, config)
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "start.py")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("tasks, sliced", [(["training"], False), (["training"], True), (["mining", "infer"], False),
                                           (["mining", "infer"], True)])
def test_sigkill_never_leaves_a_broken_result(trained, sample_root, tasks, sliced):
    """SIGKILL at random moments: every result file present afterwards is complete and valid (also with
    slicing: tiles written during conversion, whole-image mAPs per stage, tiles merged per candidate)."""
    rng = random.Random(0)
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    config = ({**TINY_TRAINING, "epochs": 4} if tasks == ["training"]
              else {**TINY_INFER, "mining_algorithm": "cald", "model_params_path": model_files(trained)})
    if sliced:
        config = {**config, "slice_size": 64, "slice_overlap": 0.25}
    for _ in range(8):
        out = sample_root / "out"
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        _kill_at_random(sample_root, tasks, config, rng.uniform(2.0, 20.0 if tasks == ["training"] else 8.0))
        result = out / "models" / "result.yaml"
        if result.exists():
            check_result_yaml(str(result), legacy=False)
        if (out / "result.tsv").exists():
            check_mining_tsv(str(out / "result.tsv"), paths)
        if (out / "infer-result.json").exists():
            check_infer_json(str(out / "infer-result.json"), paths, sample.CLASS_NAMES, legacy=False)


def _template_cases():
    from executor import protocol

    for task in ("training", "mining", "infer"):
        for key, default in protocol.load_template(task).items():
            yield task, key, default


def _read_all(task, values):
    from executor import protocol
    from executor.engine import EngineSettings, InferSettings
    from executor.mining import MiningSettings
    from executor.train import TrainSettings

    p = protocol.Params(protocol.load_template(task), {**protocol.load_template(task), **values}, values)
    if task == "training":
        TrainSettings.read(p)
    else:
        EngineSettings.read(p)
        (InferSettings.read(p) if task == "infer" else MiningSettings.read(p, ["a", "b"]))


@pytest.mark.parametrize("task, key, default", list(_template_cases()))
def test_every_template_key_rejects_a_wrong_type(task, key, default):
    """A list where a scalar belongs is wrong for every key; numbers and switches also refuse words."""
    from executor.protocol import ErrorCode, YmirError

    bad_values = [[1, 2]]
    if isinstance(default, (bool, int, float)):
        bad_values += ["not-a-number", ""]
    for bad in bad_values:
        if bad == "" and task == "training" and key == "export_format":
            continue
        with pytest.raises(YmirError) as info:
            _read_all(task, {key: bad})
        assert info.value.code == ErrorCode.CONFIG and key in info.value.message


@pytest.mark.parametrize("task, key, value", [
    ("training", "epochs", -1), ("training", "img_size", 8), ("training", "lr0", 0), ("training", "batch_size_per_gpu", 0),
    ("training", "mosaic", 1.5), ("training", "optimizer", "Adamax"), ("training", "model", "resnet50"),
    ("training", "ymir_saved_file_patterns", "(unclosed"),
    ("infer", "conf_thres", 1.5), ("infer", "max_det", 0), ("infer", "iou_thres", -0.1),
    ("mining", "mining_algorithm", "magic"), ("mining", "class_distribution_scores", "1,2,3"),
    ("mining", "class_distribution_scores", "1,-1"), ("mining", "mining_budget", -5),
])
def test_out_of_range_values_fail_with_the_key(task, key, value):
    from executor.protocol import ErrorCode, YmirError

    with pytest.raises(YmirError) as info:
        _read_all(task, {key: value})
    assert info.value.code == ErrorCode.CONFIG and key in info.value.message


def test_huge_image_is_inferred(trained, tmp_path):
    from PIL import Image

    root = sample.generate(tmp_path, train=2, val=1, candidates=1)
    huge = root / "in" / "assets" / "huge.jpg"
    Image.new("RGB", (12000, 12000), (100, 150, 200)).save(huge, quality=50)
    (root / "in" / "candidate-index.tsv").write_text(f"{huge}\n")
    rc, log = run_task(root, ["infer"], {**TINY_INFER, "model_params_path": model_files(trained)})
    assert rc == 0, log[-2000:]
    check_infer_json(str(root / "out" / "infer-result.json"), [str(huge)], sample.CLASS_NAMES, legacy=False)


def _can(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or not _can(["unshare", "-n", "true"]), reason="needs root and unshare -n")
def test_no_network_at_run_time(trained, sample_root):
    """The whole infer task inside a network namespace with no interface up: nothing needs the network."""
    env_path = sample.write_task(sample_root, ["mining", "infer"], {**TINY_INFER, "mining_algorithm": "aldd",
                                                                    "model_params_path": model_files(trained)})
    proc = subprocess.run(["unshare", "-n", sys.executable, str(ROOT / "app" / "start.py")], capture_output=True, text=True,
                          env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    assert proc.returncode == 0, proc.stdout[-2000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_out_nearly_full_fails_with_a_message(trained, tmp_path):
    root = sample.generate(tmp_path / "s", train=2, val=1, candidates=4)
    out = root / "out"
    out.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(out)], capture_output=True).returncode:
        pytest.skip("tmpfs mount not permitted here")
    try:
        env_path = sample.write_task(root, ["training"], {**TINY_TRAINING, "epochs": 1})
        proc = subprocess.run([sys.executable, str(ROOT / "app" / "start.py")], capture_output=True, text=True,
                              env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
        assert proc.returncode != 0
        assert "no space left on the output disk" in last_line(proc.stdout)
        result = out / "models" / "result.yaml"
        if result.exists():
            check_result_yaml(str(result), legacy=False)
    finally:
        subprocess.run(["umount", str(out)], check=False)


def _small_shm_possible() -> bool:
    return os.geteuid() == 0 and _can(under_small_shm(["true"]))


@pytest.mark.skipif(not _small_shm_possible(), reason="needs root and unshare -m")
@pytest.mark.parametrize("tasks", [["mining", "infer"], ["training"]])
def test_a_small_shared_memory_slows_loading_down_instead_of_hanging(trained, sample_root, tasks):
    """DataLoader workers hand their batches over in /dev/shm. With too little of it (docker run without
    --shm-size, a low shm_size) a worker's batch was lost and the task waited for it forever, at 0 %. Now
    mining and infer hand their inputs over by pipe, training starts the workers that fit (none here), and
    both say how to give the container more. Training on the CPU: Ultralytics' loaders start no workers
    there, the sliced stage evaluation's did."""
    config = ({**TINY_INFER, "img_size": 256, "batch_size_per_gpu": 16, "num_workers_per_gpu": 2,
               "model_params_path": model_files(trained)} if "infer" in tasks else
              {**TINY_TRAINING, "epochs": 1, "num_workers_per_gpu": 2, "slice_size": 64, "img_size": 256})
    env_path = sample.write_task(sample_root, tasks, config)
    shutil.rmtree(sample_root / "out", ignore_errors=True)
    (sample_root / "out").mkdir()
    proc = subprocess.run(under_small_shm([sys.executable, str(ROOT / "app" / "start.py")]), capture_output=True, text=True,
                          env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    said = (r"too little for 2 decoding workers' batches \(about \d+ MB\): they hand their images over by pipe"
            if "infer" in tasks else r"too little for 2 data-loading workers \(up to \d+ MB each, \d+ MB for the main "
                                     r"process\): using 0")
    assert re.search(r"WARNING /dev/shm has 1 MB free, " + said, proc.stdout), proc.stdout[-3000:]
    assert "--shm-size" in proc.stdout
    if "infer" in tasks:
        paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
        check_mining_tsv(str(sample_root / "out" / "result.tsv"), paths)
        check_infer_json(str(sample_root / "out" / "infer-result.json"), paths, sample.CLASS_NAMES, legacy=False)
    else:
        check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)


@pytest.mark.skipif(not _small_shm_possible(), reason="needs root and unshare -m")
def test_a_worker_that_finds_shared_memory_full_fails_the_loader_at_once(sample_root):
    """Where the estimate is wrong (other processes fill /dev/shm): the worker puts its batch into shared
    memory itself, so the DataLoader raises in the main process, and the error names the fix. Before, the
    worker's queue thread failed, and the main process waited for the batch forever."""
    code = (f"import sys, glob; sys.path.insert(0, {str(ROOT / 'app')!r})\n"
            "import torch\nfrom executor import inputs\nfrom executor.protocol.errors import classify_exception\n"
            f"paths = sorted(glob.glob({str(sample_root / 'in' / 'assets' / '*' / '*')!r}))[:8]\n"
            "loader = torch.utils.data.DataLoader(inputs.CandidateImages(paths, 640), batch_size=4, num_workers=1,\n"
            "                                     collate_fn=inputs.loaded)\n"
            "try:\n    list(loader)\nexcept RuntimeError as exc:\n    print('raised', *classify_exception(exc))\n")
    proc = subprocess.run(under_small_shm([sys.executable, "-c", code]), capture_output=True, text=True, timeout=120)
    assert "raised 300103 the container's shared memory (/dev/shm) is full" in proc.stdout, proc.stderr[-2000:]


def test_weights_baked_into_the_image_are_used_and_nothing_is_downloaded(trained, sample_root, tmp_path):
    import shutil

    baked = tmp_path / "weights"
    baked.mkdir()
    shutil.copyfile(trained / "out" / "models" / "best.pt", baked / "yolo11n.pt")
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, "epochs": 1, "save_period": 0},
                       extra_env={"YMIR_WEIGHTS_DIR": str(baked)})
    assert rc == 0, log[-2000:]
    said = f"pretrained weights: {baked / 'yolo11n.pt'} (baked into the image)"
    assert said in log
    # among the log's first lines: before the dataset conversion, which may take minutes on a large dataset
    assert log.index(said) < log.index("INFO dataset ("), log[:3000]
    result = check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)
    assert result["pretrained_weights"] == str(baked / "yolo11n.pt")
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, "epochs": 1, "save_period": 0, "model": "yolov8n"},
                       extra_env={"YMIR_WEIGHTS_DIR": str(baked)})
    assert rc == 0 and "training from scratch" in log and "Downloading" not in log
    assert check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)["pretrained_weights"] is None


def test_nan_loss_in_the_first_epoch_fails_with_the_nan_code(tmp_path):
    """Ultralytics cannot recover from a NaN loss in its first epoch (no last.pt yet) and trains on into a
    model that finds nothing; our epoch-end callback stops it with 300201. Later epochs are left to
    Ultralytics' own recovery (its final RuntimeError maps to 300201, see test_protocol)."""
    import torch
    from executor.protocol import ErrorCode, YmirError

    recorder = stage_recorder(tmp_path / "out", {"lr0": "5"})

    class Trainer:
        def __init__(self, epoch, loss):
            self.epoch, self.start_epoch, self.loss = epoch, 0, loss

    callbacks.on_train_epoch_end(recorder, Trainer(0, torch.tensor([1.5, 0.2])))
    callbacks.on_train_epoch_end(recorder, Trainer(3, torch.tensor(float("nan"))))  # Ultralytics reloads last.pt itself
    for bad in (float("nan"), float("inf")):
        with pytest.raises(YmirError) as info:
            callbacks.on_train_epoch_end(recorder, Trainer(0, torch.tensor([bad, 1.0])))
        assert info.value.code == ErrorCode.NAN_LOSS
        assert "lower lr0" in info.value.message and "lr0 5.0" in info.value.message


WORKER = """
import sys
import cloudpickle
import torch

sys.path.insert(0, sys.argv[3])
callbacks = cloudpickle.loads(open(sys.argv[1], "rb").read())


class Trainer:  # the attributes our callbacks read
    epoch, start_epoch, loss = 0, 0, torch.tensor(float("nan"))


for event in ("on_pretrain_routine_start", "on_pretrain_routine_end"):  # what Ultralytics runs in a worker
    for callback in callbacks[event]:
        callback(Trainer())
if sys.argv[2] == "nan":
    for callback in callbacks["on_train_epoch_end"]:
        callback(Trainer())  # rank 0: our first-epoch NaN check raises
elif sys.argv[2] == "oom":
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 1; 79.1 GiB total)")
elif sys.argv[2] == "killed":
    import os
    os._exit(1)  # dies before any Python exception (a signal, a segfault)
"""


@pytest.mark.parametrize("rank, failure, code, words", [
    ("0", "nan", 300201, "lower lr0"),
    ("1", "oom", 300103, "lower batch_size_per_gpu"),
    ("1", "killed", 300004, "before it could report why"),
])
def test_a_ddp_workers_error_reaches_the_parent_with_its_code(tmp_path, rank, failure, code, words):
    """Ultralytics runs multi-GPU training as `torch.distributed.run` in a subprocess and the parent sees only
    CalledProcessError. Our callbacks, cloudpickled into the worker as Ultralytics does, leave the worker's
    error under /out; the parent turns the failed subprocess into that error."""
    import os
    import subprocess
    import sys

    import cloudpickle
    from conftest import ROOT
    from executor.protocol import YmirError
    from executor.train import worker_errors

    recorder = stage_recorder(tmp_path / "out")
    registered = {event: [callback] for event, callback in callbacks.callbacks(recorder).items()}  # Ultralytics' layout
    pickled, script = tmp_path / "callbacks.pkl", tmp_path / "worker.py"
    pickled.write_bytes(cloudpickle.dumps(registered))
    script.write_text(WORKER)
    with pytest.raises(YmirError) as info:
        with worker_errors(recorder.errors_dir):
            subprocess.run([sys.executable, str(script), str(pickled), failure, str(ROOT / "app")], check=True,
                           env={**os.environ, "RANK": rank, "LOCAL_RANK": rank}, capture_output=True)
    assert int(info.value.code) == code and words in info.value.message, info.value.message
    assert not recorder.errors_dir.exists(), "the hand-over files are removed"


def test_gpu_check_says_plainly_that_there_is_no_cuda():
    """`make gpu-check` on a machine without CUDA must not pass silently."""
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "no CUDA device is visible" in proc.stdout, proc.stdout + proc.stderr


def test_a_config_file_that_is_not_yaml_still_reaches_monitor_txt(sample_root, tmp_path):
    """The monitor is opened from env.yaml before config.yaml is read: the platform shows the error code."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, snapshot
    from contract import check_monitor_error
    from executor import sample

    root = tmp_path / "copy"
    shutil.copytree(sample_root / "in", root / "in")
    env_path = sample.write_task(root, ["training"], {})
    (root / "in" / "config.yaml").write_text("epochs: [1, 2\nmodel: yolo11n\n")
    before = snapshot(root / "in")
    proc = subprocess.run([sys.executable, str(ROOT / "app" / "start.py")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    assert proc.returncode == 1 and snapshot(root / "in") == before
    message = check_monitor_error(str(root / "out" / "monitor.txt"), 300001)
    assert "config.yaml" in message and "not valid YAML" in message
    assert proc.stdout.strip().splitlines()[-1].split(" ", 3)[3].startswith("task failed (error 300001): config.yaml at")


def test_an_unreadable_env_yaml_reports_to_the_default_monitor(tmp_path, monkeypatch):
    """No env.yaml to say where monitor.txt goes: the platform's own place, /out/monitor.txt (here redirected)."""
    from contract import check_monitor_error
    from executor import cli
    from executor.protocol import config

    monkeypatch.setattr(config, "DEFAULT_MONITOR_FILE", str(tmp_path / "out" / "monitor.txt"))
    (tmp_path / "out").mkdir()
    assert cli.main(str(tmp_path / "in" / "env.yaml")) == 1
    assert "env.yaml not found" in check_monitor_error(str(tmp_path / "out" / "monitor.txt"), 300001)


def test_progress_never_moves_backwards(tmp_path):
    """Ultralytics re-runs an epoch after a NaN recovery or an out-of-memory retry: the bar holds, across
    sub-monitors too, and the training callbacks never write a lower percentage."""
    from executor.protocol import Monitor

    def percent(path):
        return float(path.read_text().split("\t")[2])

    monitor = Monitor(str(tmp_path / "monitor.txt"), "t")
    monitor.progress(0.5, force=True)
    monitor.progress(0.3, force=True)
    assert percent(tmp_path / "monitor.txt") == 0.5
    monitor.sub(0.0, 0.5).progress(0.2, force=True)  # a sub-task's 10 % is below the bar's 50 %
    assert percent(tmp_path / "monitor.txt") == 0.5

    recorder = stage_recorder(tmp_path / "out", {"epochs": 4})
    written = []

    class Trainer:
        epochs, train_loader, device = 4, [0] * 5, "cpu"

    trainer = Trainer()
    for epoch in (0, 1, 2, 1, 2, 3):  # epoch 2 failed, epoch 1's checkpoint reloaded, training goes on
        trainer.epoch = epoch
        callbacks.on_train_epoch_start(recorder, trainer)
        for _ in range(5):
            recorder.monitor._last_time = 0.0  # no throttling: record every write
            callbacks.on_train_batch_end(recorder, trainer)
            written.append(percent(tmp_path / "out" / "monitor.txt"))
    assert written == sorted(written) and written[-1] == 0.95


def test_the_best_stage_is_the_epoch_with_the_highest_map50(tmp_path):
    """Ultralytics writes best.pt by its own fitness (mAP@0.5:0.95); YMIR ranks by mAP@0.5. Epoch 2 has the
    highest mAP@0.5, epoch 3 the highest fitness: best.pt (which Ultralytics' final evaluation re-validates)
    and the best stage hold epoch 2."""
    import yaml

    recorder = stage_recorder(tmp_path / "out", {"save_period": 0})
    weights = tmp_path / "weights"
    weights.mkdir()

    class Trainer:
        last, best, best_fitness = weights / "last.pt", weights / "best.pt", None

    trainer = Trainer()
    for epoch, (map50, fitness) in enumerate([(0.5, 0.2), (0.7, 0.1), (0.6, 0.3)]):
        trainer.epoch, trainer.metrics, trainer.fitness = epoch, {"metrics/mAP50(B)": map50}, fitness
        trainer.last.write_text(f"epoch {epoch + 1}")  # what Ultralytics' save_model does
        if trainer.best_fitness is None or fitness > trainer.best_fitness:
            trainer.best_fitness = fitness
            trainer.best.write_text(f"epoch {epoch + 1}")
        callbacks.on_model_save(recorder, trainer)
    assert trainer.best.read_text() == "epoch 2" and (tmp_path / "out" / "models" / "best.pt").read_text() == "epoch 2"
    data = yaml.safe_load((tmp_path / "out" / "models" / "result.yaml").read_text())
    assert data["best_stage_name"] == "best" and data["model_stages"]["best"]["mAP"] == 0.7
    assert data["model_stages"]["last"]["mAP"] == 0.6


@pytest.mark.parametrize("tasks, algorithm", [(["infer"], None), (["mining"], "random"), (["mining", "infer"], "entropy")])
def test_no_readable_candidate_fails_with_the_image_code(trained, sample_root, tmp_path, tasks, algorithm):
    """A candidate set in which nothing decodes (a format OpenCV and PIL cannot read) is not an empty result:
    300003, saying what the files were."""
    root = tmp_path / "copy"
    shutil.copytree(sample_root / "in", root / "in")
    bad = root / "in" / "assets" / "bad"
    bad.mkdir()
    (bad / "a.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    (bad / "b.jpg").write_bytes(b"")
    (root / "in" / "candidate-index.tsv").write_text(f"{bad / 'a.heic'}\n{bad / 'b.jpg'}\n")
    config = {**TINY_INFER, "model_params_path": model_files(trained), **({"mining_algorithm": algorithm} if algorithm else {})}
    rc, log = run_task(root, tasks, config)
    assert rc != 0
    message = check_monitor_error(str(root / "out" / "monitor.txt"), 300003)
    assert message.startswith("none of the 2 candidate images could be read"), message
