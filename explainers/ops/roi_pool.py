"""RoI Pool (Fast R-CNN), step by step.

The box is projected onto the feature map (multiplied by ``spatial_scale``)
and *snapped*: each corner is rounded to a whole cell.  The snapped region is
cut into ``output_size`` bins whose edges are rounded again (floor for the
start, ceil for the end), and each bin keeps its maximum.  Those two roundings
are the misalignment RoI Align removes.

Size limits (``explainers/ops/_checks.py``): the bins are visited in a Python
loop, at most ``MAX_LOOP_STEPS`` of them (``ph * pw``), and the output and
arg-max tables (``C * ph * pw``) are limited to ``MAX_ELEMENTS``; a larger call
raises ``ValueError`` first.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import MAX_ELEMENTS, MAX_LOOP_STEPS, check_size
from ._roi import c_round, roi_args


@dataclass
class RoIPoolTrace:
    """Everything RoI Pool decided.

    Attributes:
        box: ``(4,)`` the box in image coordinates ``(x1, y1, x2, y2)``.
        scaled_box: ``(4,)`` the box on the feature map, before snapping (float).
        snapped_box: ``(x1, y1, x2, y2)`` whole cells after rounding; the region
            covers cells ``x1..x2`` and ``y1..y2`` inclusive.
        bins: ``(ph, pw, 4)`` integer cell range of each bin as
            ``(x_start, y_start, x_end, y_end)``, ends exclusive, clipped to the map.
        argmax: ``(C, ph, pw)`` flat index ``y * W + x`` of the cell each bin took
            its maximum from, ``-1`` for an empty bin (whose output is 0).
        output: ``(C, ph, pw)``.
    """

    box: torch.Tensor
    scaled_box: torch.Tensor
    snapped_box: tuple[int, int, int, int]
    bins: torch.Tensor
    argmax: torch.Tensor
    output: torch.Tensor
    feature_size: tuple[int, int]

    def argmax_cells(self, channel: int = 0) -> torch.Tensor:
        """``(ph, pw, 2)`` the ``(x, y)`` cell of each bin's maximum (``-1`` if empty)."""
        W = self.feature_size[1]
        a = self.argmax[channel]
        return torch.stack([torch.where(a >= 0, a % W, -1), torch.where(a >= 0, a // W, -1)], -1)


def roi_pool_trace(features, box, output_size, spatial_scale: float = 1.0) -> tuple[torch.Tensor, RoIPoolTrace]:
    """RoI Pool of one box, with the trace of every rounding.

    Args:
        features: ``(C, H, W)`` (or ``(1, C, H, W)``) feature map.
        box: ``(4,)`` ``(x1, y1, x2, y2)`` in image coordinates.
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: feature cells per image pixel (1 / total stride).

    Returns:
        ``(output, trace)``, output ``(C, ph, pw)`` equal to
        ``torchvision.ops.roi_pool(features[None], [box[None]], output_size, spatial_scale)[0]``.

    Raises:
        ValueError: for bad arguments, for more than ``MAX_LOOP_STEPS`` bins or an
            output of more than ``MAX_ELEMENTS`` elements.
    """
    f, b, (ph, pw), scale = roi_args(features, box, output_size, spatial_scale)
    C, H, W = f.shape
    check_size(ph * pw, MAX_LOOP_STEPS, f"RoI Pool's loop over {ph}x{pw} bins", "use a smaller output_size",
               unit="steps")
    check_size(C * ph * pw, MAX_ELEMENTS, f"the RoI Pool output ({C} channels x {ph}x{pw} bins)",
               "use a smaller output_size or fewer channels")
    scaled = b * torch.tensor(scale, dtype=f.dtype)
    sx1, sy1, sx2, sy2 = (int(v) for v in c_round(scaled).tolist())
    roi_w = max(sx2 - sx1 + 1, 1)
    roi_h = max(sy2 - sy1 + 1, 1)
    bin_h = torch.tensor(roi_h, dtype=f.dtype) / ph
    bin_w = torch.tensor(roi_w, dtype=f.dtype) / pw
    py, px = torch.arange(ph, dtype=f.dtype), torch.arange(pw, dtype=f.dtype)
    hs = (torch.floor(py * bin_h).long() + sy1).clamp(0, H)
    he = (torch.ceil((py + 1) * bin_h).long() + sy1).clamp(0, H)
    ws = (torch.floor(px * bin_w).long() + sx1).clamp(0, W)
    we = (torch.ceil((px + 1) * bin_w).long() + sx1).clamp(0, W)

    out = torch.zeros(C, ph, pw, dtype=f.dtype)
    argmax = torch.full((C, ph, pw), -1, dtype=torch.long)
    flat_index = torch.arange(H * W).reshape(H, W)
    for i in range(ph):
        y0, y1 = int(hs[i]), int(he[i])
        if y1 <= y0:
            continue
        for j in range(pw):
            x0, x1 = int(ws[j]), int(we[j])
            if x1 <= x0:
                continue
            region = f[:, y0:y1, x0:x1].reshape(C, -1)
            # the first maximum in row-major order wins, as in torchvision's loop
            k = region.argmax(1)
            out[:, i, j] = region.gather(1, k[:, None])[:, 0]
            argmax[:, i, j] = flat_index[y0:y1, x0:x1].reshape(-1)[k]
    bins = torch.stack([ws[None, :].expand(ph, pw), hs[:, None].expand(ph, pw),
                        we[None, :].expand(ph, pw), he[:, None].expand(ph, pw)], -1)
    trace = RoIPoolTrace(b, scaled, (sx1, sy1, sx2, sy2), bins, argmax, out, (H, W))
    return out, trace


def overlapping_bins(bins: torch.Tensor) -> tuple[list, list]:
    """The cell rows and columns that two neighbouring RoI Pool bins share (``bins (ph, pw, 4)``,
    ends exclusive): torchvision's bins run from floor(i * size / n) to ceil((i + 1) * size / n), so
    a region that does not divide evenly gives a row or column to both bins."""
    b = bins.tolist()
    rows = sorted({y for i in range(len(b) - 1) for y in range(b[i + 1][0][1], b[i][0][3])})
    cols = sorted({x for j in range(len(b[0]) - 1) for x in range(b[0][j + 1][0], b[0][j][2])})
    return rows, cols
