import pytest
import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from explainers.ops import FASTER_RCNN_WEIGHTS, RPN_WEIGHTS, anchor_grid, decode_boxes, encode_boxes


def torchvision_anchors(image_size, feature_size, sizes, ratios):
    gen = AnchorGenerator((tuple(sizes),), (tuple(ratios),))
    images = ImageList(torch.zeros(1, 3, *image_size), [tuple(image_size)])
    return gen(images, [torch.zeros(1, 4, *feature_size)])[0]


def test_lecture_rpn_grid():
    # 3x640x480 image -> 20x15 feature map; K anchors per cell
    anchors, tr = anchor_grid((640, 480), (20, 15), (64, 128, 256), (0.5, 1.0, 2.0))
    assert anchors.shape == (20 * 15 * 9, 4)
    assert tr.stride == (32, 32) and tr.per_cell == 9
    assert torch.equal(anchors, torchvision_anchors((640, 480), (20, 15), (64, 128, 256), (0.5, 1.0, 2.0)))
    # a cell's anchors are centred on that cell's shift, all of area ~ size^2
    cell = tr.cell_anchors(3, 4)
    assert torch.equal(cell, anchors[(3 * 15 + 4) * 9:(3 * 15 + 5) * 9])
    centres = (cell[:, :2] + cell[:, 2:]) / 2
    assert torch.allclose(centres, torch.tensor([4 * 32.0, 3 * 32.0]).expand(9, 2), atol=0.5)


@settings(max_examples=40, deadline=None)
@given(H=st.integers(8, 300), W=st.integers(8, 300), fh=st.integers(1, 8), fw=st.integers(1, 8),
       sizes=st.lists(st.sampled_from([8, 16, 24, 32, 50, 64, 128]), min_size=1, max_size=3, unique=True),
       ratios=st.lists(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0]), min_size=1, max_size=3, unique=True))
def test_equals_anchor_generator(H, W, fh, fw, sizes, ratios):
    fh, fw = min(fh * 4, H), min(fw * 4, W)
    ours, tr = anchor_grid((H, W), (fh, fw), sizes, ratios)
    ref = torchvision_anchors((H, W), (fh, fw), sizes, ratios)
    assert torch.equal(ours, ref)
    assert tr.per_cell == len(sizes) * len(ratios)


def _random_boxes(n, g):
    # sizes within a factor 10 of each other, so no dw/dh reaches the clamp at log(1000/16)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 90 + 10
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("weights", [FASTER_RCNN_WEIGHTS, RPN_WEIGHTS, (2.0, 3.0, 4.0, 5.0)])
def test_box_coder_equals_torchvision(weights):
    g = torch.Generator().manual_seed(0)
    anchors, boxes = _random_boxes(300, g), _random_boxes(300, g)
    coder = BoxCoder(weights)
    codes = encode_boxes(boxes, anchors, weights)
    assert torch.equal(codes, coder.encode_single(boxes, anchors))
    deltas = torch.randn(300, 12, generator=g) * 2
    deltas[:5, 2] = 50.0  # exercises the clamp of dw
    assert torch.equal(decode_boxes(deltas, anchors, weights), coder.decode_single(deltas, anchors))
    # decode(encode(b)) == b
    torch.testing.assert_close(decode_boxes(codes, anchors, weights), boxes, atol=1e-3, rtol=1e-4)


def test_default_weights_are_faster_rcnn():
    assert FASTER_RCNN_WEIGHTS == (10.0, 10.0, 5.0, 5.0)
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[1.0, 1, 11, 11]])
    assert torch.equal(encode_boxes(b, a), BoxCoder(FASTER_RCNN_WEIGHTS).encode_single(b, a))


@pytest.mark.parametrize("call, msg", [
    (lambda: anchor_grid((10, 10), (20, 20), (8,), (1.0,)), "cannot be larger"),
    (lambda: anchor_grid((10, 10), (0, 2), (8,), (1.0,)), "at least 1"),
    (lambda: anchor_grid((10, 10), (2, 2), (), (1.0,)), "at least one"),
    (lambda: anchor_grid((10, 10), (2, 2), (8,), (-1.0,)), "positive"),
    (lambda: encode_boxes(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[5.0, 5, 4, 6]])), "x2 < x1"),
    (lambda: encode_boxes(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[5.0, 5, 5, 6]])), "positive width"),
    (lambda: decode_boxes(torch.zeros(2, 5), torch.tensor([[0.0, 0, 1, 1], [0, 0, 2, 2]])), r"\(N, 4\*C\)"),
])
def test_bad_arguments(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_empty():
    assert decode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


def test_clip_boxes_equals_torchvision():
    import torchvision

    from explainers.ops import clip_boxes

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 300 - 50
    wh = torch.rand(200, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + wh], 1)
    for size in ((128, 200), (480, 640), (1, 1)):
        assert torch.equal(clip_boxes(boxes, size), torchvision.ops.clip_boxes_to_image(boxes, size))
