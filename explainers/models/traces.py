"""What a traced run records: the internals of a detector (two-stage: :class:`DetectorTrace`;
one-stage: :class:`OneStageTrace`) or a segmenter, captured with forward hooks while the model
ran (and, for a detector, what is derived from them lazily)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F

from ..ops import batched_nms_trace
from .results import DetectionResult, SegmentationResult

#: ``RoIHeads.postprocess_detections`` removes boxes smaller than this; a literal in torchvision's
#: source (``remove_small_boxes(boxes, min_size=1e-2)``), not a module attribute
ROI_HEADS_MIN_SIZE = 1e-2


def _private(obj, name: str, owner: str):
    """A private torchvision method the trace relies on, or a clear error if this version lacks it."""
    import torchvision

    fn = getattr(obj, name, None)
    if fn is None:
        raise RuntimeError(f"torchvision {torchvision.__version__}'s {owner} has no {name}(): the detector trace "
                           "follows torchvision 0.16 to 0.29; please report this version")
    return fn


class _FinalNMS:
    """What both detector traces share: the image as the model saw it, and their final NMS,
    re-run by :mod:`explainers.ops`."""

    @cached_property
    def input_image(self) -> torch.Tensor:
        """``(3, h, w)``: the model's input, resized, before normalisation and padding."""
        h, w = self._input_size
        mean = torch.tensor(self._norm[0])[:, None, None]
        std = torch.tensor(self._norm[1])[:, None, None]
        return (self.input_tensor[0] * std + mean)[:, :h, :w].clamp(0, 1)

    def final_nms(self):
        """``(keep, NMSTrace)``: the final class-aware NMS re-run with :mod:`explainers.ops` on the
        candidates before it (``boxes_pre_nms``, ...), capped at ``detections_per_img``."""
        keep, trace = batched_nms_trace(self.boxes_pre_nms, self.scores_pre_nms, self.labels_pre_nms,
                                        self.nms_threshold)
        return keep[: self.detections_per_img], trace


