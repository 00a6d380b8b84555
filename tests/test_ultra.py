"""One test per Ultralytics internal the executor touches (app/executor/ultra.py): an Ultralytics upgrade
that changes one fails the test named after it, not a user's run."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from executor import dataset, sample, ultra


def test_only_the_adapter_imports_ultralytics():
    for path in sorted((ROOT / "app" / "executor").rglob("*.py")):
        if path.name == "ultra.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "ultralytics" for n in names), path


def test_quiet_settings_keys_exist():
    from ultralytics.utils import SETTINGS

    assert set(ultra.QUIET_SETTINGS) <= set(SETTINGS), "a settings key we turn off no longer exists"


def test_fonts_are_the_ones_plots_look_for():
    from ultralytics.utils.checks import check_font

    for name in ultra.FONTS:  # runtime.setup put local copies in the settings folder: no download
        assert Path(check_font(name)).is_file()


def test_not_an_image_raises_an_error_the_converter_catches(tmp_path):
    import ultralytics  # noqa: F401 - its import patches PIL.Image.open
    from PIL import Image, UnidentifiedImageError

    path = tmp_path / "text.jpg"
    path.write_text("not an image")
    with pytest.raises((OSError, UnidentifiedImageError, ValueError, *ultra.NOT_AN_IMAGE_ERRORS)):
        Image.open(path)


def test_cpu_threads():
    assert 1 <= ultra.cpu_threads() <= (os.cpu_count() or 1)


def test_load_detector_and_the_head_output_layout(trained):
    model, _ = ultra.load_detector(trained / "out" / "models" / "best.pt", torch.device("cpu"))
    with torch.inference_mode():
        decoded, logits, feats = ultra.split_head_output(model.eval()(torch.zeros(2, 3, 64, 96)))
    anchors = sum(f.shape[-2] * f.shape[-1] for f in feats)
    assert len(feats) == 3 and all(f.shape[0] == 2 for f in feats)
    assert decoded.shape == (2, 4 + len(model.names), anchors) and logits.shape == (2, len(model.names), anchors)


def test_nms_output_layout():
    decoded = torch.zeros(1, 6, 10)
    decoded[0, :4, 0] = torch.tensor([20.0, 20.0, 10.0, 10.0])  # cx cy w h
    decoded[0, 5, 0] = 0.9
    (det,) = ultra.nms(decoded, 0.25, 0.45, 300, end2end=False)
    assert det.shape == (1, 6) and det[0, :4].tolist() == [15.0, 15.0, 25.0, 25.0] and det[0, 5] == 1


@pytest.mark.parametrize("class_scores", [0, 3])
def test_nms_has_no_time_limit(monkeypatch, class_scores):
    """Ultralytics' NMS stops after 2 s + 0.05 s per image and leaves the batch's other images without boxes; a
    clock that jumps 100 s per look must not cost any image its boxes."""
    import itertools

    from ultralytics.utils import nms as ultralytics_nms

    clock = itertools.count(0, 100.0)
    monkeypatch.setattr(ultralytics_nms.time, "time", lambda: next(clock))
    decoded = torch.zeros(4, 4 + 3, 10)
    decoded[:, :4, 0] = torch.tensor([20.0, 20.0, 10.0, 10.0])
    decoded[:, 5, 0] = 0.9
    dets = ultra.nms(decoded, 0.25, 0.45, 300, end2end=False, class_scores=class_scores)
    assert [len(d) for d in dets] == [1, 1, 1, 1]


def test_nms_carries_every_class_score_of_the_kept_boxes():
    """For class-aware mining: each kept box brings the scores of all classes at its anchor, through the NMS
    (a suppressed box's scores do not leak into the kept one)."""
    decoded = torch.zeros(1, 4 + 3, 10)
    decoded[0, :4, 0] = torch.tensor([20.0, 20.0, 10.0, 10.0])
    decoded[0, 4:, 0] = torch.tensor([0.2, 0.9, 0.7])
    decoded[0, :4, 1] = torch.tensor([20.5, 20.0, 10.0, 10.0])  # overlaps anchor 0, lower score: suppressed
    decoded[0, 4:, 1] = torch.tensor([0.1, 0.8, 0.05])
    decoded[0, :4, 2] = torch.tensor([60.0, 60.0, 10.0, 10.0])
    decoded[0, 4:, 2] = torch.tensor([0.6, 0.0, 0.3])
    (det,) = ultra.nms(decoded, 0.25, 0.45, 300, end2end=False, class_scores=3)
    assert det.shape == (2, 9)
    assert det[:, 4:6].tolist() == [[pytest.approx(0.9), 1.0], [pytest.approx(0.6), 0.0]]
    assert det[0, 6:].tolist() == pytest.approx([0.2, 0.9, 0.7]) and det[1, 6:].tolist() == pytest.approx([0.6, 0.0, 0.3])
    end2end = torch.tensor([[[10.0, 10.0, 20.0, 20.0, 0.8, 2.0]]])
    (det,) = ultra.nms(end2end, 0.25, 0.45, 300, end2end=True, class_scores=3)
    assert det[0, 6:].tolist() == pytest.approx([0.0, 0.0, 0.8])


def test_models_architecture_and_strip_optimizer(trained, tmp_path):
    assert ultra.architecture(ultra.new_model("yolov8n")) == "yolov8n"
    best = trained / "out" / "models" / "best.pt"
    assert ultra.architecture(ultra.load_model(best)) == "yolo11n"
    ultra.strip_optimizer(best, tmp_path / "stripped.pt")
    assert ultra.architecture(ultra.load_model(tmp_path / "stripped.pt")) == "yolo11n"
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 - any error: the caller reports it as a model error
        ultra.load_model(tmp_path / "garbage.pt")


def test_trainer_attributes_the_callbacks_read(sample_root, tmp_path):
    """A real one-epoch training, every accessor called from the event our callbacks use it in."""
    seen: dict[str, object] = {}
    data = dataset.convert(str(sample_root / "in" / "train-index.tsv"), str(sample_root / "in" / "val-index.tsv"),
                           tmp_path / "data", "ark:raw", sample.CLASS_NAMES)
    model = ultra.new_model("yolo11n")
    model.add_callback("on_train_epoch_start", lambda t: seen.setdefault("device", ultra.trainer_device(t)))
    model.add_callback("on_val_start", lambda v: seen.setdefault("val_devices", []).append(ultra.trainer_device(v))
                       or ultra.keep_val_stats(v))
    model.add_callback("on_train_batch_end", lambda t: seen.setdefault("fraction", ultra.epoch_fraction(t, 1)))
    model.add_callback("on_train_epoch_end", lambda t: seen.setdefault("loss", ultra.first_epoch_loss(t)))
    model.add_callback("on_fit_epoch_end", lambda t: seen.setdefault("scalars", ultra.epoch_scalars(t)))

    def on_model_save(trainer):
        seen.update(epoch=ultra.epoch_number(trainer), map50=ultra.map50(trainer), wrote_best=ultra.wrote_best(trainer),
                    checkpoints=[p.is_file() for p in ultra.checkpoints(trainer)], stats=ultra.val_stats(trainer))

    model.add_callback("on_model_save", on_model_save)
    model.add_callback("on_train_end", lambda t: seen.update(conf=t.validator.args.conf, save_dir=ultra.save_dir(t)))
    model.train(data=data, epochs=1, imgsz=32, batch=8, workers=0, device="cpu", project=str(tmp_path / "runs"),
                name="t", exist_ok=True, plots=False, verbose=False, val=True)
    assert seen["device"] == torch.device("cpu")
    assert seen["val_devices"] == [torch.device("cpu")] * 2  # the epoch's validation, then best.pt's (final_eval)
    assert 0 < seen["fraction"] <= 1 and isinstance(seen["loss"], torch.Tensor)
    assert any(k.startswith("train/") for k in seen["scalars"]) and ultra.MAP50 in seen["scalars"]
    assert seen["epoch"] == 1 and 0 <= seen["map50"] <= 1 and isinstance(seen["wrote_best"], bool)
    assert seen["checkpoints"] == [True, True]
    assert seen["conf"] == ultra.VAL_CONF and Path(seen["save_dir"]).is_dir()  # what evaluate_config names
    tp, conf, pred_cls, target_cls = seen["stats"]  # the epoch's validation, kept: the figures come from it
    assert len(tp) == len(conf) == len(pred_cls) and len(target_cls) and tp.dtype == bool
    from executor import evaluate

    assert evaluate.figures(tp, conf, pred_cls, target_cls)["mAP"] == pytest.approx(seen["map50"], abs=1e-9)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="Ultralytics gives a loader at most one worker per CPU")
