"""The templates are the source of truth: every key the code reads is in its template, and vice versa."""

from __future__ import annotations

from executor import protocol
from executor.engine import EngineSettings, InferSettings
from executor.mining import MiningSettings
from executor.train import TrainSettings


def read_keys(task, *readers):
    template = protocol.load_template(task)
    p = protocol.Params(template, {})
    for reader in readers:
        reader(p)
    return set(template), p.read_keys


def test_training_template_matches_code():
    template, read = read_keys("training", TrainSettings.read)
    assert template == read


def test_infer_template_matches_code():
    template, read = read_keys("infer", EngineSettings.read, InferSettings.read)
    assert template == read


def test_mining_template_matches_code():
    template, read = read_keys("mining", EngineSettings.read, lambda p: MiningSettings.read(p, ["a", "b"]))
    assert template == read


def test_shared_keys_have_one_default():
    mining, infer = protocol.load_template("mining"), protocol.load_template("infer")
    for key in set(mining) & set(infer):
        assert mining[key] == infer[key], key


def test_template_defaults_are_valid():
    """The defaults themselves pass validation (a template typo fails here, not in a user's task)."""
    TrainSettings.read(protocol.Params(protocol.load_template("training"), {}))
    MiningSettings.read(protocol.Params(protocol.load_template("mining"), {}), ["a", "b", "c"])


def test_absent_export_format_means_voc():
    template = protocol.load_template("training")
    assert TrainSettings.read(protocol.Params(template, template, {})).export_format == ""
    assert TrainSettings.read(protocol.Params(template, template, {"export_format": ""})).export_format == ""
    given = {**template, "export_format": "det-ark:raw"}
    assert TrainSettings.read(protocol.Params(template, given, {"export_format": "det-ark:raw"})).export_format == "det-ark:raw"


def test_a_default_docker_build_bakes_the_template_model_s_weights():
    """The Dockerfile's ``WEIGHTS`` default is the training template's ``model``, so that a first training
    fine-tunes; the README's first build line says which weights it bakes."""
    import re

    from conftest import ROOT

    model = protocol.load_template("training")["model"]
    (default,) = re.findall(r'^ARG WEIGHTS="([^"]*)"$', (ROOT / "Dockerfile").read_text(), re.M)
    assert default.split() == [model]
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^docker build -t ymir-executor-yolo \. +# bakes {model}'s COCO weights", readme, re.M)
    assert "/weights/*.pt" in (ROOT / ".gitignore").read_text().splitlines()
