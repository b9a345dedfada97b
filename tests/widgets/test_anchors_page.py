"""The anchors page teaches slide 8: a 640 x 480 photo with its 20 x 15 grid, the K anchors of a cell
with their objectness and corrections, and the RPN's counts from K x H x W anchors to the proposals.

Independent references: torchvision's AnchorGenerator, BoxCoder, clip/remove_small_boxes, nms and box_iou."""
import json

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import boxes as box_ops

from explainers.widgets.anchors import LECTURE_OBJECTS, AnchorsExplainer
from tests.widgets.checks import marks

_PAGES: dict = {}


def page(source):
    """One page per source, fresh controls each time (live pages run the model: build once)."""
    if source not in _PAGES:
        _PAGES[source] = AnchorsExplainer(source=source)
    e = _PAGES[source]
    e.view.value = "cell"
    e.top_k.value = e.top_k.max
    e.step.value = 0
    assert e.error_text == "", e.error_text
    return e


def boxes_of(trace) -> list[list[float]]:
    """The closed outlines of a rect_path scatter back as (x1, y1, x2, y2)."""
    xs, ys = list(trace.x), list(trace.y)
    out = []
    for i in range(0, len(xs), 6):
        out.append([xs[i], ys[i], xs[i + 2], ys[i + 2]])
    return out


def drawn_boxes(e) -> list[list[float]]:
    return [b for i in range(5, 10) for b in boxes_of(e.fig.data[i])]


def figure_data(e) -> str:
    return json.dumps(e.fig.to_dict()["data"], default=str)


# ----------------------------------------------------------------------------- the slide's picture
def test_lecture_is_a_640x480_photo_with_a_20x15_grid_of_stride_32():
    e = page("lecture")
    st = e.state()
    assert st["image_size"] == st["padded"] == (480, 640) and st["feature_size"] == (15, 20)
    assert st["stride"] == (32, 32) and len(st["anchors"]) == 9 * 20 * 15
    assert e._img.shape == (480, 640, 3) and e._img.std() > 30          # a real photo, not a blank
    img = e.fig.data[0]
    assert (img.x0, img.y0) == (0.5, 0.5)                               # pixel i covers [i, i + 1]
    xs, ys = list(e.fig.data[2].x), list(e.fig.data[2].y)
    verticals = sorted({xs[i] for i in range(0, len(xs), 3) if xs[i] == xs[i + 1]})
    horizontals = sorted({ys[i] for i in range(0, len(ys), 3) if ys[i] == ys[i + 1]})
    assert verticals == [32 * c for c in range(21)] and horizontals == [32 * r for r in range(16)]
    # anchors sit on the grid points, where torchvision puts them
    ref = torchvision.models.detection.anchor_utils.AnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),))
    from torchvision.models.detection.image_list import ImageList

    mine = ref(ImageList(torch.zeros(1, 3, 480, 640), [(480, 640)]), [torch.zeros(1, 512, 15, 20)])[0]
    assert torch.equal(st["anchors"], mine)
    assert "640x480: 20x15 cells of 32 px" in e.fig.layout.annotations[0].text
    assert "scikit-image" in e.note.value and "no network" in e.note.value.lower()
    assert marks(e) == ["✔", "✔", "✔"]


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_equal_axes_and_the_objectness_map_keeps_its_hxw_shape(source):
    e = page(source)
    lay = e.fig.layout
    assert lay.yaxis.scaleanchor == "x" and lay.yaxis2.scaleanchor == "x2"
    Hf, Wf = e.state()["feature_size"]
    z = e.fig.data[14].z
    assert len(z) == Hf and len(z[0]) == Wf and Hf != Wf
    assert list(lay.xaxis2.range) == [-0.5, Wf - 0.5] and list(lay.yaxis2.range) == [Hf - 0.5, -0.5]
    assert f"{Hf} rows x {Wf} cols" in lay.annotations[1].text


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_the_first_cell_is_the_best_one_not_the_corner(source):
    e = page(source)
    r, c = e.state()["cell"]
    scores = e.state()["objectness"].reshape(*e.state()["feature_size"], 9)
    assert (r, c) != (0, 0) and float(scores[r, c].max()) == float(scores.max())
    assert float(scores[r, c].max()) > 0.5
    # the K anchors of that cell are drawn, and their objectness numbers are written
    assert len(drawn_boxes(e)) == 9
    bars = e.fig.data[16]
    assert [round(v, 6) for v in bars.x] == [round(v, 6) for v in scores[r, c].tolist()]
    assert all(t.startswith(f"{v:.2f}") for t, v in zip(bars.text, bars.x))
    assert list(e.fig.data[15].x) == [c] and list(e.fig.data[15].y) == [r]


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_each_step_draws_the_correction_decoded_by_torchvision(source):
    e = page(source)
    r, c = e.state()["cell"]
    K = 9
    start = (r * e.state()["feature_size"][1] + c) * K
    anchors = e.state()["anchors"][start:start + K]
    deltas = e._rpn["deltas"][start:start + K]
    weights = (1.0, 1.0, 1.0, 1.0)
    theirs = BoxCoder(weights).decode_single(deltas, anchors)
    order = torch.argsort(e.state()["objectness"][start:start + K], descending=True).tolist()
    seen = {figure_data(e)}
    for k in range(1, K + 1):
        e.step.value = k
        moved = torch.tensor(boxes_of(e.fig.data[11]))
        assert moved.shape == (k, 4)
        assert torch.allclose(moved, theirs[order[:k]], atol=1e-3)
        line = list(e.fig.data[10].x)[3 * (k - 1):3 * (k - 1) + 2]
        j = order[k - 1]
        assert line[0] == pytest.approx(float(anchors[j, 0] + anchors[j, 2]) / 2)
        assert line[1] == pytest.approx(float(theirs[j, 0] + theirs[j, 2]) / 2, abs=1e-3)
        assert f"anchor {k} of {K}" in e.caption.value
        seen.add(figure_data(e))
    assert len(seen) == K + 1                        # every step changes the picture


