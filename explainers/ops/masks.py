"""Mask R-CNN's last step: a small square mask pasted into its box on the image.

The mask head predicts, for every detection, an ``M x M`` (28 x 28) map of logits per class
in the box's own frame.  The mask of the predicted class goes through a sigmoid
(:func:`mask_probability`) and is then pasted into the image (:func:`paste_mask_trace`), as
torchvision's ``paste_masks_in_image`` does:

1. **pad**: one row / column of zeros on every side (``padding=1``): ``(M + 2, M + 2)``, so
   that the bilinear resize fades to 0 at the edge of the box instead of smearing the border;
2. **expand the box** by the same factor ``scale = (M + 2 p) / M`` about its centre (the
   padded mask covers a slightly larger box), then cut the corners to whole pixels
   (``int64``: truncation toward zero, as ``Tensor.to(torch.int64)``);
3. **resize** the padded mask bilinearly (``align_corners=False``) to ``h x w`` pixels, with
   ``w = x2 - x1 + 1`` and ``h = y2 - y1 + 1`` of the integer box (at least 1 each);
4. **paste** it into an ``H x W`` image of zeros, keeping only the part inside the image;
5. **threshold**: the binary mask is ``pasted > threshold`` (0.5 by default).

Everything is float32, rounded where torchvision and torch's CPU bilinear kernels round, so
the result equals ``torchvision.models.detection.roi_heads.paste_masks_in_image`` (see
``tests/ops/test_masks.py``; the reference call is in :mod:`.masks_reference`).

Size limits (``explainers/ops/_checks.py``): the resized mask and the image each have at most
``MAX_ELEMENTS`` pixels, checked from the box and the image size before anything is allocated.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_boxes, check_size, check_threshold, prod


@dataclass
class MaskPasteTrace:
    """Every intermediate of pasting one mask (``M x M``) into an ``H x W`` image.

    Attributes:
        mask: ``(M, M)`` the mask given (probabilities in [0, 1] for Mask R-CNN).
        padding: zeros added on each side (torchvision: 1).
        scale: ``(M + 2 padding) / M``, the factor the box grows by (a Python float).
        padded: ``(M + 2 padding, M + 2 padding)`` the mask with its border of zeros.
        box: ``(4,)`` float32 ``(x1, y1, x2, y2)`` the detection's box on the image.
        expanded_box_float: ``(4,)`` float32 the box grown by ``scale`` about its centre.
        expanded_box: ``(4,)`` int64 the same, truncated toward zero (``Tensor.to(int64)``):
            the padded mask covers pixels ``x1 .. x2`` and ``y1 .. y2``, both ends included.
        size: ``(h, w)`` the resized mask's size: ``y2 - y1 + 1`` by ``x2 - x1 + 1`` (at least 1).
        resized: ``(h, w)`` float32 the padded mask resized bilinearly (``align_corners=False``).
        window: ``(y0, y1, x0, x1)`` the rows ``y0:y1`` and columns ``x0:x1`` of the image the
            resized mask lands on (its part inside the image; empty when ``y1 <= y0`` or ``x1 <= x0``).
        pasted: ``(H, W)`` float32 the image-sized probability map (0 outside the box).
        threshold: the cut; ``binary``: ``(H, W)`` bool, ``pasted > threshold``.
    """

    mask: torch.Tensor
    padding: int
    scale: float
    padded: torch.Tensor
    box: torch.Tensor
    expanded_box_float: torch.Tensor
    expanded_box: torch.Tensor
    size: tuple[int, int]
    resized: torch.Tensor
    window: tuple[int, int, int, int]
    pasted: torch.Tensor
    threshold: float
    binary: torch.Tensor

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.pasted.shape)


def mask_probability(logits, label: int) -> torch.Tensor:
    """``(M, M)``: the sigmoid of the predicted class' logits, ``logits`` ``(K, M, M)``
    (torchvision's ``maskrcnn_inference`` for one detection)."""
    x = as_tensor(logits, "logits")
    if x.dim() != 3:
        raise ValueError(f"logits must have shape (classes, M, M), got {tuple(x.shape)}")
    label = int(label)
    if not 0 <= label < x.shape[0]:
        raise ValueError(f"label {label} is not a class of these logits (0 .. {x.shape[0] - 1})")
    return torch.sigmoid(x.float()[label])


def _check_mask(mask) -> torch.Tensor:
    m = as_tensor(mask, "mask")
    if m.dim() != 2:
        raise ValueError(f"mask must be one square map (M, M), got shape {tuple(m.shape)}")
    if m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError(f"mask must be square (M, M) like Mask R-CNN's 28 x 28 masks, got {tuple(m.shape)}")
    return m.float() if not m.is_floating_point() else m


def _check_image_size(image_size) -> tuple[int, int]:
    try:
        H, W = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if H < 1 or W < 1:
        raise ValueError(f"image_size must be at least 1 x 1, got {H} x {W}")
    check_size(H * W, MAX_ELEMENTS, f"the pasted mask ({H} x {W})", "use a smaller image", unit="pixels")
    return H, W


def pad_mask(mask: torch.Tensor, padding: int) -> tuple[torch.Tensor, float]:
    """``(padded (M + 2p, M + 2p), scale)``: ``p`` zeros on every side, and the box's growth factor."""
    M = mask.shape[-1]
    padded = torch.zeros(M + 2 * padding, M + 2 * padding, dtype=mask.dtype)
    padded[padding:padding + M, padding:padding + M] = mask
    return padded, float(M + 2 * padding) / M


def expand_box(box: torch.Tensor, scale: float) -> torch.Tensor:
    """``(4,)``: the box grown by ``scale`` about its centre, in the box's dtype."""
    x1, y1, x2, y2 = box
    w_half, h_half = (x2 - x1) * 0.5, (y2 - y1) * 0.5
    x_c, y_c = (x2 + x1) * 0.5, (y2 + y1) * 0.5
    w_half, h_half = w_half * scale, h_half * scale
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half])


