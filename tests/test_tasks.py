"""Real runs of app/start.py on the sample (CPU, tiny settings), checked against the contract."""

from __future__ import annotations

import platform
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_INFER, TINY_TRAINING, model_files, run_task, stage_recorder
from contract import (
    check_boxes_inside,
    check_infer_json,
    check_mining_tsv,
    check_monitor_error,
    check_monitor_running,
    check_result_yaml,
)
from executor import callbacks, sample
from executor.protocol import load_template
from PIL import Image

NAMES = sample.CLASS_NAMES


def last_line(log: str) -> str:
    return [line for line in log.splitlines() if line.strip()][-1]


# ---------------------------------------------------------------- training


def test_training_writes_contract_outputs(trained):
    out = trained / "out"
    data = check_result_yaml(str(out / "models" / "result.yaml"), legacy=False)
    stages = data["model_stages"]
    assert {"best", "last", "epoch_1", "epoch_2"} <= set(stages)
    assert stages["best"]["files"] == ["best.pt"]
    assert data["evaluate_config"] == {"conf_thr": 0.001, "iou_thr": 0.5}, "what the figures count at: the matching IoU"
    assert all(stage["tp"] + stage["fn"] == stages["best"]["tp"] + stages["best"]["fn"] for stage in stages.values()), \
        "every stage's tp + fn is the validation set's label count"
    assert "confusion_matrix.png" in data["attachments"]["images"]
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    check_monitor_running(str(out / "monitor.txt"), "t0000sample", 1.0)
    log = (trained / "log.txt").read_text()
    assert "training done: best stage" in last_line(log)
    assert "dataset (ark): train" in log
    assert not (out / "models" / "weights").exists(), "ultralytics' own run folder stays out of /out/models"


def test_stages_with_the_same_weights_report_the_same_map(trained):
    """The best epoch's weights sit in best.pt and in an epoch stage (and in last.pt when it was the last
    epoch): one set of weights, one number, else a rounding difference picks the best stage."""
    import torch

    out = trained / "out" / "models"
    data = yaml.safe_load(open(out / "result.yaml"))
    stages = data["model_stages"]

    def weights(name):
        model = torch.load(out / stages[name]["files"][0], map_location="cpu", weights_only=False)["model"]
        return [t.float() for t in model.state_dict().values()]

    best = weights("best")
    twins = [n for n in stages if n != "best" and all(torch.equal(a, b) for a, b in zip(best, weights(n), strict=True))]
    assert any(n.startswith("epoch_") for n in twins), twins  # 2 epochs, a stage every epoch: one holds them
    for name in twins:
        assert stages[name]["mAP"] == stages["best"]["mAP"], (name, stages)
    assert data["best_stage_name"] not in twins, "on a tie of the same weights the stage named best is the best"


def test_final_stages_carry_no_optimizer_state(trained):
    """best/last are plain copies while training runs (cheap), stripped once at the end; epoch stages at once."""
    import torch

    for name in ("best.pt", "last.pt", "epoch_1.pt", "epoch_2.pt"):
        checkpoint = torch.load(trained / "out" / "models" / name, map_location="cpu", weights_only=False)
        assert checkpoint.get("optimizer") is None and checkpoint["model"] is not None, name


def test_tensorboard_has_the_scalars_users_look_for(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained / "out" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/box_loss", "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
                "lr/pg0"):
        assert tag in tags, tags


def test_best_stage_map_matches_a_fresh_evaluation(trained):
    from ultralytics import YOLO

    out = trained / "out"
    data = yaml.safe_load(open(out / "models" / "result.yaml"))
    metrics = YOLO(str(out / "models" / "best.pt")).val(
        data=str(out / "yolo-dataset" / "data.yaml"), imgsz=TINY_TRAINING["img_size"], batch=16, device="cpu",
        plots=False, verbose=False, project=str(trained / "val"), workers=0)
    assert abs(metrics.box.map50 - data["model_stages"]["best"]["mAP"]) < 0.02


