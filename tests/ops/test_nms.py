import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st

from explainers.ops import batched_nms_trace, box_iou, nms_trace

BOXES = torch.tensor([[10.0, 10, 50, 50], [12, 12, 52, 52], [100, 100, 140, 140],
                      [11, 9, 49, 51], [102, 98, 138, 142], [200, 200, 210, 210]])
SCORES = torch.tensor([0.9, 0.8, 0.75, 0.7, 0.6, 0.3])


def test_small_worked_example_steps():
    keep, tr = nms_trace(BOXES, SCORES, 0.5)
    assert keep.tolist() == [0, 2, 5]
    assert torch.equal(keep, torchvision.ops.nms(BOXES, SCORES, 0.5))
    assert [s.kept for s in tr.steps] == [0, 2, 5]
    assert sorted(tr.steps[0].suppressed.tolist()) == [1, 3]
    assert tr.steps[1].suppressed.tolist() == [4]
    assert tr.steps[2].suppressed.tolist() == []
    # the IoUs shown in a step are the real IoUs with the kept box
    ref = torchvision.ops.box_iou(BOXES[[0]], BOXES[tr.steps[0].candidates])[0]
    np.testing.assert_array_equal(tr.steps[0].ious, ref.numpy())
    # after k steps exactly these are marked
    assert tr.state_after(1).tolist() == [1, 2, 0, 2, 0, 0]
    assert tr.state_after(2).tolist() == [1, 2, 1, 2, 2, 0]
    assert tr.suppressed_by.tolist() == [-1, 0, -1, 0, 2, -1]


def test_threshold_matters():
    keep_low, _ = nms_trace(BOXES, SCORES, 0.0)
    keep_high, _ = nms_trace(BOXES, SCORES, 1.0)
    assert keep_high.tolist() == [0, 1, 2, 3, 4, 5]
    assert keep_low.tolist() == [0, 2, 5]


def random_boxes(n, seed, spread=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * spread / 2
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), g


@settings(max_examples=120, deadline=None)
@given(n=st.integers(0, 80), seed=st.integers(0, 2**16), thr=st.floats(0, 1))
def test_equals_torchvision_nms(n, seed, thr):
    boxes, scores, _ = random_boxes(n, seed)
    keep, tr = nms_trace(boxes, scores, thr)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, thr))
    assert len(tr.steps) == len(keep)
    # every box is either kept or suppressed by a kept box
    decided = set(keep.tolist()) | {int(i) for s in tr.steps for i in s.suppressed}
    assert decided == set(range(n))


@settings(max_examples=120, deadline=None)
@given(n=st.integers(0, 80), seed=st.integers(0, 2**16), thr=st.floats(0, 1), classes=st.integers(1, 4))
def test_class_aware_equals_batched_nms(n, seed, thr, classes):
    boxes, scores, g = random_boxes(n, seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    keep, tr = batched_nms_trace(boxes, scores, labels, thr)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, labels, thr))
    for step in tr.steps:
        assert (labels[step.suppressed] == labels[step.kept]).all()


@st.composite
def tied_case(draw):
    """Boxes on a small integer grid and scores from three values: equal scores (which of them NMS
    takes first) and IoUs exactly at the threshold (1/2 and 1/4, exact in float32) happen often."""
    n = draw(st.integers(0, 30))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 4, (n, 2), generator=g).float()
    wh = torch.randint(1, 4, (n, 2), generator=g).float()
    scores = torch.tensor([0.25, 0.5, 0.75])[torch.randint(0, 3, (n,), generator=g)]
    labels = torch.randint(0, 2, (n,), generator=g)
    return torch.cat([xy, xy + wh], 1), scores, labels, draw(st.sampled_from([0.5, 0.25, 0.0, 1.0]))


@settings(max_examples=200, deadline=None)
@given(case=tied_case())
def test_ties_and_ious_exactly_at_the_threshold_equal_torchvision(case):
    boxes, scores, labels, thr = case
    keep, tr = nms_trace(boxes, scores, thr)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, thr))
    assert [s.kept for s in tr.steps] == keep.tolist()
    keep, _ = batched_nms_trace(boxes, scores, labels, thr)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, labels, thr))


def test_the_tied_strategy_reaches_ties_and_exact_thresholds():
    """The strategy above is not vacuous: it draws equal scores and IoUs equal to a threshold."""
    boxes = torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1], [1, 0, 3, 1]])
    assert torchvision.ops.box_iou(boxes, boxes)[0, :2].tolist() == [1.0, 0.5]
    scores = torch.tensor([0.5, 0.5, 0.5])                 # all tied: the first index is taken first
    # IoU = threshold is not suppressed (strictly greater), just below it is
    for thr, kept in ((0.5, [0, 1, 2]), (0.4999, [0, 2]), (0.25, [0])):
        keep, _ = nms_trace(boxes, scores, thr)
        assert keep.tolist() == kept == torchvision.ops.nms(boxes, scores, thr).tolist()


