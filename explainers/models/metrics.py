"""Held-out quality measures of the model cards (pure numpy/torch)."""
from __future__ import annotations

import numpy as np
import torch

from ..ops import box_iou


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class."""
    idx = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def mean_iou(conf: np.ndarray) -> tuple[float, list[float]]:
    """Mean over classes of ``TP / (TP + FP + FN)`` (classes that never occur are skipped)."""
    tp = np.diag(conf).astype(float)
    denom = conf.sum(0) + conf.sum(1) - tp
    ious = [float(t / d) for t, d in zip(tp, denom) if d > 0]
    return float(np.mean(ious)), [float(t / d) if d > 0 else float("nan") for t, d in zip(tp, denom)]


def pixel_accuracy(conf: np.ndarray) -> float:
    return float(np.diag(conf).sum() / max(conf.sum(), 1))


def average_precision(detections: list[dict], targets: list[dict], classes: list[int],
                      iou_threshold: float = 0.5) -> tuple[float, dict[int, float]]:
    """Mean over classes of the area under the precision-recall curve (all points, VOC style).

    ``detections[i]`` has ``boxes``, ``scores``, ``labels``; ``targets[i]`` has ``boxes``, ``labels``.
    A detection is a true positive when it overlaps a not-yet-matched ground truth box of
    its class with IoU >= ``iou_threshold``, taking detections by decreasing score.
    """
    per_class = {}
    for c in classes:
        scored = []
        n_gt = 0
        for img, (det, tgt) in enumerate(zip(detections, targets)):
            gt = tgt["boxes"][tgt["labels"] == c]
            n_gt += len(gt)
            keep = det["labels"] == c
            boxes, scores = det["boxes"][keep], det["scores"][keep]
            order = torch.argsort(scores, descending=True)
            boxes, scores = boxes[order], scores[order]
            matched = np.zeros(len(gt), dtype=bool)
            ious = box_iou(boxes, gt) if len(gt) and len(boxes) else torch.zeros(len(boxes), len(gt))
            for k in range(len(boxes)):
                tp = False
                if len(gt):
                    cand = ious[k].clone()
                    cand[torch.from_numpy(matched)] = -1
                    j = int(cand.argmax())
                    if cand[j] >= iou_threshold:
                        matched[j] = True
                        tp = True
                scored.append((float(scores[k]), tp))
        if n_gt == 0:
            continue
        scored.sort(key=lambda t: -t[0])
        tps = np.cumsum([t for _, t in scored]) if scored else np.zeros(0)
        fps = np.cumsum([not t for _, t in scored]) if scored else np.zeros(0)
        recall = tps / n_gt
        precision = tps / np.maximum(tps + fps, 1)
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
        per_class[c] = float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    return float(np.mean(list(per_class.values()))) if per_class else 0.0, per_class


def matched_mask_iou(detections: list[dict], targets: list[dict], score_threshold: float = 0.5,
                     iou_threshold: float = 0.5) -> float:
    """Mean mask IoU over ground-truth objects matched (same class, box IoU >= 0.5) by a detection."""
    values = []
    for det, tgt in zip(detections, targets):
        keep = det["scores"] >= score_threshold
        boxes, labels, masks = det["boxes"][keep], det["labels"][keep], det["masks"][keep]
        if not len(boxes) or not len(tgt["boxes"]):
            continue
        ious = box_iou(tgt["boxes"], boxes)
        ious[tgt["labels"][:, None] != labels[None, :]] = -1
        used = set()
        for g in torch.argsort(ious.max(1).values, descending=True).tolist():
            row = ious[g].clone()
            for u in used:
                row[u] = -1
            j = int(row.argmax())
            if row[j] < iou_threshold:
                continue
            used.add(j)
            pm = masks[j].reshape(masks.shape[-2:]) > 0.5
            gm = tgt["masks"][g].bool()
            inter = (pm & gm).sum().item()
            union = (pm | gm).sum().item()
            values.append(inter / max(union, 1))
    return float(np.mean(values)) if values else 0.0
