"""Non-maximum suppression, one kept box at a time.

Sort the boxes by score.  Repeatedly take the best box that is still alive,
keep it, and suppress every later box whose IoU with it is *above* the
threshold.  The class-aware variant only lets boxes of the same class
suppress each other.

Size limits (``explainers/ops/_checks.py``): ``nms_trace`` and
``batched_nms_trace`` take at most ``MAX_NMS_BOXES`` boxes and store full IoU
rows for at most ``MAX_TRACE_ENTRIES`` (candidate, IoU) pairs (the first
steps); ``box_iou`` builds at most ``MAX_ELEMENTS`` corner coordinates.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import (MAX_NMS_BOXES, MAX_TRACE_ENTRIES, as_tensor, check_boxes, check_scores,
                      check_size, check_threshold)


@dataclass
class NMSStep:
    """One step: ``kept`` survives and ``suppressed`` are the boxes it removes.

    In a *detailed* step (the first ``NMSTrace.detailed_steps`` ones),
    ``candidates`` are all the boxes still undecided after it that it is compared
    with (its class only, for the class-aware variant), in score order, and
    ``ious`` their IoU with it.  In the later steps, kept brief so that a trace
    of many boxes stays small, ``candidates`` are just the ``suppressed`` boxes
    and ``ious`` their IoUs.  Arrays are ``(M,)`` box indices / IoUs.
    """

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
        iou_threshold: the threshold used.
        labels: ``(N,)`` class of each box for the class-aware variant, else None.
        detailed_steps: how many leading steps carry their full IoU row (all
            candidates); they hold at most ``MAX_TRACE_ENTRIES`` (candidate, IoU)
            pairs together, the later steps only their suppressed boxes.  Every
            step is detailed unless there are thousands of boxes.
    """

    order: np.ndarray
    steps: list[NMSStep]
    keep: torch.Tensor
    suppressed_by: np.ndarray
    suppressed_at: np.ndarray
    iou_threshold: float
    labels: np.ndarray | None = None
    detailed_steps: int = 0

    def state_after(self, k: int) -> np.ndarray:
        """Status of every box after ``k`` steps: 0 undecided, 1 kept, 2 suppressed."""
        n = self.order.shape[0]
        state = np.zeros(n, dtype=np.int8)
        for step in self.steps[:k]:
            state[step.kept] = 1
            state[step.suppressed] = 2
        return state


def _iou_row(table: np.ndarray) -> np.ndarray:
    """``(5, R) -> (R - 1,)``: IoU of the first box of ``table`` (rows x1, y1, x2, y2, area)
    with each of the others, with exactly torchvision's float operations:
    ``inter / (area_i + area_j - inter)``."""
    x1, y1, x2, y2, area = table[:, 0]
    rest = table[:, 1:]
    w = np.minimum(rest[2], x2) - np.maximum(rest[0], x1)
    h = np.minimum(rest[3], y2) - np.maximum(rest[1], y1)
    np.maximum(w, 0, out=w)
    np.maximum(h, 0, out=h)
    inter = np.multiply(w, h, out=w)
    return inter / ((area + rest[4]) - inter)


_FULL_MATRIX_MAX = 2048


def _all_ious(table: np.ndarray) -> np.ndarray:
    """``(5, N) -> (N, N)``: every IoU at once, with the same float operations as
    :func:`_iou_row` (in torch, which is faster here than numpy); used for
    ``N <= 2048`` (16 MB), where it beats computing one row per step."""
    x1, y1, x2, y2, area = torch.from_numpy(table)
    w = (torch.min(x2[:, None], x2[None, :]) - torch.max(x1[:, None], x1[None, :])).clamp_(min=0)
    h = (torch.min(y2[:, None], y2[None, :]) - torch.max(y1[:, None], y1[None, :])).clamp_(min=0)
    inter = w.mul_(h)
    return (inter / ((area[:, None] + area[None, :]) - inter)).numpy()


