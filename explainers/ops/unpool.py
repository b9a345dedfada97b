"""Unpooling: nearest neighbour, "bed of nails", max unpooling and bilinear.

Every mode is written as a gather: output cell ``(i, j)`` reads at most four
input cells with weights.  The same index/weight tables that compute the
output are returned in the trace, so a widget can draw, for each output cell,
the input cells it came from (and, the other way, the output cells each input
cell fills).

Faithful to ``torch.nn.functional.interpolate(mode="nearest")``,
``F.max_unpool2d`` and ``F.interpolate(mode="bilinear", align_corners=False)``.

Size limit: the trace tables have ``N * C * Ho * Wo * K`` entries (``K = 4``
for bilinear, else 1), at most ``MAX_ELEMENTS`` (``explainers/ops/_checks.py``);
a larger call raises ``ValueError`` before allocating.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_size, pair, positive, prod

MODES = ("nearest", "bed_of_nails", "max", "bilinear")


@dataclass
class UnpoolTrace:
    """What each output cell is made of.

    Attributes:
        mode: one of ``MODES``.
        input: the input, shape ``(N, C, H, W)``.
        output: the result, shape ``(N, C, Ho, Wo)``.
        src_index: ``(N, C, Ho, Wo, K)`` flat index ``h * W + w`` of the input cells
            read by each output cell, ``-1`` where none (K is 1, or 4 for bilinear).
        src_weight: ``(N, C, Ho, Wo, K)`` weight of each of those input cells.
        indices: for ``"max"``, the max-pooling switches used, ``(N, C, H, W)``.
    """

    mode: str
    input: torch.Tensor
    output: torch.Tensor
    src_index: torch.Tensor
    src_weight: torch.Tensor
    indices: torch.Tensor | None = None

    def sources(self, i: int, j: int, n: int = 0, c: int = 0) -> list[tuple[tuple[int, int], float]]:
        """Input cells ``((h, w), weight)`` that output cell ``(i, j)`` reads."""
        W = self.input.shape[-1]
        out = []
        for idx, w in zip(self.src_index[n, c, i, j].tolist(), self.src_weight[n, c, i, j].tolist()):
            if idx >= 0 and w != 0:
                out.append(((idx // W, idx % W), w))
        return out

    def targets(self, h: int, w: int, n: int = 0, c: int = 0) -> list[tuple[int, int]]:
        """Output cells that input cell ``(h, w)`` contributes to (with a non-zero weight)."""
        W = self.input.shape[-1]
        hit = ((self.src_index[n, c] == h * W + w) & (self.src_weight[n, c] != 0)).any(-1)
        return [tuple(p) for p in hit.nonzero().tolist()]


def _to_4d(x) -> tuple[torch.Tensor, int]:
    t = as_tensor(x, "x")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.dim() < 2 or t.dim() > 4:
        raise ValueError(f"x must be (H, W), (C, H, W) or (N, C, H, W), got shape {tuple(t.shape)}")
    dim = t.dim()
    while t.dim() < 4:
        t = t[None]
    return t, dim


def _from_4d(t: torch.Tensor, dim: int) -> torch.Tensor:
    while t.dim() > dim:
        t = t[0]
    return t


def _nearest_src(n_in: int, n_out: int, scale: float | None) -> torch.Tensor:
    # torch's legacy "nearest": src = floor(dst * s), s = 1/scale_factor or in/out
    s = (1.0 / scale) if scale is not None else n_in / n_out
    dst = torch.arange(n_out, dtype=torch.float32)
    return torch.clamp((dst * s).floor().long(), max=n_in - 1)


def _bilinear_src(n_in: int, n_out: int, scale: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # align_corners=False: src = (dst + 0.5) * s - 0.5, clamped below at 0
    s = torch.tensor((1.0 / scale) if scale is not None else n_in / n_out, dtype=torch.float32)
    dst = torch.arange(n_out, dtype=torch.float32)
    # torch evaluates s * (dst + 0.5) - 0.5 as one fused multiply-add (a single
    # rounding); computing it in float64 and rounding once reproduces that.
    src = ((dst + 0.5).double() * s.double() - 0.5).float().clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = torch.clamp(lo + 1, max=n_in - 1)
    lam = src - lo.float()
    return lo, hi, lam


def unpool(x, mode: str, scale: int = 2, indices=None, output_size=None) -> tuple[torch.Tensor, UnpoolTrace]:
    """Upsample ``x`` by unpooling.

    Args:
        x: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        mode: ``"nearest"`` (copy each value into its ``scale x scale`` block),
            ``"bed_of_nails"`` (value at the top-left of its block, zeros elsewhere),
            ``"max"`` (value back at the position max pooling took it from;
            needs ``indices``), ``"bilinear"`` (``align_corners=False``).
        scale: integer upsampling factor (the pooling kernel and stride for ``"max"``).
        indices: for ``"max"``: the switches returned by
            ``F.max_pool2d(..., return_indices=True)``, same shape as ``x``.
        output_size: ``(Ho, Wo)``; default ``(H * scale, W * scale)``.  For
            ``"max"`` it is the size of the tensor that was pooled (needed when
            that size was odd).

    Returns:
        ``(output, trace)``; output has the rank of ``x`` with the last two
        sizes ``(Ho, Wo)``.  It equals ``F.interpolate(x, scale_factor=scale,
        mode="nearest")``, ``F.max_unpool2d(x, indices, scale, output_size=...)``
        and ``F.interpolate(x, scale_factor=scale, mode="bilinear",
        align_corners=False)`` respectively.

    Raises:
        ValueError: for a bad argument, or when the trace would exceed
            ``MAX_ELEMENTS`` entries (``N * C * Ho * Wo``, times 4 for bilinear).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    scale = positive(pair(scale, "scale")[0], "scale")
    t, dim = _to_4d(x)
    N, C, H, W = t.shape
    if output_size is None:
        Ho, Wo = H * scale, W * scale
        sf: float | None = float(scale)
    else:
        Ho, Wo = pair(tuple(output_size)[-2:], "output_size")
        positive(Ho, "output height")
        positive(Wo, "output width")
        sf = None
    K = 4 if mode == "bilinear" else 1
    check_size(prod((N, C, Ho, Wo, K)), MAX_ELEMENTS,
               f"the {mode} unpooling trace ({N}x{C}x{Ho}x{Wo} output cells x {K} source(s) each)",
               "use a smaller scale or output_size, or fewer channels")
    flat = t.reshape(N, C, H * W)

    if mode == "nearest":
        ys, xs = _nearest_src(H, Ho, sf), _nearest_src(W, Wo, sf)
        idx = (ys[:, None] * W + xs[None, :])[..., None].expand(N, C, Ho, Wo, 1)
        wgt = torch.ones(1, dtype=t.dtype).expand(N, C, Ho, Wo, 1)
    elif mode == "bed_of_nails":
        oy, ox = torch.arange(Ho), torch.arange(Wo)
        ys, xs = oy // scale, ox // scale
        on = ((oy % scale == 0) & (ys < H))[:, None] & ((ox % scale == 0) & (xs < W))[None, :]
        idx = torch.where(on, ys.clamp(max=H - 1)[:, None] * W + xs.clamp(max=W - 1)[None, :], -1)
        idx = idx[..., None].expand(N, C, Ho, Wo, 1)
        wgt = on.to(t.dtype)[..., None].expand(N, C, Ho, Wo, 1)
    elif mode == "max":
        if indices is None:
            raise ValueError('mode "max" needs the indices (switches) returned by max pooling')
        ind, _ = _to_4d(indices)
        ind = ind.long()
        if ind.shape != t.shape:
            raise ValueError(f"indices must have the shape of x {tuple(t.shape)}, got {tuple(ind.shape)}")
        if ind.numel() and (ind.min() < 0 or ind.max() >= Ho * Wo):
            raise ValueError(
                f"indices point outside a {Ho}x{Wo} output; give output_size = the size of the pooled input"
            )
        # scatter: output position ind[n, c, k] receives input value k
        idx = torch.full((N, C, Ho * Wo), -1, dtype=torch.long)
        src = torch.arange(H * W).expand(N, C, H * W)
        idx.scatter_(2, ind.reshape(N, C, H * W), src)
        idx = idx.reshape(N, C, Ho, Wo, 1)
        wgt = (idx >= 0).to(t.dtype)
    else:  # bilinear
        y0, y1, ly = _bilinear_src(H, Ho, sf)
        x0, x1, lx = _bilinear_src(W, Wo, sf)
        hy, hx = 1 - ly, 1 - lx
        idx = torch.stack(
            [y0[:, None] * W + x0[None, :], y0[:, None] * W + x1[None, :],
             y1[:, None] * W + x0[None, :], y1[:, None] * W + x1[None, :]], dim=-1)
        wgt = torch.stack(
            [hy[:, None] * hx[None, :], hy[:, None] * lx[None, :],
             ly[:, None] * hx[None, :], ly[:, None] * lx[None, :]], dim=-1).to(t.dtype)
        idx = idx.expand(N, C, Ho, Wo, 4)
        wgt = wgt.expand(N, C, Ho, Wo, 4)

    K = idx.shape[-1]
    vals = torch.gather(flat, 2, idx.clamp(min=0).reshape(N, C, Ho * Wo * K)).reshape(N, C, Ho, Wo, K)
    vals = torch.where(idx >= 0, vals, torch.zeros((), dtype=t.dtype))
    if mode == "bilinear":
        # torch computes  h0 * (w0 * v00 + w1 * v01) + h1 * (w0 * v10 + w1 * v11)
        out = (hy[:, None] * (hx[None, :] * vals[..., 0] + lx[None, :] * vals[..., 1])
               + ly[:, None] * (hx[None, :] * vals[..., 2] + lx[None, :] * vals[..., 3]))
    else:
        out = (vals * wgt).sum(-1)
    out = out.to(t.dtype)
    trace = UnpoolTrace(mode, t, out, idx, wgt, ind if mode == "max" else None)
    return _from_4d(out, dim), trace


