"""The R-CNN family through torchvision itself: Fast R-CNN's RoI pooling (what the page's check
line compares the detector's own pooled features with) and R-CNN's warp of each proposal (what
the crops the page runs through the network are compared with). Widgets never call torchvision.

Size limits: the pooled output ``N x C x ph x pw``, and the warped crops ``N x 3 x size x size``,
may hold at most ``MAX_ELEMENTS`` values.
"""
from __future__ import annotations

import torch

from ._checks import MAX_ELEMENTS, check_boxes, check_size, prod


def reference_multiscale_roi_align(features: dict, boxes, image_size, featmap_names, output_size,
                                   sampling_ratio: int) -> torch.Tensor:
    """A fresh ``torchvision.ops.MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)``
    on ``features`` (``{name: (1, C, h, w)}``) and ``boxes`` ``(N, 4)`` in the coordinates of an
    input of ``image_size = (h, w)``: ``(N, C, ph, pw)``."""
    import torchvision

    b = check_boxes(boxes)
    first = next(iter(features.values()))
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    check_size(prod((b.shape[0], first.shape[1], ph, pw)), MAX_ELEMENTS,
               f"the pooled features of {b.shape[0]:,} boxes", "pool fewer boxes at a time")
    pool = torchvision.ops.MultiScaleRoIAlign(list(featmap_names), (ph, pw), sampling_ratio)
    return pool(features, [b.to(first.dtype)], [tuple(int(v) for v in image_size)])


def reference_warp(image: torch.Tensor, boxes, size: int) -> torch.Tensor:
    """R-CNN's warp by torchvision: each box ``(x1, y1, x2, y2)`` (image coordinates) of ``(N, 4)``
    ``boxes``, widened outwards to whole pixels inside the image (at least one pixel), cut from the
    ``(3, H, W)`` ``image`` and resized to ``size x size`` whatever its aspect ratio, by
    ``torchvision.transforms.v2.functional.resized_crop`` (bilinear, no antialiasing):
    ``(N, 3, size, size)``."""
    import math

    from torchvision.transforms.v2 import functional as TF

    b = check_boxes(boxes)
    check_size(prod((b.shape[0], image.shape[0], size, size)), MAX_ELEMENTS,
               f"{b.shape[0]:,} warped crops of {size}x{size}", "warp fewer boxes at a time")
    H, W = image.shape[-2:]
    out = []
    for x1, y1, x2, y2 in b.tolist():
        left, top = min(max(math.floor(x1), 0), W - 1), min(max(math.floor(y1), 0), H - 1)
        right, bottom = max(min(math.ceil(x2), W), left + 1), max(min(math.ceil(y2), H), top + 1)
        out.append(TF.resized_crop(image, top, left, bottom - top, right - left, [size, size], antialias=False))
    return torch.stack(out) if out else image.new_zeros((0, image.shape[0], size, size))