def test_training_loader_batches(sample_root, tmp_path):
    """The images Ultralytics' training and validation loaders prefetch with one worker, read from the loaders
    a real trainer builds (stopped before its first batch), in training batches: the per-worker half of
    TRAINING_LOADER_BATCHES, by which training caps its workers to what fits in /dev/shm."""
    data = dataset.convert(str(sample_root / "in" / "train-index.tsv"), str(sample_root / "in" / "val-index.tsv"),
                           tmp_path / "data", "ark:raw", sample.CLASS_NAMES)
    model, seen, batch = ultra.new_model("yolo11n"), {}, 4

    class Stop(Exception):
        pass

    def loaders(trainer):
        seen.update(train=trainer.train_loader, val=trainer.test_loader)
        raise Stop

    model.add_callback("on_pretrain_routine_start", lambda t: setattr(t.args, "workers", 1))  # after its CPU override
    model.add_callback("on_pretrain_routine_end", loaders)
    with pytest.raises(Stop):
        model.train(data=data, epochs=1, imgsz=32, batch=batch, device="cpu", project=str(tmp_path / "runs"),
                    name="t", exist_ok=True, plots=False, verbose=False)
    held = sum(loader.num_workers * loader.prefetch_factor * loader.batch_size for loader in seen.values())
    assert seen["train"].num_workers == 1 and seen["val"].batch_size == 2 * batch
    assert held == ultra.TRAINING_LOADER_BATCHES[0] * batch


