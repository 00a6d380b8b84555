"""Shared fixtures: a generated sample /in and one real (tiny) training run reused by the task tests."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from executor import runtime  # noqa: E402

runtime.setup()  # before anything imports torch or ultralytics: offline, writable caches
# Training starts from no baked weights unless a test bakes some: a yolo11n.pt a developer placed in weights/ for
# the Docker build would otherwise turn every test training into a fine-tune.
os.environ["YMIR_WEIGHTS_DIR"] = str(ROOT / "tests" / "no-weights")

from executor import sample  # noqa: E402

TINY_TRAINING = {"epochs": 2, "img_size": 64, "batch_size_per_gpu": 8, "num_workers_per_gpu": 0, "save_period": 1,
                 "model": "yolo11n", "export_format": "ark:raw"}
TINY_INFER = {"img_size": 64, "num_workers_per_gpu": 0, "batch_size_per_gpu": 4}


def snapshot(directory: Path) -> dict[str, str]:
    """Path -> content hash of every file, to prove /in is never written."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(directory))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def run_task(root: Path, tasks: list[str], config: dict, protocol_version: str | None = "1.1.0",
             extra_env: dict | None = None, shell: str = "") -> tuple[int, str]:
    """Run app/start.py in a subprocess exactly as start.sh does, with a fresh /out; ``shell``: bash commands
    run first in the same process (``ulimit -n 96``)."""
    shutil.rmtree(root / "out", ignore_errors=True)
    env_path = sample.write_task(root, tasks, config, protocol_version)
    before = snapshot(root / "in")
    env = {**os.environ, "DEFAULT_ENV_FILE_PATH": str(env_path), **(extra_env or {})}
    command = [sys.executable, str(ROOT / "app" / "start.py")]
    if shell:
        command = ["bash", "-c", f'{shell}; exec "$0" "$1"', *command]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert snapshot(root / "in") == before, "the run wrote under /in"
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("sample"), train=32, val=12, candidates=16)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, sample_root) -> Path:
    """One real training run; returns a folder holding the top-level files of its /out/models."""
    rc, log = run_task(sample_root, ["training"], TINY_TRAINING)
    assert rc == 0, log[-3000:]
    kept = tmp_path_factory.mktemp("trained")
    shutil.copytree(sample_root / "out", kept / "out")
    (kept / "log.txt").write_text(log)
    return kept


def model_files(trained: Path) -> list[str]:
    """What the image verifier hands to mining and infer: every top-level file of /out/models."""
    return sorted(p for p in glob.glob(str(trained / "out" / "models" / "*")) if os.path.isfile(p))


def stage_recorder(out: Path, values: dict | None = None):
    """The state our Ultralytics training callbacks share (``callbacks.Report``), on its own (no trainer),
    writing under ``out``; call the callbacks as ``callbacks.on_<event>(report, trainer)``."""
    from easydict import EasyDict
    from executor.callbacks import Report
    from executor.protocol import Monitor, Params, load_template
    from executor.train import TrainSettings

    cfg = EasyDict({"ymir": {"protocol_version": "1.1.0", "output": {"root_dir": str(out),
        "models_dir": str(out / "models"), "training_result_file": str(out / "models" / "result.yaml"),
        "tensorboard_dir": str(out / "tensorboard")}}})
    settings = TrainSettings.read(Params(load_template("training"), values or {}))
    return Report(cfg, settings, Monitor(str(out / "monitor.txt"), "t"))
