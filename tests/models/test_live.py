import numpy as np
import pytest
import torch

from explainers.models import get, make_scene, render
from explainers.ops import anchor_grid, batched_nms_trace, decode_boxes, dense_predict, sliding_window_predict
from explainers.ops.boxes import RPN_WEIGHTS


@pytest.fixture(scope="module")
def scene():
    return make_scene(10_000_003)


def test_detector_trace_equals_plain_call(scene):
    m = get("instance", "shapes")
    plain = m(scene.image)
    tr = m.trace(scene.image)
    for a, b in ((plain.boxes, tr.detections.boxes), (plain.scores, tr.detections.scores),
                 (plain.labels, tr.detections.labels), (plain.masks, tr.detections.masks)):
        assert torch.equal(a, b)
    # shapes of the internals
    A = tr.anchors.shape[0]
    assert tr.objectness.shape == (A,) and tr.deltas.shape == (A, 4)
    assert tr.box_features.shape[0] == tr.proposals.shape[0] and tr.box_features.shape[-2:] == (7, 7)
    assert tr.input_image.shape[-2:] == tuple(round(s * d) for s, d in zip(tr.scale, scene.image.shape[:2]))


def test_detector_anchors_equal_ops(scene):
    tr = get("detection", "shapes").trace(scene.image)
    (fh, fw), = tr.feature_sizes
    ours, _ = anchor_grid(tr.input_tensor.shape[-2:], (fh, fw), tr.anchor_sizes[0], tr.anchor_ratios[0])
    assert torch.equal(ours, tr.anchors)


def test_rpn_nms_and_final_nms_are_reproduced_by_ops(scene):
    m = get("instance", "shapes")
    tr = m.trace(scene.image)
    # proposals = decode(anchors, deltas), then the RPN's NMS
    top = decode_boxes(tr.deltas, tr.anchors, RPN_WEIGHTS)
    assert top.shape == tr.anchors.shape
    keep, _ = batched_nms_trace(tr.proposals_pre_nms, tr.proposal_scores_pre_nms, tr.proposal_levels_pre_nms,
                                tr.rpn_nms_threshold)
    post_n = m.module.rpn.post_nms_top_n()
    assert torch.equal(tr.proposals_pre_nms[keep[:post_n]], tr.proposals)
    keep, trace = tr.final_nms()
    sx, sy = tr.scale[1], tr.scale[0]
    back = tr.boxes_pre_nms[keep] / torch.tensor([sx, sy, sx, sy])
    torch.testing.assert_close(back, tr.detections.boxes, atol=1e-3, rtol=1e-5)
    assert torch.equal(tr.labels_pre_nms[keep], tr.detections.labels)


def test_detection_has_no_masks_instance_has(scene):
    assert get("detection", "shapes")(scene.image).masks is None
    r = get("instance", "shapes")(scene.image)
    assert r.masks is not None and r.masks.shape[1:] == scene.image.shape[:2]


def test_segnet_trace(scene):
    m = get("segmentation", "shapes")
    plain = m(scene.image)
    tr = m.trace(scene.image)
    assert torch.equal(plain.labels, tr.result.labels)
    cap = tr.captured
    assert len(cap["pool_indices"]) == 3
    k = cap["transposed_kernel"]
    assert k.shape[-2:] == (3, 3)
    # the switches are real max-pooling switches of the real encoder features
    e2, p2, i2 = cap["encoder_features"][1], cap["pooled"][1], cap["pool_indices"][1]
    ref_p, ref_i = torch.nn.functional.max_pool2d(e2, 2, return_indices=True)
    assert torch.equal(p2, ref_p) and torch.equal(i2, ref_i)
    # the decoder's transposed conv is exactly conv_transpose2d with the learned kernel
    mod = m.module.up1
    out = torch.nn.functional.conv_transpose2d(cap["transposed_input"], k, mod.bias.detach(), 2, 1, 1)
    torch.testing.assert_close(out, cap["transposed_output"])


def test_patch_model_sliding_equals_dense(scene):
    m = get("patch", "shapes")
    img = torch.from_numpy(scene.image[:96, :100]).permute(2, 0, 1).float() / 255
    labels, tr = sliding_window_predict(m.module, img, m.window, m.stride, batch_size=64)
    dense, _, cost = dense_predict(m.module, img)
    assert torch.equal(labels, dense)
    assert tr.cost.macs > 5 * cost.macs


def test_render_overlays(scene):
    for task in ("segmentation", "instance", "detection", "patch"):
        out = render(get(task, "shapes")(scene.image))
        assert out.shape == scene.image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, scene.image)


def test_render_for_a_panel_enlarges_small_images_by_whole_pixels(scene):
    """panel=True: a ~150 px scene is drawn k times larger (k x k blocks of the same pixel), its
    boxes at k times their coordinates, so labels stay a small part of a page's panel."""
    from explainers.models.render import PANEL_SIDE, class_colour

    r = get("detection", "shapes")(scene.image)
    H, W = scene.image.shape[:2]
    k = -(-PANEL_SIDE // max(H, W))
    assert k > 1
    bare = render(r, score_threshold=1.1, panel=True)                   # nothing drawn over it
    assert np.array_equal(bare, scene.image.repeat(k, 0).repeat(k, 1))
    out = render(r, panel=True)
    assert out.shape == (k * H, k * W, 3)
    assert render(r).shape == scene.image.shape                         # a picture at its own size
    best = int(r.scores.argmax())
    x1, y1, x2, y2 = (r.boxes[best] * k).round().int().tolist()
    left_edge = out[(y1 + y2) // 2, x1]
    assert tuple(left_edge) == class_colour(int(r.labels[best]))


def test_transcribed_torchvision_constants_still_hold():
    """The two places that follow torchvision's source (not hooks) still match that source."""
    import inspect

    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork

    from explainers.models.traces import ROI_HEADS_MIN_SIZE

    post = inspect.getsource(RoIHeads.postprocess_detections)
    assert "remove_small_boxes(boxes, min_size=1e-2)" in post and ROI_HEADS_MIN_SIZE == 1e-2
    filt = inspect.getsource(RegionProposalNetwork.filter_proposals)
    for line in ("self._get_top_n_idx(objectness, num_anchors_per_level)", "torch.sigmoid(objectness)",
                 "remove_small_boxes(boxes, self.min_size)", "scores >= self.score_thresh"):
        assert line in filt, f"torchvision's filter_proposals changed: {line!r} is gone"


def test_segnet_trace_uses_hooks_only(scene):
    """Tracing SegNet changes nothing in its forward pass and leaves no hook behind."""
    m = get("segmentation", "shapes")
    tr = m.trace(scene.image)
    assert all(not mod._forward_hooks for mod in m.module.modules())
    assert torch.equal(tr.captured["unpooled"][0],
                       torch.nn.functional.max_unpool2d(tr.captured["bottleneck"], tr.captured["pool_indices"][2], 2,
                                                        output_size=tr.captured["encoder_features"][2].shape[-2:]))
