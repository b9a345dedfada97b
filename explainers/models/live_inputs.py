"""Which live tensors each explainer shows: the choice of channel, crop, level and proposals.

The widgets draw; this module decides what, from a model's trace, is worth drawing, and
returns plain tensors (all on the CPU) with their shapes documented.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..ops._checks import MAX_ELEMENTS, check_boxes
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


def detector_trace(model, image, page: str, needs_roi_pooling: bool = False):
    """The detector's trace on ``image`` (``model`` None: the bundled shapes Mask R-CNN), or one
    line saying why ``page`` cannot use this model (not a detector; a one-stage detector where
    region proposals and RoI pooling are needed)."""
    from . import get
    from .live import Detector, OneStageDetector

    model = model or get("detection", "shapes")
    if not isinstance(model, (Detector, OneStageDetector)):
        raise ValueError(f"{page} needs a detector (Faster/Mask R-CNN, RetinaNet, FCOS, SSD); this is a "
                         f"{model.task} model")
    if needs_roi_pooling and not isinstance(model, Detector):
        raise ValueError(f"{model.architecture} is a one-stage detector: it has no region proposals and no RoI "
                         f"pooling, so {page} has nothing of it to show. The anchors and NMS pages work with it; "
                         "RoI pooling needs a two-stage model (Faster or Mask R-CNN)")
    return model.trace(image)


def strongest_channel(x: torch.Tensor) -> int:
    """The channel of ``(C, H, W)`` with the largest absolute value."""
    return int(x.abs().flatten(1).max(1).values.argmax())


def strongest_channel_in_box(features: torch.Tensor, box, scale: float) -> int:
    """The channel of ``features (C, H, W)`` with the largest mean absolute value over the cells
    the image box ``(x1, y1, x2, y2)`` covers at ``scale`` (a channel with signal inside the box)."""
    C, H, W = features.shape
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    c0, c1 = max(0, min(W - 1, int(x1))), max(0, min(W - 1, int(x2)))
    r0, r1 = max(0, min(H - 1, int(y1))), max(0, min(H - 1, int(y2)))
    region = features[:, r0:r1 + 1, c0:c1 + 1]
    return int(region.abs().flatten(1).mean(1).argmax())


def unpooling_crop(captured: dict, channel: int, size: int = 4) -> UnpoolingCrop:
    """A crop at the channel's strongest decoder input at SegNet's deepest unpooling (its top-left
    cell where the map allows).

    ``captured`` is :attr:`SegmentationTrace.captured` of SegNet (2x2 pooling, stride 2).
    """
    e = captured["encoder_features"][2][0, channel]          # (H, W) what pool 3 saw
    idx = captured["pool_indices"][2][0, channel]            # (H/2, W/2) its switches (flat in H x W)
    b = captured["bottleneck"][0, channel]                   # (H/2, W/2) what the decoder unpools
    u = captured["unpooled"][0][0, channel]                  # (H, W) the decoder's own unpooling output
    hb, wb = b.shape
    size = min(size, hb, wb)
    r, q = divmod(int(b.abs().argmax()), wb)
    # the strongest value in the crop's first block where the map allows: the page's first step
    # (the top-left block) then shows a real maximum, not a block of ReLU zeros
    y0, x0 = max(0, min(r, hb - size)), max(0, min(q, wb - size))
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
    ``deltas (A, 4)`` (both None for a one-stage detector), its ``feature_size`` (Hf, Wf),
    ``sizes`` and ``ratios``."""

    anchors: torch.Tensor
    objectness: torch.Tensor | None
    deltas: torch.Tensor | None
    feature_size: tuple[int, int]
    sizes: tuple
    ratios: tuple

    @property
    def objectness_prob(self) -> torch.Tensor | None:
        """``(A,)`` the objectness as the RPN ranks it, a probability: sigmoid of the logits."""
        return None if self.objectness is None else torch.sigmoid(self.objectness)


