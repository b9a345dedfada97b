"""torchvision's own operators for the single-stage page: SSD's ``DefaultBoxGenerator`` and the
``BoxCoder`` that reads YOLO deltas. Tests and check lines compare :mod:`explainers.ops.single_stage`
with these; widgets never call torchvision themselves.

Sizes are checked like the ops' own (``MAX_ELEMENTS``, ``explainers/ops/_checks.py``).
"""
from __future__ import annotations

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_size


def reference_default_boxes(image_size, feature_sizes, aspect_ratios, min_ratio: float = 0.15,
                            max_ratio: float = 0.9, scales=None, steps=None, clip: bool = True) -> torch.Tensor:
    """``DefaultBoxGenerator(aspect_ratios, ...)`` run on an image batch of ``image_size`` and
    feature maps of ``feature_sizes``: ``(A, 4)`` boxes ``(x1, y1, x2, y2)`` in pixels."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList

    H, W = (int(v) for v in tuple(image_size)[-2:])
    sizes = [(int(f), int(f)) if isinstance(f, int) else tuple(int(v) for v in f) for f in feature_sizes]
    total = sum(h * w * (2 + 2 * len(r)) for (h, w), r in zip(sizes, aspect_ratios))
    check_size(total * 4, MAX_ELEMENTS, f"the default boxes ({total:,} boxes x 4)", "use smaller feature maps")
    gen = DefaultBoxGenerator([list(r) for r in aspect_ratios], min_ratio, max_ratio,
                              None if scales is None else list(scales), None if steps is None else list(steps), clip)
    images = ImageList(torch.zeros(1, 3, H, W), [(H, W)])
    feats = [torch.zeros(1, 1, h, w) for h, w in sizes]
    return gen(images, feats)[0]


def reference_yolo_boxes(deltas, base_boxes) -> torch.Tensor:
    """torchvision's ``BoxCoder(weights=(1, 1, 1, 1)).decode_single``: ``(N, 4)`` deltas on ``(N, 4)`` boxes."""
    from torchvision.models.detection._utils import BoxCoder

    d = as_tensor(deltas, "deltas").reshape(-1, 4).to(torch.float32)
    b = as_tensor(base_boxes, "base_boxes").reshape(-1, 4).to(torch.float32)
    return BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(d, b)
