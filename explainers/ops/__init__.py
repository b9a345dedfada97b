"""Faithful, traceable re-implementations of the operators the explainers show.

Each function returns its result **and** a trace (a small dataclass) that a
widget can animate step by step.  Every result is tested to equal the real
torch / torchvision operator on the same inputs (see ``tests/ops``).

Pure computation: nothing here imports a widget or a model.
"""
from .anchors import AnchorTrace, anchor_grid, base_anchors
from .boxes import (BBOX_XFORM_CLIP, FASTER_RCNN_WEIGHTS, RPN_WEIGHTS, box_area, box_iou, clip_boxes, decode_boxes,
                    encode_boxes)
from .conv_matrix import (ConvTransposeTrace, conv_matrix, conv_matrix_labels, conv_transpose_via_matrix,
                          output_shape, symbolic_matvec, transpose_labels)
from .nms import NMSStep, NMSTrace, batched_nms_trace, nms_trace
from .reference import (reference_anchors, reference_conv, reference_conv_transpose, reference_decode_boxes,
                        reference_max_pool, reference_nms, reference_nms_per_class, reference_roi_align,
                        reference_roi_pool, reference_roi_pool_argmax, reference_rpn_choice_is_valid, reference_rpn_proposals, reference_top_k,
                        reference_unpool)
from .roi_align import RoIAlignTrace, bilinear_weight, roi_align_trace
from .roi_pool import RoIPoolTrace, overlapping_bins, roi_pool_trace
from .sliding_window import Cost, SlidingWindowTrace, dense_predict, network_geometry, sliding_window_predict
from .unpool import MODES as UNPOOL_MODES
from .unpool import UnpoolTrace, max_pool_with_switches, unpool
# the second half of the lecture
from .masks import MaskPasteTrace, paste_mask_trace, paste_masks
from .receptive_field import FieldLayer, Layer, receptive_fields
from .selective_search import SelectiveSearchTrace, selective_search
from .single_stage import DefaultBoxTrace, YoloTrace, ssd_default_boxes, yolo_decode, yolo_encode
from .targets import MatchTrace, SampleTrace, box_head_loss, match, multitask_loss, rpn_loss, rpn_targets, sample

__all__ = [
    "AnchorTrace", "anchor_grid", "base_anchors",
    "BBOX_XFORM_CLIP", "FASTER_RCNN_WEIGHTS", "RPN_WEIGHTS", "box_area", "box_iou", "clip_boxes", "decode_boxes",
    "encode_boxes",
    "ConvTransposeTrace", "conv_matrix", "conv_matrix_labels", "conv_transpose_via_matrix", "output_shape",
    "symbolic_matvec", "transpose_labels",
    "NMSStep", "NMSTrace", "batched_nms_trace", "nms_trace",
    "reference_anchors", "reference_conv", "reference_conv_transpose", "reference_decode_boxes", "reference_nms", "reference_nms_per_class",
    "overlapping_bins", "reference_max_pool", "reference_roi_align", "reference_roi_pool", "reference_roi_pool_argmax", "reference_rpn_choice_is_valid", "reference_rpn_proposals",
    "reference_top_k", "reference_unpool",
    "RoIAlignTrace", "bilinear_weight", "roi_align_trace",
    "RoIPoolTrace", "roi_pool_trace",
    "Cost", "SlidingWindowTrace", "dense_predict", "network_geometry", "sliding_window_predict",
    "UNPOOL_MODES", "UnpoolTrace", "max_pool_with_switches", "unpool",
    "MaskPasteTrace", "paste_mask_trace", "paste_masks",
    "FieldLayer", "Layer", "receptive_fields",
    "SelectiveSearchTrace", "selective_search",
    "DefaultBoxTrace", "YoloTrace", "ssd_default_boxes", "yolo_decode", "yolo_encode",
    "MatchTrace", "SampleTrace", "box_head_loss", "match", "multitask_loss", "rpn_loss", "rpn_targets", "sample",
]