def _class_groups(order: np.ndarray, labels: np.ndarray | None) -> list[np.ndarray]:
    """``order`` split by class, each part still in score order (one part without labels)."""
    if labels is None or order.size == 0:
        return [order] if order.size else []
    lab = labels[order]
    by_class = np.argsort(lab, kind="stable")        # stable: score order inside a class
    cuts = np.flatnonzero(np.diff(lab[by_class])) + 1
    return np.split(order[by_class], cuts)


def _nms_core(boxes: torch.Tensor, scores: torch.Tensor, thr: float, labels: np.ndarray | None) -> NMSTrace:
    """Greedy NMS, one pool of undecided boxes per class.

    Each step keeps the best undecided box over all classes (the pool whose
    first box ranks highest) and compares it with the rest of its own pool
    only; suppressed boxes leave the pool.  Memory: the pools (``O(N)``), the
    suppressed boxes (``O(N)``) and the full IoU rows of the first steps (at
    most ``MAX_TRACE_ENTRIES``); time: ``O(kept x pool size)``.
    """
    n = boxes.shape[0]
    # torchvision sorts with a stable descending sort
    order = torch.sort(scores, stable=True, descending=True)[1].numpy()
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    b = boxes.detach().cpu().numpy()
    table = np.stack([b[:, 0], b[:, 1], b[:, 2], b[:, 3], (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])])
    tr = NMSTrace(order, [], torch.zeros(0, dtype=torch.int64), np.full(n, -1, dtype=np.int64),
                  np.full(n, -1, dtype=np.int64), thr, labels)
    with np.errstate(invalid="ignore", divide="ignore"):   # 0 / 0 for two empty boxes: NaN, as in torch
        full = _all_ious(table) if n <= _FULL_MATRIX_MAX else None
        # each pool: (R,) box indices in score order and, without the full matrix, their (5, R) table
        pools = [(g, None if full is not None else table[:, g]) for g in _class_groups(order, labels)]
        _greedy(tr, pools, rank, full)
    tr.keep = torch.as_tensor(np.asarray([st.kept for st in tr.steps], dtype=np.int64))
    return tr


def _greedy(tr: NMSTrace, pools: list, rank: np.ndarray, full: np.ndarray | None) -> None:
    """Run the steps, filling ``tr.steps``, ``suppressed_by``/``_at`` and ``detailed_steps``."""
    heap = [(int(rank[idx[0]]), k) for k, (idx, _) in enumerate(pools)]
    heapq.heapify(heap)
    budget = int(MAX_TRACE_ENTRIES)
    while heap:
        _, k = heapq.heappop(heap)
        idx, tab = pools[k]
        i, cand = int(idx[0]), idx[1:]
        iou = full[i, cand] if full is not None else _iou_row(tab)
        hit = iou.astype(np.float64) > tr.iou_threshold   # in double, as torchvision compares
        gone = cand[hit]
        step = len(tr.steps)
        if tr.detailed_steps == step and iou.size <= budget:
            budget -= iou.size
            tr.detailed_steps += 1
            tr.steps.append(NMSStep(i, cand, iou, gone))
        else:
            tr.steps.append(NMSStep(i, gone, iou[hit], gone))
        tab = None if tab is None else tab[:, 1:]
        if gone.size:
            tr.suppressed_by[gone] = i
            tr.suppressed_at[gone] = step
            alive = ~hit
            cand, tab = cand[alive], (None if tab is None else tab[:, alive])
        pools[k] = (cand, tab)
        if cand.size:
            heapq.heappush(heap, (int(rank[cand[0]]), k))


def _check_count(n: int) -> None:
    check_size(n, MAX_NMS_BOXES, "the NMS trace", "keep only the best-scoring boxes first, e.g. "
               "top = scores.topk(10_000).indices, and pass boxes[top], scores[top] (and labels[top])", unit="boxes")


