"""A model's inputs, from candidate paths to the batches of a forward pass: decoding, letterbox, slicing's
tiles, the DataLoader workers and their hand-over, and the per-shape queues that fill each pass.

Images are decoded and letterboxed in DataLoader workers; with ``gpu_decode`` on a GPU, the workers read
JPEG bytes and ``executor.decode`` decodes and letterboxes them there.

Pixel frame: OpenCV decodes with the EXIF orientation applied, as Ultralytics
does for training, so boxes are in the displayed frame that training
annotations use (see ``dataset``). Grayscale, RGBA, palette and 16-bit images
are converted to 8-bit RGB; an image neither OpenCV nor PIL can decode travels
as metadata only, with the reason.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from executor import decode, runtime, slicing, ultra

LOG = logging.getLogger("executor")


@dataclass(frozen=True)
class InputSpec:
    """What one model on one device takes: the engine's (``Engine.inputs``)."""

    img_size: int
    stride: int  # inputs are padded to a multiple of it (``letterbox``): the model's
    device: torch.device
    slices: slicing.SliceSettings = slicing.OFF  # tiles per image (``slicing``)
    # JPEGs decoded by ``decode`` on the device, not in the workers (never with slicing: its tiles are cut in
    # the workers from the image decoded once, see CandidateTiles)
    decode_on_device: bool = False


def read_image(path: str) -> tuple[np.ndarray | None, str]:
    """BGR uint8 HxWx3 in the display frame, or None and the reason."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return None, "missing images"
    if size == 0:
        return None, "empty (zero-byte) images"
    # cv2.imread applies the EXIF orientation and makes 8-bit BGR. Ours, not Ultralytics' imread: that decodes
    # from bytes and returns None for a truncated JPEG whose visible part cv2.imread decodes (tested).
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is not None and image.size:
        return image, ""
    try:  # formats OpenCV does not read (some CMYK, palette or odd TIFFs; EXIF-rotated TIFFs on OpenCV >= 4.12)
        with Image.open(path) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), ""
    except Exception:  # noqa: BLE001 - any decoder failure means unreadable
        return None, "unreadable images"


def why_unreadable(paths: list[str]) -> list[str]:
    """For each path, why it cannot be decoded ('' when it can): a DataLoader ``collate_fn``, so that the
    decoding runs in the workers."""
    return [read_image(path)[1] for path in paths]


def letterbox(image: np.ndarray, size: int, stride: int = ultra.MIN_STRIDE) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio to fit ``size`` and pad, centred, to the smallest multiple
    of ``stride`` (Ultralytics' rectangular inference): no compute is spent on a square's padding.
    Returns the image, the scale of each axis (the resized sides are rounded, so x and y differ a little,
    as Ultralytics' ``scale_boxes`` accounts for) and the left/top padding. Pixel for pixel what
    Ultralytics' ``LetterBox(auto=True)`` makes (a test checks it); ours because that returns neither the
    scales nor the padding, which mapping boxes back from a batch needs. ``decode.letterbox_tensor`` is the
    same on the device."""
    h, w = image.shape[:2]
    nw, nh, pw, ph, left, top = decode.letterbox_geometry(h, w, size, stride)
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.full((ph, pw, 3), ultra.PAD_VALUE, dtype=np.uint8)
    out[top : top + nh, left : left + nw] = image
    return out, (nw / w, nh / h), (left, top)


@dataclass
class Meta:
    """Where an input came from and how to map boxes back to its pixels."""

    index: int
    path: str
    width: int = 0
    height: int = 0
    ratio: tuple[float, float] = (1.0, 1.0)  # x and y scale from the image (or tile) to the model input
    pad: tuple[float, float] = (0.0, 0.0)
    problem: str = ""
    offset: tuple[float, float] = (0.0, 0.0)  # the tile's top-left corner in the image (slicing)
    window: tuple[int, int, int, int] = (0, 0, 0, 0)  # the tile in the image's pixels, x1 y1 x2 y2 (slicing; else 0s)
    part: int = 0  # which of the image's inputs this is (its tiles, then the whole image)
    parts: int = 1  # how many inputs the image has: 1 without slicing


