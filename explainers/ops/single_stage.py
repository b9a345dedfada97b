"""Single-stage detectors: YOLO's output grid, SSD's default boxes, FCOS's dense predictions.

* :func:`yolo_decode` reads a YOLO-style output tensor ``(S, S, 5B + C)``: the image is cut
  into an ``S x S`` grid; each cell holds ``B`` base boxes centred on it, and for each base box
  five numbers ``(dx, dy, dw, dh, confidence)`` that move the base box onto a final box (the
  box coder of Faster R-CNN with weights ``(1, 1, 1, 1)``: ``cx = cx_b + dx * w_b``,
  ``w = w_b * exp(dw)``), then ``C`` class scores for the cell (background counted as class 0).
  Layout of one cell's vector: ``[dx, dy, dw, dh, conf] * B + [p_0 .. p_{C-1}]``.
* :func:`yolo_encode` is the inverse for ground truth: the cell that contains a box's centre is
  responsible for it, and within that cell the base box with the highest IoU.
* :func:`ssd_default_boxes` lays SSD's default boxes on several feature maps, equal to
  ``torchvision.models.detection.anchor_utils.DefaultBoxGenerator``
  (reference: :mod:`explainers.ops.single_stage_reference`).
* :func:`fcos_dense` turns FCOS head outputs into one scored box per location, before any
  threshold or NMS (what a one-stage detector "sees" everywhere).

Size limits: every function builds tensors proportional to its output and checks them against
``MAX_ELEMENTS`` (``explainers/ops/_checks.py``) first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ._checks import MAX_ELEMENTS, as_tensor, check_boxes, check_size
from .boxes import box_iou, clip_boxes, decode_boxes, encode_boxes

#: the box coder weights of the YOLO tensor: plain ``(dx, dy, dw, dh)``
YOLO_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
#: base box shapes ``(width, height)`` in cell units; ``B`` base boxes are the first ``B``
YOLO_BASE_SHAPES = ((1.5, 1.5), (2.5, 1.25), (1.25, 2.5), (3.0, 3.0), (0.75, 0.75), (4.0, 2.0))
#: the most grid cells per side
MAX_S = 32
#: torchvision's ``ssd300_vgg16``: feature map sizes, aspect ratios, scales, steps (on 300 x 300)
SSD300_FEATURE_SIZES = (38, 19, 10, 5, 3, 1)
SSD300_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD300_SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
SSD300_STEPS = (8, 16, 32, 64, 100, 300)


def _grid_args(S: int, B: int, C: int, image_size) -> tuple[int, int, int, float, float]:
    for v, name in ((S, "S"), (B, "B"), (C, "C")):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be a whole number, got {v!r}")
    if not 1 <= S <= MAX_S:
        raise ValueError(f"the grid must have 1 to {MAX_S} cells per side (S), got {S}")
    if not 1 <= B <= len(YOLO_BASE_SHAPES):
        raise ValueError(f"each cell can have 1 to {len(YOLO_BASE_SHAPES)} base boxes (B), got {B}")
    if C < 2:
        raise ValueError(f"C counts the background as a class, so it must be at least 2, got {C}")
    H, W = (float(v) for v in tuple(image_size)[-2:])
    if H <= 0 or W <= 0:
        raise ValueError(f"the image size must be positive, got {tuple(image_size)}")
    check_size(S * S * (5 * B + C), MAX_ELEMENTS, f"the {S}x{S}x{5 * B + C} output tensor", "use a smaller S")
    return S, B, C, H, W


def yolo_channel_names(B: int, classes: Sequence[str]) -> list[str]:
    """The ``5B + C`` names of one cell's vector, in order: ``"box 1 dx"``, ..., ``"p(cat)"``."""
    names = [f"box {b + 1} {n}" for b in range(B) for n in ("dx", "dy", "dw", "dh", "conf")]
    return names + [f"p({c})" for c in classes]