def test_training_legacy_protocol(sample_root, tmp_path):
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, "epochs": 1, "save_period": 0}, protocol_version=None)
    assert rc == 0, log[-2000:]
    data = check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=True)
    assert data["model"] == ["best.pt"]


@pytest.mark.parametrize("config, code, words", [
    ({"epochs": "abc"}, 300001, "epochs"),
    ({"epochs": 0}, 300001, "epochs"),
    ({"model": "yolo99z"}, 300001, "model"),
    ({"export_format": "seg-coco:raw"}, 300002, "export_format"),
    ({"class_names": []}, 300001, "class_names"),
])
def test_training_config_errors_fail_fast_and_explain(sample_root, config, code, words):
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, **config})
    assert rc != 0
    message = check_monitor_error(str(sample_root / "out" / "monitor.txt"), code)
    assert words in message and words in last_line(log) and str(code) in last_line(log)


# ---------------------------------------------------------------- infer and mining


def png16(path: Path) -> None:
    """A 16-bit grayscale PNG written by hand (PIL writes 16-bit only for I;16 mode)."""
    w, h = 40, 30
    raw = b"".join(b"\x00" + struct.pack(">" + "H" * w, *([30000] * w)) for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def candidates_root(sample_root, tmp_path_factory) -> tuple[Path, list[str], dict[str, str]]:
    """A copy of the sample whose candidates include every kind of bad and odd image."""
    root = tmp_path_factory.mktemp("candidates")
    shutil.copytree(sample_root / "in", root / "in")
    odd = root / "in" / "assets" / "odd"
    odd.mkdir()
    base = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(base).convert("L").save(odd / "gray.png")
    Image.fromarray(base).convert("RGBA").save(odd / "rgba.png")
    Image.fromarray(base).convert("P").save(odd / "palette.png")
    Image.fromarray(base).convert("CMYK").save(odd / "cmyk.jpg")
    Image.new("RGB", (1, 1)).save(odd / "tiny.png")
    png16(odd / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(base).save(odd / "rotated.jpg", exif=exif)
    full = (odd / "rotated.jpg").read_bytes()
    (odd / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (odd / "zero.jpg").write_bytes(b"")
    (odd / "text.jpg").write_text("not an image")
    (odd / "with space").mkdir()
    Image.fromarray(base).save(odd / "with space" / "spaced name.jpg")  # a tab-separated index keeps the whole path
    good = [line for line in (root / "in" / "candidate-index.tsv").read_text().splitlines() if line]
    odd_paths = [str(odd / n) for n in ("gray.png", "rgba.png", "palette.png", "cmyk.jpg", "tiny.png", "deep.png",
                                        "rotated.jpg", "truncated.jpg", "zero.jpg", "text.jpg", "missing.jpg",
                                        "with space/spaced name.jpg")]
    paths = good + odd_paths
    (root / "in" / "candidate-index.tsv").write_text("\r\n".join(paths) + "\r\n\r\n")
    return root, paths, {Path(p).name: p for p in odd_paths}


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0", None])
def test_infer_every_candidate_with_valid_boxes(trained, candidates_root, version):
    root, paths, _ = candidates_root
    config = {**TINY_INFER, "conf_thres": 0.001, "model_params_path": model_files(trained)}
    rc, log = run_task(root, ["infer"], config, protocol_version=version)
    assert rc == 0, log[-2000:]
    detection = check_infer_json(str(root / "out" / "infer-result.json"), paths, NAMES, legacy=version is None)
    key = "annotations" if version is None else "boxes"
    for name in ("zero.jpg", "text.jpg", "missing.jpg"):
        assert detection[name][key] == []
    assert detection["spaced name.jpg"][key], "the image whose path holds spaces was read and inferred"
    readable = ("gray.png", "rgba.png", "palette.png", "cmyk.jpg", "deep.png", "rotated.jpg")  # boxes in the displayed frame
    check_boxes_inside(detection, {n: (60, 80) if n == "rotated.jpg" else (80, 60) for n in readable}, key)
    assert any(detection[n][key] for n in detection), "a model at conf 0.001 finds something somewhere"
    summary = [line for line in log.splitlines() if "infer done" in line][0]
    assert "missing images: 1" in summary and "empty (zero-byte) images: 1" in summary and "unreadable images: 1" in summary
    check_monitor_running(str(root / "out" / "monitor.txt"), "t0000sample", 1.0)


@pytest.mark.parametrize("algorithm", ["random", "entropy", "aldd", "cald", "diversity", "ppal"])
def test_mining_each_algorithm(trained, candidates_root, algorithm):
    root, paths, odd = candidates_root
    config = {**TINY_INFER, "mining_algorithm": algorithm, "mining_min_score": 0.001,
              "model_params_path": model_files(trained)}
    rc, log = run_task(root, ["mining"], config)
    assert rc == 0, log[-2000:]
    rows = check_mining_tsv(str(root / "out" / "result.tsv"), paths)
    assert {r[0] for r in rows[-3:]} == {odd["zero.jpg"], odd["text.jpg"], odd["missing.jpg"]}
    assert "3 ranked last" in [line for line in log.splitlines() if "mining done" in line][0]
    assert not (root / "out" / "infer-result.json").exists()
    assert "carries no" not in log, "the model trained by this image carries its class statistics"
    # an algorithm the benchmark found below random says so in the log (aldd, docs/benchmarks.md section 5)
    assert ("picked worse than random" in log) == (algorithm == "aldd")


def test_training_stores_class_statistics_in_the_checkpoints(trained):
    """best.pt and last.pt carry the training set's boxes per class and the final validation's AP per class
    (what cald's stage 2 and ppal's calibration read back)."""
    from executor.class_stats import ClassStats

    labels = (trained / "out" / "yolo-dataset").rglob("labels/train/*.txt")
    counts = [0, 0]
    for label in labels:
        for row in label.read_text().splitlines():
            counts[int(row.split()[0])] += 1
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(trained / "out" / "models" / name, map_location="cpu", weights_only=False)
        stats = ClassStats.from_checkpoint(checkpoint)
        assert stats is not None and stats.names == ["circle", "square"]
        assert stats.train_boxes == counts and sum(counts) > 0
        assert all(a is None or 0.0 <= a <= 1.0 for a in stats.val_ap50) and any(a is not None for a in stats.val_ap50)


def test_mining_without_class_statistics_says_so(trained, candidates_root, tmp_path):
    """A model from elsewhere (no statistics): cald skips stage 2 and ppal counts every class alike, logged."""
    from executor.class_stats import KEY

    checkpoint = torch.load(trained / "out" / "models" / "best.pt", map_location="cpu", weights_only=False)
    checkpoint.pop(KEY)
    bare = tmp_path / "bare.pt"
    torch.save(checkpoint, bare)
    root, paths, _ = candidates_root
    for algorithm, said in (("cald", "stage 2 skipped"), ("ppal", "every class counts as equally hard")):
        config = {**TINY_INFER, "mining_algorithm": algorithm, "mining_min_score": 0.001, "model_params_path": [str(bare)]}
        rc, log = run_task(root, ["mining"], config)
        assert rc == 0 and said in log, log[-2000:]
        check_mining_tsv(str(root / "out" / "result.tsv"), paths)


def test_mining_is_deterministic(trained, candidates_root):
    root, _, _ = candidates_root
    config = {**TINY_INFER, "mining_algorithm": "cald", "mining_min_score": 0.001, "model_params_path": model_files(trained)}
    results = []
    for _ in range(2):
        assert run_task(root, ["mining"], config)[0] == 0
        results.append((root / "out" / "result.tsv").read_text())
    assert results[0] == results[1]


@pytest.mark.parametrize("algorithm", ["entropy", "random"])
def test_mining_and_infer_together(trained, candidates_root, algorithm):
    root, paths, _ = candidates_root
    config = {**TINY_INFER, "mining_algorithm": algorithm, "model_params_path": model_files(trained)}
    rc, log = run_task(root, ["mining", "infer"], config)
    assert rc == 0, log[-2000:]
    check_mining_tsv(str(root / "out" / "result.tsv"), paths)
    together = check_infer_json(str(root / "out" / "infer-result.json"), paths, NAMES, legacy=False)
    check_monitor_running(str(root / "out" / "monitor.txt"), "t0000sample", 1.0)
    rc, log = run_task(root, ["infer"], config)
    assert rc == 0, log[-2000:]
    assert check_infer_json(str(root / "out" / "infer-result.json"), paths, NAMES, legacy=False) == together, \
        "mining + infer in one run writes what infer alone writes"


def test_infer_boxes_match_ultralytics_predict(trained, sample_root):
    """The same model and images through a plain `YOLO.predict` (one image a batch, as its predictor
    letterboxes): each side's 5 best boxes per image have a twin on the other side, same class, same score,
    every edge within 1 pixel (a letterbox offset or a scale slip would pass the format checks, not this)."""
    from ultralytics import YOLO

    paths = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    best = trained / "out" / "models" / "best.pt"
    config = {**TINY_INFER, "batch_size_per_gpu": 1, "conf_thres": 0.001, "model_params_path": [str(best)]}
    rc, log = run_task(sample_root, ["infer"], config)
    assert rc == 0, log[-2000:]
    ours = check_infer_json(str(sample_root / "out" / "infer-result.json"), paths, NAMES, legacy=False)
    model = YOLO(str(best))

    def twin(box, others):
        return any(cls == box[0] and abs(score - box[1]) <= 1e-3
                   and max(abs(a - b) for a, b in zip(edges, box[2], strict=True)) <= 1.0 for cls, score, edges in others)

    compared = 0
    for path in paths:
        result = model.predict(path, imgsz=TINY_INFER["img_size"], conf=0.001, iou=0.45, max_det=300, device="cpu",
                               verbose=False)[0]
        theirs = [(int(c), s, xyxy) for c, s, xyxy in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist(),
                                                           result.boxes.xyxy.tolist(), strict=True)]
        mine = [(NAMES.index(b["class_name"]), b["score"], [b["box"]["x"], b["box"]["y"], b["box"]["x"] + b["box"]["w"],
                                                             b["box"]["y"] + b["box"]["h"]]) for b in ours[Path(path).name]["boxes"]]
        for box in sorted(mine, key=lambda b: -b[1])[:5]:
            assert twin(box, theirs), (path, box)
            compared += 1
        for box in sorted(theirs, key=lambda b: -b[1])[:5]:
            assert twin(box, mine), (path, box)
    assert compared >= len(paths), "too few boxes to compare"


@pytest.mark.parametrize("config, code, words", [
    ({"model_params_path": ["/nowhere/best.pt"]}, 300004, "/nowhere/best.pt"),
    ({"class_names": ["circle", "zebra"]}, 300004, "zebra"),
    ({"conf_thres": "high"}, 300001, "conf_thres"),
])
def test_infer_errors_fail_fast_and_explain(trained, candidates_root, config, code, words):
    root, _, _ = candidates_root
    rc, log = run_task(root, ["infer"], {**TINY_INFER, "model_params_path": model_files(trained), **config})
    assert rc != 0
    assert words in check_monitor_error(str(root / "out" / "monitor.txt"), code)
    assert words in last_line(log)
    assert not (root / "out" / "infer-result.json").exists()


def test_cpu_engine_runs_as_ultralytics_predictor_does(trained):
    """Same CPU thread count and memory format as Ultralytics' predictor (importing ultralytics sets
    OMP_NUM_THREADS=1; only its select_device raises the count again, and our engine bypasses it), the count
    taken of the CPUs this process may use (``test_runtime::test_cpu_threads_*``)."""
    import torch
    from executor import runtime
    from executor.engine import Engine
    from ultralytics.utils import NUM_THREADS

    torch.set_num_threads(NUM_THREADS + 1)
    engine = Engine(trained / "out" / "models" / "best.pt", "cpu", 64, True, NAMES)
    assert torch.get_num_threads() == runtime.cpu_threads() == min(NUM_THREADS, max(1, runtime.usable_cpus() - 1))
    assert not engine.half, "half precision is for GPUs"
    conv = next(m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (platform.machine() in ("x86_64", "AMD64"))


def bad_checkpoint(kind: str, trained: Path, path: Path) -> Path:
    """A .pt file that is not a usable YOLO checkpoint: garbage, a truncated real one, or a plain state_dict."""
    import torch

    if kind == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif kind == "truncated":
        full = (trained / "out" / "models" / "best.pt").read_bytes()
        path.write_bytes(full[: len(full) // 2])
    else:
        torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "state_dict"])
def test_not_a_model_file(trained, candidates_root, tmp_path, kind):
    root, _, _ = candidates_root
    fake = bad_checkpoint(kind, trained, tmp_path / "best.pt")
    rc, log = run_task(root, ["infer"], {**TINY_INFER, "model_params_path": [str(fake)]})
    assert rc != 0 and "cannot load" in check_monitor_error(str(root / "out" / "monitor.txt"), 300004)
    assert "cannot load" in last_line(log) and str(fake) in last_line(log)


@pytest.mark.parametrize("kind", ["truncated", "state_dict"])
def test_pretrained_model_not_a_yolo_checkpoint(trained, sample_root, tmp_path, kind):
    fake = bad_checkpoint(kind, trained, tmp_path / "best.pt")
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, "epochs": 1, "pretrained_model_params": [str(fake)]})
    assert rc != 0
    message = check_monitor_error(str(sample_root / "out" / "monitor.txt"), 300004)
    assert message.startswith(f"cannot load {fake} as pretrained weights") and "choose a model" in last_line(log), message


def test_training_exports_onnx_and_filters_files(sample_root):
    config = {**TINY_TRAINING, "epochs": 1, "save_period": 1, "export_onnx": "true", "opset": 12,
              "ymir_saved_file_patterns": r"^best\."}
    rc, log = run_task(sample_root, ["training"], config)
    assert rc == 0, log[-2000:]
    data = check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)
    assert list(data["model_stages"]) == ["best"], "stages whose files the patterns drop are left out"
    assert data["model_stages"]["best"]["files"] == ["best.pt", "best.onnx"]
    assert (sample_root / "out" / "models" / "best.onnx").stat().st_size > 100_000
    top = sorted(p.name for p in (sample_root / "out" / "models").iterdir() if p.is_file())
    assert top == ["best.onnx", "best.pt", "result.yaml"], "YMIR packs /out/models: only what result.yaml lists is left"


