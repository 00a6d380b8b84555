"""cald: Consistency-based Active Learning for Detection (Yu et al., CVPRW 2022).

The model's boxes on the image are compared with its boxes on augmented copies
(horizontal flip, cutout, small rotation, down-scaling: torchvision's transforms v2 on
images and ``BoundingBoxes``), all made in the model-input frame so each reference box
can be mapped exactly. Per reference
box, consistency = IoU(mapped box, best-matching box) x (1 - |score difference|);
per augmentation the image's inconsistency is 1 - the class-weighted mean
consistency, computed once per augmentation (not accumulated inside the box
loop, a bug of older implementations that made scores grow with box count).
The image's score is the mean over augmentations; images with no box (of a class
with a weight above 0) rank last.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from executor.mining.base import Miner, MinerContext

ROTATION_DEGREES = 6.0
SCALE = 0.8
NO_DETECTION = -1.0
BILINEAR = InterpolationMode.BILINEAR


def _boxes(boxes: torch.Tensor, images: torch.Tensor) -> tv_tensors.BoundingBoxes:
    """Boxes in the images' frame, unclamped (a rotated box may leave the canvas, as its object does)."""
    return tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(images.shape[-2:]), clamping_mode=None)


def _flip(images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return TF.horizontal_flip(images), TF.horizontal_flip(_boxes(boxes, images)).as_subclass(torch.Tensor)


def _scale(images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Down-scaled into the top-left corner of a grey canvas of the same size."""
    h, w = images.shape[-2:]
    size = [max(1, int(h * SCALE)), max(1, int(w * SCALE))]
    small = TF.resize(images, size, interpolation=BILINEAR, antialias=False)
    out = TF.pad(small, [0, 0, w - size[1], h - size[0]], fill=114 / 255)
    return out, TF.resize(_boxes(boxes, images), size).as_subclass(torch.Tensor)


def _rotate(images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated about the centre, black outside; each box becomes the box around its rotated corners."""
    return (TF.rotate(images, ROTATION_DEGREES, interpolation=BILINEAR),
            TF.rotate(_boxes(boxes, images), ROTATION_DEGREES).as_subclass(torch.Tensor))


class _Cutout:
    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = images.clone()
        h, w = images.shape[-2:]
        s = max(1, int(min(h, w) * 0.15))
        grey = out.new_tensor(0.5)  # on the images' device, in their dtype
        for i in range(out.shape[0]):
            for _ in range(2):
                x = int(torch.randint(0, w - s + 1, (1,), generator=self.generator))
                y = int(torch.randint(0, h - s + 1, (1,), generator=self.generator))
                TF.erase(out[i], y, x, s, s, grey, inplace=True)
        return out, boxes


def consistency(ref: torch.Tensor, mapped: torch.Tensor, aug: torch.Tensor) -> torch.Tensor:
    """Per reference box: IoU with its best match among ``aug`` boxes x score agreement."""
    if len(aug) == 0:
        return ref.new_zeros(len(ref))
    iou = box_iou(mapped[:, :4], aug[:, :4])
    best_iou, match = iou.max(1)
    return best_iou * (1 - (ref[:, 4] - aug[match, 4]).abs())


def inconsistency(ref: torch.Tensor, mapped: torch.Tensor, aug: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """One augmentation's inconsistency for one image, a float32 scalar on ``ref``'s device: 1 - the
    class-weighted mean consistency of its reference boxes; NaN when no box is of a class that counts
    (a weight of 0 means "not wanted", so such an image must not rank as maximally inconsistent)."""
    w = class_weights.to(ref.device, torch.float32)[ref[:, 5].long()]
    total = w.sum()
    value = 1 - (consistency(ref, mapped, aug).float() * w).sum() / total.clamp_min(1e-12)
    return torch.where(total > 0, value, torch.nan)


class CALD(Miner):
    name = "cald"

    def __init__(self, ctx: MinerContext) -> None:
        super().__init__(ctx)
        self.augmentations = [_flip, _Cutout(ctx.seed), _rotate, _scale]

    def image_scores(self, batch) -> torch.Tensor:
        engine = self.ctx.engine
        refs = self.detections(batch)
        per_augmentation = []
        for augment in self.augmentations:
            per_image = [augment(batch.images[i : i + 1], refs[i][:, :4]) for i in range(len(refs))]
            images = torch.cat([im for im, _ in per_image])
            aug_batch = engine.forward(images, batch.metas)
            aug_dets = engine.detect(aug_batch, self.ctx.min_score, self.ctx.iou, 300, to_image=False)
            per_augmentation.append(torch.stack([  # once per augmentation, not inside the box loop
                inconsistency(ref, mapped, aug_dets[i], self.ctx.class_weights)
                for i, (ref, (_, mapped)) in enumerate(zip(refs, per_image, strict=True))]))
        weights = self.ctx.class_weights
        counts = torch.stack([weights[ref[:, 5].long()].sum() > 0 for ref in refs])  # some box of a wanted class
        return torch.where(counts, torch.stack(per_augmentation).mean(0), NO_DETECTION)
