"""The README as a newcomer reads it: short, its settings tables true to the templates, and its commands
running as written (the Docker ones run in CI's tests/e2e/docker_e2e.sh)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml
from conftest import ROOT
from contract import check_monitor_running, check_result_yaml

README = (ROOT / "README.md").read_text()


def blocks(language: str = "bash") -> list[list[str]]:
    return [[line for line in block.splitlines() if line.strip()]
            for block in re.findall(rf"```{language}\n(.*?)```", README, re.S)]


def table_rows(heading: str) -> list[list[str]]:
    """The cells of the first table after the paragraph starting with ``heading``."""
    text = README[README.index(heading):]
    rows = []
    for line in text.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # no header, no rule


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 160


def test_the_settings_tables_give_the_templates_defaults():
    from executor import protocol

    templates = {task: protocol.load_template(task) for task in ("training", "mining", "infer")}
    for heading, tasks in (("**Training**", ("training",)), ("**Mining**", ("mining", "infer"))):
        rows = table_rows(heading)
        assert len(rows) >= 10, heading
        for setting, default, *_ in rows:
            keys, values = re.findall(r"`([^`]+)`", setting), re.findall(r"`([^`]*)`", default)
            assert keys and len(keys) == len(values), setting
            for key, value in zip(keys, values, strict=True):
                found = [templates[t][key] for t in tasks if key in templates[t]]
                assert found, f"{key} is in no {'/'.join(tasks)} template"
                assert all(v == yaml.safe_load(value or "''") for v in found), (key, value, found)


def test_the_augmentation_keys_are_ultralytics_defaults():
    from executor import protocol
    from ultralytics.cfg import DEFAULT_CFG_DICT

    training = protocol.load_template("training")
    for key in ("mosaic", "mixup", "fliplr", "flipud", "degrees", "scale", "hsv_h", "hsv_s", "hsv_v", "close_mosaic"):
        assert training[key] == DEFAULT_CFG_DICT[key], key


def test_the_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = {word for block in blocks() for line in block for word in re.findall(r"^make (\S+)", line)}
    targets |= set(re.findall(r"`make ([\w-]+)`", README))
    assert {"demo", "test", "gpu-check"} <= targets
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


def test_the_commands_by_hand_run_as_written(tmp_path):
    """The README's three commands: a sample, a quick training config, the task (the sample in tmp_path, not
    /tmp/ymir-sample, and this interpreter for .venv's)."""
    (by_hand,) = [block for block in blocks() if any("app/start.py" in line for line in block)]
    root = tmp_path / "sample"
    for line in by_hand:
        command = line.replace("/tmp/ymir-sample", str(root)).replace(".venv/bin/python", sys.executable)
        proc = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**os.environ})
        assert proc.returncode == 0, (line, proc.stdout[-2000:], proc.stderr[-2000:])
    check_result_yaml(str(root / "out" / "models" / "result.yaml"), legacy=False)
    check_monitor_running(str(root / "out" / "monitor.txt"), "t0000sample", 1.0)
