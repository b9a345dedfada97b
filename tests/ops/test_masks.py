"""Mask pasting (explainers.ops.masks) against torchvision's paste_masks_in_image."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image

from explainers.ops.masks import mask_probability, paste_mask_trace, paste_masks, resize_bilinear
from explainers.ops.masks_reference import reference_mask_probability, reference_paste_mask


def torchvision_paste(mask, box, size, padding=1):
    return paste_masks_in_image(mask[None, None].float(), torch.as_tensor(box, dtype=torch.float32)[None], size,
                                padding=padding)[0, 0]


def test_worked_example_every_intermediate():
    m = torch.zeros(28, 28)
    m[7:21, 7:21] = 1.0                      # a square in the middle of the box
    tr = paste_mask_trace(m, [10.0, 20.0, 38.0, 48.0], (64, 80))
    assert tr.padded.shape == (30, 30) and tr.padded[0].abs().sum() == 0 and torch.equal(tr.padded[1:29, 1:29], m)
    assert tr.scale == 30 / 28
    assert tr.expanded_box.tolist() == [9, 19, 39, 49]          # 28 * 30/28 = 30 pixels wide, centred at 24, 34
    assert tr.size == (31, 31) and tr.resized.shape == (31, 31)  # x2 - x1 + 1 pixels, both ends included
    assert tr.window == (19, 50, 9, 40)
    assert tr.pasted[:19].abs().sum() == 0 and tr.pasted[:, :9].abs().sum() == 0
    assert torch.equal(tr.pasted, torchvision_paste(m, [10.0, 20.0, 38.0, 48.0], (64, 80)))
    assert torch.equal(tr.binary, tr.pasted > 0.5) and tr.binary[34, 24] and not tr.binary[21, 11]


def test_box_touching_or_crossing_the_border_is_cut_to_the_image():
    m = torch.rand(28, 28, generator=torch.Generator().manual_seed(0))
    for box in ([0.0, 0.0, 20.0, 15.0], [50.0, 30.0, 64.0, 40.0], [-6.0, -3.0, 10.0, 41.0], [0.0, 0.0, 64.0, 40.0]):
        tr = paste_mask_trace(m, box, (40, 64))
        assert torch.equal(tr.pasted, torchvision_paste(m, box, (40, 64))), box
        ya, yb, xa, xb = tr.window
        assert 0 <= ya <= yb <= 40 and 0 <= xa <= xb <= 64


def test_tiny_and_empty_boxes_paste_at_least_one_pixel():
    m = torch.full((28, 28), 0.9)
    tr = paste_mask_trace(m, [5.0, 5.0, 5.0, 5.0], (10, 10))
    assert tr.size == (1, 1)
    assert torch.equal(tr.pasted, torchvision_paste(m, [5.0, 5.0, 5.0, 5.0], (10, 10)))


def test_a_box_outside_the_image_pastes_nothing():
    tr = paste_mask_trace(torch.ones(28, 28), [120.0, 5.0, 140.0, 9.0], (40, 64))
    assert tr.pasted.abs().sum() == 0 and not tr.binary.any()


def test_threshold_makes_the_binary_mask():
    m = torch.linspace(0, 1, 28 * 28).reshape(28, 28)
    lo = paste_mask_trace(m, [2.0, 2.0, 30.0, 30.0], (32, 32), threshold=0.2).binary
    hi = paste_mask_trace(m, [2.0, 2.0, 30.0, 30.0], (32, 32), threshold=0.8).binary
    assert hi.sum() < lo.sum() and not (hi & ~lo).any()


@settings(max_examples=300, deadline=None)
@given(M=st.integers(1, 32), H=st.integers(1, 120), W=st.integers(1, 120), padding=st.integers(0, 3),
       seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["inside", "border", "tiny", "any"]),
       frac=st.tuples(*[st.floats(0, 1)] * 4))
def test_equals_torchvision_on_random_masks_and_boxes(M, H, W, padding, seed, kind, frac):
    m = torch.rand(M, M, generator=torch.Generator().manual_seed(seed))
    a, b, c, d = frac
    if kind == "inside":                # a detector's boxes: clipped to the image
        x1, x2 = sorted((a * W, b * W))
        y1, y2 = sorted((c * H, d * H))
    elif kind == "border":              # touching the image's edges
        x1, y1, x2, y2 = 0.0, c * H, W * (0.5 + a / 2), float(H)
    elif kind == "tiny":                # under two pixels
        x1, y1 = a * W, c * H
        x2, y2 = x1 + 2 * b, y1 + 2 * d
    else:                               # partly outside, but overlapping the image
        x1, y1 = a * W - W / 4, c * H - H / 4
        x2, y2 = max(x1 + b * W + 1, 1.0), max(y1 + d * H + 1, 1.0)
    box = [x1, y1, x2, y2]
    tr = paste_mask_trace(m, box, (H, W), padding=padding)
    ref = torchvision_paste(m, box, (H, W), padding)
    assert tr.pasted.shape == ref.shape == (H, W)
    assert float((tr.pasted - ref).abs().max()) <= 1e-6
    away = (ref - 0.5).abs() > 1e-6
    assert torch.equal(tr.binary[away], (ref > 0.5)[away])


@settings(max_examples=60, deadline=None)
@given(n_in=st.integers(1, 40), h=st.integers(1, 150), w=st.integers(1, 150), seed=st.integers(0, 10**6))
def test_bilinear_resize_equals_interpolate(n_in, h, w, seed):
    x = torch.rand(n_in, n_in, generator=torch.Generator().manual_seed(seed))
    ref = torch.nn.functional.interpolate(x[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    assert float((resize_bilinear(x, (h, w)) - ref).abs().max()) <= 1e-6


def test_many_masks_and_the_reference_wrappers():
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(5, 28, 28, generator=g)
    xy = torch.rand(5, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(5, 2, generator=g) * 40], 1)
    ref = paste_masks_in_image(masks[:, None], boxes, (90, 100))[:, 0]
    assert float((paste_masks(masks, boxes, (90, 100)) - ref).abs().max()) <= 1e-6
    assert torch.equal(reference_paste_mask(masks[1], boxes[1], (90, 100)), ref[1])


def test_sigmoid_of_the_predicted_class_equals_maskrcnn_inference():
    logits = torch.randn(3, 4, 28, 28, generator=torch.Generator().manual_seed(1)) * 4
    labels = torch.tensor([2, 0, 3])
    ref = maskrcnn_inference(logits, [labels])[0][:, 0]
    assert torch.equal(reference_mask_probability(logits, labels), ref)
    for i in range(3):
        assert float((mask_probability(logits[i], int(labels[i])) - ref[i]).abs().max()) <= 1e-6
    with pytest.raises(ValueError, match="not a class"):
        mask_probability(logits[0], 4)


def test_bad_arguments_and_size_limits_say_what_is_wrong():
    m = torch.rand(28, 28)
    with pytest.raises(ValueError, match="square"):
        paste_mask_trace(torch.rand(28, 14), [0, 0, 5, 5], (10, 10))
    with pytest.raises(ValueError, match="one square map"):
        paste_mask_trace(torch.rand(2, 28, 28), [0, 0, 5, 5], (10, 10))
    with pytest.raises(ValueError, match="x2 < x1"):
        paste_mask_trace(m, [5, 0, 1, 5], (10, 10))
    with pytest.raises(ValueError, match="padding"):
        paste_mask_trace(m, [0, 0, 5, 5], (10, 10), padding=-1)
    with pytest.raises(ValueError, match="MAX_ELEMENTS"):
        paste_mask_trace(m, [0, 0, 5, 5], (100_000, 100_000))
    with pytest.raises(ValueError, match="resized to the box.*MAX_ELEMENTS"):
        paste_mask_trace(m, [0, 0, 50_000, 50_000], (10, 10))
    with pytest.raises(ValueError, match="image_size"):
        paste_mask_trace(m, [0, 0, 5, 5], (0, 10))
    with pytest.raises(ValueError, match="mask per box"):
        paste_masks(torch.rand(2, 28, 28), torch.zeros(3, 4), (10, 10))
