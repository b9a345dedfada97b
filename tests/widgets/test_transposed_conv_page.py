"""The transposed-convolution page teaches the slides (lecture items 4 and 5), and every
'Things to try' line of notebooks/03_transposed_conv.ipynb does what it says."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from explainers import ops
from explainers.ops.conv_matrix import (conv_transpose_canvas, conv_transpose_output_shape, flip_kernel,
                                        strided_conv, zero_stuffed)
from explainers.ops.reference import reference_conv_transpose_explicit
from explainers.widgets.transposed_conv import TransposedConvExplainer
from tests.widgets.checks import marks

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "03_transposed_conv.ipynb"


def last(e):
    e.step.value = e.n_steps() - 1


# ----------------------------------------------------------------------------- ops vs torch
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2),
       st.integers(0, 2), st.integers(0, 10_000))
def test_canvas_and_zero_stuffing_equal_torch(h, w, k, s, p, op, seed):
    op = min(op, s - 1)
    g = torch.Generator().manual_seed(seed)
    y, kern = torch.randn(h, w, generator=g), torch.randn(k, k, generator=g)
    if any((n - 1) * s - 2 * p + k + op < 1 for n in (h, w)):
        with pytest.raises(ValueError, match="crops the whole output"):
            conv_transpose_canvas(y, kern, s, p, op)
        return
    out, tr = conv_transpose_canvas(y, kern, s, p, op)
    ref = F.conv_transpose2d(y[None, None], kern[None, None], stride=s, padding=p, output_padding=op)[0, 0]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reference_conv_transpose_explicit(y, kern, s, p, op), ref)
    torch.testing.assert_close((tr.matrix.T @ y.reshape(-1)).reshape(out.shape), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tr.partial_sums[-1], tr.canvas)
    assert tr.canvas.shape == tuple(n + 2 * p for n in ref.shape)
    # the other way: a stride-1 convolution of y with zeros inserted, kernel flipped
    stuffed = zero_stuffed(y, (k, k), s, p, op)
    torch.testing.assert_close(F.conv2d(stuffed[None, None], flip_kernel(kern)[None, None])[0, 0], ref,
                               rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 7), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.integers(0, 10_000))
def test_strided_conv_equals_conv2d_window_by_window(n, k, s, p, seed):
    g = torch.Generator().manual_seed(seed)
    x, kern = torch.randn(n, n, generator=g), torch.randn(k, k, generator=g)
    out, tr = strided_conv(x, kern, s, p)
    torch.testing.assert_close(out, F.conv2d(x[None, None], kern[None, None], stride=s, padding=p)[0, 0],
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tr.products.sum((1, 2)), out.reshape(-1), rtol=1e-5, atol=1e-5)
    assert torch.equal(tr.windows[1:2] - tr.windows[0:1], torch.tensor([[0, s]])) or out.shape[1] == 1


def test_output_padding_must_be_smaller_than_the_stride():
    with pytest.raises(ValueError, match="smaller than the stride"):
        conv_transpose_output_shape((3, 3), (2, 2), 2, 1, 2)
    with pytest.raises(RuntimeError):          # torch refuses it too
        F.conv_transpose2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3), stride=2, padding=1, output_padding=2)


# ----------------------------------------------------------------------------- the page
def test_1d_forward_product_is_drawn_as_a_matrix_vector_product():
    e = TransposedConvExplainer()
    e.view.value = "conv"
    assert e.size.value == 4 and e.error_text == "" and marks(e) == ["✔"] and "F.conv1d" in e.check_text
    assert [list(r) for r in e.fig.data[0].text] == [["x", "y", "z", "0", "0", "0"], ["0", "0", "x", "y", "z", "0"]]
    assert [t[0] for t in e.fig.data[1].text] == ["0", "a", "b", "c", "d", "0"]
    e.step.value = 0
    assert [t[0] for t in e.fig.data[2].text] == ["ay+bz", ""]
    last(e)
    assert [t[0] for t in e.fig.data[2].text] == ["ay+bz", "bx+cy+dz"]
    # the three x cells the row reads: b, c, d (padded rows 1..3), outlined
    ys = sorted({round(v) for v in e.fig.data[4].y if v is not None})
    assert ys == [1, 2, 3]


def test_1d_transposed_keeps_the_slides_transpose():
    e = TransposedConvExplainer()
    assert e.view.value == "transposed" and marks(e) == ["✔", "✔", "✔"]
    last(e)
    assert list(e.fig.data[2].text[1]) == ["ax", "ay", "az+bx", "by", "bz", "0"]
    assert "[ay, az+bx, by, bz]" in e.caption.value
    # the dashed frame is on the page from step 1: its first caption already says what it marks
    first = e.frame(0)["caption"]
    assert "dashed frame marks the 4 output cells kept: padding 1 crops the 1 cell(s) outside it" in first
    e.padding.value = 0
    assert "dashed frame marks the 6 output cells kept." in e.frame(0)["caption"]
    e.padding.value = 1


def test_2d_copies_move_two_cells_per_input_cell_and_add_up():
    e = TransposedConvExplainer()
    e.dims.value = 2
    assert e.n_steps() == 4 and e.state()["output"].shape == (4, 4)
    assert [list(r) for r in e.fig.data[1].text][0][0].startswith("w11")
    assert not any("1.1" in t for r in e.fig.data[1].text for t in r)
    corners = []
    for k in range(4):
        e.step.value = k
        xs = [v for v in e.fig.data[7].x if v is not None]
        ys = [v for v in e.fig.data[7].y if v is not None]
        corners.append((min(ys) + 0.5, min(xs) + 0.5))          # top-left cell of the copy's frame
        st_ = e.state()
        torch.testing.assert_close(st_["contribution"].abs().sum(), st_["input"].reshape(-1)[k].abs() * 45)
    assert corners == [(-1, -1), (-1, 1), (1, -1), (1, 1)]      # two cells per input cell
    st_ = e.state()
    torch.testing.assert_close(st_["canvas"][1:5, 1:5], st_["output"])
    # output (1, 1) is where all four copies meet: a w33 + b w31 + c w13 + d w11 = 9 + 14 + 9 + 4
    assert "aw33+bw31+cw13+dw11" in e.caption.value and float(st_["output"][1, 1]) == 36


def test_2d_downsampling_view_moves_the_filter_two_pixels_in_the_input():
    e = TransposedConvExplainer()
    e.dims.value = 2
    e.view.value = "conv"
    assert e.error_text == "" and "F.conv2d (stride 2, padding 1)" in e.check_text and marks(e) == ["✔"]
    assert e.state()["input"].shape == (4, 4) and e.state()["output"].shape == (2, 2)
    wins = []
    for k in range(e.n_steps()):
        e.step.value = k
        wins.append(e.state()["window"])
        xs = [v for v in e.fig.data[5].x if v is not None]
        assert max(xs) - min(xs) == 3                              # one 3x3 window
    assert wins == [(0, 0), (0, 2), (2, 0), (2, 2)]
    assert "fw11+gw12+hw13+jw21+kw22+lw23+nw31+ow32+pw33" in e.caption.value


def test_2d_conv_stride_1_padding_1_keeps_4x4_as_the_slide_says():
    """lecture.md: "3x3 conv stride 1 pad 1 on 4x4 -> 4x4" (then stride 2 gives 2x2), on the page."""
    e = TransposedConvExplainer()
    e.dims.value, e.view.value, e.stride.value = 2, "conv", 1
    assert e.error_text == "" and "F.conv2d (stride 1, padding 1)" in e.check_text and marks(e) == ["✔"]
    assert e.state()["input"].shape == (4, 4) and e.state()["output"].shape == (4, 4) and e.n_steps() == 16
    e.stride.value = 2
    assert e.state()["output"].shape == (2, 2) and e.n_steps() == 4


def test_steps_are_pure_and_all_views_have_integer_ticks_and_16px_text():
    e = TransposedConvExplainer()
    for d in (1, 2):
        for view in ("transposed", "conv"):
            e.dims.value, e.view.value = d, view
            assert e.error_text == "", (d, view, e.error_text)
            assert json.dumps(e.frame(0), default=str) == json.dumps(e.frame(0), default=str)
            for tr in e.fig.data:
                if tr.type == "heatmap":
                    assert tr.textfont.size >= 16
                    for letter in "xy":
                        ax = e.fig.layout[f"{letter}axis{(getattr(tr, letter + 'axis') or letter)[1:]}"]
                        assert ax.tickmode == "array" or float(ax.dtick).is_integer()


# ----------------------------------------------------------------------------- Things to try
def test_notebook_things_to_try_lines_are_the_tested_ones():
    nb = json.loads(NOTEBOOK.read_text())
    text = "".join(nb["cells"][-1]["source"])
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == 7
    for key in ("strided conv", "padding 0", "2D", "output_padding 0", "flip kernel", "downsampling", "live"):
        assert any(key in line for line in lines), key


def test_try_1d_strided_conv_shows_the_slides_forward_product():
    test_1d_forward_product_is_drawn_as_a_matrix_vector_product()


def test_try_padding_0_gives_the_slides_transpose():
    e = TransposedConvExplainer()
    e.padding.value = 0
    last(e)
    assert e.state()["output"].numel() == 6 and marks(e) == ["✔", "✔", "✔"]
    assert "[ax, ay, az+bx, by, bz, 0]" in e.caption.value


def test_try_2d_four_copies_on_the_4x4_output():
    test_2d_copies_move_two_cells_per_input_cell_and_add_up()


def test_try_output_padding_0_gives_3x3_and_the_same_conv_output_size():
    e = TransposedConvExplainer()
    e.dims.value = 2
    e.out_pad.value = 0
    assert e.state()["output"].shape == (3, 3) and marks(e) == ["✔", "✔", "✔"]
    assert "output_padding 0" in e.check_text
    # why torch needs to be told: a stride-2 convolution maps both 3x3 and 4x4 to 2x2
    assert ops.output_shape((3, 3), (3, 3), 2, 1) == ops.output_shape((3, 3), (4, 4), 2, 1) == (2, 2)


def test_try_flip_kernel():
    e = TransposedConvExplainer()
    e.dims.value = 2
    before = e.state()["output"].clone()
    e.flip.value = True
    assert e.fig.data[1].text[0][0].startswith("w33") and "(flipped)" in e.fig.layout.annotations[1].text
    # the notebook points at "the last check line"
    assert marks(e) == ["✔", "✔", "✔"] and "zero(s) inserted, kernel flipped" in e.check_text.rsplit("✔", 1)[1]
    assert not torch.equal(e.state()["output"], before)
    # the flipped kernel's copies are the unflipped kernel sliding over the zero-stuffed input
    st_ = e.state()
    stuffed = zero_stuffed(st_["input"], (3, 3), 2, 1, 1)
    torch.testing.assert_close(ops.reference_conv(stuffed, flip_kernel(st_["kernel"])), st_["output"])


def test_try_2d_downsampling():
    test_2d_downsampling_view_moves_the_filter_two_pixels_in_the_input()


def test_try_lines_in_order_on_one_page_give_what_each_says():
    """A student does the lines one after another on the same page, each from where the last left
    it: each line says what to set back, so each result is the one it promises."""
    e = TransposedConvExplainer()
    e.view.value = "conv"                                                 # line 1
    last(e)
    assert e.state()["output"].shape == (2,) and "bx+cy+dz" in e.caption.value
    e.view.value, e.padding.value = "transposed", 0                       # line 2
    last(e)
    assert "[ax, ay, az+bx, by, bz, 0]" in e.caption.value
    assert "cropped by the padding" not in e.caption.value               # padding 0 crops nothing
    e.padding.value, e.dims.value = 1, 2                                  # line 3
    last(e)
    assert e.state()["output"].shape == (4, 4) and "aw33+bw31+cw13+dw11" in e.caption.value
    assert "cropped by the padding" in e.caption.value
    e.out_pad.value = 0                                                   # line 4
    assert e.state()["output"].shape == (3, 3) and marks(e) == ["✔", "✔", "✔"]
    e.flip.value = True                                                   # line 5
    assert marks(e) == ["✔", "✔", "✔"] and "kernel flipped" in e.check_text
    e.flip.value, e.view.value = False, "conv"                            # line 6
    last(e)
    assert e.state()["input"].shape == (4, 4) and e.state()["output"].shape == (2, 2)
    assert "fw11+gw12+hw13+jw21+kw22+lw23+nw31+ow32+pw33" in e.caption.value and marks(e) == ["✔"]
    assert "the 3x3 window" in e.caption.value
    e.ksize.value = 5                                                     # the caption names the kernel's size
    assert e.error_text == "" and "the 5x5 window" in e.caption.value


def test_try_live_kernel_checked_against_the_decoder():
    e = TransposedConvExplainer(source="live")
    assert e.dims.value == 2 and marks(e) == ["✔", "✔", "✔"]
    assert "decoder's own output" in e.check_text.rsplit("✔", 1)[1]          # "the last check line"
    e.view.value = "conv"
    assert e.error_text == "" and marks(e) == ["✔"] and "used as an ordinary strided filter" in e.note.value
    e.view.value = "transposed"
    e.out_pad.value = 0
    assert "applies there only" in e.note.value and marks(e) == ["✔", "✔"]


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_a_view_switched_back_and_forth_draws_what_a_fresh_page_draws(source):
    """Each layout's figure is built once and swapped in again: nothing of an earlier drawing may
    stay in it (the figure equals a fresh explainer's with the same settings)."""
    from explainers.widgets import TransposedConvExplainer

    e = TransposedConvExplainer(source=source)
    for dims, view in ((2, "conv"), (1, "conv"), (1, "transposed"), (2, "transposed"), (2, "conv")):
        e.dims.value, e.view.value = dims, view
    e.ksize.value = 2
    e.view.value = "transposed"
    fresh = TransposedConvExplainer(source=source)
    fresh.dims.value, fresh.ksize.value = 2, 2
    for x in (e, fresh):
        x.step.value = 3
    assert e.fig.to_dict() == fresh.fig.to_dict()
    assert e.plot.fig is e.fig and e.plot.figure == fresh.plot.figure     # the view was sent the same figure


def test_a_matrix_too_big_to_draw_is_one_line_in_the_pages_own_terms():
    """2D, kernel 5, stride 4, input 8 said "the symbolic matrix for input_shape (34, 34) ... (MAX_LABELS in
    explainers/ops/_checks.py) ... or a larger stride" (the student's input is 8x8; the stride slider was
    at its maximum). The page says it in its own terms, and the input it suggests draws; no setting of
    the sliders reaches the operator's own limit message."""
    import re

    from explainers.widgets import TransposedConvExplainer

    e = TransposedConvExplainer()
    e.dims.value = 2
    e.ksize.value, e.stride.value, e.padding.value, e.size.value = 5, 4, 0, 8
    line = e.error_text
    assert line.startswith("⚠ input 8x8, kernel 5, stride 4: the output is") and "too many to draw" in line, line
    assert "_checks" not in line and "input_shape" not in line and "larger stride" not in line
    e.size.value = int(re.search(r"use input n ≤ (\d+)", line).group(1))
    assert e.error_text == ""
    for view in ("transposed", "conv"):
        e.view.value = view
        for k in (e.ksize.min, e.ksize.max):
            for s in range(e.stride.min, e.stride.max + 1):
                for p in (e.padding.min, e.padding.max):
                    for n in (e.size.max - 1, e.size.max):
                        e.ksize.value, e.stride.value, e.padding.value, e.size.value = k, s, p, n
                        assert "MAX_" not in e.error_text and "_checks.py" not in e.error_text, (view, k, s, p, n)
