"""Sliding-window segmentation versus one fully convolutional pass.

``sliding_window_predict`` cuts a window around every position, runs a patch
classifier on each window (in batches) and writes the class of the window's
centre pixel.  ``dense_predict`` runs the same network once over the whole
image.  For a network made only of unpadded convolutions, pooling and 1x1
"fully connected" convolutions, the second gives the *same* label map as the
first when the window equals the network's receptive field and the stride
equals its total stride, because overlapping windows share their features;
it just computes each shared feature once.  Both report what they cost.

Size limits (``explainers/ops/_checks.py``): ``sliding_window_predict``
classifies at most ``MAX_WINDOWS`` windows (each is a forward pass: that is
the slowness being shown) and a batch of windows holds at most
``MAX_ELEMENTS`` values; ``dense_predict`` runs on at most ``MAX_PIXELS``
pixels (the network's activations grow with the image).  A larger call raises
``ValueError`` before running the network.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._checks import MAX_ELEMENTS, MAX_PIXELS, MAX_WINDOWS, as_tensor, check_size, pair, positive


@dataclass
class Cost:
    """What a prediction cost: multiply-accumulates counted from the conv/linear
    layers actually run, measured wall time, number of forward calls."""

    macs: int
    seconds: float
    forward_calls: int

    def __str__(self) -> str:
        return f"{self.macs / 1e6:,.1f} M MACs in {self.seconds * 1e3:,.1f} ms ({self.forward_calls} forward calls)"


@dataclass
class SlidingWindowTrace:
    """The windows and what the classifier said about each.

    Attributes:
        windows: ``(nH * nW, 4)`` window boxes ``(x1, y1, x2, y2)`` in pixels, ends
            exclusive, row-major.
        centres: ``(nH * nW, 2)`` the ``(x, y)`` pixel each window classifies.
        scores: ``(K, nH, nW)`` class scores (logits) per window.
        labels: ``(nH, nW)`` arg-max class.
        cost: :class:`Cost`.
    """

    windows: torch.Tensor
    centres: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    window: tuple[int, int]
    stride: tuple[int, int]
    cost: Cost

    @property
    def probabilities(self) -> torch.Tensor:
        """``(K, nH, nW)`` each window's class probabilities: the softmax of its scores over K."""
        return self.scores.softmax(0)


def _as_chw(image) -> torch.Tensor:
    t = as_tensor(image, "image")
    if isinstance(image, np.ndarray) and t.dim() == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
        t = t.permute(2, 0, 1)  # numpy images are H x W x C
    if t.dim() == 2:
        t = t[None]
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"image must be (C, H, W), (H, W) or (1, C, H, W), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float() / 255.0
    return t


