"""What a model knows about its classes, stored inside its own checkpoint at training time.

Training writes, into every checkpoint it finishes (``best`` and ``last``), the boxes per class of its
training set and the AP@0.5 per class of its final validation. Mining reads them back from the weights it
is given: ``cald`` compares candidates' predicted classes with what the model was trained on, ``ppal``
calibrates its uncertainty by how hard each class was for the model. Stored in the checkpoint, so they
travel with the weights whatever YMIR does with stage files; a model without them (trained elsewhere, or
an epoch stage) mines without them, which the log says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEY = "ymir_class_stats"


@dataclass
class ClassStats:
    names: list[str]
    train_boxes: list[int]  # per class, in the training set
    val_ap50: list[float | None]  # per class, final validation; None: not in the validation set

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "train_boxes": self.train_boxes, "val_ap50": self.val_ap50}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> ClassStats | None:
        found = checkpoint.get(KEY)
        if not isinstance(found, dict):
            return None
        try:
            stats = cls([str(n) for n in found["names"]], [int(c) for c in found["train_boxes"]],
                        [None if a is None else float(a) for a in found["val_ap50"]])
        except (KeyError, TypeError, ValueError):
            return None
        return stats if len(stats.names) == len(stats.train_boxes) == len(stats.val_ap50) else None

    def train_shares(self) -> list[float]:
        """Each class's share of the training boxes (uniform when there are none)."""
        total = sum(self.train_boxes)
        return [c / total if total else 1 / len(self.names) for c in self.train_boxes]

    def difficulty(self) -> list[float]:
        """Per class, how hard it was for the model: 1 - AP@0.5 (a class missing from the validation set
        counts as the mean difficulty of the others, or 0.5)."""
        known = [1 - a for a in self.val_ap50 if a is not None]
        fallback = sum(known) / len(known) if known else 0.5
        return [fallback if a is None else 1 - a for a in self.val_ap50]
