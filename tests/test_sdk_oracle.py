"""The platform's own SDK (ymir-exc 1.1, the legacy protocol) as an oracle: the same env.yaml parsed, and the
same monitor line, training result, mining result and infer result written by the SDK and by this executor."""

from __future__ import annotations

import json

import pytest
import yaml
from executor import protocol, sample

ymir_exc = pytest.importorskip("ymir_exc")  # a test dependency (requirements-dev.txt), not in the image
from ymir_exc import env as sdk_env  # noqa: E402
from ymir_exc import monitor as sdk_monitor  # noqa: E402
from ymir_exc import result_writer as sdk  # noqa: E402
from ymir_exc import settings as sdk_settings  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK uses pydantic 1 methods


@pytest.fixture
def legacy_env(tmp_path, monkeypatch):
    env_path = sample.write_task(tmp_path, ["training", "mining", "infer"], {}, protocol_version=None)
    monkeypatch.setattr(sdk_settings, "DEFAULT_ENV_FILE_PATH", str(env_path))
    (tmp_path / "out" / "models").mkdir(parents=True, exist_ok=True)  # the SDK writes into existing folders only
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    return env_path, ours, theirs


def test_env_yaml_reads_the_same(legacy_env):
    env_path, _, _ = legacy_env
    cfg = protocol.get_merged_config(str(env_path))
    current = sdk_env.get_current_env()
    assert current.task_id == cfg.ymir.task_id
    assert [current.run_training, current.run_mining, current.run_infer] == [t in protocol.tasks_to_run(cfg.ymir)
                                                                             for t in protocol.TASKS]
    for section in ("input", "output"):
        for key, value in getattr(current, section).model_dump().items():
            assert cfg.ymir[section][key] == value, (section, key)
    assert cfg.config == sdk_env.get_executor_config()


def test_monitor_line_matches(legacy_env):
    _, ours, _ = legacy_env
    current = sdk_env.get_current_env()
    sdk_monitor.write_monitor_logger(0.5)
    theirs = open(current.output.monitor_file).read().split("\t")
    protocol.Monitor(str(ours / "monitor.txt"), current.task_id).progress(0.5, force=True)
    mine = (ours / "monitor.txt").read_text().split("\t")
    assert mine[0] == theirs[0] and mine[2:] == theirs[2:]
    assert abs(float(mine[1]) - float(theirs[1])) < 5


def test_legacy_training_result_matches(legacy_env, tmp_path):
    _, ours, _ = legacy_env
    current = sdk_env.get_current_env()
    models = tmp_path / "models"
    models.mkdir()
    (models / "best.pt").write_bytes(b"w")
    (models / "last.pt").write_bytes(b"w")
    stages = [protocol.Stage("last", ["last.pt"], 0.4), protocol.Stage("best", ["best.pt"], 0.6)]
    protocol.write_training_result(str(ours / "result.yaml"), str(models), stages, protocol.Protocol(None))
    sdk.write_training_result(["best.pt"], 0.6, {})
    theirs = yaml.safe_load(open(current.output.training_result_file))
    mine = yaml.safe_load((ours / "result.yaml").read_text())
    assert mine == {k: v for k, v in theirs.items() if k != "class_aps"}


def test_mining_result_matches(legacy_env):
    _, ours, _ = legacy_env
    current = sdk_env.get_current_env()
    scores = [("/in/a/1.jpg", 0.25), ("/in/a/2.jpg", 0.75), ("/in/a/3.jpg", 0.5)]
    sdk.write_mining_result(scores)
    protocol.write_mining_result(str(ours / "result.tsv"), scores)

    def rows(text):
        return [(line.split("\t")[0], float(line.split("\t")[1])) for line in text.splitlines()]

    assert rows((ours / "result.tsv").read_text()) == rows(open(current.output.mining_result_file).read())


def test_legacy_infer_result_matches(legacy_env):
    _, ours, _ = legacy_env
    current = sdk_env.get_current_env()
    found = {"/in/a/1.jpg": [("cat", 0.9, (10.0, 20.0, 50.0, 80.0))], "/in/b/2.jpg": []}
    sdk.write_infer_result({
        path: [sdk.Annotation(class_name=name, score=score,
                              box=sdk.Box(**{k: v for k, v in protocol.ymir_box(xyxy, 100, 100).items() if k != "rotate_angle"}))
               for name, score, xyxy in boxes]
        for path, boxes in found.items()})
    writer = protocol.InferResultWriter(str(ours / "infer-result.json"), protocol.Protocol(None), ["cat"])
    for path, boxes in found.items():
        writer.add(path, boxes, 100, 100)
    writer.close()
    theirs = json.load(open(current.output.infer_result_file))
    mine = json.load(open(ours / "infer-result.json"))
    for entry in mine["detection"].values():  # a field the platform reads when present (>= 1.0.0), ignored here
        for annotation in entry["annotations"]:
            assert annotation["box"].pop("rotate_angle") == 0.0
    assert mine == theirs
