"""Mask R-CNN's mask post-processing through torchvision itself: what :mod:`.masks` must equal.

Check lines and tests compare :mod:`explainers.ops.masks` with these; widgets never call
torchvision themselves. Sizes are checked like the op's (``MAX_ELEMENTS``).
"""
from __future__ import annotations

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_boxes, check_size, prod


def reference_paste_masks(masks, boxes, image_size, padding: int = 1) -> torch.Tensor:
    """``(N, H, W)``: ``torchvision.models.detection.roi_heads.paste_masks_in_image`` of
    ``(N, M, M)`` masks in ``(N, 4)`` boxes, on an ``image_size = (H, W)`` image."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    m = as_tensor(masks, "masks").float()
    if m.dim() == 2:
        m = m[None]
    b = check_boxes(boxes).float()
    H, W = (int(v) for v in image_size)
    check_size(prod((b.shape[0], H, W)), MAX_ELEMENTS, f"{b.shape[0]} pasted masks of {H} x {W}",
               "paste fewer masks at once", unit="pixels")
    return paste_masks_in_image(m[:, None], b, (H, W), padding=padding)[:, 0]


def reference_paste_mask(mask, box, image_size, padding: int = 1) -> torch.Tensor:
    """``(H, W)``: one ``(M, M)`` mask pasted into one ``(4,)`` box by torchvision."""
    return reference_paste_masks(as_tensor(mask, "mask")[None], check_boxes(box, "box")[:1], image_size, padding)[0]


def reference_mask_probability(logits, labels) -> torch.Tensor:
    """``(N, M, M)``: torchvision's ``maskrcnn_inference`` (sigmoid, then each detection's
    class) on ``(N, K, M, M)`` logits and ``(N,)`` labels."""
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    x = as_tensor(logits, "logits").float()
    lab = as_tensor(labels, "labels").long().reshape(-1)
    return maskrcnn_inference(x, [lab])[0][:, 0]
