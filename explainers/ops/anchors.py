"""Anchors and the box coder of Faster R-CNN.

``anchor_grid`` lays ``K = len(sizes) * len(aspect_ratios)`` anchors on every
cell of one feature map, exactly as
``torchvision.models.detection.anchor_utils.AnchorGenerator`` does (same
values, same order: cell by cell in row-major order, and inside a cell aspect
ratio by aspect ratio, size by size).  ``encode_boxes`` / ``decode_boxes`` are
the box corrections ``(dx, dy, dw, dh)`` of ``torchvision``'s ``BoxCoder`` (in :mod:`.boxes`).

Size limit: ``anchor_grid`` builds ``Hf * Wf * K * 4`` coordinates, at most
``MAX_ELEMENTS`` (``explainers/ops/_checks.py``; a 1000x1000 feature map with
9 anchors per cell is 36 million, too many); a larger call raises
``ValueError`` first.  The box coder returns tensors the size of its inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_size, pair, positive



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
