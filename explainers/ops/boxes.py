"""Box utilities in one place: area, IoU, clipping, and Faster R-CNN's box coder.

Boxes are ``(N, 4)`` tensors of ``(x1, y1, x2, y2)`` with the top-left corner first.
Each function equals its torchvision counterpart (``box_area``, ``box_iou``,
``clip_boxes_to_image``, ``BoxCoder.encode_single`` / ``decode_single``); ``tests/ops``
checks them against it.

Size limit: ``box_iou`` builds ``(N, M, 2)`` corner tensors, so ``2 * N * M`` may not
exceed ``MAX_ELEMENTS`` (``explainers/ops/_checks.py``); the others return tensors the size
of their inputs.
"""
from __future__ import annotations

import math

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_boxes, check_size

#: weights of the box head of torchvision's Faster R-CNN (``RoIHeads``); the RPN uses (1, 1, 1, 1)
FASTER_RCNN_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
#: torchvision clamps dw, dh at log(1000 / 16) before exp()
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N,)`` areas of ``(N, 4)`` boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1, boxes2) -> torch.Tensor:
    """Intersection over union of every pair: ``(N, 4), (M, 4) -> (N, M)``.

    ``IoU = area(A & B) / (area(A) + area(B) - area(A & B))``; equals
    ``torchvision.ops.box_iou``.  It builds ``(N, M, 2)`` corner tensors, so
    ``2 * N * M`` may not exceed ``MAX_ELEMENTS`` (see ``_checks``).
    """
    a = check_boxes(boxes1, "boxes1")
    b = check_boxes(boxes2, "boxes2").to(a.dtype)
    check_size(2 * a.shape[0] * b.shape[0], MAX_ELEMENTS,
               f"box_iou of {a.shape[0]:,} x {b.shape[0]:,} boxes (its corner tensors)",
               "compare fewer boxes at a time, e.g. boxes1 in chunks")
    area1, area2 = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


def clip_boxes(boxes, image_size) -> torch.Tensor:
    """Clip ``(N, 4)`` boxes to an image of ``image_size = (H, W)``: x in [0, W], y in [0, H].

    Equals ``torchvision.ops.clip_boxes_to_image``.
    """
    b = check_boxes(boxes)
    H, W = image_size
    return torch.stack((b[:, 0].clamp(0, W), b[:, 1].clamp(0, H), b[:, 2].clamp(0, W), b[:, 3].clamp(0, H)), 1)


def _weights(weights) -> tuple[float, float, float, float]:
    w = tuple(float(v) for v in weights)
    if len(w) != 4 or any(v <= 0 for v in w):
        raise ValueError(f"weights must be four positive numbers (wx, wy, ww, wh), got {weights!r}")
    return w  # type: ignore[return-value]


def encode_boxes(boxes, anchors, weights=FASTER_RCNN_WEIGHTS) -> torch.Tensor:
    """Box corrections that move each anchor (or proposal) onto its box.

    ``dx = wx * (cx - cx_a) / w_a``, ``dy = wy * (cy - cy_a) / h_a``,
    ``dw = ww * log(w / w_a)``, ``dh = wh * log(h / h_a)``.

    Args:
        boxes: ``(N, 4)`` target boxes.
        anchors: ``(N, 4)`` reference boxes (anchors or proposals) with positive size.

    Returns:
        ``(N, 4)`` codes; equals ``BoxCoder(weights).encode_single(boxes, anchors)``.
    """
    wx, wy, ww, wh = _weights(weights)
    b = check_boxes(boxes, "boxes")
    a = check_boxes(anchors, "anchors").to(b.dtype)
    if a.shape != b.shape:
        raise ValueError(f"boxes {tuple(b.shape)} and anchors {tuple(a.shape)} must pair up one to one")
    ex_w, ex_h = a[:, 2:3] - a[:, 0:1], a[:, 3:4] - a[:, 1:2]
    if (ex_w <= 0).any() or (ex_h <= 0).any():
        raise ValueError("anchors must have a positive width and height to encode against them")
    ex_cx, ex_cy = a[:, 0:1] + 0.5 * ex_w, a[:, 1:2] + 0.5 * ex_h
    gt_w, gt_h = b[:, 2:3] - b[:, 0:1], b[:, 3:4] - b[:, 1:2]
    gt_cx, gt_cy = b[:, 0:1] + 0.5 * gt_w, b[:, 1:2] + 0.5 * gt_h
    dx = wx * (gt_cx - ex_cx) / ex_w
    dy = wy * (gt_cy - ex_cy) / ex_h
    dw = ww * torch.log(gt_w / ex_w)
    dh = wh * torch.log(gt_h / ex_h)
    return torch.cat((dx, dy, dw, dh), dim=1)


def decode_boxes(deltas, anchors, weights=FASTER_RCNN_WEIGHTS) -> torch.Tensor:
    """Apply box corrections to anchors (or proposals).

    Args:
        deltas: ``(N, 4 * C)`` codes ``(dx, dy, dw, dh)`` (one group per class).
        anchors: ``(N, 4)``.

    Returns:
        ``(N, 4 * C)`` boxes; equals ``BoxCoder(weights).decode_single(deltas, anchors)``
        (``dw``, ``dh`` are clamped at ``log(1000/16)`` before ``exp``).
    """
    wx, wy, ww, wh = _weights(weights)
    d = as_tensor(deltas, "deltas")
    if not d.is_floating_point():
        d = d.to(torch.float32)
    a = check_boxes(anchors, "anchors").to(d.dtype)
    if d.dim() == 1:
        d = d[None]
    if d.dim() != 2 or d.shape[1] % 4 or d.shape[0] != a.shape[0]:
        raise ValueError(f"deltas must be (N, 4*C) with N = {a.shape[0]} anchors, got {tuple(d.shape)}")
    widths, heights = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ctr_x, ctr_y = a[:, 0] + 0.5 * widths, a[:, 1] + 0.5 * heights
    dx, dy = d[:, 0::4] / wx, d[:, 1::4] / wy
    dw = torch.clamp(d[:, 2::4] / ww, max=BBOX_XFORM_CLIP)
    dh = torch.clamp(d[:, 3::4] / wh, max=BBOX_XFORM_CLIP)
    pred_cx = dx * widths[:, None] + ctr_x[:, None]
    pred_cy = dy * heights[:, None] + ctr_y[:, None]
    half_w = 0.5 * (torch.exp(dw) * widths[:, None])
    half_h = 0.5 * (torch.exp(dh) * heights[:, None])
    out = torch.stack((pred_cx - half_w, pred_cy - half_h, pred_cx + half_w, pred_cy + half_h), dim=2)
    return out.flatten(1)
