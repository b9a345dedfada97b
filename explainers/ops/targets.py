"""How a detector is taught: matching, sampling, regression targets and the losses.

Readable re-implementations of what torchvision's Faster R-CNN does in training mode, each
returning its result and a small trace:

* :func:`match` - ``det_utils.Matcher``: every anchor (or proposal) takes the ground-truth box
  it overlaps most; IoU >= ``high`` is a match, IoU < ``low`` is background (-1), in between is
  ignored (-2); with ``allow_low_quality_matches`` each ground-truth box also keeps its best
  anchor(s) even below ``high`` (the RPN: 0.7 / 0.3 with it; the box head: 0.5 / 0.5 without).
* :func:`sample` - ``det_utils.BalancedPositiveNegativeSampler``: at most ``batch * fraction``
  positives and the rest negatives, drawn with ``torch.randperm`` (positives first, then
  negatives), so under the same random state it picks exactly the same ones.
* :func:`rpn_targets`, :func:`box_head_targets` - labels and ``(dx, dy, dw, dh)`` targets
  (:func:`explainers.ops.encode_boxes`) as ``RegionProposalNetwork.assign_targets_to_anchors``
  and ``RoIHeads.select_training_samples`` make them.
* :func:`rpn_loss`, :func:`box_head_loss` - ``RegionProposalNetwork.compute_loss`` and
  ``roi_heads.fastrcnn_loss``; :func:`multitask_loss` - the single-object slide: cross-entropy
  on the class scores plus a weighted L2 or smooth-L1 loss on the box.

Tensors are ``(N, 4)`` boxes ``(x1, y1, x2, y2)``; ``G`` ground-truth boxes, ``N`` anchors or
proposals, ``C`` classes.  Size limit: the IoU matrix is ``G x N`` (``box_iou`` refuses more than
``MAX_ELEMENTS / 2`` pairs); everything else is the size of its inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import as_tensor, check_boxes
from .boxes import FASTER_RCNN_WEIGHTS, RPN_WEIGHTS, box_iou, encode_boxes

#: what :func:`match` writes for an anchor below ``low`` and for one between ``low`` and ``high``
BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2
#: torchvision's smooth-L1 ``beta`` for both box losses of Faster R-CNN
SMOOTH_L1_BETA = 1.0 / 9


# ----------------------------------------------------------------------------- matching
@dataclass
class MatchTrace:
    """How each of ``N`` predictions got its ground-truth box.

    Attributes:
        iou: ``(G, N)`` IoU of every ground-truth box with every prediction.
        best_gt: ``(N,)`` the ground-truth box each prediction overlaps most (first on ties).
        best_iou: ``(N,)`` that IoU.
        promoted: ``(N,)`` bool, predictions matched only because they are a ground-truth box's
            best prediction (``allow_low_quality_matches``; ties included).
        matches: ``(N,)`` int64: the matched ground-truth index, ``-1`` below ``low``, ``-2``
            between ``low`` and ``high``.
        high, low, allow_low_quality_matches: the settings.
    """

    iou: torch.Tensor
    best_gt: torch.Tensor
    best_iou: torch.Tensor
    promoted: torch.Tensor
    matches: torch.Tensor
    high: float
    low: float
    allow_low_quality_matches: bool


def match(iou, high: float, low: float, allow_low_quality_matches: bool = False) -> tuple[torch.Tensor, MatchTrace]:
    """Assign each prediction (column of ``iou``) to a ground-truth box (row) or to nothing.

    Args:
        iou: ``(G, N)`` match quality, e.g. ``box_iou(gt_boxes, anchors)``.
        high: IoU >= ``high`` is a match; low: IoU < ``low`` is background.

    Returns:
        ``(matches (N,), trace)``; ``matches`` equals ``Matcher(high, low, allow)(iou)``.
    """
    q = as_tensor(iou, "iou")
    if q.dim() != 2:
        raise ValueError(f"iou must be a (G, N) matrix of ground-truth boxes by predictions, got {tuple(q.shape)}")
    if q.shape[0] == 0:
        raise ValueError("there are no ground-truth boxes: a detector cannot be taught on an image without objects "
                         "this way (torchvision refuses it too)")
    if q.shape[1] == 0:
        raise ValueError("there are no anchors or proposals to match to the ground truth")
    if low > high:
        raise ValueError(f"the low threshold ({low}) must not be above the high one ({high})")
    best_iou, best_gt = q.max(dim=0)                      # each prediction: its best ground-truth box
    matches = best_gt.clone()
    matches[best_iou < low] = BELOW_LOW_THRESHOLD         # clearly background
    matches[(best_iou >= low) & (best_iou < high)] = BETWEEN_THRESHOLDS   # unclear: ignored
    promoted = torch.zeros_like(matches, dtype=torch.bool)
    if allow_low_quality_matches:
        # every ground-truth box keeps the prediction(s) it overlaps most, even below `high`
        best_for_gt = q.max(dim=1).values
        _, pred = torch.where(q == best_for_gt[:, None])
        promoted[pred] = matches[pred] < 0
        matches[pred] = best_gt[pred]
    return matches, MatchTrace(q, best_gt, best_iou, promoted, matches, float(high), float(low),
                               bool(allow_low_quality_matches))


# ----------------------------------------------------------------------------- sampling
@dataclass
class SampleTrace:
    """Which predictions one image's loss looks at.

    Attributes:
        positives: ``(P,)`` indices of all candidates labelled positive (label >= 1), ascending.
        negatives: ``(Q,)`` indices of all candidates labelled negative (label 0).
        num_pos, num_neg: how many of each are drawn: ``min(P, batch * fraction)`` positives,
            ``min(Q, batch - num_pos)`` negatives.
        pos_drawn, neg_drawn: ``(num_pos,)``, ``(num_neg,)`` the indices drawn, in draw order
            (the first entries of a ``torch.randperm``).
        pos_mask, neg_mask: ``(N,)`` uint8 masks of the drawn ones.
        batch_size_per_image, positive_fraction: the settings.
    """

    positives: torch.Tensor
    negatives: torch.Tensor
    num_pos: int
    num_neg: int
    pos_drawn: torch.Tensor
    neg_drawn: torch.Tensor
    pos_mask: torch.Tensor
    neg_mask: torch.Tensor
    batch_size_per_image: int
    positive_fraction: float

    @property
    def sampled(self) -> torch.Tensor:
        """``(num_pos + num_neg,)`` the drawn indices, ascending (as ``RoIHeads.subsample``)."""
        return torch.where((self.pos_mask | self.neg_mask).bool())[0]


def sample(labels, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, SampleTrace]:
    """Draw a balanced set of positives and negatives for one image.

    Args:
        labels: ``(N,)`` -1 ignored, 0 negative, >= 1 positive (anchor labels or class labels).
        generator: the random generator (default: torch's global one, as torchvision).

    Returns:
        ``(pos_mask, neg_mask, trace)``: ``(N,)`` uint8 masks equal to
        ``BalancedPositiveNegativeSampler(batch, fraction)([labels])`` under the same random state.
    """
    lab = as_tensor(labels, "labels").reshape(-1)
    if batch_size_per_image < 1:
        raise ValueError(f"the sample size per image must be at least 1, got {batch_size_per_image}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"the positive fraction must be between 0 and 1, got {positive_fraction}")
    positives = torch.where(lab >= 1)[0]
    negatives = torch.where(lab == 0)[0]
    num_pos = min(positives.numel(), int(batch_size_per_image * positive_fraction))
    num_neg = min(negatives.numel(), batch_size_per_image - num_pos)
    pos_drawn = positives[torch.randperm(positives.numel(), generator=generator)[:num_pos]]
    neg_drawn = negatives[torch.randperm(negatives.numel(), generator=generator)[:num_neg]]
    pos_mask = torch.zeros_like(lab, dtype=torch.uint8)
    neg_mask = torch.zeros_like(lab, dtype=torch.uint8)
    pos_mask[pos_drawn] = 1
    neg_mask[neg_drawn] = 1
    return pos_mask, neg_mask, SampleTrace(positives, negatives, num_pos, num_neg, pos_drawn, neg_drawn, pos_mask,
                                           neg_mask, int(batch_size_per_image), float(positive_fraction))


# ----------------------------------------------------------------------------- targets
@dataclass
class RPNTargets:
    """What the RPN is taught for every anchor of one image.

    Attributes:
        match: the :class:`MatchTrace` (``high``/``low`` 0.7/0.3, low-quality matches allowed).
        labels: ``(A,)`` float32: 1 positive, 0 negative, -1 ignored.
        matched_gt_boxes: ``(A, 4)`` the ground-truth box of each anchor (box 0 for unmatched ones,
            as torchvision; only positives use it).
        regression_targets: ``(A, 4)`` ``(dx, dy, dw, dh)`` from each anchor to that box, weights
            (1, 1, 1, 1).
    """

    match: MatchTrace
    labels: torch.Tensor
    matched_gt_boxes: torch.Tensor
    regression_targets: torch.Tensor


def rpn_targets(anchors, gt_boxes, high: float = 0.7, low: float = 0.3, weights=RPN_WEIGHTS) -> RPNTargets:
    """Anchor labels and regression targets, as ``RegionProposalNetwork.assign_targets_to_anchors``
    followed by ``box_coder.encode`` (for an image with at least one object)."""
    a = check_boxes(anchors, "anchors")
    gt = check_boxes(gt_boxes, "gt_boxes").to(a.dtype)
    matches, tr = match(box_iou(gt, a), high, low, allow_low_quality_matches=True)
    matched = gt[matches.clamp(min=0)]
    labels = (matches >= 0).to(torch.float32)
    labels[matches == BELOW_LOW_THRESHOLD] = 0.0
    labels[matches == BETWEEN_THRESHOLDS] = -1.0
    return RPNTargets(tr, labels, matched, encode_boxes(matched, a, weights))


@dataclass
class BoxHeadTargets:
    """What the box head is taught for one image.

    Attributes:
        proposals: ``(R + G, 4)`` the RPN's proposals with the ground-truth boxes appended.
        match: the :class:`MatchTrace` (0.5 / 0.5, no low-quality matches).
        labels: ``(R + G,)`` int64 class of each proposal: its ground-truth box's class, 0 background,
            -1 ignored (never with equal thresholds).
        sample: the :class:`SampleTrace` of the balanced draw.
        sampled: ``(S,)`` indices of the drawn proposals, ascending.
        sampled_proposals: ``(S, 4)``; sampled_labels: ``(S,)``.
        regression_targets: ``(S, 4)`` ``(dx, dy, dw, dh)`` from each drawn proposal to its
            ground-truth box, weights (10, 10, 5, 5).
    """

    proposals: torch.Tensor
    match: MatchTrace
    labels: torch.Tensor
    sample: SampleTrace
    sampled: torch.Tensor
    sampled_proposals: torch.Tensor
    sampled_labels: torch.Tensor
    regression_targets: torch.Tensor


def box_head_targets(proposals, gt_boxes, gt_labels, high: float = 0.5, low: float = 0.5,
                     batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                     weights=FASTER_RCNN_WEIGHTS, generator: torch.Generator | None = None) -> BoxHeadTargets:
    """``RoIHeads.select_training_samples`` for one image: append the ground truth to the proposals,
    match, label, draw a balanced sample, encode its targets."""
    p = check_boxes(proposals, "proposals")
    gt = check_boxes(gt_boxes, "gt_boxes").to(p.dtype)
    gl = as_tensor(gt_labels, "gt_labels").reshape(-1)
    if gl.shape[0] != gt.shape[0]:
        raise ValueError(f"there are {gt.shape[0]} ground-truth boxes but {gl.shape[0]} labels")
    allp = torch.cat((p, gt))
    matches, tr = match(box_iou(gt, allp), high, low, allow_low_quality_matches=False)
    idx = matches.clamp(min=0)
    labels = gl[idx].to(torch.int64)
    labels[matches == BELOW_LOW_THRESHOLD] = 0
    labels[matches == BETWEEN_THRESHOLDS] = -1
    _, _, st = sample(labels, batch_size_per_image, positive_fraction, generator)
    s = st.sampled
    targets = encode_boxes(gt[idx[s]], allp[s], weights)
    return BoxHeadTargets(allp, tr, labels, st, s, allp[s], labels[s], targets)


# ----------------------------------------------------------------------------- losses
def smooth_l1(x, y, beta: float = 1.0) -> torch.Tensor:
    """Element-wise smooth L1 of ``x - y``: ``0.5 d**2 / beta`` where ``|d| < beta``, else
    ``|d| - 0.5 beta`` (``beta = 0``: plain ``|d|``). Summed, equals ``F.smooth_l1_loss(x, y,
    beta=beta, reduction="sum")``."""
    d = (as_tensor(x, "input") - as_tensor(y, "target")).abs()
    if beta == 0:
        return d
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def bce_with_logits(logits, targets) -> torch.Tensor:
    """Element-wise binary cross-entropy on logits ``z`` for targets ``t`` in {0, 1}:
    ``-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) = max(z, 0) - z t + log(1 + exp(-|z|))``
    (the stable form). Its mean equals ``F.binary_cross_entropy_with_logits``."""
    z, t = as_tensor(logits, "logits"), as_tensor(targets, "targets").to(as_tensor(logits).dtype)
    return z.clamp(min=0) - z * t + torch.log1p(torch.exp(-z.abs()))


def cross_entropy_terms(logits, labels) -> torch.Tensor:
    """``(N, C), (N,) -> (N,)``: ``-log softmax(logits)[label] = logsumexp(logits) - logits[label]``.
    Its mean equals ``F.cross_entropy``."""
    z = as_tensor(logits, "logits")
    lab = as_tensor(labels, "labels").reshape(-1).long()
    if z.dim() != 2 or z.shape[0] != lab.shape[0]:
        raise ValueError(f"class scores must be (N, C) with one label per row, got {tuple(z.shape)} and "
                         f"{lab.shape[0]} labels")
    if lab.numel() and (lab.min() < 0 or lab.max() >= z.shape[1]):
        raise ValueError(f"labels must be class indices 0..{z.shape[1] - 1}")
    return torch.logsumexp(z, dim=1) - z.gather(1, lab[:, None])[:, 0]


@dataclass
class RPNLoss:
    """The RPN's two losses for one image.

    Attributes:
        sampled: ``(S,)`` anchor indices in the loss: drawn positives then drawn negatives, each
            ascending (as ``compute_loss``).
        positives: ``(P,)`` the drawn positive anchors, ascending.
        objectness_terms: ``(S,)`` binary cross-entropy of each sampled anchor.
        box_terms: ``(P, 4)`` smooth L1 (beta 1/9) of each positive's ``(dx, dy, dw, dh)``.
        loss_objectness: mean of ``objectness_terms``.
        loss_rpn_box_reg: sum of ``box_terms`` divided by ``S`` (all sampled anchors, not ``P``).
    """

    sampled: torch.Tensor
    positives: torch.Tensor
    objectness_terms: torch.Tensor
    box_terms: torch.Tensor
    loss_objectness: torch.Tensor
    loss_rpn_box_reg: torch.Tensor


def rpn_loss(objectness, deltas, labels, regression_targets, pos_mask, neg_mask,
             beta: float = SMOOTH_L1_BETA) -> RPNLoss:
    """``RegionProposalNetwork.compute_loss`` for one image, given the sampler's masks.

    Args:
        objectness: ``(A,)`` logits; deltas: ``(A, 4)`` predicted ``(dx, dy, dw, dh)``;
        labels: ``(A,)`` 1 / 0 / -1; regression_targets: ``(A, 4)``; pos_mask, neg_mask: ``(A,)``.
    """
    obj = as_tensor(objectness, "objectness").reshape(-1)
    d = as_tensor(deltas, "deltas").reshape(-1, 4)
    pos = torch.where(as_tensor(pos_mask).bool())[0]
    neg = torch.where(as_tensor(neg_mask).bool())[0]
    s = torch.cat((pos, neg))
    if s.numel() == 0:
        raise ValueError("no anchor was sampled: nothing to compute a loss on")
    obj_terms = bce_with_logits(obj[s], as_tensor(labels).reshape(-1)[s])
    box_terms = smooth_l1(d[pos], as_tensor(regression_targets)[pos], beta)
    return RPNLoss(s, pos, obj_terms, box_terms, obj_terms.mean(), box_terms.sum() / s.numel())


@dataclass
class BoxHeadLoss:
    """The box head's two losses (``fastrcnn_loss``) for ``S`` sampled proposals.

    Attributes:
        class_terms: ``(S,)`` cross-entropy of each proposal's class scores with its label.
        positives: ``(P,)`` indices (into the ``S``) of the proposals of an object class.
        box_terms: ``(P, 4)`` smooth L1 (beta 1/9) between the box regression *of the true class*
            and the target.
        loss_classifier: mean of ``class_terms``.
        loss_box_reg: sum of ``box_terms`` divided by ``S``.
    """

    class_terms: torch.Tensor
    positives: torch.Tensor
    box_terms: torch.Tensor
    loss_classifier: torch.Tensor
    loss_box_reg: torch.Tensor


def box_head_loss(class_logits, box_regression, labels, regression_targets,
                  beta: float = SMOOTH_L1_BETA) -> BoxHeadLoss:
    """``roi_heads.fastrcnn_loss``: ``class_logits (S, C)``, ``box_regression (S, 4C)``,
    ``labels (S,)``, ``regression_targets (S, 4)``."""
    z = as_tensor(class_logits, "class_logits")
    lab = as_tensor(labels, "labels").reshape(-1).long()
    reg = as_tensor(box_regression, "box_regression").reshape(z.shape[0], -1, 4)
    terms = cross_entropy_terms(z, lab)
    pos = torch.where(lab > 0)[0]
    box_terms = smooth_l1(reg[pos, lab[pos]], as_tensor(regression_targets)[pos], beta)
    return BoxHeadLoss(terms, pos, box_terms, terms.mean(), box_terms.sum() / lab.numel())


@dataclass
class MultitaskLoss:
    """The single-object slide: "treat localization as a regression problem".

    Attributes:
        scores: ``(C,)`` class scores (logits); probabilities: ``(C,)`` their softmax.
        true_class: the correct class; class_loss: ``-log probabilities[true_class]``.
        box_pred, box_true: ``(4,)`` ``(x, y, w, h)``; box_terms: ``(4,)`` per-coordinate loss
            (``d**2`` for L2, smooth L1 with ``beta`` otherwise); box_loss: their sum.
        weight: the box loss weight; total: ``class_loss + weight * box_loss``.
        box_kind: ``"L2"`` or ``"smooth L1"``.
    """

    scores: torch.Tensor
    probabilities: torch.Tensor
    true_class: int
    class_loss: torch.Tensor
    box_pred: torch.Tensor
    box_true: torch.Tensor
    box_terms: torch.Tensor
    box_loss: torch.Tensor
    weight: float
    total: torch.Tensor
    box_kind: str


BOX_LOSSES = ("L2", "smooth L1")


def multitask_loss(scores, true_class: int, box_pred, box_true, weight: float = 1.0, box_kind: str = "L2",
                   beta: float = 1.0) -> MultitaskLoss:
    """Class scores -> softmax -> cross-entropy, plus ``weight`` x (L2 or smooth-L1) box loss.

    Equals ``F.cross_entropy(scores[None], [true_class]) + weight * F.mse_loss(box_pred, box_true,
    reduction="sum")`` (or ``F.smooth_l1_loss(..., beta=beta, reduction="sum")``).
    """
    z = as_tensor(scores, "scores").reshape(-1).float()
    if box_kind not in BOX_LOSSES:
        raise ValueError(f"the box loss must be one of {', '.join(BOX_LOSSES)}, got {box_kind!r}")
    if not 0 <= int(true_class) < z.numel():
        raise ValueError(f"the true class must be one of the {z.numel()} classes (0..{z.numel() - 1})")
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"the box loss weight must be 0 or more, got {weight}")
    bp = as_tensor(box_pred, "box_pred").reshape(-1).float()
    bt = as_tensor(box_true, "box_true").reshape(-1).float()
    if bp.numel() != 4 or bt.numel() != 4:
        raise ValueError("a box is four numbers (x, y, w, h)")
    probs = torch.softmax(z, 0)
    class_loss = cross_entropy_terms(z[None], torch.tensor([int(true_class)]))[0]
    terms = (bp - bt) ** 2 if box_kind == "L2" else smooth_l1(bp, bt, beta)
    box_loss = terms.sum()
    return MultitaskLoss(z, probs, int(true_class), class_loss, bp, bt, terms, box_loss, w,
                         class_loss + w * box_loss, box_kind)
