"""Receptive fields and tensor shapes through a network that goes down and up again.

A network is described as a list of :class:`Layer` (convolution, pooling, max unpooling,
transposed convolution, padding, cropping, concatenation of skip connections), each reading
the layer(s) named in ``inputs`` (default: the one before it; ``"input"`` is the image).
:func:`receptive_fields` walks the list once and returns, per layer, its output shape and

* the standard receptive-field numbers (Araujo et al., "Computing receptive fields of
  convolutional neural networks", Distill 2019), extended to upsampling: ``jump`` (input pixels
  between two neighbouring cells: multiplied by a stride going down, divided by it going up),
  ``size`` (the side of an interior cell's receptive field) and ``start`` (the first input pixel
  of cell 0's field, negative when it reaches into the padding);
* the exact field of *every* cell on this input: the first and last input row (``lo_y``,
  ``hi_y``) and column (``lo_x``, ``hi_x``) that can change it. Zero padding adds nothing, so
  near a border the field is cut off; a max unpooling cell can receive the value of the one
  pooled cell whose block it lies in (which of the block's cells does depends on the switches).

The field of a cell is the box of input pixels with a possibly non-zero gradient: the real
network's gradient for one input lies inside it, and over a few random inputs fills it.

Size limit: the per-cell tables have ``sum(H + W)`` entries over the layers, at most
``MAX_ELEMENTS`` (``explainers/ops/_checks.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import torch

from ._checks import MAX_ELEMENTS, check_size, positive

KINDS = ("conv", "pool", "unpool", "conv_transpose", "pad", "crop", "concat")


@dataclass(frozen=True)
class Layer:
    """One layer's geometry (square settings, the same along rows and columns).

    ``kind``: one of ``KINDS``. ``channels``: output channels of a conv / transposed conv (the
    others keep their input's channels; a concat sums them). ``kernel``, ``stride``,
    ``padding``, ``dilation``, ``output_padding`` as in ``nn.Conv2d`` / ``nn.MaxPool2d`` /
    ``nn.MaxUnpool2d`` / ``nn.ConvTranspose2d``. ``size_of``: an unpooling's ``output_size``
    is the spatial size of this layer (the pooling's input). ``pad``: rows and columns added
    at the bottom and right by a replicate padding. ``crop``: ``(H, W)`` kept by a crop (the
    top-left part). ``inputs``: the layers it reads (default: the previous layer).
    """

    name: str
    kind: str
    channels: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    output_padding: int = 0
    size_of: str = ""
    pad: tuple[int, int] = (0, 0)
    crop: tuple[int, int] = (0, 0)
    inputs: tuple[str, ...] = ()


@dataclass
class FieldLayer:
    """The geometry of one layer's output.

    Attributes:
        name, kind: as in its :class:`Layer` (``"input"`` for the image).
        shape: ``(C, H, W)`` of its output.
        jump: input pixels between neighbouring cells (a ``Fraction``: 1/2 would be finer than
            the image).
        size: side of the receptive field of an interior cell (pixels, no border in the way).
        start: first input row/column of cell 0's field, counting padding (may be negative).
        lo_y, hi_y: ``(H,)`` int64, the first and last input row that can change each row of
            cells (the exact field on this input; ``lo > hi`` where nothing can).
        lo_x, hi_x: ``(W,)`` the same for columns.
    """

    name: str
    kind: str
    shape: tuple[int, int, int]
    jump: Fraction
    size: Fraction
    start: Fraction
    lo_y: torch.Tensor = field(repr=False)
    hi_y: torch.Tensor = field(repr=False)
    lo_x: torch.Tensor = field(repr=False)
    hi_x: torch.Tensor = field(repr=False)

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The receptive field of cell ``(row, col)``: ``(x1, y1, x2, y2)`` input pixels, ends
        exclusive (``x2 - x1`` columns wide)."""
        H, W = self.shape[1:]
        if not (0 <= row < H and 0 <= col < W):
            raise ValueError(f"cell ({row}, {col}) is outside the {H}x{W} map of {self.name}")
        return (int(self.lo_x[col]), int(self.lo_y[row]), int(self.hi_x[col]) + 1, int(self.hi_y[row]) + 1)

    def cell_of(self, row: int, col: int) -> tuple[int, int]:
        """The cell of this map at input pixel ``(row, col)``: ``floor((pixel - start_of_grid) /
        jump)`` with the grid anchored so cell 0 sits at pixel 0 (clipped to the map)."""
        H, W = self.shape[1:]
        r = min(H - 1, max(0, int(Fraction(row) / self.jump)))
        c = min(W - 1, max(0, int(Fraction(col) / self.jump)))
        return r, c

    @property
    def max_field(self) -> int:
        """The largest field side among the cells on this input (border cells are cut off)."""
        return int(max((self.hi_y - self.lo_y).max(), (self.hi_x - self.lo_x).max())) + 1


def _out_len(n: int, lay: Layer, sizes: dict, axis: int) -> int:
    k, s, p, d = lay.kernel, lay.stride, lay.padding, lay.dilation
    if lay.kind in ("conv", "pool"):
        m = (n + 2 * p - d * (k - 1) - 1) // s + 1
    elif lay.kind == "unpool":
        m = sizes[lay.size_of][axis] if lay.size_of else (n - 1) * s - 2 * p + k
    elif lay.kind == "conv_transpose":
        m = (n - 1) * s - 2 * p + d * (k - 1) + lay.output_padding + 1
    elif lay.kind == "pad":
        m = n + lay.pad[axis]
    elif lay.kind == "crop":
        m = min(n, lay.crop[axis])
    else:
        m = n
    if m < 1:
        raise ValueError(f"layer {lay.name!r} would have no rows or columns left (input side {n}); "
                         "use a larger image")
    return m


def _reads(n_in: int, m: int, lay: Layer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, last)`` input cell each of the ``m`` output cells reads (clipped to the input)."""
    j = torch.arange(m)
    k, s, p, d = lay.kernel, lay.stride, lay.padding, lay.dilation
    if lay.kind in ("conv", "pool", "unpool", "conv_transpose"):
        # every kernel tap t = 0..k-1: which input cell it reads, if any (padding reads nothing)
        t = torch.arange(k)[:, None]
        if lay.kind in ("conv", "pool"):
            i, ok = j * s - p + t * d, torch.ones(k, m, dtype=torch.bool)
        else:       # output o = i * s - p + t * d  ->  i = (o + p - t * d) / s where that is a whole number
            num = j + p - t * d
            i, ok = torch.div(num, s, rounding_mode="floor"), num % s == 0
        ok &= (i >= 0) & (i < n_in)
        big = torch.iinfo(torch.int64).max // 4
        return torch.where(ok, i, big).min(0).values, torch.where(ok, i, -1).max(0).values
    if lay.kind == "pad":                        # replicate: the padded cells copy the last one
        a = b = j.clamp(max=n_in - 1)
    else:                                        # crop, concat
        a = b = j
    return a, b


def _span(lo: torch.Tensor, hi: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """The field of cells reading input cells ``a..b`` (empty where ``a > b``)."""
    empty = a > b
    n = len(lo)
    new_lo = torch.where(empty, torch.iinfo(torch.int64).max // 4, lo[a.clamp(0, n - 1)])
    new_hi = torch.where(empty, -1, hi[b.clamp(0, n - 1)])
    # a field is the union over the cells read; fields only move right with the cell index
    # (all these layers are monotone), so the first cell's start and last cell's end bound it
    return new_lo, new_hi


def _nominal(lay: Layer, jump: Fraction, size: Fraction, start: Fraction):
    k, s, p, d = lay.kernel, lay.stride, lay.padding, lay.dilation
    if lay.kind in ("conv", "pool"):
        return jump * s, size + (k - 1) * d * jump, start - p * jump
    if lay.kind in ("unpool", "conv_transpose"):
        first = -((-(p - (k - 1) * d)) // s)              # ceil((p - (k-1) d) / s): input cell of output 0
        most = -(-((k - 1) * d + 1) // s)                 # ceil(((k-1) d + 1) / s): input cells one output reads
        return jump / s, size + (most - 1) * jump, start + first * jump
    return jump, size, start


def receptive_fields(layers: list[Layer], input_shape: tuple[int, int, int]) -> list[FieldLayer]:
    """Shapes and receptive fields of every layer, in order (the input first).

    Args:
        layers: the network's layers in the order it runs them (see :class:`Layer`).
        input_shape: ``(C, H, W)`` of the image.

    Returns:
        a :class:`FieldLayer` per layer, the input first (name ``"input"``).

    Raises:
        ValueError: for an unknown kind or input name, a concatenation of maps of different
            sizes, a layer left with no rows, or tables beyond ``MAX_ELEMENTS``.
    """
    C, H, W = (int(v) for v in input_shape)
    positive(H, "image height")
    positive(W, "image width")
    one = Fraction(1)
    out = [FieldLayer("input", "input", (C, H, W), one, one, Fraction(0), torch.arange(H), torch.arange(H),
                      torch.arange(W), torch.arange(W))]
    by_name = {"input": out[0]}
    sizes = {"input": (H, W)}
    total = H + W
    for lay in layers:
        if lay.kind not in KINDS:
            raise ValueError(f"layer {lay.name!r}: kind must be one of {', '.join(KINDS)}, got {lay.kind!r}")
        names = lay.inputs or (out[-1].name,)
        for n in names:
            if n not in by_name:
                raise ValueError(f"layer {lay.name!r} reads {n!r}, which is not an earlier layer")
        srcs = [by_name[n] for n in names]
        src = srcs[0]
        h_in, w_in = src.shape[1:]
        h, w = _out_len(h_in, lay, sizes, 0), _out_len(w_in, lay, sizes, 1)
        total += h + w
        check_size(total, MAX_ELEMENTS, "the receptive-field tables", "use a smaller image")
        if lay.kind == "concat":
            if any(s.shape[1:] != (h, w) for s in srcs):
                raise ValueError(f"layer {lay.name!r} concatenates maps of sizes "
                                 f"{[s.shape[1:] for s in srcs]}: they must be equal")
            c = sum(s.shape[0] for s in srcs)
        else:
            c = lay.channels if lay.kind in ("conv", "conv_transpose") else src.shape[0]
        tables = []
        for axis, (n_in, m) in enumerate(((h_in, h), (w_in, w))):
            a, b = _reads(n_in, m, lay)
            lo, hi = None, None
            for s in srcs:
                slo, shi = (s.lo_y, s.hi_y) if axis == 0 else (s.lo_x, s.hi_x)
                l2, h2 = _span(slo, shi, a, b)
                lo = l2 if lo is None else torch.minimum(lo, l2)
                hi = h2 if hi is None else torch.maximum(hi, h2)
            tables += [lo, hi]
        if lay.kind == "concat":
            noms = [(s.jump, s.size, s.start) for s in srcs]
            jump, size, start = min(n[0] for n in noms), max(n[1] for n in noms), min(n[2] for n in noms)
        else:
            jump, size, start = _nominal(lay, src.jump, src.size, src.start)
        fl = FieldLayer(lay.name, lay.kind, (c, h, w), jump, size, start, *tables)
        out.append(fl)
        by_name[lay.name] = fl
        sizes[lay.name] = (h, w)
    return out


def field_mask(layer: FieldLayer, row: int, col: int, image_size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` bool: the input pixels in cell ``(row, col)``'s receptive field."""
    x1, y1, x2, y2 = layer.box(row, col)
    m = torch.zeros(image_size, dtype=torch.bool)
    m[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return m