def _device(net: nn.Module) -> torch.device:
    p = next(iter(net.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class _MacCounter:
    """Counts multiply-accumulates of Conv / Linear layers with forward hooks."""

    def __init__(self, net: nn.Module):
        self.macs = 0
        self.handles = [m.register_forward_hook(self._hook) for m in net.modules()
                        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]

    def _hook(self, mod, inp, out):
        if isinstance(mod, nn.Linear):
            self.macs += out.numel() * mod.in_features
        else:
            k = int(np.prod(mod.kernel_size))
            self.macs += out.numel() * (mod.in_channels // mod.groups) * k

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def network_geometry(net: nn.Module) -> tuple[int, int]:
    """``(receptive_field, total_stride)`` of a plain chain of convolutions and poolings.

    Walks the modules in order; ``nn.Conv2d`` / pooling layers grow the receptive
    field by ``(k - 1) * dilation * stride_so_far`` and multiply the stride.
    Raises ``ValueError`` for a layer with padding (the identity with sliding
    windows needs unpadded layers) or with non-square settings.
    """
    rf, stride = 1, 1
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = pair(m.kernel_size, "kernel_size")
            s = pair(m.stride, "stride")
            p = pair(m.padding, "padding")
            d = pair(getattr(m, "dilation", 1), "dilation")
            if k[0] != k[1] or s[0] != s[1] or d[0] != d[1]:
                raise ValueError(f"{m} is not square; give window and stride by hand")
            if p != (0, 0):
                raise ValueError(f"{m} has padding {p}: sliding windows and the dense pass then disagree near borders")
            rf += (k[0] - 1) * d[0] * stride
            stride *= s[0]
    return rf, stride


def _windows(H: int, W: int, window, stride):
    wh, ww = window
    sh, sw = stride
    nH, nW = (H - wh) // sh + 1, (W - ww) // sw + 1
    ys = torch.arange(nH) * sh
    xs = torch.arange(nW) * sw
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.reshape(-1), gy.reshape(-1)
    boxes = torch.stack([gx, gy, gx + ww, gy + wh], 1)
    centres = torch.stack([gx + ww // 2, gy + wh // 2], 1)
    return nH, nW, boxes, centres


def sliding_window_predict(net: nn.Module, image, window, stride=1, batch_size: int = 256,
                           progress: bool = False) -> tuple[torch.Tensor, SlidingWindowTrace]:
    """Classify the centre pixel of every window, one window at a time (batched).

    Args:
        net: a patch classifier mapping ``(B, C, wh, ww)`` to ``(B, K)`` or ``(B, K, 1, 1)``;
            for a window larger than its receptive field a fully convolutional net gives
            ``(B, K, h, w)`` and the centre cell labels the window's centre pixel.
        image: ``(C, H, W)`` tensor (or ``(H, W)``, or an ``H x W x C`` numpy array;
            integer images are divided by 255).
        window: ``wh`` or ``(wh, ww)``; must fit in the image.
        stride: step between windows (pixels).
        batch_size: windows per forward call, run on the network's device.
        progress: show a tqdm bar over the batches.

    Returns:
        ``(labels, trace)``; labels ``(nH, nW)`` with ``nH = (H - wh) // stride + 1``.
        With ``window, stride = network_geometry(net)`` and an unpadded network
        this equals ``dense_predict(net, image)[0]``.

    Raises:
        ValueError: for bad arguments, for more than ``MAX_WINDOWS`` windows, or
            a batch of more than ``MAX_ELEMENTS`` values.
    """
    img = _as_chw(image)
    C, H, W = img.shape
    wh, ww = (positive(v, "window") for v in pair(window, "window"))
    sh, sw = (positive(v, "stride") for v in pair(stride, "stride"))
    positive(int(batch_size), "batch_size")
    if wh > H or ww > W:
        raise ValueError(f"the window ({wh}x{ww}) is larger than the image ({H}x{W}); use a smaller window")
    try:
        rf = network_geometry(net)[0]
    except ValueError:           # not a plain chain of unpadded layers: the network itself will say
        rf = 1
    if min(wh, ww) < rf:
        raise ValueError(f"a window of {wh}x{ww} pixels is too small for this network: it looks at {rf}x{rf} pixels to "
                         f"label one (its receptive field); choose a window of at least {rf}")
    n = ((H - wh) // sh + 1) * ((W - ww) // sw + 1)
    check_size(n, MAX_WINDOWS, f"the sliding-window pass ({wh}x{ww} windows, stride {sh}x{sw}, {H}x{W} image)",
               "use a larger stride or a smaller image (dense_predict does the whole image in one pass)",
               unit="windows")
    check_size(min(n, int(batch_size)) * C * wh * ww, MAX_ELEMENTS,
               f"a batch of {min(n, int(batch_size)):,} windows of {C}x{wh}x{ww}", "use a smaller batch_size")
    nH, nW, boxes, centres = _windows(H, W, (wh, ww), (sh, sw))
    dev = _device(net)
    x = img.to(dev)
    patches = x.unfold(1, wh, sh).unfold(2, ww, sw)            # (C, nH, nW, wh, ww), a view
    patches = patches.permute(1, 2, 0, 3, 4).reshape(nH * nW, C, wh, ww) if nH * nW <= batch_size else \
        patches.permute(1, 2, 0, 3, 4)
    outs = []
    batches = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="sliding window", unit="batch")
    calls = 0
    with torch.inference_mode(), _MacCounter(net) as counter:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        flat = patches if patches.dim() == 4 else None
        for start in batches:
            stop = min(start + batch_size, n)
            if flat is not None:
                batch = flat[start:stop]
            else:
                idx = torch.arange(start, stop, device=dev)
                batch = patches[idx // nW, idx % nW]
            try:
                out = net(batch.contiguous())
            except RuntimeError as exc:
                raise ValueError(f"the network cannot classify a window of {wh}x{ww} pixels (smaller than its "
                                 f"receptive field?): {str(exc).splitlines()[0]}") from None
            if out.dim() == 4:
                # a window larger than the receptive field gives a small map: its centre cell
                # is the classification of the window's centre pixel
                out = out[:, :, out.shape[2] // 2, out.shape[3] // 2]
            outs.append(out.reshape(out.shape[0], -1))
            calls += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
    scores = torch.cat(outs).float().cpu().T.reshape(-1, nH, nW)
    labels = scores.argmax(0)
    trace = SlidingWindowTrace(boxes, centres, scores, labels, (wh, ww), (sh, sw),
                               Cost(counter.macs, seconds, calls))
    return labels, trace


def dense_predict(net: nn.Module, image) -> tuple[torch.Tensor, torch.Tensor, Cost]:
    """Run the patch classifier once over the whole image (fully convolutionally).

    Args:
        net: the same network as for :func:`sliding_window_predict`, built of
            convolutions only, so that it accepts any input size.
        image: ``(C, H, W)``.

    Returns:
        ``(labels (nH, nW), scores (K, nH, nW), cost)``.

    Raises:
        ValueError: if the image has more than ``MAX_PIXELS`` pixels, or is too
            small for the network.
    """
    img = _as_chw(image)
    H, W = img.shape[-2:]
    check_size(H * W, MAX_PIXELS, f"a {W}x{H} image", "downscale it first (the live models use at most "
               "1024x1024), since the network's activations grow with the pixels", unit="pixels")
    dev = _device(net)
    x = img.to(dev)[None]
    with torch.inference_mode(), _MacCounter(net) as counter:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        try:
            out = net(x)
        except RuntimeError as exc:
            raise ValueError(f"the image ({tuple(img.shape[1:])}) is too small for this network: {exc}") from None
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
    if out.dim() != 4:
        raise ValueError("dense_predict needs a fully convolutional network (output (1, K, h, w))")
    scores = out[0].float().cpu()
    return scores.argmax(0), scores, Cost(counter.macs, seconds, 1)
