"""YOLO's output tensor and SSD's default boxes against torchvision (DefaultBoxGenerator, BoxCoder)."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from explainers.ops.single_stage import (SSD300_ASPECT_RATIOS, SSD300_FEATURE_SIZES, SSD300_SCALES, SSD300_STEPS,
                                         YOLO_BASE_SHAPES, fcos_dense, ssd_default_boxes, yolo_base_boxes,
                                         yolo_channel_names, yolo_decode, yolo_encode)
from explainers.ops.single_stage_reference import reference_default_boxes, reference_yolo_boxes


def test_ssd300_default_boxes_equal_torchvision():
    args = ((300, 300), SSD300_FEATURE_SIZES, SSD300_ASPECT_RATIOS)
    kw = dict(scales=SSD300_SCALES, steps=SSD300_STEPS)
    boxes, tr = ssd_default_boxes(*args, **kw)
    assert boxes.shape == (8732, 4)                       # SSD300's famous count
    assert torch.equal(boxes, reference_default_boxes(*args, **kw))
    assert tr.per_level == [38 * 38 * 4, 19 * 19 * 6, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 4, 1 * 1 * 4]
    # the location accessor reads the same boxes torchvision puts there
    k, r, c = 1, 7, 11
    K = 6
    start = sum(tr.per_level[:k]) + (r * 19 + c) * K
    assert torch.equal(tr.location(k, r, c), boxes[start:start + K])
    _centres_are_the_boxes_centres(boxes, tr, 300, 300)


@settings(max_examples=40, deadline=None)
@given(st.integers(16, 400), st.integers(16, 400),
       st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12),
                          st.lists(st.sampled_from([1.5, 2, 3, 4]), min_size=0, max_size=3)), min_size=1, max_size=4),
       st.floats(0.05, 0.4), st.floats(0.5, 1.2), st.booleans(), st.booleans())
def test_default_boxes_equal_torchvision(H, W, levels, lo, hi, clip, use_steps):
    sizes = [(h, w) for h, w, _ in levels]
    ratios = [r for _, _, r in levels]
    steps = [max(1, H // h) for h, _, _ in levels] if use_steps else None
    ours, tr = ssd_default_boxes((H, W), sizes, ratios, lo, hi, steps=steps, clip=clip)
    ref = reference_default_boxes((H, W), sizes, ratios, lo, hi, steps=steps, clip=clip)
    assert ours.shape == ref.shape and torch.equal(ours, ref)
    assert sum(tr.per_level) == len(ours)
    # the centres drawn (one dot per location) are the centres of torchvision's boxes at that location
    _centres_are_the_boxes_centres(ref, tr, H, W)


def _centres_are_the_boxes_centres(boxes, tr, H, W):
    mid = ((boxes[:, :2] + boxes[:, 2:]) / 2 / torch.tensor([W, H])).split(tr.per_level)
    for m, c, (fh, fw) in zip(mid, tr.centres, tr.feature_sizes):
        assert c.shape == (fh * fw, 2)
        torch.testing.assert_close(m.reshape(fh * fw, -1, 2), c[:, None].expand(fh * fw, m.shape[0] // (fh * fw), 2),
                                   atol=1e-5, rtol=0)


def test_default_boxes_with_explicit_scales_and_errors():
    ours, _ = ssd_default_boxes((128, 96), [4, 2], [[2], [3]], scales=[0.2, 0.5, 0.9])
    assert torch.equal(ours, reference_default_boxes((128, 96), [4, 2], [[2], [3]], scales=[0.2, 0.5, 0.9]))
    with pytest.raises(ValueError, match="one list of aspect ratios per feature map"):
        ssd_default_boxes((100, 100), [4, 2], [[2]])
    with pytest.raises(ValueError, match="MAX_ELEMENTS"):
        ssd_default_boxes((100, 100), [3000], [[2, 3]])


def test_yolo_base_boxes_are_centred_on_cells():
    base = yolo_base_boxes(7, 3, (224, 224))
    assert base.shape == (7, 7, 3, 4)
    centres = (base[..., :2] + base[..., 2:]) / 2
    assert torch.allclose(centres[2, 5, 1], torch.tensor([5.5 * 32, 2.5 * 32]))
    wh = base[0, 0, :, 2:] - base[0, 0, :, :2]
    assert torch.allclose(wh, torch.tensor(YOLO_BASE_SHAPES[:3]) * 32)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(2, 6), st.integers(40, 300), st.integers(40, 300),
       st.integers(0, 2**31 - 1))
def test_yolo_decode_equals_torchvision_box_coder(S, B, C, H, W, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(S, S, 5 * B + C, generator=g)
    boxes, tr = yolo_decode(t, B, (H, W))
    ref = reference_yolo_boxes(tr.deltas, tr.base_boxes).reshape(S, S, B, 4)
    assert torch.allclose(boxes, ref, atol=1e-4, rtol=1e-6)
    # the layout: box b of cell (r, c) reads numbers 5b .. 5b+4 of that cell's vector
    r, c, b = S - 1, 0, B - 1
    assert torch.equal(tr.deltas[r, c, b], t[r, c, 5 * b:5 * b + 4]) and tr.confidence[r, c, b] == t[r, c, 5 * b + 4]
    assert torch.equal(tr.class_scores[r, c], t[r, c, 5 * B:])
    assert torch.allclose(tr.class_confidence[r, c, b], t[r, c, 5 * b + 4] * t[r, c, 5 * B:])
    assert len(yolo_channel_names(B, [str(i) for i in range(C)])) == 5 * B + C


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 10), st.integers(1, 6), st.integers(2, 5), st.integers(64, 320), st.integers(64, 320),
       st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0.05, 0.6), st.floats(0.05, 0.6),
                          st.integers(1, 4)), min_size=0, max_size=8))
def test_yolo_encode_decode_round_trip(S, B, C, H, W, objs):
    boxes, labels = [], []
    for fx, fy, fw, fh, lab in objs:
        w, h = fw * W, fh * H
        x1, y1 = fx * (W - w), fy * (H - h)
        boxes.append([x1, y1, x1 + w, y1 + h])
        labels.append(1 + (lab - 1) % (C - 1))
    t, tr = yolo_encode(torch.tensor(boxes).reshape(-1, 4), labels, S, B, C, (H, W))
    assert t.shape == (S, S, 5 * B + C)
    dec, dtr = yolo_decode(t, B, (H, W))
    gt = tr.boxes
    for i in range(len(boxes)):
        r, c = (int(v) for v in tr.cells[i])
        cx, cy = (gt[i, 0] + gt[i, 2]) / 2, (gt[i, 1] + gt[i, 3]) / 2
        assert c * W / S <= cx + 1e-3 and cx - 1e-3 <= (c + 1) * W / S      # the cell holding the centre
        assert r * H / S <= cy + 1e-3 and cy - 1e-3 <= (r + 1) * H / S
        k = int(tr.responsible[i])
        assert tr.ious[i, k] == tr.ious[i].max()
        if tr.kept[i]:
            assert dtr.confidence[r, c, k] == 1.0
            assert torch.allclose(dec[r, c, k], gt[i], atol=1e-3, rtol=1e-5)       # to a thousandth of a pixel
    # confidence 1 exactly where a kept object is; one-hot classes; empty cells say background
    assert int(dtr.confidence.sum()) == int(tr.kept.sum())
    assert torch.equal(dtr.class_scores.sum(-1), torch.ones(S, S))
    occupied = {tuple(tr.cells[i].tolist()) for i in range(len(boxes)) if tr.kept[i]}
    for r in range(S):
        for c in range(S):
            assert (dtr.class_scores[r, c, 0] == 1.0) == ((r, c) not in occupied)


def test_yolo_two_objects_in_one_slot_keep_the_first():
    boxes = torch.tensor([[40., 40., 80., 80.], [42., 42., 82., 82.]])
    t, tr = yolo_encode(boxes, [1, 2], 7, 1, 3, (224, 224))
    assert tr.kept.tolist() == [True, False]
    assert t[1, 1, 5:].tolist() == [0.0, 1.0, 0.0]
    # a wide and a tall object in one cell take two base boxes (both kept); the cell has one set of
    # class scores: the first object's
    boxes = torch.tensor([[20., 50., 140., 90.], [60., 10., 100., 130.]])
    t, tr = yolo_encode(boxes, [1, 2], 7, 3, 3, (224, 224))
    assert tr.kept.tolist() == [True, True] and tr.cells.tolist() == [[2, 2], [2, 2]]
    assert tr.responsible[0] != tr.responsible[1] and t[2, 2, 4:15:5].sum() == 2
    assert t[2, 2, 15:].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("kwargs, msg", [
    (dict(S=0), "1 to 32 cells"), (dict(B=7), "1 to 6 base boxes"), (dict(C=1), "at least 2"),
])
def test_yolo_errors_are_sentences(kwargs, msg):
    args = dict(S=7, B=2, C=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        yolo_encode([[0, 0, 10, 10]], [1], args["S"], args["B"], args["C"], (100, 100))
    with pytest.raises(ValueError, match="labels must be object classes"):
        yolo_encode([[0, 0, 10, 10]], [0], 7, 2, 3, (100, 100))
    with pytest.raises(ValueError, match="S x S x"):
        yolo_decode(torch.zeros(7, 6, 13), 2, (100, 100))


def test_fcos_dense_equals_torchvision_linear_coder():
    from torchvision.models.detection._utils import BoxLinearCoder

    g = torch.Generator().manual_seed(0)
    A, C = 50, 4
    centres = torch.rand(A, 2, generator=g) * 100
    anchors = torch.cat((centres - 4, centres + 4), 1)
    reg = torch.rand(A, 4, generator=g) * 3
    logits, ctr = torch.randn(A, C, generator=g), torch.randn(A, generator=g)
    boxes, tr = fcos_dense(logits, reg, ctr, anchors, (100, 100))
    ref = BoxLinearCoder(normalize_by_size=True).decode(reg, anchors)
    ref = torch.stack((ref[:, 0].clamp(0, 100), ref[:, 1].clamp(0, 100), ref[:, 2].clamp(0, 100),
                       ref[:, 3].clamp(0, 100)), 1)
    assert torch.allclose(boxes, ref, atol=1e-5)
    expected = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctr)[:, None])
    assert torch.allclose(tr.scores, expected)
    assert torch.equal(tr.best_label, expected[:, 1:].argmax(1) + 1)
    assert math.isclose(float(tr.best_score.max()), float(expected[:, 1:].max()), rel_tol=1e-6)
