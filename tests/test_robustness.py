"""What real installations throw at the executor: each case completes (defect counted) or fails fast
with the right code and a last log line a user can act on. See docs/robustness.md."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY_INFER, TINY_TRAINING, model_files, run_task, sample
from contract import check_infer_json, check_mining_tsv, check_monitor_error, check_result_yaml


def last_line(log: str) -> str:
    return [line for line in log.splitlines() if line.strip()][-1]


def test_gpu_requested_but_absent_runs_on_cpu(trained, sample_root):
    rc, log = run_task(sample_root, ["infer"], {**TINY_INFER, "gpu_id": "0", "gpu_count": 1,
                                                "model_params_path": model_files(trained)})
    assert rc == 0, log[-2000:]
    assert "running on CPU" in log


def test_no_writable_home_and_unknown_keys(trained, sample_root, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    env_path = sample.write_task(sample_root, ["infer"], {**TINY_INFER, "model_params_path": model_files(trained),
                                                         "some_old_key": 3})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "MPLCONFIGDIR", "XDG_", "TORCH_HOME"))}
    env.update({"HOME": "/nonexistent", "DEFAULT_ENV_FILE_PATH": str(env_path)})
    proc = subprocess.run([sys.executable, str(ROOT / "app" / "start.py")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "config keys not used by this image (ignored): some_old_key" in proc.stdout


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
    """A model trained on ['circle', 'square'] starts a training on ['square'] alone."""
    config = {**TINY_TRAINING, "epochs": 1, "save_period": 0, "class_names": ["square"],
              "pretrained_model_params": model_files(trained)}
    rc, log = run_task(sample_root, ["training"], config)
    assert rc == 0, log[-2000:]
    assert "pretrained weights:" in log and "(the best stage named by" in log
    check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)


def _kill_at_random(root, tasks, config, seconds: float):
    env_path = sample.write_task(root, tasks, config)
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "start.py")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path)})
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("tasks", [["training"], ["mining", "infer"]])
def test_sigkill_never_leaves_a_broken_result(trained, sample_root, tasks):
    """SIGKILL at random moments: every result file present afterwards is complete and valid."""
    rng = random.Random(0)
    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    config = ({**TINY_TRAINING, "epochs": 4} if tasks == ["training"]
              else {**TINY_INFER, "mining_algorithm": "cald", "model_params_path": model_files(trained)})
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