def yolo_base_boxes(S: int, B: int, image_size) -> torch.Tensor:
    """``(S, S, B, 4)`` base boxes ``(x1, y1, x2, y2)``: ``B`` shapes (``YOLO_BASE_SHAPES``, in
    cell units) centred on each cell of an ``S x S`` grid over an image of ``image_size = (H, W)``."""
    S, B, _, H, W = _grid_args(S, B, 2, image_size)
    ch, cw = H / S, W / S
    ys = (torch.arange(S, dtype=torch.float32) + 0.5) * ch
    xs = (torch.arange(S, dtype=torch.float32) + 0.5) * cw
    wh = torch.tensor(YOLO_BASE_SHAPES[:B], dtype=torch.float32) * torch.tensor([cw, ch])
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    cx, cy = cx[..., None], cy[..., None]                           # (S, S, 1)
    w, h = wh[:, 0], wh[:, 1]                                       # (B,)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


@dataclass
class YoloTrace:
    """One YOLO output tensor, read.

    Attributes:
        S, B, C: grid cells per side, base boxes per cell, classes (background included).
        image_size: ``(H, W)``; ``cell_size``: ``(H / S, W / S)`` in pixels.
        tensor: ``(S, S, 5B + C)`` the output; cell ``(row, col)``'s vector is ``tensor[row, col]``.
        base_boxes: ``(S, S, B, 4)`` the base boxes centred on each cell.
        deltas: ``(S, S, B, 4)`` ``(dx, dy, dw, dh)`` of each base box.
        confidence: ``(S, S, B)`` how sure each box is that it holds an object.
        class_scores: ``(S, S, C)`` the cell's class scores (one set per cell, shared by its boxes).
        boxes: ``(S, S, B, 4)`` final boxes ``(x1, y1, x2, y2)``: the deltas applied to the base boxes.
        class_confidence: ``(S, S, B, C)`` ``confidence * class_scores``: YOLO's score of each box for each class.
    """

    S: int
    B: int
    C: int
    image_size: tuple[float, float]
    cell_size: tuple[float, float]
    tensor: torch.Tensor
    base_boxes: torch.Tensor
    deltas: torch.Tensor
    confidence: torch.Tensor
    class_scores: torch.Tensor
    boxes: torch.Tensor
    class_confidence: torch.Tensor

    def cell_box(self, row: int, col: int) -> list[float]:
        """The ``(x1, y1, x2, y2)`` of grid cell ``(row, col)``."""
        ch, cw = self.cell_size
        return [col * cw, row * ch, (col + 1) * cw, (row + 1) * ch]


def yolo_decode(tensor, B: int, image_size) -> tuple[torch.Tensor, YoloTrace]:
    """Read an ``(S, S, 5B + C)`` YOLO output tensor.

    Returns:
        ``(boxes, trace)``: boxes ``(S, S, B, 4)``, equal to torchvision's
        ``BoxCoder((1, 1, 1, 1)).decode_single`` of the deltas on the base boxes.
    """
    t = as_tensor(tensor, "tensor")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.dim() != 3 or t.shape[0] != t.shape[1]:
        raise ValueError(f"a YOLO output must be S x S x (5B + C), got shape {tuple(t.shape)}")
    S = int(t.shape[0])
    C = int(t.shape[2]) - 5 * int(B)
    if C < 2:
        raise ValueError(f"a tensor with {t.shape[2]} numbers per cell cannot hold B = {B} boxes (5 numbers "
                         f"each) and at least 2 class scores")
    S, B, C, H, W = _grid_args(S, int(B), C, image_size)
    base = yolo_base_boxes(S, B, (H, W)).to(t.dtype)
    per_box = t[..., :5 * B].reshape(S, S, B, 5)
    deltas, conf = per_box[..., :4], per_box[..., 4]
    cls = t[..., 5 * B:]
    boxes = decode_boxes(deltas.reshape(-1, 4), base.reshape(-1, 4), YOLO_WEIGHTS).reshape(S, S, B, 4)
    trace = YoloTrace(S, B, C, (H, W), (H / S, W / S), t, base, deltas, conf, cls, boxes,
                      conf[..., None] * cls[:, :, None, :])
    return boxes, trace