def anchor_level(trace, level: int = 0) -> AnchorLevel:
    """The anchors, objectness and corrections of one level (with an FPN, level 0 is the finest).

    A one-stage detector (no RPN) has no objectness and no RPN corrections: those are None."""
    if not trace.anchor_sizes:
        raise ValueError("this detector places SSD's default boxes (DefaultBoxGenerator: scales and aspect ratios "
                         "per feature map), not AnchorGenerator anchors (sizes x aspect ratios per cell), which is "
                         "what the anchors page draws; its NMS page works")
    start = sum(trace.anchors_per_level[:level])
    sl = slice(start, start + trace.anchors_per_level[level])
    rpn = getattr(trace, "has_rpn", True)
    return AnchorLevel(trace.anchors[sl], trace.objectness[sl] if rpn else None, trace.deltas[sl] if rpn else None,
                       tuple(trace.feature_sizes[level]), tuple(trace.anchor_sizes[level]),
                       tuple(trace.anchor_ratios[level]))


def final_nms_matches_model(trace: DetectorTrace) -> tuple[bool, float]:
    """Re-run the model's final class-aware NMS with :mod:`explainers.ops` on all its candidates:
    ``(same kept boxes, labels and scores as the model's own detections, max |box difference|)``."""
    keep, _ = trace.final_nms()
    sy, sx = trace.scale
    boxes = trace.boxes_pre_nms[keep] / torch.tensor([sx, sy, sx, sy])     # back to the original image
    det = trace.detections
    if boxes.shape != det.boxes.shape:
        return False, float("inf")
    same = torch.equal(trace.labels_pre_nms[keep], det.labels) and torch.equal(trace.scores_pre_nms[keep], det.scores)
    diff = float((boxes - det.boxes).abs().max()) if len(boxes) else 0.0
    return same and diff <= 1e-3, diff


@dataclass
class DecoderWindow:
    """Where SegNet's learned transposed convolution (``up1``: 3x3, stride 2, padding 1,
    output padding 1) is checked: the input crop ``rows x cols`` at ``origin`` of all ``C_in``
    channels with a one-cell halo (``inputs (C_in, n+2, n+2)``, zeros beyond the map), the
    kernels ``weight (C_in, k, k)`` into output channel ``c_out``, its ``bias``, and the decoder's
    own output over the crop ``output (2n, 2n)``."""

    inputs: torch.Tensor
    weight: torch.Tensor
    bias: float
    output: torch.Tensor
    origin: tuple[int, int]
    c_out: int


def decoder_window(captured: dict, bias: torch.Tensor, c_out: int, origin: tuple[int, int], n: int) -> DecoderWindow:
    """The decoder's real computation around an ``n x n`` crop of its input at ``origin``."""
    x = captured["transposed_input"][0]                      # (C_in, H, W)
    C, H, W = x.shape
    r0, c0 = origin
    padded = torch.zeros(C, H + 2, W + 2, dtype=x.dtype)
    padded[:, 1:-1, 1:-1] = x
    inputs = padded[:, r0:r0 + n + 2, c0:c0 + n + 2]         # the crop and its halo (row r0 - 1 ... r0 + n)
    out = captured["transposed_output"][0, c_out, 2 * r0:2 * r0 + 2 * n, 2 * c0:2 * c0 + 2 * n]
    return DecoderWindow(inputs, captured["transposed_kernel"][:, c_out], float(bias[c_out]), out, origin, c_out)


def decoder_window_by_ops(win: DecoderWindow, stride: int = 2, padding: int = 1) -> torch.Tensor:
    """The same ``(2n, 2n)`` output, computed with :func:`explainers.ops.conv_transpose_via_matrix`:
    every input channel's copies of its kernel summed, plus the bias (what the decoder does)."""
    C, m, _ = win.inputs.shape
    k = win.weight.shape[-1]
    full = (stride * (m - 1) + k,) * 2                       # X^T y with no padding: every copy whole
    total = sum(ops.conv_transpose_via_matrix(win.inputs[i], win.weight[i], full, stride, 0)[0] for i in range(C))
    # output cell o of the decoder is cell o + padding + stride of this window (its input starts one row early)
    start = padding + stride
    n2 = stride * (m - 2)
    return total[start:start + n2, start:start + n2] + win.bias