def test_exif_size_is_the_displayed_size(tmp_path):
    import numpy as np
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    Image.fromarray(np.zeros((30, 50, 3), dtype=np.uint8)).save(tmp_path / "r.jpg", exif=exif)
    with Image.open(tmp_path / "r.jpg") as im:
        assert ultra.exif_size(im) == (30, 50)


def validator_map50(images: list[tuple[torch.Tensor, torch.Tensor]], names: dict[int, str]) -> float:
    """Ultralytics' detection validator's own mAP@0.5 of predictions ``(n, 6)`` against labels ``(m, 5)`` (class,
    xyxy) per image, fed to its ``update_metrics`` and ``get_stats`` as its validation loop feeds them."""
    from ultralytics.models.yolo.detect import DetectionValidator

    validator = DetectionValidator(args={"plots": False, "save_json": False, "save_txt": False})
    validator.names, validator.nc, validator.seen, validator.device = names, len(names), 0, torch.device("cpu")
    validator.is_custom_json = validator.build_gdict = False  # what init_metrics sets without a dataloader
    validator.metrics.names = names
    for pred, labels in images:
        width = height = 1000
        xywh = torch.cat([(labels[:, 1:3] + labels[:, 3:5]) / 2, labels[:, 3:5] - labels[:, 1:3]], 1) / width
        batch = {"batch_idx": torch.zeros(len(labels)), "cls": labels[:, :1], "bboxes": xywh, "ori_shape": [(height, width)],
                 "img": torch.zeros(1, 3, height, width), "ratio_pad": [((1.0, 1.0), (0, 0))], "im_file": ["x.jpg"]}
        pred = pred[pred[:, 4].argsort(descending=True)]  # as its NMS returns them
        validator.update_metrics([{"bboxes": pred[:, :4], "conf": pred[:, 4], "cls": pred[:, 5]}], batch)
    return validator.get_stats()[ultra.MAP50]


def test_true_positives_and_the_stage_map_are_the_validators():
    """The sliced stage mAP (``evaluate.map50``) scores predictions exactly as Ultralytics' validator scores an
    unsliced stage, including where matching by IoU, highest first, and by confidence disagree."""
    from executor import evaluate

    # one label, two boxes: the surer one overlaps less. The validator gives the label to the surer one.
    label = torch.tensor([[0, 100, 100, 200, 200]], dtype=torch.float32)
    pair = torch.tensor([[100, 100, 200, 260, 0.9, 0], [100, 100, 200, 205, 0.8, 0]])  # IoU 0.63 and 0.95
    assert evaluate.true_positives(pair, label).tolist() == [True, False]
    # two labels: the surer box takes the label it overlaps most, which the less sure box overlaps best
    labels = torch.tensor([[0, 0, 0, 100, 100], [0, 60, 0, 160, 100]], dtype=torch.float32)
    boxes = torch.tensor([[35, 0, 135, 100, 0.9, 0], [60, 0, 160, 100, 0.6, 0]])  # (IoU 0.48, 0.6); (0.25, 1.0)
    assert evaluate.true_positives(boxes, labels).tolist() == [True, False]
    names = {0: "a", 1: "b"}
    generator = torch.Generator().manual_seed(0)
    images = [(pair, label), (boxes, labels)]
    for _ in range(12):  # random scenes: jittered copies of the labels, wrong classes, misses, false positives
        n = int(torch.randint(1, 6, (1,), generator=generator))
        corner = torch.rand(n, 2, generator=generator) * 800
        truth = torch.cat([torch.randint(0, 2, (n, 1), generator=generator).float(), corner,
                           corner + 20 + torch.rand(n, 2, generator=generator) * 150], 1)
        copies = truth[torch.randint(0, n, (3 * n,), generator=generator)]
        jitter = (torch.rand(len(copies), 4, generator=generator) - 0.5) * 60
        flip = torch.rand(len(copies), generator=generator) < 0.2
        pred = torch.cat([copies[:, 1:5] + jitter, torch.rand(len(copies), 1, generator=generator),
                          torch.where(flip, 1 - copies[:, 0], copies[:, 0])[:, None]], 1)
        images.append((pred, truth))
    ours = evaluate.map50(images)
    assert 0.1 < ours < 0.99 and ours == pytest.approx(validator_map50(images, names), abs=1e-9)
    by_iou_first = evaluate.map50([(pair, label), (boxes, labels)])
    assert by_iou_first == pytest.approx(validator_map50([(pair, label), (boxes, labels)], names), abs=1e-9)