@dataclass
class YoloTargetTrace:
    """How ground-truth boxes became a YOLO target tensor.

    Attributes:
        boxes: ``(N, 4)`` the ground-truth boxes; labels: ``(N,)`` in ``1 .. C-1``.
        cells: ``(N, 2)`` ``(row, col)`` of the cell containing each box's centre.
        ious: ``(N, B)`` IoU of each box with the base boxes of its cell.
        responsible: ``(N,)`` the base box (0..B-1) that must predict each box.
        kept: ``(N,)`` bool; False when an earlier box already took the same cell and base box
            (one YOLO cell slot predicts one object).
        tensor: ``(S, S, 5B + C)`` the target: deltas and confidence 1 in the responsible slots,
            zeros elsewhere; the class scores are one-hot (class 0, background, for empty cells).
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    cells: torch.Tensor
    ious: torch.Tensor
    responsible: torch.Tensor
    kept: torch.Tensor
    tensor: torch.Tensor


def yolo_encode(boxes, labels, S: int, B: int, C: int, image_size) -> tuple[torch.Tensor, YoloTargetTrace]:
    """The target tensor ``(S, S, 5B + C)`` of ground-truth ``boxes`` ``(N, 4)`` with ``labels`` ``(N,)``.

    The cell containing a box's centre is responsible for it; of that cell's ``B`` base boxes
    the one with the highest IoU gets the deltas that move it onto the box and confidence 1;
    the cell's class scores are one-hot for the box's class (the first box of a cell sets
    it). Empty cells say "background" (class 0). :func:`yolo_decode` of the result gives the
    boxes back (those ``kept``).
    """
    S, B, C, H, W = _grid_args(S, B, C, image_size)
    b = check_boxes(boxes, "boxes").to(torch.float32)
    lab = as_tensor(labels, "labels").reshape(-1).to(torch.int64)
    if lab.numel() != b.shape[0]:
        raise ValueError(f"there are {b.shape[0]} boxes but {lab.numel()} labels: give one label per box")
    if lab.numel() and (lab.min() < 1 or lab.max() >= C):
        raise ValueError(f"labels must be object classes 1 .. {C - 1} (0 is the background), got {lab.tolist()}")
    if ((b[:, 2] - b[:, 0]) <= 0).any() or ((b[:, 3] - b[:, 1]) <= 0).any():
        raise ValueError("every box needs a positive width and height")
    ch, cw = H / S, W / S
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    if ((cx < 0) | (cx > W) | (cy < 0) | (cy > H)).any():
        raise ValueError(f"every box centre must lie inside the {W:g} x {H:g} image")
    col = torch.clamp((cx / cw).floor().to(torch.int64), 0, S - 1)
    row = torch.clamp((cy / ch).floor().to(torch.int64), 0, S - 1)
    base = yolo_base_boxes(S, B, (H, W))
    t = torch.zeros(S, S, 5 * B + C)
    t[..., 5 * B] = 1.0                                       # background until an object arrives
    n = b.shape[0]
    ious = torch.zeros(n, B)
    resp = torch.zeros(n, dtype=torch.int64)
    kept = torch.zeros(n, dtype=torch.bool)
    owner = {}
    for i in range(n):
        r, c = int(row[i]), int(col[i])
        ious[i] = box_iou(b[i:i + 1], base[r, c])[0]
        k = int(ious[i].argmax())
        resp[i] = k
        if (r, c, k) in owner:
            continue
        first = not any(key[:2] == (r, c) for key in owner)
        owner[(r, c, k)] = i
        kept[i] = True
        t[r, c, 5 * k:5 * k + 4] = encode_boxes(b[i:i + 1], base[r, c, k:k + 1], YOLO_WEIGHTS)[0]
        t[r, c, 5 * k + 4] = 1.0
        if first:
            t[r, c, 5 * B:] = 0.0
            t[r, c, 5 * B + int(lab[i])] = 1.0
    return t, YoloTargetTrace(b, lab, torch.stack((row, col), 1), ious, resp, kept, t)


# ----------------------------------------------------------------------------- SSD
@dataclass
class DefaultBoxTrace:
    """SSD's default boxes, level by level.

    Attributes:
        image_size: ``(H, W)``; feature_sizes: ``[(Hf, Wf)]`` per level.
        aspect_ratios: per level, the extra ratios (each gives a wide and a tall box).
        scales: ``L + 1`` scales (fractions of the image side); level ``k`` uses ``s_k`` and
            ``sqrt(s_k * s_{k+1})``.
        wh: per level, ``(K_l, 2)`` box width and height as fractions of the image,
            ``K_l = 2 + 2 * len(aspect_ratios[l])``, clipped to ``[0, 1]`` when ``clip``.
        steps: per level, pixels per feature cell used to place the centres (None: the image / Hf).
        centres: per level, ``(Hf * Wf, 2)`` ``(cx, cy)`` as fractions of the image, row-major.
        boxes_cxcywh: ``(A, 4)`` all boxes as fractions, location by location, box by box.
        boxes: ``(A, 4)`` ``(x1, y1, x2, y2)`` in pixels.
        per_level: ``(L,)`` number of boxes of each level.
    """

    image_size: tuple[int, int]
    feature_sizes: list[tuple[int, int]]
    aspect_ratios: list[tuple[float, ...]]
    scales: list[float]
    wh: list[torch.Tensor]
    steps: list[int] | None
    centres: list[torch.Tensor]
    boxes_cxcywh: torch.Tensor
    boxes: torch.Tensor
    per_level: list[int]

    def level(self, k: int) -> torch.Tensor:
        """``(Hf * Wf * K_k, 4)`` the pixel boxes of level ``k``."""
        start = sum(self.per_level[:k])
        return self.boxes[start:start + self.per_level[k]]

    def location(self, k: int, row: int, col: int) -> torch.Tensor:
        """``(K_k, 4)`` the default boxes of location ``(row, col)`` of level ``k``."""
        Hf, Wf = self.feature_sizes[k]
        if not (0 <= row < Hf and 0 <= col < Wf):
            raise ValueError(f"location ({row}, {col}) is outside the {Hf}x{Wf} feature map")
        K = self.wh[k].shape[0]
        start = (row * Wf + col) * K
        return self.level(k)[start:start + K]


def ssd_scales(n_levels: int, min_ratio: float = 0.15, max_ratio: float = 0.9) -> list[float]:
    """``n_levels + 1`` scales evenly spaced from ``min_ratio`` to ``max_ratio``, then 1.0 (SSD paper)."""
    if n_levels > 1:
        rng = max_ratio - min_ratio
        return [min_ratio + rng * k / (n_levels - 1.0) for k in range(n_levels)] + [1.0]
    return [min_ratio, max_ratio]


def ssd_default_boxes(image_size, feature_sizes, aspect_ratios, min_ratio: float = 0.15, max_ratio: float = 0.9,
                      scales: Sequence[float] | None = None, steps: Sequence[int] | None = None,
                      clip: bool = True) -> tuple[torch.Tensor, DefaultBoxTrace]:
    """SSD's default boxes on several feature maps.

    Args:
        image_size: ``(H, W)`` of the (padded) input.
        feature_sizes: one ``(Hf, Wf)`` (or one int) per feature map.
        aspect_ratios: per feature map, a list of ratios ``a`` (each adds a box ``s sqrt(a)`` wide and
            ``s / sqrt(a)`` high, and its transpose) besides the two square boxes.
        min_ratio, max_ratio, scales, steps, clip: as ``DefaultBoxGenerator``.

    Returns:
        ``(boxes, trace)``: ``(A, 4)`` pixel boxes, equal to ``DefaultBoxGenerator`` (same order).
    """
    H, W = (int(v) for v in tuple(image_size)[-2:])
    if H < 1 or W < 1:
        raise ValueError(f"the image size must be positive, got {tuple(image_size)}")
    sizes = [(int(f), int(f)) if isinstance(f, int) else tuple(int(v) for v in f) for f in feature_sizes]
    ratios = [tuple(float(a) for a in r) for r in aspect_ratios]
    L = len(ratios)
    if L == 0 or len(sizes) != L:
        raise ValueError(f"give one list of aspect ratios per feature map ({len(sizes)} maps, {L} lists)")
    if any(h < 1 or w < 1 for h, w in sizes):
        raise ValueError(f"feature map sizes must be at least 1, got {sizes}")
    if any(a <= 0 for r in ratios for a in r):
        raise ValueError("aspect ratios must be positive")
    if steps is not None and len(steps) != L:
        raise ValueError("give one step per feature map")
    sc = list(scales) if scales is not None else ssd_scales(L, min_ratio, max_ratio)
    if len(sc) < L + 1:
        raise ValueError(f"{L} feature maps need {L + 1} scales, got {len(sc)}")
    total = sum(h * w * (2 + 2 * len(r)) for (h, w), r in zip(sizes, ratios))
    check_size(total * 4, MAX_ELEMENTS, f"the default boxes ({total:,} boxes x 4)", "use smaller feature maps")
    wh, centres, out, per_level = [], [], [], []
    for k, ((fh, fw), r) in enumerate(zip(sizes, ratios)):
        s_k, s_next = sc[k], sc[k + 1]
        pairs = [[s_k, s_k], [math.sqrt(s_k * s_next)] * 2]
        for a in r:
            pairs += [[s_k * math.sqrt(a), s_k / math.sqrt(a)], [s_k / math.sqrt(a), s_k * math.sqrt(a)]]
        p = torch.tensor(pairs, dtype=torch.float32)
        if clip:
            p = p.clamp(0, 1)
        wh.append(p)
        if steps is not None:
            nx, ny = W / steps[k], H / steps[k]
        else:
            ny, nx = fh, fw
        cx = ((torch.arange(fw) + 0.5) / nx).to(torch.float32)
        cy = ((torch.arange(fh) + 0.5) / ny).to(torch.float32)
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        c = torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)     # (Hf * Wf, 2)
        centres.append(c)
        K = p.shape[0]
        out.append(torch.cat((c.repeat_interleave(K, 0), p.repeat(fh * fw, 1)), 1))
        per_level.append(fh * fw * K)
    cxcywh = torch.cat(out, 0)
    size = torch.tensor([W, H])
    boxes = torch.cat(((cxcywh[:, :2] - 0.5 * cxcywh[:, 2:]) * size, (cxcywh[:, :2] + 0.5 * cxcywh[:, 2:]) * size), 1)
    return boxes, DefaultBoxTrace((H, W), sizes, ratios, [float(v) for v in sc], wh,
                                  None if steps is None else [int(v) for v in steps], centres, cxcywh, boxes, per_level)


# ----------------------------------------------------------------------------- FCOS
@dataclass
class DenseTrace:
    """One scored box per location of a one-stage detector (FCOS), before thresholds and NMS.

    Attributes:
        points: ``(A, 2)`` the location centres ``(x, y)`` in the model's input frame.
        scores: ``(A, C)`` ``sqrt(sigmoid(class logit) * sigmoid(centre-ness logit))`` (column 0 unused).
        centerness: ``(A,)`` ``sigmoid(centre-ness logit)``: near 1 at an object's centre.
        best_score: ``(A,)`` the best object-class score; best_label: ``(A,)`` its class (1 .. C-1).
        boxes: ``(A, 4)`` ``(x1, y1, x2, y2)``: ``(cx - l s, cy - t s, cx + r s, cy + b s)`` with
            ``s`` the anchor size, clipped to the input image.
    """

    points: torch.Tensor
    scores: torch.Tensor
    centerness: torch.Tensor
    best_score: torch.Tensor
    best_label: torch.Tensor
    boxes: torch.Tensor


def fcos_dense(class_logits, box_regression, centerness, anchors, image_size) -> tuple[torch.Tensor, DenseTrace]:
    """Decode FCOS head outputs at every location: ``class_logits (A, C)``, ``box_regression (A, 4)``
    (distances ``(l, t, r, b)`` in anchor sizes), ``centerness (A,)`` logits, ``anchors (A, 4)``.

    Returns ``(boxes (A, 4), trace)``.
    """
    logits = as_tensor(class_logits, "class_logits").to(torch.float32)
    reg = as_tensor(box_regression, "box_regression").to(torch.float32)
    ctr = as_tensor(centerness, "centerness").to(torch.float32).reshape(-1)
    a = check_boxes(anchors, "anchors").to(torch.float32)
    A = a.shape[0]
    if logits.dim() != 2 or logits.shape[0] != A or reg.shape != (A, 4) or ctr.shape[0] != A:
        raise ValueError(f"need class_logits (A, C), box_regression (A, 4), centerness (A,) for A = {A} "
                         f"anchors; got {tuple(logits.shape)}, {tuple(reg.shape)}, {tuple(ctr.shape)}")
    if logits.shape[1] < 2:
        raise ValueError("class_logits need at least 2 columns (column 0 is the background)")
    check_size(A * logits.shape[1], MAX_ELEMENTS, f"the scores ({A} locations)", "use a smaller image")
    scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctr)[:, None])
    best, lab = scores[:, 1:].max(1)
    cx, cy = (a[:, 0] + a[:, 2]) * 0.5, (a[:, 1] + a[:, 3]) * 0.5
    size = torch.stack((a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]) * 2, 1)
    d = reg * size
    boxes = torch.stack((cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]), 1)
    boxes = clip_boxes(boxes, image_size)
    return boxes, DenseTrace(torch.stack((cx, cy), 1), scores, torch.sigmoid(ctr), best, lab + 1, boxes)


def match_detections(dense_boxes, dense_scores, det_boxes, det_scores, det_labels, scale) -> tuple[float, bool]:
    """How far a detector's final detections are from the dense predictions they were chosen from.

    ``dense_boxes (A, 4)`` and ``dense_scores (A, C)`` in the model's input frame; detections
    ``(D, 4)``, ``(D,)``, ``(D,)`` in the original image, which is ``scale = (h / H, w / W)``
    times smaller than... the input frame is the original times ``scale``. For each detection,
    the closest dense prediction of its class (largest of the box and score differences,
    boxes mapped to the original image); returns ``(largest such difference, every detection
    had a prediction to compare with)``.
    """
    b = check_boxes(dense_boxes, "dense_boxes").to(torch.float32)
    s = as_tensor(dense_scores, "dense_scores").to(torch.float32)
    db = check_boxes(det_boxes, "det_boxes").to(torch.float32)
    ds = as_tensor(det_scores, "det_scores").to(torch.float32).reshape(-1)
    dl = as_tensor(det_labels, "det_labels").to(torch.int64).reshape(-1)
    if len(db) == 0:
        return 0.0, True
    if len(b) == 0:
        return float("inf"), False
    sy, sx = (float(v) for v in scale)
    mapped = b * torch.tensor([1 / sx, 1 / sy, 1 / sx, 1 / sy])
    worst = 0.0
    for i in range(len(db)):
        lab = int(dl[i])
        if not 0 <= lab < s.shape[1]:
            return float("inf"), False
        d = torch.maximum((mapped - db[i]).abs().amax(1), (s[:, lab] - ds[i]).abs())
        worst = max(worst, float(d.min()))
    return worst, True