def test_large_inputs_use_the_row_path():
    boxes, scores, g = random_boxes(3000, 7, spread=800.0)
    keep, _ = nms_trace(boxes, scores, 0.5)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, 0.5))
    labels = torch.randint(0, 5, (3000,), generator=g)
    keep, _ = batched_nms_trace(boxes, scores, labels, 0.5)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, labels, 0.5))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 30), m=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_box_iou_equals_torchvision(n, m, seed):
    a, _, _ = random_boxes(n, seed)
    b, _, _ = random_boxes(m, seed + 1)
    assert torch.equal(box_iou(a, b), torchvision.ops.box_iou(a, b))


def test_empty_inputs():
    keep, tr = nms_trace(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64 and tr.steps == []
    keep, _ = batched_nms_trace([], [], [], 0.5)
    assert keep.shape == (0,)


@pytest.mark.parametrize("boxes, scores, msg", [
    (BOXES, SCORES[:3], "6 boxes but 3 scores"),
    (BOXES, torch.tensor([0.1, float("nan"), 0.3, 0.4, 0.5, 0.6]), "NaN"),
    (torch.tensor([[10.0, 10, 5, 20]]), torch.tensor([1.0]), "x2 < x1"),
    (torch.zeros(3, 5), torch.zeros(3), r"\(N, 4\)"),
])
def test_bad_arguments(boxes, scores, msg):
    with pytest.raises(ValueError, match=msg):
        nms_trace(boxes, scores, 0.5)


def test_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        batched_nms_trace(BOXES, SCORES, [0, 1], 0.5)


def _nms_class_by_class(boxes, scores, labels, thr):
    """torchvision.ops.nms on each class by itself, merged by decreasing score (stable)."""
    keep = torch.cat([idx[torchvision.ops.nms(boxes[idx], scores[idx], thr)]
                      for idx in (torch.where(labels == c)[0] for c in labels.unique())])
    return keep[scores[keep].sort(descending=True, stable=True)[1]]


def test_batched_differs_from_torchvision_only_where_its_coordinate_shift_rounds():
    # two class-3 boxes 3 px wide near x = 1e5 (exact float32 values) with IoU 0.5059 > 0.5, and a
    # class-0 box: torchvision's batched_nms (<= 4000 coordinates) shifts class 3 by 3 * (max + 1),
    # to about 4e5, where float32 spacing is 1/32: the second box moves and its IoU becomes 0.5
    boxes = torch.tensor([[100000.0, 0, 100003, 3], [100000.984375, 0, 100003.984375, 3], [0, 0, 1, 1]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([3, 3, 0])
    assert torchvision.ops.box_iou(boxes[:1], boxes[1:2]).item() == pytest.approx(0.50588, abs=1e-5)
    keep, tr = batched_nms_trace(boxes, scores, labels, 0.5)
    assert keep.tolist() == [0, 2] and tr.suppressed_by.tolist() == [-1, 0, -1]
    assert torch.equal(keep, _nms_class_by_class(boxes, scores, labels, 0.5))
    assert torchvision.ops.batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1, 2]   # the shift's doing
    shifted = boxes + (labels * (boxes.max() + 1))[:, None]
    assert torchvision.ops.box_iou(shifted[:1], shifted[1:2]).item() == 0.5
    # the same boxes near the origin: the shift is exact and all three agree
    near = boxes - torch.tensor([99990.0, 0, 99990, 0]) * (labels == 3)[:, None]
    keep, _ = batched_nms_trace(near, scores, labels, 0.5)
    assert keep.tolist() == [0, 2]
    assert torch.equal(keep, torchvision.ops.batched_nms(near, scores, labels, 0.5))
    assert torch.equal(keep, _nms_class_by_class(near, scores, labels, 0.5))
    # above 4000 coordinates torchvision runs NMS class by class itself: equal again, near 1e5 too
    extra, extra_scores, g = random_boxes(1100, 11, spread=50.0)
    many = torch.cat([boxes, extra])
    s = torch.cat([scores, extra_scores * 0.5])
    lab = torch.cat([labels, torch.randint(0, 3, (1100,), generator=g)])
    keep, _ = batched_nms_trace(many, s, lab, 0.5)
    assert torch.equal(keep, torchvision.ops.batched_nms(many, s, lab, 0.5))
    assert torch.equal(keep, _nms_class_by_class(many, s, lab, 0.5))
    assert keep[:2].tolist() == [0, 2]


def test_threshold_compared_in_double_like_torchvision():
    """IoU 0.1 (float32) against threshold 0.1: torchvision compares in double and suppresses."""
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    for thr in (0.1, 0.3, 0.7):
        keep, _ = nms_trace(boxes, scores, thr)
        assert torch.equal(keep, torchvision.ops.nms(boxes, scores, thr)), thr
    keep, _ = batched_nms_trace(boxes, scores, torch.tensor([1, 1]), 0.1)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, torch.tensor([1, 1]), 0.1))
