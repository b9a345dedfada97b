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


def reference_yolo_base_boxes(S: int, B: int, image_size, shapes) -> torch.Tensor:
    """``(S, S, B, 4)``: the ``B`` base box ``shapes`` (width, height in cell units) centred on each
    cell of an ``S x S`` grid over ``image_size = (H, W)``, built another way than the op (every
    (row, column, shape) listed by ``torch.cartesian_prod``, then ``torchvision.ops.box_convert``
    from centre-size to corners)."""
    from torchvision.ops import box_convert

    H, W = (float(v) for v in tuple(image_size)[-2:])
    check_size(S * S * B * 4, MAX_ELEMENTS, f"the {S}x{S}x{B} base boxes", "use a smaller S")
    idx = torch.cartesian_prod(torch.arange(S), torch.arange(S), torch.arange(B))      # (S*S*B, 3) row, col, b
    wh = torch.tensor([tuple(v) for v in shapes][:B], dtype=torch.float64)[idx[:, 2]] * torch.tensor([W / S, H / S],
                                                                                                       dtype=torch.float64)
    centre = torch.stack(((idx[:, 1] + 0.5) * W / S, (idx[:, 0] + 0.5) * H / S), 1).to(torch.float64)
    return box_convert(torch.cat((centre, wh), 1), "cxcywh", "xyxy").to(torch.float32).reshape(S, S, B, 4)


def reference_yolo_deltas(boxes, base_boxes) -> torch.Tensor:
    """torchvision's ``BoxCoder(weights=(1, 1, 1, 1)).encode_single``: the ``(N, 4)`` deltas that move
    ``(N, 4)`` base boxes onto ``(N, 4)`` boxes (what a YOLO target holds in the responsible slot)."""
    from torchvision.models.detection._utils import BoxCoder

    b = as_tensor(boxes, "boxes").reshape(-1, 4).to(torch.float32)
    base = as_tensor(base_boxes, "base_boxes").reshape(-1, 4).to(torch.float32)
    return BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(b, base)
