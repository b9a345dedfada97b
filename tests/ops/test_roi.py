import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st

from explainers.ops import bilinear_weight, reference_roi_pool_argmax, roi_align_trace, roi_pool_trace

# the lecture's picture: a feature map and a region whose corners fall between cells
LECTURE_FEATURES = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8).sin()
LECTURE_BOX = torch.tensor([1.3, 0.6, 6.2, 5.4])


def tv_pool(f, box, out, scale):
    return torchvision.ops.roi_pool(f[None], [box[None]], out, scale)[0]


def tv_align(f, box, out, scale, sr, aligned):
    return torchvision.ops.roi_align(f[None], [box[None]], out, scale, sr, aligned)[0]


def test_lecture_roi_pool_snaps():
    out, tr = roi_pool_trace(LECTURE_FEATURES, LECTURE_BOX, (2, 2), 1.0)
    assert tr.snapped_box == (1, 1, 6, 5)
    assert torch.equal(out, tv_pool(LECTURE_FEATURES, LECTURE_BOX, (2, 2), 1.0))
    # bins cover the snapped region without gaps: x 1..6 -> [1,4) [4,7); y 1..5 -> [1,4) [3,6)
    assert tr.bins[0, 0].tolist() == [1, 1, 4, 4]
    assert tr.bins[1, 1].tolist() == [4, 3, 7, 6]
    # each output is the feature value at its arg-max cell
    cells = tr.argmax_cells(0)
    for i in range(2):
        for j in range(2):
            x, y = cells[i, j].tolist()
            assert out[0, i, j] == LECTURE_FEATURES[0, y, x]
            x0, y0, x1, y1 = tr.bins[i, j].tolist()
            assert x0 <= x < x1 and y0 <= y < y1


def test_lecture_roi_align_bilinear():
    out, tr = roi_align_trace(LECTURE_FEATURES, LECTURE_BOX, (2, 2), 1.0, sampling_ratio=2)
    torch.testing.assert_close(out, tv_align(LECTURE_FEATURES, LECTURE_BOX, (2, 2), 1.0, 2, False))
    assert tr.points.shape == (2, 2, 2, 2, 2)
    # every sample equals the lecture's formula over its four neighbours
    f = LECTURE_FEATURES[0]
    for idx in [(0, 0, 0, 0), (1, 1, 1, 0), (0, 1, 1, 1)]:
        x, y = tr.points[idx].tolist()
        value = sum(f[cy, cx].item() * bilinear_weight(x, y, cx, cy)
                    for cx, cy in {tuple(c) for c in tr.neighbours[idx].tolist()})
        assert abs(value - tr.samples[(0,) + idx].item()) < 1e-5
        assert abs(tr.weights[idx].sum().item() - 1) < 1e-6
    # no snapping: the bins are exact fractions of the box
    assert tr.bins[0, 0].tolist() == pytest.approx([1.3, 0.6, 3.75, 3.0], abs=1e-5)


def test_roi_pool_half_cells_round_away_from_zero():
    f = torch.randn(2, 10, 10)
    for box in ([0.5, 0.5, 4.5, 6.5], [1.5, 2.5, 3.5, 8.5], [2.5, 2.5, 2.5, 2.5]):
        b = torch.tensor(box)
        out, tr = roi_pool_trace(f, b, (3, 2), 1.0)
        assert torch.equal(out, tv_pool(f, b, (3, 2), 1.0))


@st.composite
def roi_case(draw):
    C, H, W = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 1 / 16]))
    x1 = draw(st.floats(-0.2 * W / scale, 1.1 * W / scale))
    y1 = draw(st.floats(-0.2 * H / scale, 1.1 * H / scale))
    w = draw(st.floats(0, 1.2 * W / scale))
    h = draw(st.floats(0, 1.2 * H / scale))
    out = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    seed = draw(st.integers(0, 2**16))
    f = torch.randn(C, H, W, generator=torch.Generator().manual_seed(seed))
    if draw(st.booleans()):      # ties, as ReLU features have (many zeros): which equal cell a bin takes
        f = f.clamp(min=0).round()
    return f, torch.tensor([x1, y1, x1 + w, y1 + h], dtype=torch.float32), out, scale


@settings(max_examples=150, deadline=None)
@given(case=roi_case())
def test_roi_pool_equals_torchvision(case):
    f, box, out_size, scale = case
    out, tr = roi_pool_trace(f, box, out_size, scale)
    assert torch.equal(out, tv_pool(f, box, out_size, scale))
    # the cell each bin took (drawn as "the maximum"), ties included: torchvision's own, -1 for an empty bin
    assert torch.equal(tr.argmax, reference_roi_pool_argmax(f, box, out_size, scale))


