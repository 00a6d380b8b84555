"""The detection engine that infer and mining share: a checkpoint on a device, its forward pass, NMS and
the boxes mapped back to each image. Its inputs (decoding, tiles, workers, per-shape queues) are ``inputs``'.

Devices: the engine's outputs (``Batch`` and mining detections) stay on its device; only
``image_detections`` brings boxes to the CPU, for writing results.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from executor import runtime, slicing, ultra
from executor.class_stats import ClassStats
from executor.inputs import InputSpec, Meta, passes
from executor.protocol import Params, model_error

LOG = logging.getLogger("executor")


def channels_last_helps(device: torch.device) -> bool:
    """oneDNN convolutions on x86 CPUs run much faster on channels-last tensors; Ultralytics' own
    predictor (AutoBackend) switches the model to that format in the same case, and so must we to keep up."""
    return (device.type == "cpu" and platform.machine() in ("x86_64", "AMD64")
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def to_image_frame(flat: torch.Tensor, counts: list[int], metas: list[Meta]) -> torch.Tensor:
    """A copy of a pass's detections (``counts[i]`` rows for image i, one after another) with their boxes
    (first 4 columns, xyxy) moved from the letterboxed model input back to each original image's pixels (a
    tile's boxes by its offset too), in one set of tensor operations over the pass: Ultralytics'
    ``scale_boxes`` with our per-image scales and padding (a test checks they agree), without its clipping,
    which the result writer does."""
    flat = flat.clone()
    owner = owners(counts, flat.device)
    pad = torch.tensor([m.pad for m in metas], dtype=flat.dtype, device=flat.device)[owner]  # (n, 2): x, y
    ratio = torch.tensor([m.ratio for m in metas], dtype=flat.dtype, device=flat.device)[owner]
    offset = torch.tensor([m.offset for m in metas], dtype=flat.dtype, device=flat.device)[owner]  # a tile's corner
    flat[:, 0:4] = (flat[:, 0:4] - pad.repeat(1, 2)) / ratio.repeat(1, 2) + offset.repeat(1, 2)
    return flat


def owners(counts: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The image index of each row of a ragged batch (``counts[i]`` rows for image i, one after another): the
    one definition the box mapping and the miners share. Made on the CPU from counts the host knows, then
    copied: on a GPU, ``repeat_interleave`` of device tensors waits for the device to learn the output size."""
    counts = torch.as_tensor(counts, dtype=torch.long, device="cpu")
    return torch.repeat_interleave(torch.arange(len(counts)), counts).to(device)


@dataclass
class OnHost:
    """A pass's detections on their way to the CPU (``Engine.detections_to_host``)."""

    flat: torch.Tensor
    counts: list[int]
    event: torch.cuda.Event | None  # recorded after the asynchronous copy; None when the copy was synchronous

    def get(self) -> list[torch.Tensor]:
        """Per image, ``(n, 6)`` float32 on the CPU, once the copy has landed."""
        if self.event is not None:
            self.event.synchronize()
        return list(self.flat.split(self.counts))


@dataclass
class Batch:
    """One forward pass: inputs and raw head outputs, every tensor on the engine's device, in the model's
    precision (float16 with ``half``); consumers compute in float32 (see ``executor.mining``)."""

    images: torch.Tensor  # normalized float, on the device
    metas: list[Meta]
    decoded: torch.Tensor  # (B, 4 + nc, anchors) or (B, max_det, 6) for end-to-end heads
    class_logits: torch.Tensor | None  # (B, nc, anchors) before the sigmoid
    feats: list[torch.Tensor]  # the head's input feature maps, one per level
    nms: dict[tuple[float, float, int], list[torch.Tensor]] = field(default_factory=dict)  # model_detections' cache