def _linear_weights(n_in: int, n_out: int):
    """For each output position along one axis: the two source positions and their weights
    (bilinear, ``align_corners=False``, as torch's CPU kernel computes them in float32).

    The source position of output ``i`` is ``(i + 0.5) * n_in / n_out - 0.5``, clamped at 0;
    ``i0`` is its floor, ``i1 = i0 + 1`` (or ``i0`` at the last row), ``l1`` its fractional part,
    ``l0 = 1 - l1``."""
    ratio = torch.tensor(float(n_in), dtype=torch.float32) / n_out
    half = torch.arange(n_out, dtype=torch.float32) + 0.5
    # ratio * half - 0.5 rounded once (torch's compiled kernel fuses it into one multiply-add):
    # the product of two float32 is exact in float64
    src = (ratio.double() * half.double() - 0.5).float()
    src = src.clamp(min=0)
    i0 = torch.floor(src).long().clamp(max=n_in - 1)
    l1 = (src - i0.float()).clamp(0, 1)
    i1 = i0 + (i0 < n_in - 1).long()
    return i0, i1, 1 - l1, l1


def _fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` rounded once to float32, as a fused multiply-add (the product of two float32
    numbers is exact in float64)."""
    return (a.double() * b.double() + c.double()).float()


#: torch's CPU bilinear resize takes another kernel (and sums in another order) when the output's
#: ``h + w`` is at most this; the values are the same up to the last bit of float32
SMALL_OUTPUT = 128


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(h, w)``: ``x`` ``(Hi, Wi)`` resized bilinearly (``F.interpolate(mode="bilinear",
    align_corners=False)``).

    Each output pixel mixes its four nearest source pixels ``a = x[i0, j0]``, ``b = x[i0, j1]``,
    ``c = x[i1, j0]``, ``d = x[i1, j1]`` with the row weights ``l0, l1`` and the column weights
    ``k0, k1``::

        out = l0 * (k0 a + k1 b) + l1 * (k0 c + k1 d)

    The sums are rounded as torch's compiled CPU kernels round them (fused multiply-adds, in the
    order of the kernel torch picks for this output size), so the floats are torch's own.
    """
    h, w = size
    check_size(prod((h, w)), MAX_ELEMENTS, f"the resized mask ({h} x {w})", "use a smaller box", unit="pixels")
    r0, r1, l0, l1 = _linear_weights(x.shape[0], h)
    c0, c1, k0, k1 = _linear_weights(x.shape[1], w)
    a, b = x[r0][:, c0], x[r0][:, c1]           # (h, w) each: the four neighbours of every output pixel
    c, d = x[r1][:, c0], x[r1][:, c1]
    l0, l1 = l0[:, None], l1[:, None]
    if h + w <= SMALL_OUTPUT:                   # one weight per neighbour: a l0 k0 + b l0 k1 + c l1 k0 + d l1 k1
        return _fma(d, l1 * k1, _fma(c, l1 * k0, _fma(a, l0 * k0, b * (l0 * k1))))
    top = _fma(a, k0, b * k1)                   # along the rows first, then the two rows
    bottom = _fma(c, k0, d * k1)
    return _fma(top, l0, bottom * l1)


def paste_mask_trace(mask, box, image_size, padding: int = 1, threshold: float = 0.5) -> MaskPasteTrace:
    """Paste one ``(M, M)`` mask into box ``(x1, y1, x2, y2)`` of an ``image_size = (H, W)`` image.

    Returns the :class:`MaskPasteTrace`; its ``pasted`` equals
    ``paste_masks_in_image(mask[None, None], box[None], (H, W), padding)[0, 0]`` of torchvision.

    Raises ``ValueError`` for a mask that is not square, a bad box, a negative padding, or a
    resized mask or image above ``MAX_ELEMENTS`` pixels.
    """
    m = _check_mask(mask)
    b = check_boxes(box, "box")
    if b.shape[0] != 1:
        raise ValueError(f"paste_mask_trace pastes one mask into one box; got {b.shape[0]} boxes")
    b = b[0].to(torch.float32)
    if isinstance(padding, bool) or int(padding) != padding or padding < 0:
        raise ValueError(f"padding must be a whole number of pixels, 0 or more, got {padding!r}")
    padding = int(padding)
    t = check_threshold(threshold, "threshold")
    H, W = _check_image_size(image_size)
    padded, scale = pad_mask(m, padding)
    grown = expand_box(b, scale)
    if grown.abs().max() > 2**40:
        raise ValueError(f"the box {b.tolist()} is far too large to paste a mask into")
    ib = grown.to(torch.int64)
    x1, y1, x2, y2 = (int(v) for v in ib)
    w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    check_size(prod((h, w)), MAX_ELEMENTS, f"the mask resized to the box ({h} x {w})",
               "use a smaller box", unit="pixels")
    resized = resize_bilinear(padded, (h, w))
    pasted = torch.zeros(H, W, dtype=resized.dtype)
    xa, xb = max(x1, 0), min(x2 + 1, W)
    ya, yb = max(y1, 0), min(y2 + 1, H)
    if xb > xa and yb > ya:
        pasted[ya:yb, xa:xb] = resized[ya - y1:yb - y1, xa - x1:xb - x1]
    return MaskPasteTrace(mask=m, padding=padding, scale=scale, padded=padded, box=b, expanded_box_float=grown,
                          expanded_box=ib, size=(h, w), resized=resized, window=(ya, yb, xa, xb), pasted=pasted,
                          threshold=t, binary=pasted > t)


def paste_masks(masks, boxes, image_size, padding: int = 1) -> torch.Tensor:
    """``(N, H, W)``: :func:`paste_mask_trace` of each ``(N, M, M)`` mask in its ``(N, 4)`` box."""
    ms = as_tensor(masks, "masks")
    if ms.dim() == 4 and ms.shape[1] == 1:      # torchvision's (N, 1, M, M)
        ms = ms[:, 0]
    b = check_boxes(boxes)
    if ms.dim() != 3 or ms.shape[0] != b.shape[0]:
        raise ValueError(f"give one (M, M) mask per box: {tuple(ms.shape)} masks for {b.shape[0]} boxes")
    H, W = _check_image_size(image_size)
    check_size(prod((b.shape[0], H, W)), MAX_ELEMENTS, f"{b.shape[0]} pasted masks of {H} x {W}",
               "paste fewer masks at once", unit="pixels")
    out = torch.zeros(b.shape[0], H, W, dtype=torch.float32)
    for i in range(b.shape[0]):
        out[i] = paste_mask_trace(ms[i], b[i], (H, W), padding).pasted
    return out