def max_pool_with_switches(x, kernel: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pooling with ``kernel == stride`` that also returns the switches.

    Written as "take the arg-max of each block" so that the rule is visible;
    equals ``F.max_pool2d(x, kernel, return_indices=True)`` (ties go to the
    first element in row-major order, as in torch).

    Args:
        x: ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` with ``H, W >= kernel``.

    Returns:
        ``(pooled, indices)``, both shaped like ``x`` with sizes
        ``(H // kernel, W // kernel)``; ``indices`` are flat ``h * W + w``
        positions in ``x``, ready for ``unpool(..., mode="max")``.

    Raises ``ValueError`` if the blocks it copies (about the size of ``x``)
    exceed ``MAX_ELEMENTS``.
    """
    k = positive(pair(kernel, "kernel")[0], "kernel")
    t, dim = _to_4d(x)
    N, C, H, W = t.shape
    if H < k or W < k:
        raise ValueError(f"a {k}x{k} max pooling needs an input of at least {k}x{k}, got {H}x{W}")
    Hp, Wp = H // k, W // k
    check_size(prod((N, C, Hp, Wp, k, k)), MAX_ELEMENTS, f"the {k}x{k} blocks of a {N}x{C}x{H}x{W} input",
               "pool a smaller input (a crop, or fewer channels)")
    blocks = t[..., : Hp * k, : Wp * k].reshape(N, C, Hp, k, Wp, k).permute(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(N, C, Hp, Wp, k * k)
    # NaN counts as the maximum in torch's max pooling
    key = torch.where(torch.isnan(blocks), torch.full_like(blocks, float("inf")), blocks)
    best = key.argmax(-1)
    pooled = torch.gather(blocks, -1, best[..., None])[..., 0]
    by, bx = best // k, best % k
    rows = torch.arange(Hp)[:, None] * k + by
    cols = torch.arange(Wp)[None, :] * k + bx
    indices = rows * W + cols
    return _from_4d(pooled, dim), _from_4d(indices, dim)