class CandidateImages(torch.utils.data.Dataset):
    """Decodes and letterboxes one candidate per item (runs in DataLoader workers), without slicing: a list of
    its one input. With ``encoded``, a JPEG the device decoder may take travels as its bytes
    (``decode.Encoded``) instead, for ``Engine`` to decode."""

    def __init__(self, paths: Sequence[str], img_size: int, encoded: bool = False, stride: int = ultra.MIN_STRIDE) -> None:
        self.paths = paths
        self.img_size = img_size
        self.encoded = encoded
        self.stride = stride

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> list[tuple[torch.Tensor | decode.Encoded | None, Meta]]:
        path = self.paths[index]
        if self.encoded and (data := decode.read_encoded(path)) is not None:
            return [(data, Meta(index, path))]
        return [load(index, path, self.img_size, self.stride)]


class CandidateTiles(torch.utils.data.IterableDataset):
    """With slicing: each DataLoader worker takes every n-th candidate, decodes it once and yields its inputs
    (``tile_inputs``) in chunks of at most ``chunk``, each chunk letterboxed only when it is asked for. Why not
    one item per candidate: a 100 MP photo at ``slice_size: 640`` is 400 tiles, whose model inputs together
    outweigh the image; made all at once they would sit in the worker, in shared memory and in the engine's
    queues at the same time. Streamed, what a worker holds is its decoded image and a few chunks, whatever
    the image's size (``bench/memory.py --large``)."""

    def __init__(self, paths: Sequence[str], img_size: int, slices: slicing.SliceSettings, chunk: int,
                 stride: int = ultra.MIN_STRIDE) -> None:
        self.paths, self.img_size, self.slices, self.chunk, self.stride = paths, img_size, slices, max(1, chunk), stride

    def __iter__(self) -> Iterator[list[tuple[torch.Tensor | None, Meta]]]:
        info = torch.utils.data.get_worker_info()
        first, step = (info.id, info.num_workers) if info is not None else (0, 1)
        for index in range(first, len(self.paths), step):
            chunk = []
            for item in tile_inputs(index, self.paths[index], self.img_size, self.slices, self.stride):
                chunk.append(item)
                if len(chunk) == self.chunk:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk


def load(index: int, path: str, img_size: int, stride: int = ultra.MIN_STRIDE) -> tuple[torch.Tensor | None, Meta]:
    """The CPU path: one image decoded, letterboxed, as an RGB CHW uint8 tensor (None when unreadable)."""
    image, problem = read_image(path)
    if image is None:
        return None, Meta(index, path, problem=problem)
    boxed, ratio, pad = letterbox(image, img_size, stride)
    return decode.to_tensor(boxed), Meta(index, path, image.shape[1], image.shape[0], ratio, pad)


def tile_inputs(index: int, path: str, img_size: int, slices: slicing.SliceSettings, stride: int = ultra.MIN_STRIDE
                ) -> Iterator[tuple[torch.Tensor | None, Meta]]:
    """One image decoded once, then each of its windows (``slicing.scan_windows``) letterboxed from a view of
    it, one at a time as they are asked for: no copy of the image per tile, only each tile's model input."""
    image, problem = read_image(path)
    if image is None:
        yield None, Meta(index, path, problem=problem)
        return
    height, width = image.shape[:2]
    windows = slicing.scan_windows(width, height, slices)
    for part, (x1, y1, x2, y2) in enumerate(windows):
        boxed, ratio, pad = letterbox(image[y1:y2, x1:x2], img_size, stride)
        yield decode.to_tensor(boxed), Meta(index, path, width, height, ratio, pad, offset=(x1, y1),
                                            window=(x1, y1, x2, y2) if len(windows) > 1 else (0, 0, 0, 0),
                                            part=part, parts=len(windows))


