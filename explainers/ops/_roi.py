"""Argument handling shared by RoI Pool and RoI Align."""
from __future__ import annotations

import torch

from ._checks import as_tensor, check_boxes, pair, positive


def roi_args(features, box, output_size, spatial_scale):
    f = as_tensor(features, "features")
    if not f.is_floating_point():
        f = f.to(torch.float32)
    if f.dim() == 4:
        if f.shape[0] != 1:
            raise ValueError("give the feature map of one image: (C, H, W) or (1, C, H, W)")
        f = f[0]
    elif f.dim() == 2:
        f = f[None]
    if f.dim() != 3 or f.shape[1] < 1 or f.shape[2] < 1:
        raise ValueError(f"features must be (C, H, W), got shape {tuple(f.shape)}")
    b = check_boxes(box, "box")
    if b.shape[0] != 1:
        raise ValueError(f"give one box (x1, y1, x2, y2), got {b.shape[0]}")
    ph, pw = (positive(v, "output_size") for v in pair(output_size, "output_size"))
    scale = float(spatial_scale)
    if not scale > 0 or scale != scale or scale == float("inf"):
        raise ValueError(f"spatial_scale (feature cells per image pixel) must be positive, got {spatial_scale}")
    return f, b[0].to(f.dtype), (ph, pw), scale


def c_round(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves go away from zero (torch.round goes to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)