def test_a_failed_onnx_export_keeps_the_trained_stages(sample_root):
    """opset 30 is within the template's range but not supported by torch's exporter: the .pt stages stay."""
    config = {**TINY_TRAINING, "epochs": 1, "save_period": 0, "export_onnx": "true", "opset": 30}
    rc, log = run_task(sample_root, ["training"], config)
    assert rc == 0, log[-2000:]
    data = check_result_yaml(str(sample_root / "out" / "models" / "result.yaml"), legacy=False)
    assert data["model_stages"]["best"]["files"] == ["best.pt"]
    assert not (sample_root / "out" / "models" / "best.onnx").exists()
    assert "ONNX export failed" in log and "stages are kept without best.onnx" in log


def test_file_patterns_that_keep_nothing_fail_before_training(sample_root):
    rc, log = run_task(sample_root, ["training"], {**TINY_TRAINING, "ymir_saved_file_patterns": r"^model\.bin$"})
    assert rc != 0 and "Starting training" not in log
    message = check_monitor_error(str(sample_root / "out" / "monitor.txt"), 300001)
    assert message.startswith("ymir_saved_file_patterns '^model\\.bin$' keeps none of the files"), message


def test_stage_callbacks_survive_ddp_pickling(tmp_path):
    """Ultralytics cloudpickles callbacks into its DDP workers; ours must survive and work there."""
    import cloudpickle

    out = tmp_path / "out"
    recorder = stage_recorder(out)
    registered = {event: [callback] for event, callback in callbacks.callbacks(recorder).items()}  # Ultralytics' layout
    assert recorder.tb is not None  # a live writer must not stop pickling
    restored = cloudpickle.loads(cloudpickle.dumps(registered))

    class Trainer:
        epoch, tloss, metrics, lr = 0, None, {"metrics/mAP50(B)": 0.5}, {"lr/pg0": 0.01}

        @staticmethod
        def label_loss_items(loss, prefix):
            return {f"{prefix}/box_loss": 1.0}

    restored["on_fit_epoch_end"][0](Trainer())
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_demo_runs_end_to_end(tmp_path):
    """`make demo` is one of the README's two commands: its quick mode must train, mine and infer."""
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "app" / "demo.py"), str(tmp_path / "demo"), "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = proc.stdout[proc.stdout.index("==== demo summary ===="):]
    assert "best stage" in summary and "mining+infer:" in summary and "12 candidates" in summary
    default = load_template("mining")["mining_algorithm"]
    assert f"({default}, the template's default)" in summary  # the demo shows what a user gets
    assert f"mining done ({default})" in proc.stdout + proc.stderr
    check_result_yaml(str(tmp_path / "demo" / "out-training" / "models" / "result.yaml"), legacy=False)
    paths = [p for p in (tmp_path / "demo" / "in" / "candidate-index.tsv").read_text().splitlines() if p]
    check_mining_tsv(str(tmp_path / "demo" / "out-mining-infer" / "result.tsv"), paths)
    check_infer_json(str(tmp_path / "demo" / "out-mining-infer" / "infer-result.json"), paths, NAMES, legacy=False)