class Engine:
    """A YOLO checkpoint on a device, with batched, worker-decoded input."""

    def __init__(self, weights_path: Path, device: str, img_size: int, half: bool, names: Sequence[str],
                 decode_on_device: bool = False, slices: slicing.SliceSettings = slicing.OFF) -> None:
        first = device.split(",")[0]
        self.device = torch.device("cpu" if first == "cpu" else f"cuda:{first}")
        if self.device.type == "cuda":
            # The current device of this process (a scan shard): otherwise its CUDA context and its DataLoader's
            # pin-memory thread land on GPU 0, whichever GPU the shard computes on.
            torch.cuda.set_device(self.device)
        try:
            model, checkpoint = ultra.load_detector(weights_path, self.device)
        except Exception as exc:  # noqa: BLE001 - any load failure is a model problem for the user
            raise model_error(
                f"cannot load {weights_path} as a YOLO detection model ({exc}); choose a model trained by this image"
            ) from exc
        self.half = half and self.device.type == "cuda"
        self.model = (model.half() if self.half else model.float()).eval()
        if channels_last_helps(self.device):
            self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":
            # Importing ultralytics sets OMP_NUM_THREADS=1 before torch starts; its own predictor raises the
            # count again in select_device. This engine bypasses that, so it sets the count itself.
            torch.set_num_threads(runtime.cpu_threads())
        self.inputs = InputSpec(img_size, ultra.model_stride(self.model), self.device, slices,
                                decode_on_device and not slices.on)
        self.end2end = ultra.model_end2end(self.model)
        model_names = ultra.model_names(self.model)
        missing = [n for n in names if n not in model_names]
        if missing:
            raise model_error(
                f"the model knows classes {model_names} but the task asks for {list(names)} "
                f"({missing} unknown): choose a model trained on these classes"
            )
        # model class index -> task class name; classes the task does not ask for map to None
        self.class_map = [n if n in names else None for n in model_names]
        self.nc = len(model_names)
        stats = ClassStats.from_checkpoint(checkpoint)
        self.class_stats = stats if stats is not None and stats.names == model_names else None  # model class order
        LOG.info("model %s on %s (%s)", weights_path.name, self.device, "float16" if self.half else "float32")

    @property
    def slices(self) -> slicing.SliceSettings:
        """Tiles per image (``slicing``; ``slicing.OFF`` when off): the inputs' setting."""
        return self.inputs.slices

    def batches(self, paths: Sequence[str], batch_size: int, workers: int, by_pipe: bool = False
                ) -> Iterator[tuple[torch.Tensor | None, list[Meta], list[Meta]]]:
        """``inputs.passes`` of this engine's inputs: ``(images, metas, unreadable)`` per forward pass."""
        return passes(self.inputs, paths, batch_size, workers, by_pipe)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return (images.half() if self.half else images.float()) / 255.0

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, metas: list[Meta]) -> Batch:
        decoded, logits, feats = ultra.split_head_output(self.model(images))
        return Batch(images, metas, decoded, logits, feats)

    def model_detections(self, batch: Batch, conf: float, iou: float, max_det: int) -> list[torch.Tensor]:
        """Post-NMS detections per image for mining, ``(n, 6 + nc)`` float32 on the engine's device, boxes in
        model-input pixels: x1 y1 x2 y2 score class, then the box's score for every class; sorted by score.
        Kept with the batch, so infer on the same pass can take its boxes from them (``image_detections``)."""
        key = (conf, iou, max_det)
        if key not in batch.nms:
            batch.nms[key] = [det.float() for det in ultra.nms(batch.decoded.float(), conf, iou, max_det, self.end2end,
                                                               self.nc)]
        return batch.nms[key]

    def image_detections(self, batch: Batch, conf: float, iou: float, max_det: int, multi_label: bool = False
                         ) -> list[torch.Tensor]:
        """Post-NMS detections per image for results, ``(n, 6)`` float32 on the CPU, boxes in each original image's
        pixels (``detections_to_host``, waited for)."""
        return self.detections_to_host(batch, conf, iou, max_det, multi_label).get()

    def detections_to_host(self, batch: Batch, conf: float, iou: float, max_det: int, multi_label: bool = False
                           ) -> OnHost:
        """``image_detections`` on their way to the CPU: one copy from the device per pass, asynchronous on CUDA,
        so the caller can start the next pass before it waits (``OnHost.get``). When mining has run the NMS on
        this pass at a threshold no higher, the same IoU and at least as many boxes, infer's boxes are exactly
        its boxes scoring above ``conf``, the first ``max_det`` of them (greedy NMS keeps a box or not by
        higher-scoring boxes alone, and Ultralytics keeps scores above the threshold), so the pass runs one NMS
        for both tasks. ``multi_label``: a box once per class above ``conf`` (Ultralytics' validation; never cached)."""
        source = next((key for key in batch.nms if key[0] <= conf and key[1] == iou and key[2] >= max_det), None)
        if source is not None and not multi_label:
            dets = [det[det[:, 4] > conf][:max_det, :6] for det in batch.nms[source]]
        else:
            dets = [det[:, :6].float() for det in ultra.nms(batch.decoded.float(), conf, iou, max_det, self.end2end,
                                                             multi_label=multi_label)]
        counts = [len(d) for d in dets]
        flat = to_image_frame(torch.cat(dets) if dets else torch.zeros(0, 6, device=self.device), counts, batch.metas)
        if flat.device.type != "cuda":
            return OnHost(flat, counts, None)
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return OnHost(host, counts, event)

    def boxes(self, det: torch.Tensor) -> list[tuple[str, float, list[float]]]:
        """(class name, score, xyxy) for the task's classes."""
        result = []
        for x1, y1, x2, y2, score, cls in det.tolist():
            name = self.class_map[int(cls)] if 0 <= int(cls) < self.nc else None
            if name is not None:
                result.append((name, score, [x1, y1, x2, y2]))
        return result


@dataclass
class EngineSettings:
    """What infer and mining share; read from whichever template holds the keys."""

    img_size: int
    batch_size: int
    workers: int  # -1: from the usable CPUs (``runtime.decode_workers``)
    half: bool
    iou: float
    gpu_decode: bool  # JPEGs decoded on the GPU (``executor.decode``); ignored on the CPU
    slices: slicing.SliceSettings

    @classmethod
    def read(cls, p: Params) -> EngineSettings:
        return cls(
            img_size=p.int("img_size", 32, ultra.MAX_IMG_SIZE),
            batch_size=p.int("batch_size_per_gpu", 1, 4096),
            workers=p.int("num_workers_per_gpu", -1, 64),
            half=p.bool("half"),
            iou=p.float("iou_thres", 0.0, 1.0),
            gpu_decode=p.bool("gpu_decode"),
            slices=slicing.SliceSettings.read(p),
        )


@dataclass
class InferSettings:
    conf: float
    max_det: int

    @classmethod
    def read(cls, p: Params) -> InferSettings:
        return cls(conf=p.float("conf_thres", 0.0, 1.0), max_det=p.int("max_det", 1, 100000))
