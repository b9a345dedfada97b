"""Which live tensors each explainer shows: the choice of channel, crop, level and proposals.

The widgets draw; this module decides what, from a model's trace, is worth drawing, and
returns plain tensors (all on the CPU) with their shapes documented.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .traces import DetectorTrace


@dataclass
class UnpoolingCrop:
    """A ``size x size`` crop of what SegNet's decoder unpools, with everything around it.

    ``pool_input (2s, 2s)``: the encoder features max pooling saw; ``input (s, s)``: the
    bottleneck values the decoder unpools; ``switches (s, s)``: pooling switches as flat indices
    *inside the crop* of ``pool_input``; ``output (2s, 2s)``: the decoder's own unpooling output
    there; ``origin``: ``(row, col)`` of the crop in the pooled map.
    """

    pool_input: torch.Tensor
    input: torch.Tensor
    switches: torch.Tensor
    output: torch.Tensor
    origin: tuple[int, int]


def segnet_capture(model, image, what: str) -> dict:
    """SegNet's internals on ``image`` (:attr:`SegmentationTrace.captured`); ``model`` None means
    the bundled shapes SegNet. ``what`` names the page in the error for any other model."""
    from . import get
    from .live import Segmenter
    from .nets import SegNet

    model = model or get("segmentation", "shapes")
    if not isinstance(model, Segmenter) or not isinstance(model.module, SegNet):
        raise ValueError(f"{what} needs the shapes SegNet (its decoder unpools with switches and learns a "
                         "transposed convolution); this model is not one")
    return model.trace(image).captured


def strongest_channel(x: torch.Tensor) -> int:
    """The channel of ``(C, H, W)`` with the largest absolute value."""
    return int(x.abs().flatten(1).max(1).values.argmax())


def unpooling_crop(captured: dict, channel: int, size: int = 4) -> UnpoolingCrop:
    """A crop around the channel's strongest decoder input at SegNet's deepest unpooling.

    ``captured`` is :attr:`SegmentationTrace.captured` of SegNet (2x2 pooling, stride 2).
    """
    e = captured["encoder_features"][2][0, channel]          # (H, W) what pool 3 saw
    idx = captured["pool_indices"][2][0, channel]            # (H/2, W/2) its switches (flat in H x W)
    b = captured["bottleneck"][0, channel]                   # (H/2, W/2) what the decoder unpools
    u = captured["unpooled"][0][0, channel]                  # (H, W) the decoder's own unpooling output
    hb, wb = b.shape
    size = min(size, hb, wb)
    r, q = divmod(int(b.abs().argmax()), wb)
    y0, x0 = max(0, min(r - size // 2, hb - size)), max(0, min(q - size // 2, wb - size))
    W = e.shape[-1]
    sw = idx[y0:y0 + size, x0:x0 + size]
    local = (sw // W - 2 * y0) * (2 * size) + (sw % W - 2 * x0)   # switches re-indexed inside the crop
    win = (slice(2 * y0, 2 * y0 + 2 * size), slice(2 * x0, 2 * x0 + 2 * size))
    return UnpoolingCrop(e[win], b[y0:y0 + size, x0:x0 + size], local, u[win], (y0, x0))


@dataclass
class KernelPick:
    """One input/output channel pair of a learned transposed-convolution kernel.

    ``kernel (k, k)``, ``features (H, W)`` of input channel ``c_in``; ``peak``: ``(row, col)``
    of that channel's strongest value.
    """

    c_in: int
    c_out: int
    kernel: torch.Tensor
    features: torch.Tensor
    peak: tuple[int, int]


def strongest_kernel(captured: dict) -> KernelPick:
    """The (input, output) channel pair whose 2D kernel has the largest norm, and its input."""
    w = captured["transposed_kernel"]                        # (C_in, C_out, k, k)
    i, o = divmod(int(w.flatten(2).norm(dim=-1).argmax()), w.shape[1])
    feat = captured["transposed_input"][0, i]
    r, c = divmod(int(feat.abs().argmax()), feat.shape[1])
    return KernelPick(i, o, w[i, o], feat, (r, c))


def top_candidates(trace: DetectorTrace, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``n`` best-scoring per-class boxes before the final NMS: ``boxes (n, 4)``, ``scores``, ``labels``."""
    order = torch.argsort(trace.scores_pre_nms, descending=True)[:n]
    return trace.boxes_pre_nms[order], trace.scores_pre_nms[order], trace.labels_pre_nms[order]


@dataclass
class AnchorLevel:
    """One feature level of the RPN: ``anchors (A, 4)``, ``objectness (A,)`` logits,
    ``deltas (A, 4)``, its ``feature_size`` (Hf, Wf), ``sizes`` and ``ratios``."""

    anchors: torch.Tensor
    objectness: torch.Tensor
    deltas: torch.Tensor
    feature_size: tuple[int, int]
    sizes: tuple
    ratios: tuple


def anchor_level(trace: DetectorTrace, level: int = 0) -> AnchorLevel:
    """The anchors, objectness and corrections of one level (with an FPN, level 0 is the finest)."""
    start = sum(trace.anchors_per_level[:level])
    sl = slice(start, start + trace.anchors_per_level[level])
    return AnchorLevel(trace.anchors[sl], trace.objectness[sl], trace.deltas[sl], tuple(trace.feature_sizes[level]),
                       tuple(trace.anchor_sizes[level]), tuple(trace.anchor_ratios[level]))
