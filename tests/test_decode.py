"""The device decoder (``executor.decode``), run on the CPU: the same code path as on a GPU but for nvJPEG
itself (torchvision's CPU decoder stands in for it). Pixels, EXIF orientation, the letterbox, and the
fallback to the CPU path for every file the device path does not take or the decoder refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import model_files
from executor import decode, weights
from executor.engine import Engine
from executor.inputs import letterbox, read_image
from executor.ultra import MIN_STRIDE as STRIDE
from executor.ultra import PAD_VALUE
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


class StandInCuda:
    """The torch.cuda calls ``decode.Decoder`` makes, recorded in order (no GPU here)."""

    def __init__(self, log: list) -> None:
        self.log, self.streams = log, 0

    def Stream(self, device):  # noqa: N802 - torch.cuda's name
        return self._stream("decoder")

    def current_stream(self, device):
        return self._stream("caller")

    def _stream(self, name):
        log = self.log

        class S:
            def wait_stream(self, other):
                log.append(f"{name} waits for {other.name}")

            def synchronize(self):
                log.append(f"host waits for all of {name}")

        s = S()
        s.name = name
        return s

    def stream(self, s):
        import contextlib

        @contextlib.contextmanager
        def on():
            self.log.append(f"enter {s.name}")
            yield
            self.log.append(f"leave {s.name}")
        return on()

    def Event(self):  # noqa: N802
        self.streams += 1
        log, k = self.log, self.streams

        class E:
            def record(self, s):
                log.append(f"event {k} recorded on {s.name}")

            def synchronize(self):
                log.append(f"host waits for event {k}")
        return E()


def test_the_device_decoder_waits_for_its_own_last_batch_not_for_the_forward_pass(tmp_path, monkeypatch):
    """The order of the CUDA calls around two batches, with torch.cuda stood in: each batch is decoded on the
    decoder's stream; before the second, the host waits for the first batch's event only, never for the caller's
    stream (which holds the forward passes); the caller's stream waits for the decoder's, and each output is
    marked as used on it."""
    log: list[str] = []
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, s: log.append(f"output used on {s.name}"))
    monkeypatch.setattr(decode, "_decode", lambda data, device: log.append("decode") or [image.clone() for _ in data])
    decoder = decode.Decoder(torch.device("cuda", 0), cuda=StandInCuda(log))
    decoder([torch.zeros(1)] * 2)
    decoder([torch.zeros(1)])
    assert log == ["enter decoder", "decode", "event 1 recorded on decoder", "leave decoder", "caller waits for decoder",
                   "output used on caller", "output used on caller",
                   "host waits for event 1", "enter decoder", "decode", "event 2 recorded on decoder", "leave decoder",
                   "caller waits for decoder", "output used on caller"]
    assert not any("host waits for all" in line for line in log)


def test_the_cpu_decoder_has_no_stream():
    decoder = decode.Decoder(torch.device("cpu"))
    assert decoder.stream is None