def loaded(items: list[list[tuple[torch.Tensor | None, Meta]]], by_pipe: bool = False
           ) -> tuple[list[tuple[torch.Tensor, Meta]], list[Meta]]:
    """A DataLoader ``collate_fn``: the readable inputs (unstacked; several per image with slicing) and the
    unreadable images' metadata. In a worker, the inputs are put into shared memory here, as the DataLoader's
    own collate does: when /dev/shm is full, that fails in the worker, which the DataLoader reports to the main
    process. Left to the worker's queue thread, the failure only printed a traceback and lost the batch, and
    the main process waited for it forever (the task stayed at 0 %; YMIR has no timeout). ``by_pipe``: the
    inputs travel as numpy arrays instead, copied through the worker's pipe, with no shared memory at all
    (``shared_memory_handover``; ``Engine.batches`` turns them back into tensors)."""
    flat = [item for inputs in items for item in inputs]
    readable = [(t, m) for t, m in flat if t is not None]
    if by_pipe:
        readable = [(by_value(t), m) for t, m in readable]
    elif torch.utils.data.get_worker_info() is not None:
        for tensor, _ in readable:
            (tensor.data if isinstance(tensor, decode.Encoded) else tensor).share_memory_()
    return readable, [m for t, m in flat if t is None]


def loaded_chunk(chunk: list[tuple[torch.Tensor | None, Meta]], by_pipe: bool = False
                 ) -> tuple[list[tuple[torch.Tensor, Meta]], list[Meta]]:
    """``loaded`` for one chunk of ``CandidateTiles`` (a DataLoader without batching passes items one by one)."""
    return loaded([chunk], by_pipe)


def by_value(item: torch.Tensor | decode.Encoded) -> np.ndarray | decode.Encoded:
    """An input as a numpy array (pickled by value; torch tensors are pickled into shared memory)."""
    if isinstance(item, decode.Encoded):
        return decode.Encoded(item.data.numpy(), item.orientation)
    return item.numpy()


def from_value(item: np.ndarray | decode.Encoded) -> torch.Tensor | decode.Encoded:
    """``by_value`` undone, without a copy."""
    if isinstance(item, decode.Encoded):
        return decode.Encoded(torch.from_numpy(item.data), item.orientation)
    return torch.from_numpy(item)


HOLD_PASSES = 4  # images waiting in the per-shape queues, in passes: beyond it the fullest queue goes early
PREFETCH = 2  # loaded batches each decoding worker prepares ahead (the DataLoader's default)


def loader_shared_memory(batch_size: int, img_size: int) -> tuple[int, int]:
    """Bytes of shared memory a loader of ``Engine.batches`` may hold: per decoding worker, and in the main
    process. A loaded batch is at most ``batch_size`` inputs of img_size x img_size x 3 bytes (a letterboxed
    input fits the square; with slicing a chunk is at most one pass); a worker holds ``PREFETCH`` of them, the
    main process its queues and the batch it is taking in."""
    batch = batch_size * 3 * img_size * img_size
    return PREFETCH * batch, (HOLD_PASSES + 2) * batch


def shared_memory_handover(workers: int, batch_size: int, img_size: int, processes: int = 1) -> bool:
    """Whether the decoding workers must hand their inputs over by pipe: when shared memory cannot hold what
    ``workers`` workers per loader and ``processes`` loaders (scan shards) at once may put there
    (``loader_shared_memory``). By pipe, the main process copies each input once more (about a millisecond per
    640 px input), but every worker still decodes: far faster than decoding in the main process. With
    ``gpu_decode`` the workers hand over JPEG files, which a 12 MP photo can make larger than the bound: if
    they do not fit after all, the worker's error says so."""
    per_worker, fixed = loader_shared_memory(batch_size, img_size)
    free = runtime.shared_memory_free()
    if runtime.shared_memory_fit(workers, per_worker, fixed, processes, free) >= workers:
        return False
    LOG.warning("%s has %d MB free%s, too little for %d decoding workers' batches (about %d MB): they hand their "
                "images over by pipe, which costs the main process a copy of each; %s", runtime.SHARED_MEMORY,
                (free or 0) >> 20, f" for {processes} processes" if processes > 1 else "", workers,
                (workers * per_worker + fixed) >> 20, runtime.SHARED_MEMORY_ADVICE)
    return True