@dataclass
class BoxPooler:
    """A detector's box RoI pooler (torchvision's ``MultiScaleRoIAlign``), read from the module
    as it pooled :attr:`DetectorTrace.box_features`.

    ``output_size``: ``(ph, pw)``; ``sampling_ratio``: samples per bin along each axis (0 or
    negative: adaptive); ``aligned``: always False (``MultiScaleRoIAlign`` calls ``roi_align``
    without ``aligned``); ``names``: the feature maps it pools, in the order its level indices
    count them (the backbone's order, keeping those in ``featmap_names``); ``scales``: each one's
    spatial scale (feature cells per input pixel, a power of 2 the pooler inferred on its first
    run); ``k_min``, ``k_max``: the FPN levels of the first and last map (scale ``2**-k``);
    ``canonical_scale`` (224) and ``canonical_level`` (k0 = 4) of the level formula, with its
    ``eps``; ``mapper``: the pooler's own ``LevelMapper`` (what :func:`box_level` calls).
    """

    output_size: tuple[int, int]
    sampling_ratio: int
    aligned: bool
    names: tuple[str, ...]
    scales: tuple[float, ...]
    k_min: int
    k_max: int
    canonical_scale: float
    canonical_level: float
    eps: float
    mapper: object

    @property
    def single(self) -> bool:
        """One feature map (no FPN): the pooler pools every box from it and never asks the mapper."""
        return len(self.names) == 1


def box_pooler(trace: DetectorTrace) -> BoxPooler:
    """The box RoI pooler of the detector that made ``trace``, from the parameters the trace read
    off its ``MultiScaleRoIAlign`` after the forward pass (``roi_*`` fields and its level mapper)."""
    mapper = trace._level_mapper
    if mapper is None or not trace.roi_scales:
        raise ValueError("the detector's RoI pooler did not run: no scales or level mapper to take from it")
    if len(trace.roi_featmap_names) != len(trace.roi_scales):
        raise ValueError(f"the pooler has {len(trace.roi_scales)} scales for the feature maps "
                         f"{list(trace.roi_featmap_names)}")
    ph, pw = (tuple(trace.roi_output_size) * 2)[:2]
    return BoxPooler((ph, pw), trace.roi_sampling_ratio, False, tuple(trace.roi_featmap_names),
                     tuple(trace.roi_scales), trace.roi_k_min, trace.roi_k_max, float(trace.roi_canonical_scale),
                     float(trace.roi_canonical_level), float(mapper.eps), mapper)


@dataclass
class BoxLevel:
    """Which feature map the pooler pools one box from.

    ``index``: into ``BoxPooler.names`` / ``scales`` (what the ``LevelMapper`` returned, 0 when there
    is one map); ``name``, ``scale``: that map and its spatial scale; ``k``: its FPN level
    (``k_min + index``); ``size``: ``sqrt(w h)`` of the box in input pixels; ``raw``:
    ``k0 + log2(size / canonical_scale) + eps`` in float32 as the mapper computes it, before
    ``floor`` and the clamp to ``[k_min, k_max]``; ``single``: one map only (no level choice).
    """

    index: int
    name: str
    scale: float
    k: int
    size: float
    raw: float
    single: bool


def box_level(pooler: BoxPooler, box) -> BoxLevel:
    """The level the model's own ``LevelMapper`` assigns to ``box`` ``(4,)`` (input coordinates).

    The level is what the mapper returns (it is called, not re-derived); ``raw`` and ``size`` are
    there to show the formula ``k = floor(k0 + log2(sqrt(w h) / 224))``.
    """
    from ..ops._checks import check_boxes

    b = check_boxes(box, "box")[:1].to(torch.float32)
    area = (b[0, 2] - b[0, 0]) * (b[0, 3] - b[0, 1])
    s = torch.sqrt(area)
    raw = pooler.canonical_level + torch.log2(s / pooler.canonical_scale) + torch.tensor(pooler.eps, dtype=s.dtype)
    index = 0 if pooler.single else int(pooler.mapper([b])[0])
    return BoxLevel(index, pooler.names[index], pooler.scales[index], pooler.k_min + index, float(s), float(raw),
                    pooler.single)


