"""What a live model returns: boxes (and masks) or a label map, on the original image."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(kw_only=True)
class Result:
    """What every result carries besides its own tensors.

    ``image (3, H, W)`` float in [0, 1], the ``classes`` names (index = label), the ``task``,
    the ``weights`` the model ran with (e.g. "shapes", "coco", "checkpoint:file.pt"), the
    ``device`` it ran on, the ``seconds`` the forward pass took, and a ``note`` (downscaling,
    a CPU fallback) or "".
    """

    image: torch.Tensor
    classes: list[str]
    task: str
    weights: str
    device: str
    seconds: float
    note: str = ""


@dataclass(kw_only=True)
class DetectionResult(Result):
    """Boxes (and masks) on the original image.

    ``boxes (N, 4)``, ``scores (N,)``, ``labels (N,)``, ``names`` (class name per box),
    ``masks (N, H, W)`` float in [0, 1] or None.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    masks: torch.Tensor | None

    def filter(self, score_threshold: float) -> "DetectionResult":
        keep = self.scores >= score_threshold
        return replace(self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep],
                       names=[n for n, k in zip(self.names, keep.tolist()) if k],
                       masks=None if self.masks is None else self.masks[keep])


@dataclass(kw_only=True)
class SegmentationResult(Result):
    """Per-pixel classes on the original image: ``labels (H, W)``, ``probabilities (K, H, W)``."""

    labels: torch.Tensor
    probabilities: torch.Tensor

    @property
    def present(self) -> list[str]:
        return [self.classes[i] for i in torch.unique(self.labels).tolist() if i < len(self.classes)]

    def shares(self) -> dict[int, float]:
        """``{class index: fraction of the pixels}`` for every class in the label map, largest first."""
        counts = torch.bincount(self.labels.flatten().long().cpu())
        total = max(1, int(counts.sum()))
        return {int(i): int(counts[i]) / total
                for i in sorted(counts.nonzero().flatten().tolist(), key=lambda i: (-int(counts[i]), i))}