@settings(max_examples=150, deadline=None)
@given(case=roi_case(), sr=st.sampled_from([-1, 0, -3, 1, 2, 4]), aligned=st.booleans())
def test_roi_align_equals_torchvision(case, sr, aligned):
    f, box, out_size, scale = case
    out, tr = roi_align_trace(f, box, out_size, scale, sr, aligned)
    torch.testing.assert_close(out, tv_align(f, box, out_size, scale, sr, aligned), atol=1e-5, rtol=1e-5)
    # the output is the mean of the recorded samples
    if tr.grid[0] * tr.grid[1]:
        torch.testing.assert_close(tr.samples.mean((-1, -2)), out, atol=1e-5, rtol=1e-5)
    # the bins drawn hold their own samples, at the centres of a gh x gw split of the bin, and tile the
    # (shifted, with aligned) box: a bin drawn half a cell off would leave its points outside it
    gh, gw = tr.grid
    x1, y1, x2, y2 = tr.bins.unbind(-1)                                   # (ph, pw) each
    px, py = tr.points[..., 0], tr.points[..., 1]                         # (ph, pw, gh, gw)
    ix = (torch.arange(gw) + 0.5) / max(gw, 1)
    iy = (torch.arange(gh) + 0.5) / max(gh, 1)
    torch.testing.assert_close(px, (x1[..., None, None] + ix * (x2 - x1)[..., None, None]).expand_as(px),
                               atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(py, (y1[..., None, None] + iy[:, None] * (y2 - y1)[..., None, None]).expand_as(py),
                               atol=1e-4, rtol=1e-5)
    # the bins start at the (shifted) box's corner and follow each other, each bin_size wide and high
    # (without aligned, torchvision makes a box at least one cell wide and high, so they may reach past it)
    torch.testing.assert_close(tr.bins[0, 0, :2], tr.scaled_box[:2], atol=1e-5, rtol=0)
    bin_h, bin_w = tr.bin_size
    torch.testing.assert_close(x2 - x1, torch.full_like(x1, bin_w), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(y2 - y1, torch.full_like(y1, bin_h), atol=1e-4, rtol=1e-5)
    assert torch.equal(x1[:, 1:], x2[:, :-1]) and torch.equal(y1[1:], y2[:-1])


def test_real_sized_map_all_settings():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(256, 50, 50, generator=g)
    for box in ([13.2, 40.7, 301.5, 250.1], [0.0, 0.0, 799.0, 799.0], [700.3, 650.0, 810.0, 900.0]):
        b = torch.tensor(box)
        for sr in (-1, 1, 2, 4):
            for aligned in (False, True):
                out, _ = roi_align_trace(f, b, 7, 1 / 16, sr, aligned)
                torch.testing.assert_close(out, tv_align(f, b, (7, 7), 1 / 16, sr, aligned), atol=1e-5, rtol=1e-5)
        out, _ = roi_pool_trace(f, b, 7, 1 / 16)
        assert torch.equal(out, tv_pool(f, b, (7, 7), 1 / 16))


@pytest.mark.parametrize("fn", [roi_pool_trace, roi_align_trace])
@pytest.mark.parametrize("kwargs, msg", [
    ({"box": torch.tensor([5.0, 1, 2, 4])}, "x2 < x1"),
    ({"box": torch.tensor([1.0, 1, float("nan"), 4])}, "NaN"),
    ({"output_size": 0}, "at least 1"),
    ({"spatial_scale": 0.0}, "positive"),
    ({"features": torch.zeros(2, 3, 4, 4)}, "one image"),
    ({"box": torch.zeros(2, 4)}, "one box"),
])
def test_bad_arguments(fn, kwargs, msg):
    args = {"features": torch.zeros(3, 4, 4), "box": torch.tensor([0.0, 0, 2, 2]), "output_size": 2,
            "spatial_scale": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        fn(**args)


def test_zero_and_negative_sampling_ratios_are_adaptive_as_in_torchvision():
    f = torch.randn(3, 9, 11, generator=torch.Generator().manual_seed(5))
    box = torch.tensor([1.3, 0.6, 9.2, 7.9])
    adaptive, tr = roi_align_trace(f, box, 2, 1.0, sampling_ratio=-1)
    assert tr.grid == (4, 4)                    # ceil(7.3 / 2) x ceil(7.9 / 2)
    for sr in (0, -1, -7):
        out, tr = roi_align_trace(f, box, 2, 1.0, sampling_ratio=sr)
        assert tr.grid == (4, 4) and tr.sampling_ratio == sr
        assert torch.equal(out, adaptive)
        torch.testing.assert_close(out, tv_align(f, box, (2, 2), 1.0, sr, False), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sr", [1.5, float("nan"), float("inf"), "two", True])
def test_align_bad_sampling_ratio(sr):
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align_trace(torch.zeros(1, 4, 4), torch.tensor([0.0, 0, 2, 2]), 2, 1.0, sampling_ratio=sr)
