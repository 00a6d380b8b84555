"""The device decoder (``executor.decode``), run on the CPU: the same code path as on a GPU but for nvJPEG
itself (torchvision's CPU decoder stands in for it). Pixels, EXIF orientation, the letterbox, and the
fallback to the CPU path for every file the device path does not take or the decoder refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import model_files
from executor import decode, weights
from executor.engine import PAD_VALUE, STRIDE, Engine, letterbox, read_image
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients with texture, RGB uint8: JPEG-like content with edges both axes can tell apart."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 97 * 2.6], axis=-1)
    base[: height // 3, : width // 4] = (250, 20, 20)  # a red block in the top-left corner marks the orientation
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def save(path, rgb: np.ndarray, **kwargs) -> str:
    Image.fromarray(rgb).save(path, format="JPEG", quality=90, **kwargs)
    return str(path)


def decoded_rgb(path: str) -> np.ndarray:
    encoded = decode.read_encoded(path)
    assert encoded is not None, "the device path takes this file"
    (image,) = decode.decode([encoded], torch.device("cpu"))
    assert image is not None
    return image.permute(1, 2, 0).numpy()


def opencv_rgb(path: str) -> np.ndarray:
    image, problem = read_image(path)
    assert image is not None, problem
    return image[:, :, ::-1]


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grayscale"])
def test_the_device_path_decodes_what_opencv_decodes(tmp_path, kind):
    rgb = photo(203, 117)
    if kind == "grayscale":
        path = str(tmp_path / "g.jpg")
        Image.fromarray(rgb).convert("L").save(path, quality=90)
    else:
        path = save(tmp_path / f"{kind}.jpg", rgb, progressive=kind == "progressive")
    ours, theirs = decoded_rgb(path), opencv_rgb(path)
    assert ours.shape == theirs.shape == (117, 203, 3)
    assert int(np.abs(ours.astype(int) - theirs).max()) <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_opencv_and_pil_apply_it(tmp_path, orientation):
    exif = Image.Exif()
    exif[decode.ORIENTATION_TAG] = orientation
    path = save(tmp_path / f"o{orientation}.jpg", photo(160, 90), exif=exif)
    ours, theirs = decoded_rgb(path), opencv_rgb(path)
    assert ours.shape == theirs.shape and ours.shape[:2] == ((160, 90) if orientation >= 5 else (90, 160))
    assert int(np.abs(ours.astype(int) - theirs).max()) <= 1


def test_files_the_device_path_does_not_take(tmp_path):
    rgb = photo(64, 48)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)  # JPEG magic, no parsable header
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("a.png", "cmyk.jpg", "junk.jpg", "empty.jpg", "missing.jpg"):
        assert decode.read_encoded(str(tmp_path / name)) is None, name


@pytest.mark.parametrize("size", [(1000, 750), (375, 500), (640, 640), (100, 37), (64, 64)])
def test_the_device_letterbox_is_opencvs_within_two_grey_levels(size):
    rgb = photo(*size, seed=size[0])
    ours, ratio, pad = decode.letterbox_tensor(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), 320, STRIDE,
                                               PAD_VALUE)
    theirs, ratio_cv, pad_cv = letterbox(rgb[:, :, ::-1].copy(), 320)
    assert (ratio, pad) == (ratio_cv, pad_cv)
    theirs_chw = torch.from_numpy(theirs[:, :, ::-1].transpose(2, 0, 1).copy())
    assert ours.shape == theirs_chw.shape and ours.dtype == torch.uint8
    assert int((ours.int() - theirs_chw.int()).abs().max()) <= 2


def test_an_image_the_decoder_refuses_costs_its_batch_mates_nothing(tmp_path):
    good = [save(tmp_path / f"{i}.jpg", photo(120, 80, seed=i)) for i in range(3)]
    whole = open(good[0], "rb").read()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # torchvision refuses a truncated JPEG
    paths = [good[0], str(tmp_path / "cut.jpg"), *good[1:]]
    encoded = [decode.read_encoded(p) for p in paths]
    assert all(e is not None for e in encoded), "the truncated file's header is fine: it reaches the decoder"
    images = decode.decode(encoded, torch.device("cpu"))
    assert [im is None for im in images] == [False, True, False, False]
    assert np.array_equal(images[0].permute(1, 2, 0).numpy(), decoded_rgb(good[0]))


def test_the_engine_decoding_on_its_device_gives_the_cpu_paths_inputs(trained, tmp_path):
    """Every candidate comes out once, with the CPU path's size, scale and padding and its pixels within
    2 grey levels; the truncated JPEG the decoder refuses is decoded by OpenCV (its visible part), the junk
    file is reported unreadable by both paths."""
    sizes = [(300, 200), (200, 300), (300, 200), (640, 360), (90, 160), (300, 200)]
    paths = [save(tmp_path / f"{i}.jpg", photo(w, h, seed=i)) for i, (w, h) in enumerate(sizes)]
    data = open(paths[0], "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    Image.fromarray(photo(100, 100)).save(tmp_path / "p.png")
    paths += [str(tmp_path / n) for n in ("cut.jpg", "junk.jpg", "p.png")]
    best = weights.choose(model_files(trained), str(tmp_path), "test")

    def inputs(on_device: bool):
        engine = Engine(best, "cpu", 96, False, ["circle", "square"], decode_on_device=on_device)
        found, unreadable = {}, []
        for images, metas, bad in engine.batches(paths, 4, 0):
            unreadable += [m.path for m in bad]
            for image, meta in zip(images if images is not None else [], metas, strict=True):
                found[meta.path] = (image, (meta.index, meta.width, meta.height, meta.ratio, meta.pad))
        return found, unreadable

    (cpu, cpu_bad), (dev, dev_bad) = inputs(False), inputs(True)
    assert cpu_bad == dev_bad == [str(tmp_path / "junk.jpg")]
    assert set(cpu) == set(dev) == set(paths) - {str(tmp_path / "junk.jpg")}
    for path in cpu:
        assert cpu[path][1] == dev[path][1], path
        assert int((cpu[path][0].int() - dev[path][0].int()).abs().max()) <= 2, path


# ---------------------------------------------------------------- reduced-scale decoding (``reduced_decode``)


@pytest.mark.parametrize("width, height, orientation, img_size, factor", [
    (4000, 3000, 1, 640, 4),   # 1000x750 still holds the 640x480 letterbox; 500x375 would not
    (3000, 4000, 1, 640, 4),
    (4000, 3000, 6, 640, 4),   # shown as 3000x4000: the same factor
    (1280, 960, 1, 640, 2),
    (1000, 700, 1, 640, 1),    # any reduction would fall below the letterbox
    (960, 720, 1, 160, 4),
    (5000, 300, 1, 640, 4),    # letterbox 640x38: the long side decides
])
def test_the_reduction_keeps_the_decoded_image_no_smaller_than_its_letterbox(tmp_path, width, height, orientation,
                                                                             img_size, factor):
    from executor.engine import reduction

    exif = Image.Exif()
    exif[decode.ORIENTATION_TAG] = orientation
    path = tmp_path / "p.jpg"
    Image.new("RGB", (width, height), (90, 120, 150)).save(path, quality=80, exif=exif)
    shown = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    assert reduction(str(path), img_size) == (factor, *shown)
    Image.new("RGB", (width, height)).save(tmp_path / "p.png")
    assert reduction(str(tmp_path / "p.png"), img_size)[0] == 1, "libjpeg's scaling is for JPEGs only"


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_a_reduced_decode_gives_the_full_decodes_input_and_maps_boxes_back(tmp_path, orientation):
    """The model input from an eighth-scale decode: same shape, padding and box mapping as the full decode's,
    pixels closer to the full image shrunk by area averaging (Ultralytics' validation resize) than the full
    decode's linear shrink is; the red corner
    block (orientation marker) lands where the full decode puts it, in the image's displayed frame."""
    from executor.engine import load, reduction

    exif = Image.Exif()
    exif[decode.ORIENTATION_TAG] = orientation
    path = save(tmp_path / "big.jpg", photo(2600, 1900, seed=orientation), exif=exif)
    full, full_meta = load(0, path, 320)
    reduced, meta = load(0, path, 320, reduced=True)
    assert reduced.shape == full.shape and meta.pad == full_meta.pad
    assert (meta.width, meta.height) == (full_meta.width, full_meta.height)
    factor, width, height = reduction(path, 320)
    assert factor == 8  # 325x238 holds the 320x234 letterbox
    # the decoded side is ceil(side / 8): its last pixel is a partial block, so the scales differ by under a pixel
    assert meta.ratio == pytest.approx(full_meta.ratio, rel=factor / min(width, height))
    image = opencv_rgb(path)
    nw, nh = round(image.shape[1] * meta.ratio[0]), round(image.shape[0] * meta.ratio[1])
    area = cv2_resize_area(image, nw, nh)
    left, top = int(meta.pad[0]), int(meta.pad[1])
    inside = reduced.permute(1, 2, 0).numpy()[top : top + nh, left : left + nw].astype(int)
    linear = full.permute(1, 2, 0).numpy()[top : top + nh, left : left + nw].astype(int)
    # this grainy image: 3.8 grey levels from the area shrink on average, the full decode's linear shrink 5.8
    assert np.abs(inside - area).mean() < min(4.5, np.abs(linear - area).mean()), "an area-like shrink"
    red = (inside[:, :, 0] > 200) & (inside[:, :, 1] < 80)
    expected = (area[:, :, 0] > 200) & (area[:, :, 1] < 80)
    assert (red == expected).mean() > 0.98, "the orientation marker where the full decode has it"


def cv2_resize_area(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA).astype(int)


def test_a_reduced_decode_falls_back_to_the_full_decode(tmp_path):
    """A truncated JPEG decodes at the reduced scale what its visible part holds; a small one, a PNG and a
    file no decoder reads take the full path, as without ``reduced_decode``."""
    from executor.engine import load

    data = open(save(tmp_path / "whole.jpg", photo(2600, 1900)), "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    tensor, meta = load(0, str(tmp_path / "cut.jpg"), 320, reduced=True)
    assert tensor is not None and (meta.width, meta.height) == (2600, 1900)
    save(tmp_path / "small.jpg", photo(300, 200))
    Image.fromarray(photo(900, 700)).save(tmp_path / "p.png")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff not really")
    for name in ("small.jpg", "p.png", "junk.jpg"):
        plain, plain_meta = load(0, str(tmp_path / name), 160)
        reduced, meta = load(0, str(tmp_path / name), 160, reduced=True)
        assert (plain is None) == (reduced is None) and (plain is None or torch.equal(plain, reduced)), name
        assert (meta.width, meta.height, meta.ratio, meta.problem) == (plain_meta.width, plain_meta.height,
                                                                        plain_meta.ratio, plain_meta.problem)


def test_infer_with_reduced_decode_writes_every_candidate_with_boxes_in_the_image(sample_root, trained, tmp_path):
    """Infer with ``reduced_decode`` on photo-sized JPEGs: every candidate, boxes in the full image's pixels
    (their mean centre where the full decode's boxes have it, not in a corner at 1/8 of the scale)."""
    from conftest import TINY_INFER, run_task
    from contract import check_infer_json

    sources = [p for p in (sample_root / "in" / "candidate-index.tsv").read_text().splitlines() if p][:4]
    big = []
    for k, source in enumerate(sources):  # the sample's images blown up to photo size: decoded at 1/8 at 64 px
        size = (1400, 1000) if k % 2 else (900, 1300)
        Image.open(source).convert("RGB").resize(size).save(tmp_path / f"big-{k}.jpg", quality=90)
        big.append(str(tmp_path / f"big-{k}.jpg"))
    sizes = {p.rsplit("/", 1)[-1]: Image.open(p).size for p in big + sources}
    index = sample_root / "in" / "candidate-index.tsv"
    saved = index.read_text()
    index.write_text("\n".join(big + sources) + "\n")
    centres = {}
    try:
        for reduced in (False, True):
            config = {**TINY_INFER, "conf_thres": 0.001, "model_params_path": model_files(trained), "reduced_decode": reduced}
            rc, log = run_task(sample_root, ["infer"], config)
            assert rc == 0, log[-2000:]
            result = check_infer_json(str(sample_root / "out" / "infer-result.json"), big + sources, ["circle", "square"],
                                      legacy=False)
            for name, entry in result.items():
                boxes = np.array([[b["box"]["x"], b["box"]["y"], b["box"]["w"], b["box"]["h"]] for b in
                                  (e for e in entry["boxes"])], dtype=float).reshape(-1, 4)
                assert (boxes[:, 0] + boxes[:, 2] <= sizes[name][0]).all() and (boxes[:, 1] + boxes[:, 3] <= sizes[name][1]).all()
                if name.startswith("big"):
                    assert len(boxes), name
                    centres[reduced, name] = (boxes[:, :2] + boxes[:, 2:] / 2).mean(0) / sizes[name]
    finally:
        index.write_text(saved)
    for name in (n for n in sizes if n.startswith("big")):
        assert np.abs(centres[True, name] - centres[False, name]).max() < 0.15, name
