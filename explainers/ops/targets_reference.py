"""torchvision's own training pieces, called as they are, to check :mod:`explainers.ops.targets`.

Each function calls the real class or function (``det_utils.Matcher``,
``BalancedPositiveNegativeSampler``, ``BoxCoder.encode``, ``F.binary_cross_entropy_with_logits``,
``F.smooth_l1_loss``, ``roi_heads.fastrcnn_loss``, ``F.cross_entropy``) on the same inputs, so
that a page can show "equals torchvision" and a test can compare. Nothing here is re-implemented.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import as_tensor, check_boxes
from .boxes import FASTER_RCNN_WEIGHTS, RPN_WEIGHTS


def reference_box_iou(boxes1, boxes2) -> torch.Tensor:
    """``torchvision.ops.box_iou``: ``(N, M)`` IoU of every box of ``boxes1 (N, 4)`` with every box of
    ``boxes2 (M, 4)`` (what the RPN's and the box head's matchers are given)."""
    from torchvision.ops import box_iou as tv_box_iou

    return tv_box_iou(boxes1, boxes2)


def reference_match(iou, high: float, low: float, allow_low_quality_matches: bool = False) -> torch.Tensor:
    """``torchvision.models.detection._utils.Matcher(high, low, allow)(iou)``: ``(N,)`` int64."""
    from torchvision.models.detection._utils import Matcher

    return Matcher(high, low, allow_low_quality_matches)(as_tensor(iou, "iou").clone())


def reference_sample(labels, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                     rng_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``BalancedPositiveNegativeSampler(batch, fraction)([labels])``: ``(pos_mask, neg_mask)``.

    It draws from torch's global generator; with ``rng_state`` it draws from that state and
    restores the global state afterwards (so a page's check leaves the program's randomness alone).
    """
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

    sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
    lab = as_tensor(labels, "labels").reshape(-1)
    if rng_state is None:
        pos, neg = sampler([lab])
    else:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            pos, neg = sampler([lab])
    return pos[0], neg[0]


def reference_encode(boxes, anchors, weights=FASTER_RCNN_WEIGHTS) -> torch.Tensor:
    """``BoxCoder(weights).encode([boxes], [anchors])[0]``: ``(N, 4)`` targets."""
    from torchvision.models.detection._utils import BoxCoder

    return BoxCoder(tuple(float(w) for w in weights)).encode([check_boxes(boxes)], [check_boxes(anchors)])[0]


def reference_rpn_compute_loss(objectness, deltas, labels, regression_targets, rng_state: torch.Tensor,
                               batch_size_per_image: int = 256, positive_fraction: float = 0.5):
    """torchvision's ``RegionProposalNetwork.compute_loss`` itself (sampler included), run from
    ``rng_state`` on an RPN built with those sampler settings: ``(loss_objectness, loss_rpn_box_reg)``."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, batch_size_per_image,
                                positive_fraction, dict(training=1, testing=1), dict(training=1, testing=1), 0.7)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(rng_state)
        return rpn.compute_loss(as_tensor(objectness).reshape(-1, 1), as_tensor(deltas).reshape(-1, 4),
                                [as_tensor(labels).reshape(-1)], [as_tensor(regression_targets)])


def reference_select_training_samples(proposals, gt_boxes, gt_labels, rng_state: torch.Tensor, high: float = 0.5,
                                      low: float = 0.5, batch_size_per_image: int = 512,
                                      positive_fraction: float = 0.25, weights=FASTER_RCNN_WEIGHTS):
    """torchvision's ``RoIHeads.select_training_samples`` for one image, run from ``rng_state``:
    ``(sampled proposals (S, 4), labels (S,), regression_targets (S, 4))``."""
    from torchvision.models.detection.roi_heads import RoIHeads

    heads = RoIHeads(None, None, None, high, low, batch_size_per_image, positive_fraction,
                     tuple(float(w) for w in weights), 0.05, 0.5, 100)
    target = {"boxes": check_boxes(gt_boxes), "labels": as_tensor(gt_labels).reshape(-1).long()}
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(rng_state)
        props, _, labels, targets = heads.select_training_samples([check_boxes(proposals)], [target])
    return props[0], labels[0], targets[0]


def reference_fastrcnn_loss(class_logits, box_regression, labels, regression_targets) -> tuple[torch.Tensor, torch.Tensor]:
    """``torchvision.models.detection.roi_heads.fastrcnn_loss``: ``(loss_classifier, loss_box_reg)``."""
    from torchvision.models.detection.roi_heads import fastrcnn_loss

    return fastrcnn_loss(as_tensor(class_logits), as_tensor(box_regression), [as_tensor(labels).reshape(-1).long()],
                         [as_tensor(regression_targets)])


def reference_multitask_loss(scores, true_class: int, box_pred, box_true, weight: float = 1.0,
                             box_kind: str = "L2", beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(class_loss, box_loss, total)`` with ``F.cross_entropy`` and ``F.mse_loss`` /
    ``F.smooth_l1_loss`` (``reduction="sum"`` over the four box numbers)."""
    z = as_tensor(scores).reshape(1, -1).float()
    ce = F.cross_entropy(z, torch.tensor([int(true_class)]))
    bp, bt = as_tensor(box_pred).reshape(-1).float(), as_tensor(box_true).reshape(-1).float()
    box = F.mse_loss(bp, bt, reduction="sum") if box_kind == "L2" else F.smooth_l1_loss(bp, bt, beta=beta,
                                                                                          reduction="sum")
    return ce, box, ce + float(weight) * box


__all__ = ["RPN_WEIGHTS", "FASTER_RCNN_WEIGHTS", "reference_box_iou", "reference_match", "reference_sample", "reference_encode",
           "reference_rpn_compute_loss", "reference_select_training_samples", "reference_fastrcnn_loss", "reference_multitask_loss"]