def nms_trace(boxes, scores, iou_threshold: float = 0.5) -> tuple[torch.Tensor, NMSTrace]:
    """NMS with every step recorded.

    Args:
        boxes: ``(N, 4)`` ``(x1, y1, x2, y2)``.
        scores: ``(N,)``.
        iou_threshold: boxes with IoU strictly above it are suppressed.

    Returns:
        ``(keep, trace)``: ``keep`` ``(K,)`` int64 indices by decreasing score,
        equal to ``torchvision.ops.nms(boxes, scores, iou_threshold)``.

    Limits: at most ``MAX_NMS_BOXES`` boxes (``ValueError`` beyond); the trace
    keeps full IoU rows for its first steps only (``NMSTrace.detailed_steps``),
    so 10**5 boxes take well under 1 GB.
    """
    b = check_boxes(boxes)
    _check_count(b.shape[0])
    s = check_scores(scores, b.shape[0])
    thr = check_threshold(iou_threshold)
    tr = _nms_core(b, s, thr, None)
    return tr.keep, tr


def batched_nms_trace(boxes, scores, labels, iou_threshold: float = 0.5) -> tuple[torch.Tensor, NMSTrace]:
    """Class-aware NMS: a box only suppresses boxes of its own class.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; labels: ``(N,)`` integer classes.

    Returns:
        ``(keep, trace)``, ``keep`` by decreasing score.

    What is guaranteed: the kept set is always exactly that of NMS run on each
    class by itself, on the boxes as given (:func:`nms_trace`, i.e.
    ``torchvision.ops.nms``, on ``boxes[labels == c]`` for every class ``c``);
    IoUs are computed from the original coordinates, never shifted.  ``keep``
    lists it by decreasing score; equal scores keep the order of ``trace.steps``
    (lower index first) for at most 4,000 coordinates (1,000 boxes), and above
    that torchvision's own unstable re-sort, so that:

    * above 4,000 coordinates ``keep`` equals
      ``torchvision.ops.batched_nms(boxes, scores, labels, iou_threshold)`` on
      the CPU always, set and order: there torchvision itself runs one NMS per
      class (``_batched_nms_vanilla``) and the same call orders the result;
    * up to 4,000 coordinates torchvision (CPU) instead runs one NMS on boxes
      shifted by ``label * (boxes.max() + 1)`` in float32
      (``_batched_nms_coordinate_trick``).  The result is the same set and
      order whenever that shift is exact, e.g. all labels 0, or integer
      coordinates and labels whose shifted values stay below ``2**24``.
      Otherwise each shifted coordinate is rounded to the float32 grid at its
      shifted size (a spacing of about ``|label| * max * 1.2e-7``: 1/32 pixel
      for label 3 with coordinates near 1e5), which moves IoUs, and a box whose
      IoU with a kept box is that close to ``iou_threshold`` can be kept by one
      and suppressed by the other.  Here the unshifted per-class result is
      returned (``tests/ops/test_nms.py`` shows such a case).

    Limits: as :func:`nms_trace`.  Each class is its own pool, so the time is
    that of one NMS per class.
    """
    b = check_boxes(boxes)
    _check_count(b.shape[0])
    s = check_scores(scores, b.shape[0])
    lab = as_tensor(labels, "labels").reshape(-1)
    if lab.shape[0] != b.shape[0]:
        raise ValueError(f"there are {b.shape[0]} boxes but {lab.shape[0]} labels: give one class per box")
    if lab.is_floating_point() and not torch.equal(lab, lab.round()):
        raise ValueError("labels must be integer class indices")
    thr = check_threshold(iou_threshold)
    tr = _nms_core(b, s, thr, lab.long().numpy())
    tr.keep = _batched_keep_order(tr.keep, s, b.numel())
    return tr.keep, tr


def _batched_keep_order(keep: torch.Tensor, scores: torch.Tensor, numel: int) -> torch.Tensor:
    """``keep`` in the order ``torchvision.ops.batched_nms`` returns it.

    Above 4,000 coordinates (1,000 boxes) on the CPU, torchvision runs one NMS
    per class and sorts the kept indices by score with an *unstable* sort, which
    may order boxes with equal scores differently from the steps; making the same
    call gives the identical result.  The steps themselves stay in greedy order.
    """
    if numel <= 4000 or keep.numel() == 0:
        return keep
    kept = keep.sort().values
    return kept[scores[kept].sort(descending=True)[1]]