def test_choosing_a_cell_moves_the_anchors_and_restarts_the_steps():
    e = page("lecture")
    e.step.value = 3
    e.row.value, e.col.value = 2, 5
    assert e.step.value == 0 and e.state()["cell"] == (2, 5)
    centres = {((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in drawn_boxes(e)}
    assert centres == {(5 * 32, 2 * 32)}
    assert "Cell (2, 5)" in e.caption.value


# ----------------------------------------------------------------------------- the RPN's stages
def independent_pipeline(anchors, scores, deltas, image_size, k, nms, post, min_size=1e-3):
    top = torch.topk(scores, k).indices
    boxes = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas[top], anchors[top])
    boxes = box_ops.clip_boxes_to_image(boxes, image_size)
    s = scores[top]
    ok = box_ops.remove_small_boxes(boxes, min_size)
    keep = torchvision.ops.nms(boxes[ok], s[ok], nms)
    return [len(scores), k, len(ok), len(keep), min(post, len(keep))], boxes[ok][keep][:post]


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_the_proposals_view_counts_each_stage_and_every_step_moves(source):
    e = page(source)
    e.view.value = "proposals"
    assert e.n_steps() == 4 and e.anim.layout.display != "none"
    st = e.state()
    s = e._settings
    counts, props = independent_pipeline(st["anchors"], st["objectness"], e._rpn["deltas"], st["image_size"],
                                         e.top_k.value, s["nms"], s["post"])
    assert [n for _, n in st["counts"]] == counts
    Hf, Wf = st["feature_size"]
    assert f"K x H x W = 9 x {Hf} x {Wf} = {9 * Hf * Wf} anchors" in e.caption.value
    assert list(e.fig.data[17].x) == counts
    seen = set()
    for k in range(4):
        e.step.value = k
        assert len(e.state()["boxes"]) == len(drawn_boxes(e))
        seen.add(figure_data(e))
    assert len(seen) == 4
    assert torch.allclose(e.state()["boxes"], props, atol=1e-3)
    e.step.value = 0                                 # the colour is named as the cell view names it
    word = "objectness" if source == "live" else "IoU target"
    assert f"sorted by {word}" in e.caption.value and f"colour = {word}" in e.caption.value


def test_top_k_goes_up_to_300():
    e = page("lecture")
    assert e.top_k.max == 300 and e.top_k.value == 300


# ----------------------------------------------------------------------------- live: padding and checks
def test_live_grid_covers_the_padding_to_a_multiple_of_32():
    e = page("live")
    st = e.state()
    (H, W), (Hp, Wp) = st["image_size"], st["padded"]
    assert Hp % 32 == 0 and Wp % 32 == 0 and (Hp, Wp) != (H, W)
    assert st["feature_size"] == (Hp // st["stride"][0], Wp // st["stride"][1])
    pad = e.fig.data[1]
    assert min(v for v in pad.y if v is not None) == 0 and max(v for v in pad.y if v is not None) == Hp
    assert f"padded to {Wp}x{Hp}" in e.fig.layout.annotations[0].text
    assert f"padding {H}-{Hp}" in list(e.fig.data[12].text)
    ys = [v for v in e.fig.data[2].y if v is not None]
    assert max(ys) == Hp and min(ys) == 0


def test_live_checks_the_models_proposals_and_a_tampered_tensor_fails():
    e = page("live")
    assert marks(e) == ["✔"] * 5 and "the model's own 100 proposals" in e.check_text
    saved = e._rpn["proposals"]
    try:
        e._rpn["proposals"] = saved + 1.0
        e.refresh()
        assert marks(e) == ["✔", "✔", "✔", "✔", "✘"]
    finally:
        e._rpn["proposals"] = saved
        e.refresh()
    assert marks(e) == ["✔"] * 5


def test_live_recall_note_agrees_with_an_independent_count():
    from explainers.models import make_scene

    e = page("live")
    tr = e._trace
    sy, sx = tr.scale
    gt = torch.from_numpy(make_scene(10_000_005).boxes) * torch.tensor([sx, sy, sx, sy])
    covered = int((torchvision.ops.box_iou(gt, tr.proposals).max(1).values >= 0.5).sum())
    rec = e.state()["recall"]
    assert rec["after the RPN's NMS"] == (covered, len(gt))
    assert f"after the RPN's NMS {covered}/{len(gt)}" in e.note.value.replace("&#x27;", "'")
    # one stage per "; "-separated item, each "name covered/total" (no stage name reads as two)
    items = e.note.value.replace("&#x27;", "'").split(": ", 1)[1].rstrip(".</span>").split("; ")
    assert [i.rsplit(" ", 1)[0] for i in items] == list(rec) and "top 300 corrected" in rec


# ----------------------------------------------------------------------------- Things to try
def test_try_stepping_the_cell_lands_each_anchor_on_an_object_in_lecture():
    """'Step through the chosen cell: each anchor's dashed box is where its corrections move it; in
    lecture mode the corrections are the training targets, so every dashed box is exactly the cup,
    the spoon or the saucer.'"""
    e = page("lecture")
    objects = torch.tensor([o[1:] for o in LECTURE_OBJECTS], dtype=torch.float32)
    e.step.value = e.n_steps() - 1
    moved = torch.tensor(boxes_of(e.fig.data[11]))
    assert len(moved) == 9
    assert (torchvision.ops.box_iou(moved, objects).max(1).values > 0.999).all()


def test_try_the_corner_cell_has_low_objectness_and_anchors_outside_the_image():
    """'Set row and col to 0: the corner's anchors stick out of the image and their objectness is low.'"""
    e = page("lecture")
    e.row.value, e.col.value = 0, 0
    st = e.state()
    assert float(st["objectness"][:9].max()) < 0.3
    assert (st["boxes"][:, :2] < 0).any()
    lay = e.fig.layout
    assert lay.xaxis.range[0] < 0 and lay.yaxis.range[1] < 0       # the margin shows them sticking out
    # and the caption says how many are cut: every anchor of the corner cell reaches past the 32 px margin
    x1, y1, x2, y2 = e._extent()
    anchors = st["boxes"][:9]
    cut = int(((anchors[:, 0] < x1) | (anchors[:, 1] < y1) | (anchors[:, 2] > x2) | (anchors[:, 3] > y2)).sum())
    assert cut == 9 and "(all of them run past the panel's edge)" in e.frame(0)["caption"]
    e.row.value, e.col.value = 2, 10                  # two rows down: only the tall and large ones
    caption = e.frame(0)["caption"]
    n = int(caption.split(" of them run past")[0].rsplit("(", 1)[1])
    assert 0 < n < 9
    e.row.value, e.col.value = 7, 9


def test_try_the_rpn_view_keeps_300_then_one_box_per_object_in_lecture():
    """'Choose the RPN view and step: 2700 anchors -> the best 300 -> corrected -> NMS leaves 3
    proposals, one per object.'"""
    e = page("lecture")
    e.view.value = "proposals"
    counts = dict(e.state()["counts"])
    assert counts["anchors"] == 2700 and counts["top-k"] == 300 and counts["proposals"] == 3
    e.step.value = 3
    objects = torch.tensor([o[1:] for o in LECTURE_OBJECTS], dtype=torch.float32)
    iou = torchvision.ops.box_iou(e.state()["boxes"], objects)
    assert (iou.max(0).values > 0.999).all() and len(e.state()["boxes"]) == 3


def test_try_live_boxes_are_clipped_before_the_padding():
    """'Live: the grey band is padding (the model pads to a multiple of 32); step 2 of the RPN view
    clips every corrected box to the image above it, and some vanish (step 3 counts them).'"""
    e = page("live")
    e.view.value = "proposals"
    H = e.state()["image_size"][0]
    e.step.value = 1
    assert float(e.state()["boxes"][:, 3].max()) <= H
    counts = dict(e.state()["counts"])
    assert counts["inside the image"] < counts["top-k"]
    e.step.value = 2
    gone = counts['top-k'] - counts['inside the image']
    assert gone > 1 and f"{gone} boxes clipped to nothing are dropped" in e.caption.value


def test_try_lowering_top_k_in_live_mode_drops_the_model_check():
    """'Live: lower top k to 50: fewer proposals, and the page says why it no longer compares them with
    the model's own (the model keeps 300 before its NMS).'"""
    e = page("live")
    e.view.value = "proposals"
    full = dict(e.state()["counts"])["proposals"]
    e.top_k.value = 50
    assert dict(e.state()["counts"])["proposals"] < full
    assert "top 300 before its NMS" in e.note.value and len(marks(e)) == 4 and "✘" not in marks(e)
    e.top_k.value = 300
    assert len(marks(e)) == 5


def test_lecture_photo_fills_its_panel_and_the_grid_is_solid_on_a_dark_casing():
    """Issue #12: on a projector the photo uses the panel's space and the grid reads as lines on both
    the white cup and the dark table: a solid white line over a dark, wider casing."""
    from explainers.widgets.anchors import GRID_CASING

    e = page("lecture")
    e.view.value = "cell"
    lay = e.fig.layout
    # at most one cell (32 px) of margin around the 640 x 480 photo, whatever the cell's anchors
    for r, c in ((7, 9), (0, 0), (14, 19)):
        e.row.value, e.col.value = r, c
        x1, x2 = sorted(lay.xaxis.range)
        y1, y2 = sorted(lay.yaxis.range)
        assert -34 <= x1 <= 0 and 640 <= x2 <= 674 and -34 <= y1 <= 0 and 480 <= y2 <= 514
    e.row.value, e.col.value = 7, 9
    # the photo's size on a 1280 px page: the panel is height-limited (equal axes)
    plot_h = lay.height - lay.margin.t - lay.margin.b
    plot_w = (1280 - lay.margin.l - lay.margin.r) * (lay.xaxis.domain[1] - lay.xaxis.domain[0])
    scale = min(plot_h / (max(lay.yaxis.range) - min(lay.yaxis.range)),
                plot_w / (max(lay.xaxis.range) - min(lay.xaxis.range)))
    assert 640 * scale >= 470                      # was about 335 px wide
    grid, casing = e.fig.data[2], e.fig.data[1]
    assert grid.line.color == "white" and grid.line.dash in (None, "solid") and grid.line.width <= 1.5
    assert casing.line.color == GRID_CASING and casing.line.width > grid.line.width
    # the casing runs under every grid line (the lecture photo has no padding)
    segs = lambda tr: {tuple(tr.x[i:i + 2]) + tuple(tr.y[i:i + 2]) for i in range(0, len(tr.x), 3)}  # noqa: E731
    assert segs(grid) <= segs(casing) and len(segs(grid)) == 21 + 16
    assert e.fig.data.index(casing) < e.fig.data.index(grid)         # drawn under it


def test_lecture_says_which_anchors_get_no_box_target_in_training():
    """Lecture mode decodes every anchor's correction onto its object; the caption says when training
    would not (IoU < 0.3: negative; 0.3-0.7: ignored unless an object's best anchor)."""
    e = page("lecture")
    r, c = e.state()["cell"]
    start = (r * e.state()["feature_size"][1] + c) * 9
    ious = e.state()["objectness"][start:start + 9]
    order = torch.argsort(ious, descending=True).tolist()
    said = set()
    for k in range(1, 10):
        cap = e.frame(k)["caption"]
        iou = float(ious[order[k - 1]])
        assert ("gets no box target" in cap) == (iou < 0.3) and ("is ignored" in cap) == (0.3 <= iou < 0.7)
        said |= {("no box target" in cap), ("ignored" in cap)}
    assert said == {True, False}


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_each_view_shows_only_the_controls_it_uses(source):
    """row and col pick the cell of the one-cell view; top k acts on the RPN view only: each is
    hidden where moving it would change nothing."""
    from explainers.widgets import AnchorsExplainer

    e = AnchorsExplainer(source=source)
    shown = lambda w: w.layout.display != "none"   # noqa: E731
    assert e.view.value == "cell" and shown(e.row) and shown(e.col) and not shown(e.top_k)
    if len(e.view.options) > 1:
        e.view.value = "proposals"
        assert not shown(e.row) and not shown(e.col) and shown(e.top_k)
        e.view.value = "cell"
        assert shown(e.row) and not shown(e.top_k)


def test_the_cell_views_anchors_have_a_light_casing_on_a_dark_photo():
    """A low IoU target is Viridis' dark purple, nearly invisible on the dark table: under the
    cell's anchors lies a light casing (trace 19), above the image and below every box."""
    e = page("lecture")
    e.row.value, e.col.value = 0, 0
    casing = e.fig.data[19]
    xs = [v for v in casing.x if v is not None]
    assert len(xs) == 5 * e._at.per_cell                    # every anchor of the cell, once
    assert e.fig.data[0].zorder < casing.zorder < min((tr.zorder or 0) for tr in e.fig.data[1:19])
    assert "255,255,255" in casing.line.color.replace(" ", "") and casing.line.width > e.fig.data[5].line.width
    e.view.value = "proposals"
    assert list(e.fig.data[19].x) == []                     # the pipeline's hundreds of boxes: no casing
    e.view.value = "cell"
    e.row.value, e.col.value = 7, 9


def test_lecture_names_the_slides_rpn_tensors():
    """lecture.md: "image 3x640x480 -> features 512x20x15 ... 'is object?' (1x20x15) ... box corrections
    (4x20x15) ... sort the K*20*15 boxes": written on the page as the slide writes them (width first)."""
    import html

    e = AnchorsExplainer(source="lecture")
    st = e.state()
    assert st["image_size"] == (480, 640) and st["feature_size"] == (15, 20) and len(st["anchors"]) == 9 * 20 * 15
    note = html.unescape(e.note.value)
    for said in ("640 x 480 image", "features 512 x 20 x 15", "'is object?' 1 x 20 x 15",
                 "corrections 4 x 20 x 15", "K = 9", "K*20*15 = 2700 anchors", "(9 x 15 x 20)"):
        assert said in note, said


def test_a_move_that_rounds_to_nothing_is_0_not_minus_0():
    from explainers.widgets.anchors import _signed

    assert [_signed(v) for v in (21.4, -30.6, -0.3, 0.4, 0.0)] == ["+21", "-31", "0", "0", "0"]
    e = AnchorsExplainer(source="lecture")
    for k in range(e.n_steps()):
        e.step.value = k
        assert "-0," not in e.caption.value and "-0)" not in e.caption.value and "+0" not in e.caption.value
