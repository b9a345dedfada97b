"""Fast R-CNN's RoI pooling through torchvision itself: what the R-CNN family page's check line
compares the detector's own pooled features with (widgets never call torchvision).

Size limit: the pooled output ``N x C x ph x pw`` may hold at most ``MAX_ELEMENTS`` values.
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
