"""Anchors and the box coder of Faster R-CNN.

``anchor_grid`` lays ``K = len(sizes) * len(aspect_ratios)`` anchors on every
cell of one feature map, exactly as
``torchvision.models.detection.anchor_utils.AnchorGenerator`` does (same
values, same order: cell by cell in row-major order, and inside a cell aspect
ratio by aspect ratio, size by size).  ``encode_boxes`` / ``decode_boxes`` are
the box corrections ``(dx, dy, dw, dh)`` of ``torchvision``'s ``BoxCoder``.

Size limit: ``anchor_grid`` builds ``Hf * Wf * K * 4`` coordinates, at most
``MAX_ELEMENTS`` (``explainers/ops/_checks.py``; a 1000x1000 feature map with
9 anchors per cell is 36 million, too many); a larger call raises
``ValueError`` first.  The box coder returns tensors the size of its inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_boxes, check_size, pair, positive

#: weights of the box head of torchvision's Faster R-CNN (``RoIHeads``); the RPN uses (1, 1, 1, 1)
FASTER_RCNN_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
#: torchvision clamps dw, dh at log(1000 / 16) before exp()
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


@dataclass
class AnchorTrace:
    """How the anchors were made.

    Attributes:
        base_anchors: ``(K, 4)`` anchors centred on (0, 0), rounded as torchvision does.
        stride: ``(sy, sx)``, image pixels per feature cell (integer division).
        feature_size: ``(Hf, Wf)``.
        centres: ``(Hf * Wf, 2)`` the ``(x, y)`` shift of each cell, row-major.
        sizes, aspect_ratios: the settings; aspect ratio is height / width.
        anchors: ``(Hf * Wf * K, 4)``.
    """

    base_anchors: torch.Tensor
    stride: tuple[int, int]
    feature_size: tuple[int, int]
    centres: torch.Tensor
    sizes: tuple[float, ...]
    aspect_ratios: tuple[float, ...]
    anchors: torch.Tensor

    @property
    def per_cell(self) -> int:
        return self.base_anchors.shape[0]

    def cell_anchors(self, row: int, col: int) -> torch.Tensor:
        """The ``(K, 4)`` anchors of feature cell ``(row, col)``."""
        Hf, Wf = self.feature_size
        if not (0 <= row < Hf and 0 <= col < Wf):
            raise ValueError(f"cell ({row}, {col}) is outside the {Hf}x{Wf} feature map")
        k = self.per_cell
        start = (row * Wf + col) * k
        return self.anchors[start:start + k]


def base_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype=torch.float32) -> torch.Tensor:
    """``(len(aspect_ratios) * len(sizes), 4)`` zero-centred anchors (ratio-major).

    An anchor of size ``s`` and ratio ``r = h / w`` has ``w = s / sqrt(r)`` and
    ``h = s * sqrt(r)`` (same area ``s * s``); corners are rounded to integers.
    """
    s = as_tensor(list(sizes), "sizes").to(dtype)
    r = as_tensor(list(aspect_ratios), "aspect_ratios").to(dtype)
    if s.numel() == 0 or r.numel() == 0:
        raise ValueError("give at least one anchor size and one aspect ratio")
    if (s <= 0).any() or (r <= 0).any():
        raise ValueError("anchor sizes and aspect ratios must be positive")
    check_size(s.numel() * r.numel() * 4, MAX_ELEMENTS,
               f"the base anchors ({r.numel()} aspect ratios x {s.numel()} sizes x 4)", "give fewer sizes or ratios")
    h_ratios = torch.sqrt(r)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * s[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * s[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def anchor_grid(image_size, feature_size, sizes: Sequence[float] = (32, 64, 128),
                aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), dtype=torch.float32) -> tuple[torch.Tensor, AnchorTrace]:
    """All anchors of one feature level.

    Args:
        image_size: ``(H, W)`` of the (padded) image batch the network saw.
        feature_size: ``(Hf, Wf)`` of the feature map.
        sizes: anchor sizes in pixels (square root of the area).
        aspect_ratios: height / width.

    Returns:
        ``(anchors, trace)`` with anchors ``(Hf * Wf * K, 4)`` in ``(x1, y1, x2, y2)``,
        equal to ``AnchorGenerator((sizes,), (aspect_ratios,))`` on that level.

    Raises:
        ValueError: for bad arguments, or when the anchors would have more than
            ``MAX_ELEMENTS`` coordinates.
    """
    H, W = (positive(v, "image size") for v in pair(tuple(image_size)[-2:], "image_size"))
    Hf, Wf = (positive(v, "feature size") for v in pair(tuple(feature_size)[-2:], "feature_size"))
    if Hf > H or Wf > W:
        raise ValueError(f"the feature map ({Hf}x{Wf}) cannot be larger than the image ({H}x{W})")
    sy, sx = H // Hf, W // Wf
    base = base_anchors(sizes, aspect_ratios, dtype)
    K = base.shape[0]
    check_size(Hf * Wf * K * 4, MAX_ELEMENTS, f"the anchors ({Hf}x{Wf} cells x {K} anchors x 4 coordinates)",
               "use a smaller feature map or fewer sizes and aspect ratios")
    shift_y, shift_x = torch.meshgrid(torch.arange(Hf, dtype=torch.int32) * sy,
                                      torch.arange(Wf, dtype=torch.int32) * sx, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    anchors = (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)
    trace = AnchorTrace(base, (sy, sx), (Hf, Wf), torch.stack((shift_x, shift_y), 1),
                        tuple(float(v) for v in sizes), tuple(float(v) for v in aspect_ratios), anchors)
    return anchors, trace


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