@pytest.mark.parametrize("height, width", [(96, 128), (131, 97), (60, 80), (1, 40), (700, 300)])
def test_letterbox_and_box_mapping_match_ultralytics(height, width):
    """The engine's input is Ultralytics' own rectangular letterbox (`LetterBox(auto=True)`, as its predictor
    uses for one image), pixel for pixel, and boxes map back to the image as its `ops.scale_boxes` maps them.
    (A model trained for seconds draws whole-image boxes, so the comparison with `YOLO.predict` above cannot
    see a letterbox offset or a scale slip; these two checks can.)"""
    import torch
    from executor.engine import to_image_frame
    from executor.inputs import Meta, letterbox
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ops

    image = np.random.default_rng(height * width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ours, ratio, pad = letterbox(image, 64)
    theirs = LetterBox(new_shape=(64, 64), auto=True, stride=32)(image=image)
    assert ours.shape == theirs.shape and (ours == theirs).all()
    meta = Meta(0, "x.jpg", width, height, ratio, pad)
    h, w = ours.shape[:2]
    boxes = torch.tensor([[0.25 * w, 0.25 * h, 0.75 * w, 0.75 * h], [pad[0] + 1, pad[1] + 1, w / 2, h / 2]])
    det = torch.cat([boxes, torch.tensor([[0.9, 0.0], [0.8, 1.0]])], 1)
    expected = ops.scale_boxes((h, w), boxes.clone(), (height, width))  # clips to the image, as ymir_box does
    mapped = to_image_frame(det, [len(det)], [meta])
    mapped = mapped[:, :4]
    mapped[:, [0, 2]] = mapped[:, [0, 2]].clamp(0, width)
    mapped[:, [1, 3]] = mapped[:, [1, 3]].clamp(0, height)
    assert torch.allclose(mapped, expected, atol=1e-3), (mapped, expected)
