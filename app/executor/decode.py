"""Decoding candidates on the device: JPEG bytes read in the DataLoader workers, decoded in batches by
``torchvision.io.decode_jpeg`` on the engine's device (nvJPEG on CUDA), the EXIF orientation applied and the
letterbox made there. Why: on a GPU node a 12 MP JPEG costs a CPU core about 0.1 s to decode, so a few
workers cannot feed a forward pass that takes a millisecond per image.

Behind this one module because torchvision 0.29 marks its image decoders deprecated in favour of
TorchCodec: a later switch changes this file alone.

What goes down this path, and what does not: a file that starts as a JPEG and whose header PIL reads as RGB
or grayscale. Anything else (PNG, CMYK or YCCK JPEGs, a header PIL cannot parse) takes the CPU path of
``inputs.read_image``, as does any image the device decoder refuses (a truncated file, a progressive oddity):
nothing that decodes today is lost. Pixels: torchvision's decoder and OpenCV's give the same values on the
CPU (both libjpeg-turbo; a test checks it); nvJPEG's IDCT may differ by a grey level or so.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
ORIENTATION_TAG = 0x0112
DECODABLE_MODES = ("RGB", "L")  # what the device path takes; CMYK and YCCK JPEGs go to OpenCV


@dataclass
class Encoded:
    """A JPEG's bytes, read in a worker, and the EXIF orientation (1-8) to apply after decoding."""

    data: torch.Tensor  # 1-D uint8, on the CPU
    orientation: int


def read_encoded(path: str) -> Encoded | None:
    """The file's bytes when the device decoder may take it, else None (the CPU path decodes it)."""
    try:
        with open(path, "rb") as fp:
            data = fp.read()
    except OSError:
        return None
    if not data.startswith(JPEG_MAGIC):
        return None
    try:  # the header only: PIL decodes no pixels here
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG" or im.mode not in DECODABLE_MODES:
                return None
            orientation = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a header PIL cannot parse: let the CPU path decide
        return None
    if orientation not in range(1, 9):
        orientation = 1  # as OpenCV and PIL read an out-of-range tag
    return Encoded(torch.frombuffer(bytearray(data), dtype=torch.uint8), orientation)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A CHW image turned to its display frame by an EXIF orientation, as PIL's ``exif_transpose`` and
    OpenCV's ``imread`` do (a test checks all eight): torchvision applies it on the CPU only."""
    if orientation in (5, 6, 7, 8):
        image = image.transpose(-1, -2)  # 5: transpose; the others are a transpose and a flip
    flip = {2: (-1,), 3: (-1, -2), 4: (-2,), 6: (-1,), 7: (-1, -2), 8: (-2,)}.get(orientation)
    return image.flip(flip) if flip else image


def letterbox_geometry(h: int, w: int, size: int, stride: int) -> tuple[int, int, int, int, int, int]:
    """The resized (width, height), the padded (width, height) and the (left, top) padding of an h x w image:
    Ultralytics' rectangular-inference letterbox, for the CPU path and the device path alike."""
    ratio = min(size / h, size / w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    pw, ph = -(-nw // stride) * stride, -(-nh // stride) * stride
    return nw, nh, pw, ph, (pw - nw) // 2, (ph - nh) // 2


def letterbox_tensor(image: torch.Tensor, size: int, stride: int, pad_value: int
                     ) -> tuple[torch.Tensor, tuple[float, float], tuple[float, float]]:
    """``inputs.letterbox`` on a CHW uint8 tensor, on its device: bilinear without antialiasing, as OpenCV's
    ``INTER_LINEAR`` resizes (within 2 grey levels of it, a test checks), into one padded canvas."""
    h, w = image.shape[-2:]
    nw, nh, pw, ph, left, top = letterbox_geometry(h, w, size, stride)
    out = torch.full((image.shape[0], ph, pw), pad_value, dtype=torch.uint8, device=image.device)
    if (nw, nh) != (w, h):
        resized = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False,
                                antialias=False)[0]
        out[:, top : top + nh, left : left + nw] = resized.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out[:, top : top + nh, left : left + nw] = image
    return out, (nw / w, nh / h), (left, top)


def _decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29: see the module's docstring
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


class Decoder:
    """Batched decoding on one device. On CUDA it runs on a stream of its own: nvJPEG's hardware decoder
    (H100/H200 and later) writes its outputs before work already queued on its stream has run, and the caching
    allocator may hand it memory that work still reads (pytorch/vision PR #9606; torchcodec PR #1634 adds a
    barrier). The allocator keeps each stream's freed blocks for that stream, so the decoder, on its own stream,
    never receives what the forward passes freed; what it may receive is only what its own previous batch freed,
    and before each batch the host waits for that batch's event (its decoding, not the model's forward pass,
    which the earlier barrier, a synchronisation of the whole stream, waited for every loaded batch). The
    outputs are handed to the caller's stream: it waits for the decoder's work, and each output is marked as
    used there (``record_stream``), so that its memory returns to the decoder only once that use is done.
    ``cuda``: torch.cuda, or a stand-in for the CPU tests of this ordering."""

    def __init__(self, device: torch.device, cuda: object = None) -> None:
        self.device = device
        self.cuda = cuda if cuda is not None else torch.cuda
        self.stream = self.cuda.Stream(device) if device.type == "cuda" else None
        self.done = None  # the previous batch's event, recorded on self.stream

    def __call__(self, data: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.stream is None:
            return _decode(data, self.device)
        if self.done is not None:
            self.done.synchronize()
        caller = self.cuda.current_stream(self.device)  # no wait for it: the bytes come from the host
        with self.cuda.stream(self.stream):
            try:
                images = _decode(data, self.device)
            finally:
                self.done = self.cuda.Event()
                self.done.record(self.stream)
        caller.wait_stream(self.stream)
        for image in images:
            image.record_stream(caller)
        return images


_DECODERS: dict[torch.device, Decoder] = {}


def decode(encoded: list[Encoded], device: torch.device) -> list[torch.Tensor | None]:
    """RGB CHW uint8 images on ``device`` in the display frame, one per input; None for an image the decoder
    refuses. One batched call, and one call per image when the batch fails (a batch returns no partial
    results), so that one bad file costs its batch-mates nothing. On the device's ``Decoder``."""
    if not encoded:
        return []
    if device not in _DECODERS:
        _DECODERS[device] = Decoder(device)  # one stream per device, for the process's life
    decoder = _DECODERS[device]
    try:
        images: list[torch.Tensor | None] = list(decoder([e.data for e in encoded]))
    except RuntimeError:
        images = []
        for e in encoded:
            try:
                images.append(decoder([e.data])[0])
            except RuntimeError:
                images.append(None)
    return [None if im is None else orient(im, e.orientation) for im, e in zip(images, encoded, strict=True)]


def to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    """OpenCV's BGR HxWx3 as the model's RGB CHW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1)))