def passes(spec: InputSpec, paths: Sequence[str], batch_size: int, workers: int, by_pipe: bool = False
       ) -> Iterator[tuple[torch.Tensor | None, list[Meta], list[Meta]]]:
    """``(images, metas, unreadable)`` per forward pass. Decoded images wait in one queue per letterboxed
    shape and run when their queue holds ``batch_size`` images, so every pass is full but the last of each
    shape, and no image is padded to a batch-mate's shape: an image's input, and so its boxes and every
    mining score, must not depend on which images share its pass (or on the batch size, or the GPU count).
    At most ``HOLD_PASSES x batch_size`` images wait in all (then the fullest queue runs early), which bounds
    memory however many shapes the candidates have. Passes leave in shape order, not candidate order: ``Meta.index`` says where
    each image belongs. Unreadable images come as soon as they are found, as metadata (images None).
    ``by_pipe``: the workers hand their inputs over without shared memory (``shared_memory_handover``)."""
    runtime.share_memory_by_name()
    if not spec.slices.on:
        loader = torch.utils.data.DataLoader(
            CandidateImages(paths, spec.img_size, spec.decode_on_device, spec.stride), batch_size=batch_size,
            shuffle=False, num_workers=workers, collate_fn=functools.partial(loaded, by_pipe=by_pipe),
            persistent_workers=False, prefetch_factor=PREFETCH if workers else None)
    else:  # a candidate's tiles come in chunks of one pass at most (see CandidateTiles)
        loader = torch.utils.data.DataLoader(
            CandidateTiles(paths, spec.img_size, spec.slices, batch_size, spec.stride), batch_size=None,
            num_workers=workers,
            collate_fn=functools.partial(loaded_chunk, by_pipe=by_pipe), persistent_workers=False,
            prefetch_factor=PREFETCH if workers else None)
    queues: dict[tuple[int, ...], list[tuple[torch.Tensor, Meta]]] = {}
    for items, bad in loader:
        if by_pipe:
            items = [(from_value(item), meta) for item, meta in items]
        if spec.decode_on_device:
            items, refused = decode_on_device(spec, items)
            bad = bad + refused
        if bad:
            yield None, [], bad
        for tensor, meta in items:
            queue = queues.setdefault(tuple(tensor.shape), [])
            queue.append((tensor, meta))
            if len(queue) == batch_size:
                yield stack(spec, queues.pop(tuple(tensor.shape)))
        while sum(map(len, queues.values())) > HOLD_PASSES * batch_size:
            yield stack(spec, queues.pop(max(queues, key=lambda shape: len(queues[shape]))))
    for shape in list(queues):
        yield stack(spec, queues.pop(shape))


def decode_on_device(spec: InputSpec, items: list[tuple[torch.Tensor | decode.Encoded, Meta]]
                     ) -> tuple[list[tuple[torch.Tensor, Meta]], list[Meta]]:
    """The loaded batch's JPEG bytes decoded and letterboxed on the device, in one decoder call; an image the
    decoder refuses takes the CPU path here (rare: a truncated or odd file), so nothing that the workers
    would decode is lost. Every image comes out on the device."""
    encoded = [(item, meta) for item, meta in items if isinstance(item, decode.Encoded)]
    out = [(item.to(spec.device), meta) for item, meta in items if not isinstance(item, decode.Encoded)]
    bad = []
    for image, (_, meta) in zip(decode.decode([e for e, _ in encoded], spec.device), encoded, strict=True):
        if image is None:
            tensor, meta = load(meta.index, meta.path, spec.img_size, spec.stride)
            if tensor is None:
                bad.append(meta)
            else:
                out.append((tensor.to(spec.device), meta))
            continue
        boxed, ratio, pad = decode.letterbox_tensor(image, spec.img_size, spec.stride, ultra.PAD_VALUE)
        meta.width, meta.height, meta.ratio, meta.pad = image.shape[-1], image.shape[-2], ratio, pad
        out.append((boxed, meta))
    return out, bad


def stack(spec: InputSpec, queue: list[tuple[torch.Tensor, Meta]]) -> tuple[torch.Tensor, list[Meta], list[Meta]]:
    """One pass's uint8 batch: stacked straight into pinned memory when decoded on the CPU for a GPU (an
    asynchronous copy follows), on the device when decoded there. Not a batch preallocated per shape: with
    many shapes that would hold ``batch_size`` slots for each, while a device-to-device stack of one pass
    costs microseconds at the GPU's memory bandwidth."""
    tensors = [t for t, _ in queue]
    on_host = tensors[0].device.type == "cpu"
    out = torch.empty((len(tensors), *tensors[0].shape), dtype=torch.uint8, device=tensors[0].device,
                      pin_memory=on_host and spec.device.type == "cuda")
    return torch.stack(tensors, out=out), [m for _, m in queue], []
