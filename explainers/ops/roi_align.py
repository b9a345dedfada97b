"""RoI Align (Mask R-CNN), step by step.

No snapping: the box is projected onto the feature map as real numbers and cut
into ``output_size`` equal bins.  Each bin is sampled at a regular grid of
points; the value at a point ``(x, y)`` is the bilinear interpolation of its
four neighbouring cells,

    f(x, y) = sum_ij f_ij * max(0, 1 - |x - x_i|) * max(0, 1 - |y - y_j|),

and the bin's output is the mean of its samples.  Cell ``(i, j)`` has its
centre at ``(x_i, y_j) = (i, j)`` with ``aligned=False`` (torchvision's default,
as in the original Mask R-CNN); ``aligned=True`` shifts the box by half a cell
so that cell centres sit at ``i + 0.5`` in box coordinates.

Size limit: the trace holds, for each of the ``ph * pw * gh * gw`` sampling
points, 4 neighbours with 2 coordinates and ``C`` values each, so
``4 * (C + 2) * ph * pw * gh * gw`` may not exceed ``MAX_ELEMENTS``
(``explainers/ops/_checks.py``); a larger call raises ``ValueError`` first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import MAX_ELEMENTS, check_size
from ._roi import roi_args


@dataclass
class RoIAlignTrace:
    """Every sampling point of RoI Align and how it was interpolated.

    Shapes use ``(ph, pw)`` bins and a ``(gh, gw)`` grid of samples per bin.

    Attributes:
        box, scaled_box: ``(4,)`` each, the box in image and in feature coordinates (the latter
            after the half-cell shift of ``aligned=True``).
        bin_size: ``(bin_h, bin_w)`` in feature cells.
        grid: ``(gh, gw)`` samples per bin.
        bins: ``(ph, pw, 4)`` exact bin edges ``(x1, y1, x2, y2)`` (floats).
        points: ``(ph, pw, gh, gw, 2)`` sampling points ``(x, y)`` as placed in the bin.
        valid: ``(ph, pw, gh, gw)`` False where a point lies more than one cell
            outside the map (it then contributes 0).
        neighbours: ``(ph, pw, gh, gw, 4, 2)`` the ``(x, y)`` cells interpolated
            (top-left, top-right, bottom-left, bottom-right, after clamping to the map).
        weights: ``(ph, pw, gh, gw, 4)`` their bilinear weights (sum to 1 where valid).
        samples: ``(C, ph, pw, gh, gw)`` interpolated values.
        output: ``(C, ph, pw)``, the mean of each bin's samples.
    """

    box: torch.Tensor
    scaled_box: torch.Tensor
    bin_size: tuple[float, float]
    grid: tuple[int, int]
    bins: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor
    neighbours: torch.Tensor
    weights: torch.Tensor
    samples: torch.Tensor
    output: torch.Tensor
    aligned: bool
    sampling_ratio: int


def roi_align_trace(features, box, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                    aligned: bool = False) -> tuple[torch.Tensor, RoIAlignTrace]:
    """RoI Align of one box, with every sampling point and bilinear weight.

    Args:
        features: ``(C, H, W)`` (or ``(1, C, H, W)``).
        box: ``(4,)`` ``(x1, y1, x2, y2)`` in image coordinates.
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: feature cells per image pixel.
        sampling_ratio: samples per bin along each axis (an integer); ``0`` or any
            negative value (``-1`` by convention) is adaptive: ``ceil(bin size)`` samples
            along each axis, as in torchvision (its kernel tests ``sampling_ratio > 0``).
        aligned: shift by half a cell (pixel-centre convention).

    Returns:
        ``(output, trace)`` with output ``(C, ph, pw)`` equal to
        ``torchvision.ops.roi_align(features[None], [box[None]], output_size,
        spatial_scale, sampling_ratio, aligned)[0]``.

    Raises:
        ValueError: for bad arguments (e.g. a ``sampling_ratio`` that is not a whole
            number), or when the trace would exceed ``MAX_ELEMENTS``
            (``4 * (C + 2) * ph * pw * gh * gw``; with the adaptive ``sampling_ratio`` a
            large box on a fine map has many samples per bin).
    """
    f, b, (ph, pw), scale = roi_args(features, box, output_size, spatial_scale)
    try:
        ok = float(sampling_ratio) == int(sampling_ratio)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or isinstance(sampling_ratio, bool):
        raise ValueError(f"sampling_ratio must be a whole number of samples per bin (0 or negative: adaptive), "
                         f"got {sampling_ratio!r}")
    sampling_ratio = int(sampling_ratio)
    C, H, W = f.shape
    dt = f.dtype
    offset = torch.tensor(0.5 if aligned else 0.0, dtype=dt)
    scaled = b * torch.tensor(scale, dtype=dt) - offset
    if not torch.isfinite(scaled).all():
        raise ValueError(f"box x spatial_scale overflows {dt} ({b.tolist()} x {scale}); use image coordinates")
    x1, y1, x2, y2 = scaled.unbind()
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = torch.clamp(roi_w, min=1.0), torch.clamp(roi_h, min=1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(float(roi_h / ph)))
    gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(float(roi_w / pw)))
    check_size(4 * (C + 2) * ph * pw * gh * gw, MAX_ELEMENTS,
               f"the RoI Align trace ({C} channels x {ph}x{pw} bins x {gh}x{gw} samples x 4 neighbours)",
               "use a smaller output_size, a fixed sampling_ratio such as 2, or fewer channels")
    count = max(gh * gw, 1)

    py = torch.arange(ph, dtype=dt)[:, None, None, None]
    px = torch.arange(pw, dtype=dt)[None, :, None, None]
    iy = torch.arange(gh, dtype=dt)[None, None, :, None]
    ix = torch.arange(gw, dtype=dt)[None, None, None, :]
    # same operation order as torchvision's kernel, so the floats agree
    yy = (y1 + py * bin_h) + (iy + 0.5) * bin_h / gh
    xx = (x1 + px * bin_w) + (ix + 0.5) * bin_w / gw
    yy, xx = torch.broadcast_tensors(yy, xx)                        # (ph, pw, gh, gw)
    valid = ~((yy < -1.0) | (yy > H) | (xx < -1.0) | (xx > W))

    y = yy.clamp(min=0)
    x = xx.clamp(min=0)
    y_low, x_low = y.long(), x.long()
    y_top = y_low >= H - 1
    x_top = x_low >= W - 1
    y_low = torch.where(y_top, H - 1, y_low)
    x_low = torch.where(x_top, W - 1, x_low)
    y_high = torch.where(y_top, H - 1, y_low + 1)
    x_high = torch.where(x_top, W - 1, x_low + 1)
    y = torch.where(y_top, y_low.to(dt), y)
    x = torch.where(x_top, x_low.to(dt), x)
    ly, lx = y - y_low.to(dt), x - x_low.to(dt)
    hy, hx = 1.0 - ly, 1.0 - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], -1) * valid[..., None].to(dt)
    nx = torch.stack([x_low, x_high, x_low, x_high], -1)
    ny = torch.stack([y_low, y_low, y_high, y_high], -1)
    neighbours = torch.stack([nx, ny], -1)                          # (ph, pw, gh, gw, 4, 2)

    flat = f.reshape(C, H * W)
    idx = (ny * W + nx).reshape(-1)
    vals = flat[:, idx].reshape((C,) + weights.shape)               # (C, ph, pw, gh, gw, 4)
    w = weights[None]
    samples = ((w[..., 0] * vals[..., 0] + w[..., 1] * vals[..., 1]) + w[..., 2] * vals[..., 2]) + w[..., 3] * vals[..., 3]
    if gh * gw > 0:
        output = samples.reshape(C, ph, pw, gh * gw).sum(-1) / count
    else:
        output = torch.zeros(C, ph, pw, dtype=dt)

    bx = torch.stack([x1 + torch.arange(pw, dtype=dt) * bin_w, x1 + torch.arange(1, pw + 1, dtype=dt) * bin_w], -1)
    by = torch.stack([y1 + torch.arange(ph, dtype=dt) * bin_h, y1 + torch.arange(1, ph + 1, dtype=dt) * bin_h], -1)
    bins = torch.stack([bx[None, :, 0].expand(ph, pw), by[:, None, 0].expand(ph, pw),
                        bx[None, :, 1].expand(ph, pw), by[:, None, 1].expand(ph, pw)], -1)
    points = torch.stack([xx, yy], -1)
    trace = RoIAlignTrace(b, scaled, (float(bin_h), float(bin_w)), (gh, gw), bins, points, valid,
                          neighbours, weights, samples, output, bool(aligned), sampling_ratio)
    return output, trace


def bilinear_weight(x: float, y: float, xi: float, yj: float) -> float:
    """The lecture's kernel ``max(0, 1 - |x - x_i|) * max(0, 1 - |y - y_j|)``."""
    return max(0.0, 1.0 - abs(x - xi)) * max(0.0, 1.0 - abs(y - yj))