def find_proposal(trace: DetectorTrace, box) -> int | None:
    """The index of the first proposal exactly equal to ``box`` ``(4,)`` (float32), else None."""
    b = torch.as_tensor(box, dtype=torch.float32).reshape(1, 4)
    hit = (trace.proposals == b).all(1).nonzero()
    return int(hit[0, 0]) if hit.numel() else None


def proposal_picks(trace: DetectorTrace, pooler: BoxPooler, n: int = 10) -> list[int]:
    """Proposals worth showing: the first ``n`` (the RPN's best) and, for each pyramid level none
    of them is pooled from, the best proposal pooled from that level (in index order)."""
    picks = list(range(min(n, len(trace.proposals))))
    if pooler.single or not len(trace.proposals):
        return picks
    levels = pooler.mapper([trace.proposals.to(torch.float32)])
    seen = set(levels[picks].tolist())
    for lv in range(len(pooler.names)):
        if lv not in seen:
            on = (levels == lv).nonzero()
            if on.numel():
                picks.append(int(on[0, 0]))
    return sorted(picks)


@dataclass
class RecallStage:
    """How many ground-truth objects one stage of a detector still covers: ``covered`` of
    ``total`` objects have a box with IoU >= the threshold; ``boxes`` is how many boxes the
    stage has."""

    stage: str
    covered: int
    total: int
    boxes: int


