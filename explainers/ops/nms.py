"""Non-maximum suppression, one kept box at a time.

Sort the boxes by score.  Repeatedly take the best box that is still alive,
keep it, and suppress every later box whose IoU with it is *above* the
threshold.  The class-aware variant only lets boxes of the same class
suppress each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._checks import as_tensor, check_boxes, check_scores, check_threshold


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N,)`` areas of ``(N, 4)`` boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1, boxes2) -> torch.Tensor:
    """Intersection over union of every pair: ``(N, 4), (M, 4) -> (N, M)``.

    ``IoU = area(A & B) / (area(A) + area(B) - area(A & B))``; equals
    ``torchvision.ops.box_iou``.
    """
    a = check_boxes(boxes1, "boxes1")
    b = check_boxes(boxes2, "boxes2").to(a.dtype)
    area1, area2 = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


@dataclass
class NMSStep:
    """One step: ``kept`` survives; ``candidates`` are the boxes still alive after it
    (in score order) with their ``ious`` against it; ``suppressed`` are those above the threshold."""

    kept: int
    candidates: np.ndarray
    ious: np.ndarray
    suppressed: np.ndarray


@dataclass
class NMSTrace:
    """The whole run.

    Attributes:
        order: ``(N,)`` box indices by decreasing score (stable for ties).
        steps: one :class:`NMSStep` per kept box, in order.
        keep: ``(K,)`` kept indices, by decreasing score.
        suppressed_by: ``(N,)`` index of the box that suppressed each box, ``-1`` if kept.
        suppressed_at: ``(N,)`` step at which each box was suppressed, ``-1`` if kept.
        labels: class of each box for the class-aware variant, else None.
    """

    order: np.ndarray
    steps: list[NMSStep]
    keep: torch.Tensor
    suppressed_by: np.ndarray
    suppressed_at: np.ndarray
    iou_threshold: float
    labels: np.ndarray | None = None

    def state_after(self, k: int) -> np.ndarray:
        """Status of every box after ``k`` steps: 0 undecided, 1 kept, 2 suppressed."""
        n = self.order.shape[0]
        state = np.zeros(n, dtype=np.int8)
        for step in self.steps[:k]:
            state[step.kept] = 1
            state[step.suppressed] = 2
        return state


_FULL_MATRIX_MAX = 2048


def _nms_core(boxes: torch.Tensor, scores: torch.Tensor, thr: float, labels: np.ndarray | None) -> NMSTrace:
    n = boxes.shape[0]
    # torchvision sorts with a stable descending sort
    order = torch.sort(scores, stable=True, descending=True)[1].numpy()
    b = boxes.detach().cpu().numpy()
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, i]) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    dtype = b.dtype.type
    zero = dtype(0)
    # all IoUs at once when that is cheap (same float operations, in the same order)
    full = None
    if n <= _FULL_MATRIX_MAX:
        tb = boxes.detach().cpu()
        ta = box_area(tb)
        w = (torch.min(tb[:, None, 2], tb[None, :, 2]) - torch.max(tb[:, None, 0], tb[None, :, 0])).clamp_(min=0)
        h = (torch.min(tb[:, None, 3], tb[None, :, 3]) - torch.max(tb[:, None, 1], tb[None, :, 1])).clamp_(min=0)
        inter = w.mul_(h)
        full = (inter / ((ta[:, None] + ta[None, :]) - inter)).numpy()
    alive = np.ones(n, dtype=bool)
    suppressed_by = np.full(n, -1, dtype=np.int64)
    suppressed_at = np.full(n, -1, dtype=np.int64)
    steps: list[NMSStep] = []
    keep = []
    rest = order  # boxes not yet decided, in score order
    while rest.size:
        i = int(rest[0])
        rest = rest[1:]
        keep.append(i)
        cand = rest[labels[rest] == labels[i]] if labels is not None else rest
        if full is not None:
            iou = full[i][cand]
        else:
            # exactly torchvision's float arithmetic: inter / (area_i + area_j - inter)
            w = np.maximum(zero, np.minimum(x2[i], x2[cand]) - np.maximum(x1[i], x1[cand]))
            h = np.maximum(zero, np.minimum(y2[i], y2[cand]) - np.maximum(y1[i], y1[cand]))
            inter = w * h
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = inter / (areas[i] + areas[cand] - inter)
        gone = cand[iou > thr]
        if gone.size:
            alive[gone] = False
            suppressed_by[gone] = i
            suppressed_at[gone] = len(steps)
            rest = rest[alive[rest]]
        steps.append(NMSStep(i, cand, iou, gone))
    keep_t = torch.as_tensor(np.asarray(keep, dtype=np.int64))
    return NMSTrace(order, steps, keep_t, suppressed_by, suppressed_at, thr, labels)


def nms_trace(boxes, scores, iou_threshold: float = 0.5) -> tuple[torch.Tensor, NMSTrace]:
    """NMS with every step recorded.

    Args:
        boxes: ``(N, 4)`` ``(x1, y1, x2, y2)``.
        scores: ``(N,)``.
        iou_threshold: boxes with IoU strictly above it are suppressed.

    Returns:
        ``(keep, trace)``: ``keep`` ``(K,)`` int64 indices by decreasing score,
        equal to ``torchvision.ops.nms(boxes, scores, iou_threshold)``.
    """
    b = check_boxes(boxes)
    s = check_scores(scores, b.shape[0])
    thr = check_threshold(iou_threshold)
    tr = _nms_core(b, s, thr, None)
    return tr.keep, tr


def batched_nms_trace(boxes, scores, labels, iou_threshold: float = 0.5) -> tuple[torch.Tensor, NMSTrace]:
    """Class-aware NMS: a box only suppresses boxes of its own class.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; labels: ``(N,)`` integer classes.

    Returns:
        ``(keep, trace)``, ``keep`` by decreasing score, equal to
        ``torchvision.ops.batched_nms(boxes, scores, labels, iou_threshold)``.
    """
    b = check_boxes(boxes)
    s = check_scores(scores, b.shape[0])
    lab = as_tensor(labels, "labels").reshape(-1)
    if lab.shape[0] != b.shape[0]:
        raise ValueError(f"there are {b.shape[0]} boxes but {lab.shape[0]} labels: give one class per box")
    if lab.is_floating_point() and not torch.equal(lab, lab.round()):
        raise ValueError("labels must be integer class indices")
    thr = check_threshold(iou_threshold)
    tr = _nms_core(b, s, thr, lab.long().numpy())
    return tr.keep, tr
