"""What a traced run records: the internals of a detector or a segmenter, captured with
forward hooks while the model ran (and, for a detector, what is derived from them lazily)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

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


@dataclass
class DetectorTrace:
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
    _head: tuple = field(default=(), repr=False)
    _input_size: tuple = field(default=(0, 0), repr=False)
    _norm: tuple = field(default=((0.0,), (1.0,)), repr=False)
    _rpn: object = field(default=None, repr=False)
    _roi_heads: object = field(default=None, repr=False)

    @cached_property
    def input_image(self) -> torch.Tensor:
        h, w = self._input_size
        mean = torch.tensor(self._norm[0])[:, None, None]
        std = torch.tensor(self._norm[1])[:, None, None]
        return (self.input_tensor[0] * std + mean)[:, :h, :w].clamp(0, 1)

    @cached_property
    def _flat(self):
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

    def final_nms(self):
        """Re-run the final class-aware NMS with :mod:`explainers.ops` on the pre-NMS boxes."""
        keep, trace = batched_nms_trace(self.boxes_pre_nms, self.scores_pre_nms, self.labels_pre_nms,
                                        self.nms_threshold)
        return keep[: self.detections_per_img], trace


@dataclass
class SegmentationTrace:
    """Internals of a segmentation run (for :class:`SegNet`: the switches and the learned kernel)."""

    result: SegmentationResult
    logits: torch.Tensor
    captured: dict = field(default_factory=dict)