def test_nms_keeps_classes_apart_on_the_largest_inputs():
    """At the largest img_size (8192), Ultralytics' default class offset (7680 px, added to every coordinate)
    shifts a class-1 box at (40, 40) onto a class-0 box at (7720, 7720), and one suppressed the other;
    ultra.nms's offset keeps both."""
    from ultralytics.utils import nms as ultralytics_nms

    decoded = torch.zeros(1, 6, 2)
    decoded[0, :4, 0] = torch.tensor([7760.0, 7760.0, 80.0, 80.0])  # class 0, cx cy w h
    decoded[0, 4, 0] = 0.9
    decoded[0, :4, 1] = torch.tensor([80.0, 80.0, 80.0, 80.0])  # class 1
    decoded[0, 5, 1] = 0.8
    assert len(ultralytics_nms.non_max_suppression(decoded.clone(), 0.25, 0.45)[0]) == 1, "the default's flaw"
    (det,) = ultra.nms(decoded, 0.25, 0.45, 300, end2end=False)
    assert sorted(det[:, 5].tolist()) == [0.0, 1.0]
    assert ultra.NMS_CLASS_OFFSET > ultra.MAX_IMG_SIZE
    assert len(ultra.nms(decoded, 0.25, 0.45, 300, end2end=False, class_scores=2)[0]) == 2


def test_validation_settings_are_ultralytics_defaults():
    """The sliced stage mAP runs at Ultralytics' validation settings: its default.yaml's NMS IoU and boxes per
    image, and the confidence its validator takes when none is given."""
    import inspect

    from ultralytics.cfg import DEFAULT_CFG
    from ultralytics.engine.validator import BaseValidator

    assert (DEFAULT_CFG.iou, DEFAULT_CFG.max_det, DEFAULT_CFG.conf) == (ultra.VAL_IOU, ultra.VAL_MAX_DET, None)
    assert f"else {ultra.VAL_CONF}" in inspect.getsource(BaseValidator.__init__)
    from ultralytics.models.yolo.detect.val import DetectionValidator

    assert f"multi_label={ultra.VAL_MULTI_LABEL}," in inspect.getsource(DetectionValidator.postprocess)


def test_multi_label_nms_keeps_a_box_once_per_class_above_conf():
    decoded = torch.zeros(1, 4 + 3, 2)
    decoded[0, :4, 0] = torch.tensor([50.0, 50.0, 20.0, 20.0])  # xywh
    decoded[0, 4:, 0] = torch.tensor([0.6, 0.3, 0.0005])
    (single,) = ultra.nms(decoded, 0.001, 0.7, 300, end2end=False)
    (multi,) = ultra.nms(decoded, 0.001, 0.7, 300, end2end=False, multi_label=True)
    assert single[:, 5].tolist() == [0.0] and sorted(multi[:, 5].tolist()) == [0.0, 1.0]


def test_model_stride_end2end_and_names(tmp_path):
    """The padding multiple comes from the model: 32 for the P5 heads, 64 for a P6 model (stride 64), which the
    engine's letterbox then uses."""
    import numpy as np
    from executor import engine, inputs

    p5, p6 = ultra.new_model("yolo11n").model, ultra.new_model("yolov8n-p6").model
    assert ultra.model_stride(p5) == 32 and ultra.model_stride(p6) == 64
    assert ultra.model_end2end(p5) is False and p5.end2end is False  # the property Ultralytics defines
    assert ultra.model_names(p5) == [str(i) for i in range(80)]
    boxed, _, _ = inputs.letterbox(np.zeros((100, 150, 3), np.uint8), 96, ultra.model_stride(p6))
    assert boxed.shape[:2] == (64, 128)  # 96 x 64 resized, padded to multiples of 64
    torch.save({"model": p6}, tmp_path / "p6.pt")
    from PIL import Image

    Image.new("RGB", (150, 100)).save(tmp_path / "a.png")
    scan = engine.Engine(tmp_path / "p6.pt", "cpu", 96, False, ["0"])
    assert scan.inputs.stride == 64
    ((images, _, _),) = list(scan.batches([str(tmp_path / "a.png")], 1, 0))
    assert images.shape[-2:] == (64, 128)  # with the P5 constant 32 it was 64 x 96