@dataclass
class DetectorTrace(_FinalNMS):
    """The internals of one detector run, on the image *as the model saw it*.

    Coordinates are in the model's input frame (after its resize); shape notes:
    ``A`` anchors, ``R`` proposals, ``C`` classes, ``D`` detections.  What the forward
    pass produced is captured as it ran (forward hooks); what is *derived* from it
    (flattened objectness, decoded proposals before the RPN's NMS, per-class boxes
    before the final NMS) is computed on first access, so tracing costs what running
    costs.

    Attributes:
        image: original ``(3, H, W)``; ``input_tensor``: the padded, normalised batch
            ``(1, 3, hp, wp)``; ``input_image``: ``(3, h, w)`` resized, before normalisation.
        scale: ``(h / H, w / W)``.
        features: ``{name: (1, C_f, Hf, Wf)}`` backbone feature maps.
        anchors: ``(A, 4)``; ``anchors_per_level``: counts; ``objectness``: ``(A,)`` logits;
            ``deltas``: ``(A, 4)`` RPN box corrections (``(dx, dy, dw, dh)``, weights 1).
        proposals_pre_nms / proposal_scores_pre_nms / proposal_levels_pre_nms: the top
            ``pre_nms_top_n`` decoded, clipped proposals with their objectness probability.
        proposals: ``(R, 4)`` after the RPN's NMS (what the RoI heads received).
        box_features: ``(R, C_f, 7, 7)`` pooled RoI features (RoI Align).
        class_logits: ``(R, C)``; ``box_regression``: ``(R, 4 C)``.
        boxes_pre_nms / scores_pre_nms / labels_pre_nms: per-class candidate detections
            before the final NMS (after the score threshold and small-box removal).
        nms_threshold: the final NMS IoU threshold; ``detections_per_img``: the cap.
        detections: the plain model output, on the original image.
        mask_logits: ``(D, C, 28, 28)`` or None.
        keypoints: ``(D, K, 3)`` ``(x, y, visibility)`` on the original image (Keypoint R-CNN)
            or None; ``keypoint_scores``: ``(D, K)`` or None.
        has_rpn, has_roi_pooling: always True here (:class:`OneStageTrace` has both False), so a
            page can ask either kind of trace.

    The box RoI pooler's own parameters (``roi_heads.box_roi_pool``, a ``MultiScaleRoIAlign``,
    read *after* the forward pass, when torchvision has set up its scales):

        roi_output_size: ``(ph, pw)``, e.g. ``(7, 7)``; ``roi_sampling_ratio``: samples per bin
            (``-1`` adaptive), as passed to ``torchvision.ops.roi_align`` (``aligned=False``).
        roi_featmap_names: ``(L,)`` names of the feature maps it pools, in level order (the keys
            of ``features`` among the pooler's ``featmap_names``, as torchvision filters them).
        roi_scales: ``(L,)`` feature cells per input pixel of each pooled level
            (``box_roi_pool.scales``, e.g. ``(0.25, 0.125, 0.0625, 0.03125)``).
        roi_k_min, roi_k_max: the pyramid levels of the first and last pooled map
            (``-log2(scale)``), from ``box_roi_pool.map_levels`` (torchvision's ``LevelMapper``).
        roi_canonical_scale, roi_canonical_level: the FPN heuristic's ``224`` and ``4``: a box
            of side ``s`` goes to level ``floor(4 + log2(s / 224))``, clamped to ``[k_min, k_max]``.
        proposal_features: alias of ``box_features``; ``proposal_levels``: ``(R,)`` the level
            index (into ``roi_featmap_names``) each proposal was pooled from.
        roi_level(box): that level index for any box, by the model's own ``LevelMapper``.
    """

    image: torch.Tensor
    input_tensor: torch.Tensor
    scale: tuple[float, float]
    features: dict
    anchors: torch.Tensor
    anchors_per_level: list[int]
    feature_sizes: list[tuple[int, int]]
    rpn_nms_threshold: float
    proposals: torch.Tensor
    box_features: torch.Tensor
    class_logits: torch.Tensor
    box_regression: torch.Tensor
    nms_threshold: float
    detections_per_img: int
    detections: DetectionResult
    mask_logits: torch.Tensor | None = None
    anchor_sizes: tuple = ()
    anchor_ratios: tuple = ()
    keypoints: torch.Tensor | None = None
    keypoint_scores: torch.Tensor | None = None
    has_rpn: bool = True
    has_roi_pooling: bool = True
    roi_output_size: tuple[int, int] = (7, 7)
    roi_sampling_ratio: int = 2
    roi_featmap_names: tuple[str, ...] = ()
    roi_scales: tuple[float, ...] = ()
    roi_k_min: int = 0
    roi_k_max: int = 0
    roi_canonical_scale: int = 224
    roi_canonical_level: int = 4
    _head: tuple = field(default=(), repr=False)
    _input_size: tuple = field(default=(0, 0), repr=False)
    _norm: tuple = field(default=((0.0,), (1.0,)), repr=False)
    _rpn: object = field(default=None, repr=False)
    _roi_heads: object = field(default=None, repr=False)
    _level_mapper: object = field(default=None, repr=False)

    @property
    def proposal_features(self) -> torch.Tensor:
        """``(R, C_f, ph, pw)``: the model's own pooled feature of each proposal (= ``box_features``)."""
        return self.box_features

    def roi_levels(self, boxes) -> torch.Tensor:
        """``(N,)`` int64: the pooled level (index into ``roi_featmap_names``) of each ``(N, 4)`` box.

        Calls the model's own ``LevelMapper`` (``box_roi_pool.map_levels``), in the proposals'
        dtype; boxes are in the model's input frame, like ``proposals``.
        """
        if self._level_mapper is None:
            raise RuntimeError("this trace has no level mapper (the RoI pooler did not run)")
        b = torch.as_tensor(boxes, dtype=self.proposals.dtype).reshape(-1, 4)
        return self._level_mapper([b]).cpu()

    def roi_level(self, box) -> int:
        """The level index the model's own ``LevelMapper`` assigns to one ``(x1, y1, x2, y2)`` box."""
        b = torch.as_tensor(box, dtype=self.proposals.dtype)
        if b.numel() != 4:
            raise ValueError(f"roi_level takes one box (x1, y1, x2, y2); got {b.numel()} numbers")
        return int(self.roi_levels(b)[0])

    @cached_property
    def proposal_levels(self) -> torch.Tensor:
        return self.roi_levels(self.proposals)

    @cached_property
    def _flat(self):
        from torchvision.models.detection.rpn import concat_box_prediction_layers

        obj, deltas = concat_box_prediction_layers(list(self._head[0]), list(self._head[1]))
        return obj.reshape(-1), deltas

    @property
    def objectness(self) -> torch.Tensor:
        return self._flat[0]

    @property
    def deltas(self) -> torch.Tensor:
        return self._flat[1]

    @cached_property
    def _rpn_pre_nms(self):
        """The RPN's own selection before its NMS: top-n per level, clipped, small removed, threshold.

        A transcription (no hook can see inside a method) of the lines before ``batched_nms`` in
        ``torchvision.models.detection.rpn.RegionProposalNetwork.filter_proposals`` (torchvision
        0.16 to 0.29.1). Every constant is read from the model (``min_size``, ``score_thresh``,
        ``pre_nms_top_n`` through ``_get_top_n_idx``); ``tests/models/test_live.py`` re-runs the
        RPN's NMS on this and requires the model's own proposals, so a drift fails a test.
        """
        from torchvision.ops import boxes as box_ops

        rpn, (h, w) = self._rpn, self._input_size
        top_n = _private(rpn, "_get_top_n_idx", "RegionProposalNetwork")
        with torch.inference_mode():
            decoded = rpn.box_coder.decode(self.deltas, [self.anchors]).view(-1, 4)
            obj = self.objectness.reshape(1, -1)
            levels = torch.cat([torch.full((n,), i, dtype=torch.int64)
                                for i, n in enumerate(self.anchors_per_level)])[None]
            top = top_n(obj, self.anchors_per_level)
            idx = torch.arange(1)[:, None]
            prob = torch.sigmoid(obj[idx, top][0])
            lvl, box = levels[idx, top][0], decoded[None][idx, top][0]
            box = box_ops.clip_boxes_to_image(box, (h, w))
            ok = box_ops.remove_small_boxes(box, rpn.min_size)
            box, prob, lvl = box[ok], prob[ok], lvl[ok]
            ok = torch.where(prob >= rpn.score_thresh)[0]
            return box[ok], prob[ok], lvl[ok]

    proposals_pre_nms = property(lambda self: self._rpn_pre_nms[0])
    proposal_scores_pre_nms = property(lambda self: self._rpn_pre_nms[1])
    proposal_levels_pre_nms = property(lambda self: self._rpn_pre_nms[2])

    @cached_property
    def _final_pre_nms(self):
        """What ``RoIHeads.postprocess_detections`` has just before its NMS.

        A transcription of ``torchvision.models.detection.roi_heads.RoIHeads.postprocess_detections``
        up to its ``batched_nms`` (torchvision 0.16 to 0.29.1): ``score_thresh`` is read from the
        model; the small-box size is a literal there (:data:`ROI_HEADS_MIN_SIZE`, checked against
        torchvision's source by a test). The test that re-runs the final NMS on this and requires
        the model's own detections fails on any drift.
        """
        from torchvision.ops import boxes as box_ops

        rh, (h, w) = self._roi_heads, self._input_size
        with torch.inference_mode():
            boxes = rh.box_coder.decode(self.box_regression, [self.proposals])
            scores = F.softmax(self.class_logits, -1)
            boxes = box_ops.clip_boxes_to_image(boxes, (h, w))
            labels = torch.arange(scores.shape[-1]).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            ok = torch.where(scores > rh.score_thresh)[0]
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            ok = box_ops.remove_small_boxes(boxes, min_size=ROI_HEADS_MIN_SIZE)
            return boxes[ok], scores[ok], labels[ok]

    boxes_pre_nms = property(lambda self: self._final_pre_nms[0])
    scores_pre_nms = property(lambda self: self._final_pre_nms[1])
    labels_pre_nms = property(lambda self: self._final_pre_nms[2])