def _covered(gt: torch.Tensor, boxes: torch.Tensor, iou_threshold: float) -> int:
    if len(gt) == 0 or len(boxes) == 0:
        return 0
    best = torch.zeros(len(gt))
    for chunk in torch.split(boxes, max(1, MAX_ELEMENTS // (4 * len(gt)))):   # bounded IoU tables
        best = torch.maximum(best, ops.box_iou(gt, chunk).max(1).values)
    return int((best >= iou_threshold).sum())


def rpn_recall(trace, gt_boxes, iou_threshold: float = 0.5, top_k: int = 300) -> list[RecallStage]:
    """Recall of the ground truth at each stage of the detector, on one image.

    ``gt_boxes (G, 4)`` are on the original image (the trace's boxes are in the model's input
    frame: they are scaled by ``trace.scale``). Stages: all anchors; the ``top_k`` anchors by
    objectness, moved by the RPN's predicted corrections (its own box coder) and clipped; the
    proposals after the RPN's NMS; the final detections. A one-stage detector has no RPN: its
    stages are the anchors and the detections.
    """
    sy, sx = trace.scale
    gt = check_boxes(gt_boxes, "gt_boxes").float() * torch.tensor([sx, sy, sx, sy])
    stages = [("all anchors", trace.anchors)]
    if getattr(trace, "has_rpn", True):
        k = min(top_k, len(trace.objectness))
        top = torch.argsort(trace.objectness, descending=True)[:k]
        weights = tuple(trace._rpn.box_coder.weights)
        moved = ops.clip_boxes(ops.decode_boxes(trace.deltas[top], trace.anchors[top], weights),
                               tuple(trace.input_image.shape[-2:]))
        stages += [(f"top {k} corrected", moved), ("after the RPN's NMS", trace.proposals)]
    det = trace.detections.boxes * torch.tensor([sx, sy, sx, sy])
    stages.append(("final detections", det))
    return [RecallStage(name, _covered(gt, b, iou_threshold), len(gt), len(b)) for name, b in stages]


@dataclass
class RPNSelection:
    """The RPN's choice of proposals on one feature level, stage by stage (as
    ``RegionProposalNetwork.filter_proposals`` does it for one level and one image).

    ``order (k,)``: the ``top_k`` anchors by score, best first; ``anchors (k, 4)`` and ``scores (k,)``
    of them; ``corrected (k, 4)``: their boxes after the corrections (decoded, clipped to the image);
    ``big (k,)`` bool: not removed as smaller than ``min_size`` (a box clipped to nothing) and with a
    score >= ``score_threshold``; ``keep (n,)``: indices into the first ``k`` that survive the NMS,
    best first; ``proposals (m, 4)`` / ``proposal_scores (m,)``: the first ``post_nms_top_n`` of them.
    ``counts``: ``(stage, boxes)`` from all anchors to the proposals (top k, ``post_nms_top_n``)."""

    order: torch.Tensor
    anchors: torch.Tensor
    scores: torch.Tensor
    corrected: torch.Tensor
    big: torch.Tensor
    keep: torch.Tensor
    proposals: torch.Tensor
    proposal_scores: torch.Tensor
    counts: list


def rpn_select(anchors, scores, deltas, weights, image_size, top_k: int, nms_threshold: float,
               post_nms_top_n: int, min_size: float = 1e-3, score_threshold: float = 0.0) -> RPNSelection:
    """Top ``top_k`` anchors by ``scores (A,)`` (probabilities), corrected by ``deltas (A, 4)`` with the
    box coder ``weights``, clipped to ``image_size (h, w)``, small and low boxes removed, NMS at
    ``nms_threshold``, the first ``post_nms_top_n`` kept. Built from :mod:`explainers.ops` only."""
    k = min(int(top_k), len(scores))
    order = torch.argsort(scores, descending=True, stable=True)[:k]
    corrected = ops.clip_boxes(ops.decode_boxes(deltas[order], anchors[order], weights), tuple(image_size))
    wh = corrected[:, 2:] - corrected[:, :2]
    big = (wh >= min_size).all(1) & (scores[order] >= score_threshold)
    idx = torch.nonzero(big).flatten()
    keep = idx[ops.nms_trace(corrected[idx], scores[order][idx], nms_threshold)[0]] if len(idx) else idx
    props = keep[:post_nms_top_n]
    counts = [("anchors", len(scores)), ("top-k", k), ("inside the image", int(big.sum())),
              ("after NMS", len(keep)), ("proposals", len(props))]
    return RPNSelection(order, anchors[order], scores[order], corrected, big, keep, corrected[props],
                        scores[order][props], counts)


def ties_change_the_choice(sel: RPNSelection, nms_threshold: float) -> bool:
    """Whether equal objectness scores make the NMS of the top-k candidates ambiguous, so that
    another correct implementation (torchvision's) may keep other boxes: two candidates with the
    same score that overlap by more than the NMS threshold (which one suppresses the other depends
    on how each breaks the tie)."""
    cand = torch.nonzero(sel.big).flatten()
    sc = sel.scores[cand]
    for v in torch.unique(sc):
        same = cand[sc == v]
        if len(same) > 1:
            iou = ops.box_iou(sel.corrected[same], sel.corrected[same]).triu(1)
            if (iou > nms_threshold).any():
                return True
    return False


@dataclass
class RPNSettings:
    """What a two-stage detector's RPN and transform are set to (test mode): ``size_divisible``
    (the padded batch is a multiple of it), ``pre_nms_top_n``, ``post_nms_top_n``, ``nms_threshold``,
    ``min_size``, ``score_threshold`` and the box coder ``weights``; ``levels``: feature levels."""

    size_divisible: int
    pre_nms_top_n: int
    post_nms_top_n: int
    nms_threshold: float
    min_size: float
    score_threshold: float
    weights: tuple
    levels: int


def rpn_settings(model, trace) -> RPNSettings:
    """The settings of ``model`` (None: the bundled shapes detector) whose ``trace`` has an RPN."""
    from . import get

    model = model or get("detection", "shapes")
    rpn = trace._rpn
    return RPNSettings(int(model.module.transform.size_divisible), int(rpn._pre_nms_top_n["testing"]),
                       int(rpn._post_nms_top_n["testing"]), float(rpn.nms_thresh), float(rpn.min_size),
                       float(rpn.score_thresh), tuple(float(w) for w in rpn.box_coder.weights),
                       len(trace.anchors_per_level))


def anchor_targets(anchors, gt_boxes, weights) -> tuple[torch.Tensor, torch.Tensor]:
    """What an RPN is trained to predict for each anchor (no network involved): ``iou (A,)``, the
    IoU with its best-matching object (above 0.7 labelled "object", below 0.3 "not object"), and
    ``deltas (A, 4)``, the corrections that move it exactly onto that object."""
    gt = check_boxes(gt_boxes, "gt_boxes").float()
    iou = ops.box_iou(anchors, gt)
    best, match = iou.max(1)
    return best, ops.encode_boxes(gt[match], anchors, weights)