def _topk_min(x: torch.Tensor, k: int, axis: int) -> int:
    """``torchvision.models.detection._utils._topk_min`` (``min(k, size)`` outside ONNX tracing)."""
    from torchvision.models.detection import _utils as det_utils

    fn = getattr(det_utils, "_topk_min", None)
    return fn(x, k, axis) if fn is not None else min(k, x.size(axis))


@dataclass
class OneStageTrace(_FinalNMS):
    """The internals of one run of a one-stage detector (RetinaNet, FCOS, SSD, SSDlite).

    A one-stage detector has no region proposal network and no RoI pooling
    (``has_rpn`` and ``has_roi_pooling`` are False): its head predicts, for every anchor
    of every feature level, class scores and a box correction, and the final boxes are
    the best-scoring decoded anchors after a class-aware NMS.  Captured with forward hooks
    on ``transform``, ``backbone``, ``head`` and ``anchor_generator``; coordinates are in the
    model's input frame (after its resize); ``A`` anchors, ``C`` classes (index 0 is the
    background: never predicted by SSD's softmax, an unused slot for RetinaNet and FCOS).

    Attributes:
        image: original ``(3, H, W)``; ``input_tensor``: ``(1, 3, hp, wp)`` padded, normalised
            batch; ``input_image``: ``(3, h, w)`` resized, before normalisation.
        scale: ``(h / H, w / W)``.
        features: ``{name: (1, C_f, Hf, Wf)}`` backbone feature maps (the head's inputs, in order);
            ``feature_sizes``: their ``(Hf, Wf)``.
        anchors: ``(A, 4)`` ``(x1, y1, x2, y2)`` from the model's own ``anchor_generator``
            (RetinaNet, FCOS: ``AnchorGenerator``; SSD: ``DefaultBoxGenerator``);
            ``anchors_per_level``: ``(L,)`` counts, as the model splits them;
            ``anchor_levels``: ``(A,)`` the level of each anchor.
        points: ``(A, 2)`` anchor centres ``(x, y)`` (FCOS's "points").
        class_logits: ``(A, C)`` raw class logits from ``head``; ``box_regression``: ``(A, 4)``
            (RetinaNet, SSD: ``(dx, dy, dw, dh)`` for ``box_coder.weights``; FCOS: distances
            ``(l, t, r, b)`` from the centre, in anchor sizes); ``centerness``: ``(A,)`` FCOS's
            centre-ness logits, else None.
        class_scores: ``(A, C)`` the model's per-anchor class scores (``score_rule``).
        score_rule: how scores are made: ``"sigmoid"``, ``"sqrt(sigmoid * sigmoid(centerness))"``
            or ``"softmax"``.
        box_coder_weights: ``(wx, wy, ww, wh)`` or None (FCOS's linear coder).
        score_threshold, topk_candidates (per level, or per class for SSD), nms_threshold,
        detections_per_img: the module's own postprocessing constants.
        boxes_pre_nms / scores_pre_nms / labels_pre_nms / anchor_index_pre_nms /
            levels_pre_nms: the candidates the final NMS receives (``(N, 4)``, ``(N,)`` ...);
            ``candidates_by_the_model``: the same from the model's own ``postprocess_detections``.
        detections: the plain model output, on the original image.
        anchor_sizes / anchor_ratios: per level, for an ``AnchorGenerator``; ``()`` for SSD.
    """

    image: torch.Tensor
    input_tensor: torch.Tensor
    scale: tuple[float, float]
    features: dict
    feature_sizes: list[tuple[int, int]]
    anchors: torch.Tensor
    anchors_per_level: list[int]
    class_logits: torch.Tensor
    box_regression: torch.Tensor
    nms_threshold: float
    score_threshold: float
    detections_per_img: int
    topk_candidates: int
    detections: DetectionResult
    architecture: str = ""
    score_rule: str = "sigmoid"
    centerness: torch.Tensor | None = None
    box_coder_weights: tuple | None = None
    anchor_sizes: tuple = ()
    anchor_ratios: tuple = ()
    has_rpn: bool = False
    has_roi_pooling: bool = False
    _head: dict = field(default_factory=dict, repr=False)
    _input_size: tuple = field(default=(0, 0), repr=False)
    _norm: tuple = field(default=((0.0,), (1.0,)), repr=False)
    _model: object = field(default=None, repr=False)

    @property
    def points(self) -> torch.Tensor:
        return (self.anchors[:, :2] + self.anchors[:, 2:]) / 2

    @cached_property
    def anchor_levels(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self.anchors_per_level)),
                                       torch.tensor(self.anchors_per_level, dtype=torch.int64))

    @cached_property
    def class_scores(self) -> torch.Tensor:
        """``(A, C)``, computed level by level on the head outputs as the model splits them, so the
        floats are the model's own (a vectorised sigmoid over other slices may differ in the last bit)."""
        head = self._head
        with torch.inference_mode():
            if self.score_rule == "softmax":
                return F.softmax(head["cls_logits"], dim=-1)[0]
            n = list(self.anchors_per_level)
            ctr = head["bbox_ctrness"].split(n, dim=1) if "bbox_ctrness" in head else [None] * len(n)
            out = []
            for logits, c in zip(head["cls_logits"].split(n, dim=1), ctr):
                s = torch.sigmoid(logits[0])
                out.append(s if c is None else torch.sqrt(s * torch.sigmoid(c[0])))
            return torch.cat(out, dim=0)

    @cached_property
    def _pre_nms(self):
        """The candidates the final ``batched_nms`` receives.

        A transcription (no hook can see inside a method) of the lines before ``batched_nms`` in
        torchvision 0.29.1's ``RetinaNet.postprocess_detections``
        (``torchvision/models/detection/retinanet.py``), ``FCOS.postprocess_detections``
        (``fcos.py``) and ``SSD.postprocess_detections`` (``ssd.py``), on the head outputs exactly
        as the model split them.  Every constant is read from the module (``score_thresh``,
        ``topk_candidates``, ``box_coder``); ``tests/models/test_wrap.py`` re-runs the NMS on this
        and requires the model's own detections, bit for bit, so a drift fails a test.
        """
        from torchvision.ops import boxes as box_ops

        m, (h, w) = self._model, self._input_size
        head, anchors = self._head, self.anchors
        with torch.inference_mode():
            if self.architecture == "SSD":
                return self._ssd_pre_nms(m, head, anchors, (h, w))
            boxes, scores, labels, index, levels = [], [], [], [], []
            n = list(self.anchors_per_level)
            cls_l = [c[0] for c in head["cls_logits"].split(n, dim=1)]
            reg_l = [r[0] for r in head["bbox_regression"].split(n, dim=1)]
            ctr_l = [c[0] for c in head["bbox_ctrness"].split(n, dim=1)] if "bbox_ctrness" in head else [None] * len(n)
            offset = 0
            for lvl, (reg, logits, ctr, anc) in enumerate(zip(reg_l, cls_l, ctr_l, anchors.split(n))):
                num_classes = logits.shape[-1]
                if ctr is not None:      # FCOS
                    s = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctr)).flatten()
                else:                    # RetinaNet
                    s = torch.sigmoid(logits).flatten()
                keep = s > m.score_thresh
                s = s[keep]
                topk_idxs = torch.where(keep)[0]
                num_topk = _topk_min(topk_idxs, m.topk_candidates, 0)
                s, idxs = s.topk(num_topk)
                topk_idxs = topk_idxs[idxs]
                anchor_idxs = torch.div(topk_idxs, num_classes, rounding_mode="floor")
                lab = topk_idxs % num_classes
                if ctr is not None:
                    b = m.box_coder.decode(reg[anchor_idxs], anc[anchor_idxs])
                else:
                    b = m.box_coder.decode_single(reg[anchor_idxs], anc[anchor_idxs])
                b = box_ops.clip_boxes_to_image(b, (h, w))
                boxes.append(b), scores.append(s), labels.append(lab)
                index.append(anchor_idxs + offset), levels.append(torch.full_like(lab, lvl))
                offset += anc.shape[0]
            return tuple(torch.cat(v, dim=0) for v in (boxes, scores, labels, index, levels))

    def _ssd_pre_nms(self, m, head, anchors, image_shape):
        from torchvision.ops import boxes as box_ops

        pred_scores = F.softmax(head["cls_logits"], dim=-1)
        num_classes = pred_scores.size(-1)
        boxes = m.box_coder.decode_single(head["bbox_regression"][0], anchors)
        boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
        scores = pred_scores[0]
        out = ([], [], [], [])
        for label in range(1, num_classes):
            score = scores[:, label]
            keep = score > m.score_thresh
            score, box, idx = score[keep], boxes[keep], torch.where(keep)[0]
            num_topk = _topk_min(score, m.topk_candidates, 0)
            score, idxs = score.topk(num_topk)
            for acc, v in zip(out, (box[idxs], score, torch.full_like(score, fill_value=label, dtype=torch.int64),
                                    idx[idxs])):
                acc.append(v)
        b, s, lab, idx = (torch.cat(v, dim=0) for v in out)
        return b, s, lab, idx, self.anchor_levels[idx]

    @cached_property
    def candidates_by_the_model(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidates the final NMS receives, from the model's own ``postprocess_detections``
        (not a transcription): run on the head outputs with its NMS off (IoU threshold 1.0: no box
        overlaps another by more) and no cap on detections. ``(boxes (N, 4)`` in the model's input
        frame, ``scores (N,)`` by ``score_rule``, ``labels (N,))``: each a (location, class) the
        model keeps (score above ``score_threshold``, its ``topk_candidates``), highest score first.

        The module's own ``nms_thresh`` and ``detections_per_img`` are set for the call and put back.
        """
        m, (h, w) = self._model, self._input_size
        n = list(self.anchors_per_level)
        total = sum(n) * self.class_logits.shape[-1]
        if self.architecture == "SSD":       # SSD.postprocess_detections takes the whole head output
            head, anchors = self._head, [self.anchors]
        else:                                # RetinaNet and FCOS: split per level, as their forward does
            head = {k: list(v.split(n, dim=1)) for k, v in self._head.items()}
            anchors = [list(self.anchors.split(n))]
        saved = m.nms_thresh, m.detections_per_img
        try:
            m.nms_thresh, m.detections_per_img = 1.0, total
            with torch.inference_mode():
                out = m.postprocess_detections(head, anchors, [(h, w)])[0]
        finally:
            m.nms_thresh, m.detections_per_img = saved
        return out["boxes"], out["scores"], out["labels"]

    boxes_pre_nms = property(lambda self: self._pre_nms[0])
    scores_pre_nms = property(lambda self: self._pre_nms[1])
    labels_pre_nms = property(lambda self: self._pre_nms[2])
    anchor_index_pre_nms = property(lambda self: self._pre_nms[3])
    levels_pre_nms = property(lambda self: self._pre_nms[4])



@dataclass
class SegmentationTrace:
    """Internals of a segmentation run (for :class:`SegNet`: the switches and the learned kernel).

    Attributes:
        result: the :class:`SegmentationResult` (the label map of the image).
        logits: ``(K, H, W)`` the network's class scores at the image's size, before the arg-max.
        captured: for SegNet, what its forward hooks caught, each ``(1, C, h, w)``: the encoder,
            pooled, unpooled and decoder features per stage, the pooling switches
            (``pool_indices``), the bottleneck and the transposed convolution's input and output;
            empty for other networks.
    """

    result: SegmentationResult
    logits: torch.Tensor
    captured: dict = field(default_factory=dict)


