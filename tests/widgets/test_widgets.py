"""Headless tests of the first seven explainers (the others have a test file each): controls, figure data,
check lines, errors, export."""
import html
import json
import re

import pytest
import torch
import torchvision

import explainers
from explainers import ops
from explainers.widgets import (AnchorsExplainer, LiveModelExplainer, NMSExplainer, RoIPoolAlignExplainer,
                                SlidingWindowExplainer, TransposedConvExplainer, UnpoolingExplainer)
from explainers.widgets.nms import LECTURE_BOXES, LECTURE_LABELS, LECTURE_SCORES

from explainers.registry import EXPLAINERS, move_control
from explainers.widgets._plotview import _jsonable
from tests.widgets.checks import jsonable, outlined_cells

ALL = [e.load() for e in EXPLAINERS]


def agrees(e):
    text = e.check_text
    return "✔" in text and "✘" not in text


def test_importable_from_the_package():
    for cls in ALL:
        assert getattr(explainers, cls.__name__) is cls
        assert cls.__name__ in explainers.__all__ and cls.__name__ in dir(explainers)
    with pytest.raises(AttributeError):
        explainers.NoSuchExplainer  # noqa: B018


@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_registry_rows_point_at_real_things(entry):
    from explainers.app import NOTEBOOKS_DIR

    cls = entry.load()
    nb = (NOTEBOOKS_DIR / f"{entry.notebook}.ipynb").read_text()
    assert entry.name in nb, f"{entry.notebook} does not show {entry.name}"
    assert entry.module == cls.__module__.rsplit(".", 1)[1]
    assert entry.tour_source in ("lecture", "live") and entry.label and entry.blurb
    e = cls(source=entry.tour_source)
    for i in range(len(entry.values)):
        move_control(e, i)
        assert getattr(e, entry.control).value == entry.values[i]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("source", ["lecture", "live"])
def test_constructs_displays_and_steps(cls, source):
    e = cls(source=source)
    assert e.error_text == "", e.error_text
    bundle = e._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    if cls is not LiveModelExplainer:
        assert agrees(e), e.check_text
    # stepping changes the figure in place (same FigureWidget object)
    fig = e.fig
    if e.n_steps() > 1:
        before = json.dumps(fig.to_dict()["data"], default=str)
        e.step.value = e.n_steps() - 1
        assert e.fig is fig
        assert json.dumps(fig.to_dict()["data"], default=str) != before
        e.forward.click()
        assert e.step.value == e.n_steps() - 1
        e.back.click()
        assert e.step.value == e.n_steps() - 2
    assert e.play.max == e.step.max == e.n_steps() - 1
    e.speed.value = 250
    assert e.play.interval == 250


def test_bad_source():
    with pytest.raises(ValueError, match="source must be"):
        NMSExplainer(source="slides")


@pytest.mark.parametrize("cls", [UnpoolingExplainer, TransposedConvExplainer, NMSExplainer, RoIPoolAlignExplainer,
                                 AnchorsExplainer])
def test_export_html_holds_the_frames(cls, tmp_path):
    e = cls()
    path = e.export_html(tmp_path / "anim.html")
    text = path.read_text()
    assert "Plotly.newPlot" in text or "plotly" in text.lower()
    frames = re.findall(r'"name":"(\d+)"', text.replace(" ", ""))
    assert len(set(frames)) >= min(e.n_steps(), 2)
    assert "cdn.plot.ly" not in text.split("<script", 2)[1][:200]  # plotly.js is inlined: works offline


# ----------------------------------------------------------------------------- unpooling
def test_unpooling_lecture_modes():
    e = UnpoolingExplainer()
    expected = {"nearest": [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
                "bed_of_nails": [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]],
                "max": [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]}
    for mode, out in expected.items():
        e.mode.value = mode
        assert agrees(e)
        e.step.value = e.n_steps() - 1
        assert [list(r) for r in e.fig.data[2].z] == out
    # max unpooling, the slide's whole path: the 4 pooling steps first, with the switches at the
    # maxima 6, 5, 7, 8 and the pooled map [[5, 6], [7, 8]]; then "the rest of the network"; then
    # the slide's [[1, 2], [3, 4]] is unpooled
    e.mode.value = "max"
    assert e.n_steps() == 4 + 1 + 4 + 1
    e.step.value = 3
    assert sorted(outlined_cells(e.fig.data[6])) == [(0, 2), (1, 1), (3, 0), (3, 3)]       # (row, col)
    assert [list(r) for r in e.fig.data[7].z] == [[5, 6], [7, 8]]
    assert [list(r) for r in e.fig.data[7].text] == [["5", "6"], ["7", "8"]]
    assert list(e.fig.data[1].z[0]) == [1, 2]
    e.step.value = 4
    assert "rest of the network" in e.caption.value and e.fig.layout.annotations[4].visible
    # step 5: input cell (0, 0) = 1 goes to its switch (1, 1); nothing else filled yet
    e.step.value = 5
    assert outlined_cells(e.fig.data[5]) == [(1, 1)]
    assert sum(v is not None for row in e.fig.data[2].z for v in row) == 1


def test_unpooling_things_to_try_are_true():
    """notebooks/02_unpooling.ipynb, line by line."""
    e = UnpoolingExplainer()
    e.mode.value = "max"
    seen = []
    for k in range(e.n_steps()):
        e.step.value = k
        seen.append(e.caption.value)
    # pooling first (4 blocks, each keeping its maximum), then the rest of the network, then unpooling
    assert all("max pooling, block" in c for c in seen[:4]) and "rest of the network" in seen[4]
    assert all("goes back to the remembered position (switch)" in c for c in seen[5:9])
    assert [list(r) for r in e.fig.data[7].z] == [[5, 6], [7, 8]]
    assert [list(r) for r in e.fig.data[2].z] == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    # the values land exactly on the switches of the pooling (6 at (0, 2), 5 at (1, 1), 7 at (3, 0), 8 at (3, 3))
    out = e.state()["output"]
    nonzero = {(r, c) for r in range(4) for c in range(4) if out[r, c] != 0}
    switches = set(outlined_cells(e.fig.data[6]))
    assert nonzero == switches == {(0, 2), (1, 1), (3, 0), (3, 3)}
    # the map pooled is the slide's (lecture.md: max pooling of [[1,2,6,3],[3,5,2,1],[1,2,2,1],[7,3,4,8]])
    assert e.state()["pool_input"].tolist() == [[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]
    # live: one channel of SegNet's real feature map and its real switches, equal to the decoder's own unpooling
    live = UnpoolingExplainer(source="live")
    st = live.state()
    assert st["mode"] == "max" and torch.equal(st["output"], st["model_output"]) and agrees(live)


def test_unpooling_draws_every_cell_the_same_size():
    """The 2x2 maps are drawn half as wide and half as tall as the 4x4 ones (panel domains follow
    their cells), centred on one middle line, each title on its grid's own top edge; the empty
    output grid is drawn cell by cell in data units, under the map."""
    from explainers.widgets.unpooling import EMPTY_FILL

    e = UnpoolingExplainer()
    e.mode.value = "max"
    lay = e.fig.layout
    width = lambda ax: ax.domain[1] - ax.domain[0]  # noqa: E731
    xs, ys = (lay.xaxis, lay.xaxis2, lay.xaxis3, lay.xaxis4), (lay.yaxis, lay.yaxis2, lay.yaxis3, lay.yaxis4)
    per_x = {round(abs(ax.range[1] - ax.range[0]) / width(ax), 9) for ax in xs}      # cells per unit of width
    per_y = {round(abs(ax.range[1] - ax.range[0]) / width(ax), 9) for ax in ys}      # and of height
    assert len(per_x) == 1 and len(per_y) == 1
    assert {round(sum(ax.domain) / 2, 9) for ax in ys} == {0.5}
    for i, n in enumerate(("", "2", "3", "4")):
        a = lay.annotations[i]
        assert (a.xref, a.yref, a.x, a.y, a.yanchor) == (f"x{n} domain", f"y{n} domain", 0.5, 1.0, "bottom")
    cells = [s for s in lay.shapes if s.xref == "x4"]
    assert len(cells) == 16 and all(s.layer == "below" and s.fillcolor == EMPTY_FILL for s in cells)
    assert {(round(s.x0 + 0.47), round(s.y0 + 0.47)) for s in cells} == {(c, r) for r in range(4) for c in range(4)}
    e.mode.value = "nearest"
    assert width(lay.xaxis) == width(lay.xaxis2) == 0 and abs(width(lay.xaxis4) - 2 * width(lay.xaxis3)) < 1e-9
    # two panels are packed in the middle, not spread over the whole width
    assert lay.xaxis3.domain[0] > 0.05 and lay.xaxis4.domain[1] < 0.95
    assert abs((lay.xaxis3.domain[0] + lay.xaxis4.domain[1]) / 2 - 0.5) < 1e-9


def test_unpooling_live_uses_real_switches():
    e = UnpoolingExplainer(source="live")
    e.mode.value = "max"
    assert "decoder's own max unpooling" in e.check_text and agrees(e)
    # the note points at "the last check line"
    assert "the last check line" in e.note.value and "own max unpooling" in e.check_text.rsplit("✔", 1)[1]
    # a block the ReLU zeroed: the page says why its maximum is 0
    pin, pooled = e.state()["pool_input"], e._pooled
    zero = [k for k in range(pooled.numel()) if float(pin[2 * (k // pooled.shape[1]):2 * (k // pooled.shape[1]) + 2,
                                                        2 * (k % pooled.shape[1]):2 * (k % pooled.shape[1]) + 2]
                                                    .abs().max()) == 0]
    for k in range(pooled.numel()):
        e.step.value = k
        assert ("ReLU" in e.caption.value) == (k in zero)
    e.channel.value = (e.channel.value + 1) % (e.channel.max + 1)
    assert agrees(e)


# ----------------------------------------------------------------------------- transposed conv
def test_transposed_conv_lecture_1d_symbolic():
    e = TransposedConvExplainer()
    assert [list(r) for r in e.fig.data[0].text] == [["x", "y", "z", "0", "0", "0"], ["0", "0", "x", "y", "z", "0"]]
    e.step.value = 1
    assert list(e.fig.data[2].text[1]) == ["ax", "ay", "az+bx", "by", "bz", "0"]
    assert "[ay, az+bx, by, bz]" in e.caption.value


def test_transposed_conv_controls_and_errors():
    e = TransposedConvExplainer()
    e.dims.value = 2
    assert agrees(e) and "conv_transpose2d" in e.check_text
    assert e.state()["output"].shape == (4, 4)  # 2x2 input, 3x3 kernel, stride 2, padding 1, output_padding 1
    assert e.stride.min == 1               # no stride the page would refuse (the op's error: tests/ops)
    e.stride.value = 1
    assert e.error_text == "" and agrees(e) and e.out_pad.value == 0   # output_padding < stride
    e.ksize.value = 1
    e.padding.value = 3
    e.size.value = 1
    assert "crops the whole output" in e.error_text
    e.size.value = 8
    assert e.error_text == "" and agrees(e)


# ----------------------------------------------------------------------------- NMS
def test_nms_steps_mark_exactly_the_suppressed():
    e = NMSExplainer()
    boxes = torch.tensor(LECTURE_BOXES, dtype=torch.float32)
    scores, labels = torch.tensor(LECTURE_SCORES), torch.tensor(LECTURE_LABELS)
    keep, tr = ops.batched_nms_trace(boxes, scores, labels, 0.5)
    for k in range(1, e.n_steps()):
        e.step.value = k
        step = tr.steps[k - 1]
        # the current kept box is drawn, and the boxes suppressed in this step are the dashed ones
        xs = [v for v in e.fig.data[4].x if v is not None]
        assert len(xs) == 5 * len(step.suppressed)
        assert set(xs) <= set(boxes[step.suppressed][:, [0, 2]].reshape(-1).tolist())
        # the box kept now: the last shapes, black on a white outline, above every other box
        outline, black = e.fig.layout.shapes[-2:]
        assert black.line.color == "#000000" and outline.line.color == "#ffffff" and outline.line.width > black.line.width
        for sh in (outline, black):
            assert [sh.x0, sh.y0, sh.x1, sh.y1] == boxes[step.kept].tolist() and sh.layer == "above"
    e.class_aware.value = False
    assert "torchvision.ops.nms" in e.check_text and agrees(e)
    e.threshold.value = 0.0
    assert str(torchvision.ops.nms(boxes, scores, 0.0).tolist()) in e.check_text


def test_nms_live_boxes_are_the_detectors():
    e = NMSExplainer(source="live")
    e.top_n.value = 10
    assert agrees(e) and "batched_nms" in e.check_text


# ----------------------------------------------------------------------------- RoI
def test_roi_explainer_moves_and_rejects_bad_boxes():
    e = RoIPoolAlignExplainer()
    assert agrees(e)
    z = [list(r) for r in e.fig.data[2].z]
    e.x1.value = 2.6
    assert agrees(e) and [list(r) for r in e.fig.data[2].z] != z
    e.x1.value = 0.2
    e.aligned.value = True
    e.sampling.value = 4
    assert agrees(e)
    e.x2.value = 0.1
    assert "x1 (0.2) is past x2 (0.1): move x1 left or x2 right" in e.error_text     # in the sliders' words
    e.x2.value = 6.0
    assert e.error_text == "" and agrees(e)
    # the caption's chosen point is a real sampling point with its four neighbours
    e.step.value = 3
    assert len(e.fig.data[11].x) == 4


def test_roi_live_proposals():
    e = RoIPoolAlignExplainer(source="live")
    e.proposal.value = 1
    assert agrees(e)
    e.channel.value = 5
    assert agrees(e)


# ----------------------------------------------------------------------------- anchors
def test_anchors_lecture_grid():
    e = AnchorsExplainer()
    assert e.n_steps() == 1 + 9                 # all nine anchors of the cell, then one correction per step
    e.row.value, e.col.value = 3, 4
    xs = [v for i in range(5, 10) for v in e.fig.data[i].x if v is not None]
    assert len(xs) == 9 * 5                     # nine anchors at that cell
    assert len(e.fig.data[3].x) == 20 * 15 and (4 * 32, 3 * 32) in set(zip(e.fig.data[3].x, e.fig.data[3].y))


def test_anchors_live_views():
    e = AnchorsExplainer(source="live")
    assert agrees(e) and "BoxCoder" in e.check_text
    e.view.value = "proposals"
    e.top_k.value = 5
    for k in range(e.n_steps()):
        e.step.value = k
        assert len([v for i in range(5, 10) for v in e.fig.data[i].x if v is not None]) <= 5 * 5
        assert e.error_text == ""


# ----------------------------------------------------------------------------- sliding window
def test_sliding_window_fills_and_switches_to_dense():
    e = SlidingWindowExplainer()
    assert agrees(e) and "labels identical: yes" in e.check_text
    e.step.value = 10
    filled = sum(v is not None for row in e.fig.data[4].z for v in row)
    assert filled == 11
    fresh = e.fig.to_plotly_json()["layout"]
    e.dense.value = True
    assert "faster" in e.caption.value and "same map" in e.caption.value
    assert all(v is not None for row in e.fig.data[4].z for v in row)
    caption = e.caption.value
    # off and on again: the same frame (timed once per image, window and stride, not at each switch),
    # and off leaves the figure as it was before (no axis property it did not have)
    e.dense.value = False
    assert {k: fresh.get(k) for k in ("xaxis4", "yaxis4")} == {k: e.fig.to_plotly_json()["layout"].get(k)
                                                             for k in ("xaxis4", "yaxis4")}
    e.dense.value = True
    assert e.caption.value == caption
    e.window.value = 12
    assert "a window of 12x12 pixels is too small for this network" in e.error_text
    e.window.value = e._model.window + 8
    assert e.error_text == ""
    e.dense.value = True
    assert "set window" in e.error_text


def test_sliding_window_things_to_try_are_true():
    """notebooks/01_sliding_window.ipynb, line by line."""
    from explainers.models import make_scene

    e = SlidingWindowExplainer()
    # "Press fill the whole map: the map fills at once, the objects' colours on the image, each on the centre
    # pixel of its window"
    e.fill.click()
    z = e.fig.data[4].z
    assert e.step.value == e.n_steps() - 1 and all(v is not None for row in z for v in row)
    over = e.fig.data[7]
    # the overlay is the map without its background (the photo shows through there)
    assert [list(r) for r in over.z] == [[v if v else None for v in row] for row in z] and over.xaxis in (None, "x")
    assert any(v == 0 for row in z for v in row) and any(v for row in over.z for v in row if v is not None)
    st = e.state()
    nH, nW = st["labels"].shape
    for k in (0, nW + 3, nH * nW - 1):                  # cell (r, c) is drawn at its window's centre pixel
        r, c = divmod(k, nW)
        cx, cy = e._tr.centres[k].tolist()
        assert (over.x[c], over.y[r]) == (cx, cy)
        x1, y1, x2, y2 = st["windows"][k].tolist()
        assert (cx, cy) == (x1 + (x2 - x1) // 2, y1 + (y2 - y1) // 2)
    # "Change the stride to 8: 121 windows instead of 1,764 and a coarser map, yet each label is still the fully
    # convolutional map's, taken every 4 cells (the check line says so); at stride 5 the windows fall between
    # its cells and nothing is compared."
    assert e.n_steps() == 1764
    dense_labels = ops.dense_predict(e._model.module, e._img)[0]
    e.stride_ctl.value = 8
    assert e.n_steps() == 121 and e.state()["labels"].shape == (11, 11)
    assert torch.equal(e.state()["labels"], dense_labels[::4, ::4])
    assert e.check_text.startswith("✔") and "taken every 4 cells (labels identical: yes)" in e.check_text
    e.stride_ctl.value = 5
    assert "✔" not in e.check_text and "a stride that is a multiple of 2 to compare them" in e.check_text
    # "Set the window below 38 pixels: the network cannot classify it (its receptive field is 38)"
    e.stride_ctl.value = e._model.stride
    e.window.value = 36
    assert e._model.window == 38 and "too small for this network" in e.error_text
    # "source='live', image='your_photo.png'"
    live = SlidingWindowExplainer(source="live", image=make_scene(123, size=(96, 120)).image)
    assert live.error_text == "" and agrees(live) and live.state()["image"].shape[-2:] == (96, 120)


# ----------------------------------------------------------------------------- live model
def _send_upload(e, name, content, size=None):
    """What the browser sends: the file as one buffer, or (too large) only its name and size."""
    if content is None:
        e.upload._handle(e.upload, {"event": "too_large", "name": name, "size": size}, [])
    else:
        e.upload._handle(e.upload, {"event": "file", "name": name, "size": len(content)}, [memoryview(content)])


def test_live_model_samples_and_bad_uploads():
    import io

    from PIL import Image

    from explainers.models import make_scene

    e = LiveModelExplainer()
    assert "device: <b>cpu</b>" in e.info.value and "Only the bundled shapes models" in e.info.value
    buf = io.BytesIO()
    Image.fromarray(make_scene(10_000_017).image).save(buf, "PNG")
    _send_upload(e, "scene.png", buf.getvalue())
    assert e.error_text == ""
    # the chooser names the upload (not the sample shown before), and going back and forth works
    assert e.sample.value == "uploaded: scene.png" and e.state()["image"] == buf.getvalue()
    e.sample.value = "shapes scene 1"
    assert e.state()["image"] is not buf.getvalue() and e.error_text == ""
    e.sample.value = "uploaded: scene.png"
    assert e.state()["image"] == buf.getvalue()
    scores = e._results["detection"].scores
    for t in (0.5, 0.95):   # the title counts exactly the detections at or above the threshold
        e.threshold.value = t
        assert e.fig.layout.annotations[1].text.startswith(f"detection: {int((scores >= t).sum())} object(s)")
    _send_upload(e, "notes.txt", b"hello")
    assert "notes.txt" in e.error_text and "not an image" in e.error_text
    # the picture still shown stays (it was hidden: the student had to pick another image and come back)
    assert "(still showing uploaded: scene.png)" in e.error_text and e.plot.layout.visibility != "hidden"
    assert e.state()["image"] == buf.getvalue() and e.sample.value == "uploaded: scene.png"
    _send_upload(e, "empty.png", b"")
    assert "empty.png is empty (0 bytes)" in e.error_text
    e.upload._handle(e.upload, {"event": "file", "name": "nobuffer.png", "size": 0}, [])   # no buffer at all
    assert "nobuffer.png is empty (0 bytes)" in e.error_text and "limit" not in e.error_text
    e.upload._handle(e.upload, {"event": "file", "name": "odd.png", "size": "x"}, [memoryview(b"hello")])
    assert "odd.png" in e.error_text and "not an image" in e.error_text
    e.sample.value = "chelsea (cat)"
    assert e.error_text == ""
    # a file above the limit: the browser sends only its name and size; the page says so and works on
    _send_upload(e, "huge.jpg", None, size=22 * 2**20)
    assert "huge.jpg is 22.0 MB; the limit is 20 MB" in e.error_text
    _send_upload(e, "scene.png", buf.getvalue())
    assert e.error_text == ""
    assert "object(s)" in e.fig.layout.annotations[1].text


def _figure_json(e) -> dict:
    return jsonable(e.fig.to_plotly_json())


def _walk(e, view) -> None:
    """Walk ``view``'s steps (the first 16 and the last): each step's figure reached going forward is
    the one reached by jumping to it from the last step, and step 0 comes back as first drawn."""
    e.step.value = 0
    first = _figure_json(e)
    n = e.n_steps()
    steps = list(range(min(n, 16))) + [n - 1]
    forward = {}
    for k in steps:
        e.step.value = k
        forward[k] = _figure_json(e)
    for k in steps[::-1]:
        e.step.value = n - 1
        e.step.value = k
        got = _figure_json(e)
        assert got == forward[k], (view, k, [p for p in got["layout"] if got["layout"][p] != forward[k]["layout"].get(p)])
    e.step.value = 0
    assert _figure_json(e) == first, view


def _views(e) -> list:
    return [o[1] if isinstance(o, tuple) else o for o in e.view.options] if hasattr(e, "view") else [None]


@pytest.mark.parametrize("cls", ALL)
def test_the_figure_at_a_step_does_not_depend_on_the_steps_seen_before(cls):
    """A frame is a function of the step and the parameters: a step's figure is the same whether it
    was reached going forward or by a jump back, and step 0 comes back as first drawn; no step leaves
    a property behind (a trace's name, a colour, a heatmap's origin, an axis's ticks) that a later
    step, or an export taken then, would carry."""
    e = cls()
    for view in _views(e):
        if view is not None:
            e.view.value = view
        _walk(e, view)


VIEWED = [c for c in ALL if c.__name__ in ("AnchorsExplainer", "SingleStageExplainer", "TrainingTargetsExplainer",
                                         "TransposedConvExplainer")]


@pytest.mark.parametrize("source", ["lecture", "live"])
@pytest.mark.parametrize("cls", VIEWED)
def test_a_view_is_drawn_as_on_a_fresh_page_whatever_view_was_seen_before(cls, source):
    """A page with several views: each, reached after all the others (forward, then back), is the
    figure a fresh page draws when that view is chosen first; nothing of another view's styles
    (a trace drawn as markers there and as a line here, a colour scale's middle) stays."""
    fresh = {}
    e = cls(source=source)
    views = _views(e)
    assert len(views) > 1
    for view in views:
        page = cls(source=source)
        page.view.value = view
        fresh[view] = _figure_json(page)
        page.close()
    for view in views + views[::-1]:
        e.view.value = view
        e.step.value = 0
        got = _figure_json(e)
        assert got == fresh[view], (view, [i for i, (a, b) in enumerate(zip(got["data"], fresh[view]["data"]))
                                           if a != b], [p for p in got["layout"] if got["layout"][p] !=
                                                        fresh[view]["layout"].get(p)])
        _walk(e, view)


@pytest.mark.parametrize("cls", [c for c in ALL if c.__name__ != "LiveModelExplainer"])
def test_frames_are_pure_functions_of_the_step(cls, tmp_path):
    """frame(k) changes nothing (caption, figure, attributes) and gives the same answer twice."""
    e = cls()
    e.step.value = min(1, e.n_steps() - 1)
    caption, fig = e.caption.value, json.dumps(e.fig.to_dict(), default=str)
    attrs = {k: repr(v) for k, v in vars(e).items() if not k.startswith("__")}
    order = list(range(e.n_steps()))[::-1][:40]
    first = [json.dumps(e.frame(k), default=str) for k in order]
    assert [json.dumps(e.frame(k), default=str) for k in order] == first
    assert all('"caption"' in f for f in first)
    e.export_html(tmp_path / "a.html")
    assert e.caption.value == caption and json.dumps(e.fig.to_dict(), default=str) == fig
    assert {k: repr(v) for k, v in vars(e).items() if not k.startswith("__")} == attrs


def test_update_layout_replaces_lists_instead_of_merging_them():
    import plotly.graph_objects as go

    from explainers.widgets._plotview import update_layout

    fig = go.Figure()
    fig.update_layout(shapes=[dict(type="rect", x0=i, x1=i + 1, y0=0, y1=1) for i in range(3)], title="a")
    update_layout(fig, {"shapes": [dict(type="line", x0=9, x1=10, y0=0, y1=1)], "title": "b"})
    assert [s.x0 for s in fig.layout.shapes] == [9] and fig.layout.title.text == "b"   # plotly alone: [9, 9, 9]
    update_layout(fig, {"shapes": [], "annotations": []})
    assert fig.layout.shapes == () and fig.layout.annotations == ()


@pytest.mark.parametrize("cls", [c for c in ALL if c.__name__ != "LiveModelExplainer"])
def test_stepping_back_draws_exactly_the_frames_shapes(cls):
    """After the last step, step 0 shows its own shapes and annotations, none left from later."""
    e = cls()
    e.step.value = e.n_steps() - 1
    e.step.value = 0
    lay = e.frame(0).get("layout") or {}
    for key in ("shapes", "annotations"):
        if key in lay:
            assert len(getattr(e.fig.layout, key)) == len(lay[key] or ()), key


def test_check_line_never_turns_a_mismatch_into_a_tick():
    e = UnpoolingExplainer()
    e.set_check("x", 0.0, equal=False)
    assert "✘" in e.check_text and "✔" not in e.check_text
    e.set_check("x", 5e-5, more=[("y", 2e-4), ("z", 0.0, False), ("w", 3.0, True)])
    marks = [c for c in e.check_text if c in "✔✘"]
    assert marks == ["✔", "✘", "✘", "✔"]


def test_nms_page_explains_batched_nms_float32_offset():
    """Two class-3 boxes near x = 1e5 with IoU 0.5059: torchvision's batched_nms shifts class 3 in
    float32 and keeps both; class-aware NMS (class by class) suppresses one. The page agrees with
    torchvision run class by class, and says why batched_nms differs here."""
    boxes = torch.tensor([[100000.0, 0, 100003, 3], [100000.984375, 0, 100003.984375, 3], [0, 0, 1, 1]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([3, 3, 0])
    assert torchvision.ops.batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1, 2]
    e = NMSExplainer()
    e._all = (boxes, scores, labels)
    e.threshold.value = 0.5
    e.refresh()
    assert agrees(e) and "torchvision.ops.nms class by class on the 3 boxes drawn (kept [0, 2])" in html.unescape(e.check_text)
    assert "batched_nms keeps [0, 1, 2]" in e.note.value and "float32" in e.note.value
    e.class_aware.value = False             # plain NMS: no shift, plain torchvision.ops.nms
    assert agrees(e) and "torchvision.ops.nms on the 3 boxes drawn (kept" in e.check_text and e.note.value == ""


def test_controls_only_where_they_do_something_and_no_stale_picture():
    live = LiveModelExplainer()
    assert live.anim.layout.display == "none"                  # one picture per image: no Play/step
    a = AnchorsExplainer(source="live")
    assert a.anim.layout.display != "none"
    a.view.value = "proposals"                                 # four stages: the steps stay
    assert a.n_steps() == 4 and a.anim.layout.display != "none"
    a.view.value = "cell"
    assert a.anim.layout.display != "none"
    s = SlidingWindowExplainer()
    s.window.value = 24                                        # below the receptive field
    assert "too small for this network" in s.error_text and s.plot.layout.visibility == "hidden"
    # nothing left describing the last window that worked: its caption ("window 1 of 441 ... centre
    # pixel (x = 19, y = 19)") and its step controls are hidden with the plot and the check line
    hidden = (s.check, s.caption, s.anim)
    assert all(w.layout.visibility == "hidden" for w in hidden)
    s.window.value = 40
    assert s.error_text == "" and s.plot.layout.visibility == "visible"
    assert all(w.layout.visibility == "visible" for w in hidden) and "window 1 of" in s.caption.value


def test_unpooling_shows_no_empty_panel():
    e = UnpoolingExplainer()
    assert e.mode.value == "nearest" and e.fig.layout.xaxis.visible is False and e.fig.layout.yaxis.visible is False
    assert e.fig.layout.annotations[0].visible is False and e.fig.data[7].visible is False
    e.step.value = e.n_steps() - 1
    assert "mode 'max' also shows the max pooling" in e.caption.value
    e.mode.value = "max"
    assert e.fig.layout.xaxis.visible is True and e.fig.layout.annotations[0].text == "max pooling: switches"
    assert e.fig.layout.annotations[0].visible and e.fig.data[7].visible is True


def test_live_model_titles_are_the_same_when_a_student_comes_back_to_an_image():
    """A frame is a function of what is shown: the panel titles' times are each image's first
    measurement, so picking another image and coming back (the models run again) reads the same;
    a second upload of the same name is a new image, measured anew."""
    import io

    from PIL import Image

    from explainers.models import make_scene

    e = LiveModelExplainer()
    first = [a.text for a in e.fig.layout.annotations[:3]]
    assert all(t.endswith(" ms") for t in first), first
    e.sample.value = "shapes scene 2"
    e.sample.value = "shapes scene 1"
    assert [a.text for a in e.fig.layout.annotations[:3]] == first
    assert e.error_text == ""
    for seed in (10_000_017, 10_000_029):
        buf = io.BytesIO()
        Image.fromarray(make_scene(seed).image).save(buf, "PNG")
        _send_upload(e, "scene.png", buf.getvalue())
        assert e.error_text == "" and e._key == ("upload", e._n_uploads)
    # the first upload cannot be shown again (the chooser keeps the latest): its times are gone
    assert e._n_uploads == 2 and set(e._seconds) == {("sample", "shapes scene 1"), ("sample", "shapes scene 2"),
                                                      ("upload", 2)}


def test_live_model_things_to_try_are_true():
    """notebooks/07_live_model.ipynb: the shapes scenes and the cat; an upload (test above); a lower min score."""
    e = LiveModelExplainer(source="live")
    found = {}
    for name in e.sample.options:
        e.sample.value = name
        assert e.error_text == "", (name, e.error_text)
        found[name] = len(e.state()["detection"].filter(0.5).boxes)
    assert all(found[n] >= 1 for n in found if n.startswith("shapes scene"))     # the shapes models find shapes
    assert "chelsea (cat)" in found and "a cat will not be found" in e.info.value  # and say what they know
    # "On shapes scene 2 or the cat, lower min score to 0.1: more boxes appear"
    for name in ("shapes scene 2", "chelsea (cat)"):
        e.sample.value = name
        counts = {}
        for t in (0.5, 0.1):
            e.threshold.value = t
            counts[t] = int(e.fig.layout.annotations[1].text.split(": ")[1].split(" object")[0])
        assert counts[0.1] > counts[0.5], (name, counts)
        det = e.state()["detection"]
        assert counts[0.1] == int((det.scores >= 0.1).sum()) and counts[0.5] == int((det.scores >= 0.5).sum())
        e.threshold.value = 0.5
    # "What the Mask R-CNN adds, one detection at a time": the mask head page on the same live model
    from explainers.registry import entry

    mh = entry("MaskHeadExplainer").load()(source="live")
    assert mh.error_text == "" and "the model's own output mask" in mh.check_text and "✘" not in mh.check_text
    assert entry("MaskHeadExplainer").label.startswith("11 ")


def test_nms_things_to_try_are_true():
    """notebooks/06_nms.ipynb: "Lower the IoU threshold to 0.2: more boxes go" and "Untick
    class-aware: the person box can now suppress the spacesuit box"."""
    e = NMSExplainer()
    kept = {}
    for t in (0.5, 0.3, 0.2):
        e.threshold.value = t
        kept[t] = set(e.state()["keep"].tolist())
    assert kept[0.2] < kept[0.3] < kept[0.5]                      # lowering the threshold removes boxes
    e.threshold.value = 0.5
    aware = set(e.state()["keep"].tolist())
    e.class_aware.value = False
    plain = set(e.state()["keep"].tolist())
    gone = aware - plain
    from pathlib import Path

    from explainers.widgets.nms import LECTURE_CLASSES

    person, spacesuit = LECTURE_CLASSES.index("person"), LECTURE_CLASSES.index("spacesuit")
    assert gone and all(LECTURE_LABELS[i] == spacesuit for i in gone)          # a spacesuit box goes ...
    tr = e._tr
    assert all(LECTURE_LABELS[int(tr.suppressed_by[i])] == person for i in gone)   # ... suppressed by a person box
    nb = (Path(explainers.__file__).parents[1] / "notebooks" / "06_nms.ipynb").read_text()
    assert "the person box can now suppress the spacesuit box" in nb and "Lower the IoU threshold to 0.2" in nb


def test_nms_lecture_boxes_sit_on_the_astronaut_photo():
    """The lecture draws scikit-image's astronaut photo under its boxes (image pixels, y down, equal
    axes); every box lies inside the photo, and the teaching properties hold: near-duplicates, pairs
    with IoU 0.2-0.5, kept counts 6 / 5 / 4 at IoU 0.5 / 0.3 / 0.2."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    from explainers.widgets.nms import LECTURE_CLASSES, PHOTO_OPACITY, lecture_image

    e = NMSExplainer()
    uri = e.fig.data[0].source
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    photo = data.astronaut().astype(np.float32)
    assert shown.shape == photo.shape == lecture_image().shape
    assert np.abs(shown - (PHOTO_OPACITY * photo + (1 - PHOTO_OPACITY) * 255)).max() <= 1   # the photo, lightened
    h, w = photo.shape[:2]
    lay = e.fig.layout
    assert tuple(lay.yaxis.range) == (h - 0.5, -0.5) and tuple(lay.xaxis.range) == (-0.5, w - 0.5)   # y down
    assert lay.yaxis.scaleanchor == "x" and lay.xaxis.constrain == lay.yaxis.constrain == "domain"
    boxes = torch.tensor(LECTURE_BOXES, dtype=torch.float32)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    iou = torchvision.ops.box_iou(boxes, boxes)
    same = torch.tensor(LECTURE_LABELS)[:, None] == torch.tensor(LECTURE_LABELS)[None]
    off = ~torch.eye(len(boxes), dtype=torch.bool)
    assert ((iou > 0.85) & same & off).any()                       # near-duplicates of one object
    assert ((iou > 0.3) & (iou < 0.5) & same & off).any() and ((iou > 0.2) & (iou < 0.3) & same & off).any()
    counts = [len(torchvision.ops.batched_nms(boxes, torch.tensor(LECTURE_SCORES), torch.tensor(LECTURE_LABELS), t))
              for t in (0.5, 0.3, 0.2)]
    assert counts == [6, 5, 4]
    legend = e.fig.layout.annotations[0].text
    assert all(name in legend for name in LECTURE_CLASSES[1:])
    # the legend stands left of the photo (in the room the square photo leaves), the photo hugs it
    from explainers.widgets.nms import LEGEND_WIDTH

    assert (lay.annotations[0].xanchor, lay.annotations[0].x) == ("left", 0)
    assert lay.xaxis.domain[0] == LEGEND_WIDTH and lay.xaxis.constraintoward == "left"


def test_nms_labels_at_most_a_few_boxes_per_step_and_names_the_kept_one():
    """A crowded step (the live model: many near-duplicates) labels the box kept and the suppressed
    ones with the largest IoUs, at most STEP_LABELS in all, and the caption says so."""
    from explainers.widgets.nms import STEP_LABELS

    e = NMSExplainer(source="live")
    crowded = [k for k in range(1, e.n_steps()) if len(e._tr.steps[k - 1].suppressed) >= STEP_LABELS]
    assert crowded
    for k in crowded:
        f = e.frame(k)
        st = e._tr.steps[k - 1]
        texts = [html.unescape(a["text"].split("</span> ", 1)[1]) for a in f["layout"]["annotations"][1:]]
        assert len(texts) == STEP_LABELS and texts[0].startswith("keep ")
        ious = sorted(st.ious.tolist(), reverse=True)
        shown = sorted((float(t.rsplit("IoU ", 1)[1]) for t in texts[1:]), reverse=True)
        assert shown == [round(v, 2) for v in ious[:STEP_LABELS - 1]]
        name = e._classes[int(e._labels[st.kept])]
        assert f"keep the best box left, {name}" in f["caption"] and "largest IoU labelled" in f["caption"]


@pytest.mark.parametrize("k", [0, 1, -1])
def test_nms_lecture_labels_do_not_overlap(k):
    """The labels of a step (17 px text) never cover one another: the placer's boxes, in image
    pixels, are disjoint, and every label starts inside the photo."""
    e = NMSExplainer()
    e.step.value = k % e.n_steps()
    labels = e.fig.layout.annotations[1:]            # the legend is annotation 0
    h, w = e._img.shape[:2]
    line, char = h / 14, h / 30
    texts = [html.unescape(a.text.split("</span> ", 1)[1]) for a in labels]
    rects = [(a.x, a.y - line / 2, a.x + (len(t) + 3) * char, a.y + line / 2) for a, t in zip(labels, texts)]
    assert rects and all(0 <= r[0] < w and 0 <= r[1] and r[3] <= h for r in rects)
    for i, a in enumerate(rects):
        for b in rects[:i]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] + 1e-6 or b[3] <= a[1] + 1e-6, (a, b)
    assert all(a.font.size >= 16 for a in labels)


def test_sliding_window_slider_reaches_the_networks_own_window():
    e = SlidingWindowExplainer()
    rf = e._model.window
    assert (rf - e.window.min) % e.window.step == 0 and e.window.min <= rf <= e.window.max


def _merge(target, src):
    """The view's merge (``_plotview._JS``): objects merge key by key, anything else replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict) and "bdata" not in v and "bdata" not in target[k]:
            _merge(target[k], v)
        else:
            target[k] = v
    return target


def _drop_none(x):
    """plotly.js reads null as "not set": a patch's nulls are the Python figure's absent keys."""
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


@pytest.mark.parametrize("cls", ALL)
def test_an_open_view_draws_exactly_the_figure_after_steps_and_controls(cls):
    """What a browser's view holds (the last whole figure, then every patch merged in as the JS
    does) equals the Python figure after each step and control change: the small patches leave
    nothing behind and miss nothing."""
    e = cls()
    view = e.plot
    state, seen = json.loads(json.dumps(view.figure)), [view.figure, view.patch]
    n = e.n_steps()

    def follow():
        nonlocal state
        if view.figure is not seen[0]:          # a whole figure was sent: the view redraws from it
            state = json.loads(json.dumps(view.figure))
        elif view.patch is not seen[1]:
            for i, props in view.patch["data"].items():
                _merge(state["data"][int(i)], json.loads(json.dumps(props)))
            _merge(state["layout"], json.loads(json.dumps(view.patch["layout"])))
        seen[:] = [view.figure, view.patch]
        want = _jsonable(view.fig.to_plotly_json())
        assert _drop_none(state["data"]) == want["data"]
        got = {k: v for k, v in _drop_none(state["layout"]).items() if k != "template"}
        assert got == {k: v for k, v in want["layout"].items() if k != "template"}

    for k in list(range(n)) + list(range(n - 2, -1, -3)):
        e.step.value = k
        follow()
    for i in range(3):
        move_control(e, i + 1)
        follow()
        e.step.value = n - 1
        follow()


def test_the_step_readout_counts_from_one_like_the_captions(tmp_path):
    """The slider's value is the frame index (from 0); what the page shows is "k + 1 of n", the way
    captions and the notebooks' Things to try count steps; the HTML export says the same."""
    import re

    e = NMSExplainer()
    n = e.n_steps()
    assert e.step.readout is False and "1 of" in e.step_label.value and f"of {n}<" in e.step_label.value
    e.step.value = 2
    # (NMS's frame 0 lists the boxes; its captions name the box each round keeps, no second counter)
    assert f">3 of {n}<" in e.step_label.value and e.frame(2)["caption"].startswith("keep the best box left, ")
    assert not any(ch.isdigit() for ch in e.frame(2)["caption"].split(",")[0])
    e.step.value = n - 1
    assert f">{n} of {n}<" in e.step_label.value
    text = e.export_html(tmp_path / "nms.html").read_text(encoding="utf-8")
    assert re.search(rf"<output id='explainer-step-label'>{n} of {n}</output>", text)
    assert 'label.textContent = String(step + 1) + " of " + String(n);' in text


def test_live_model_detection_panels_are_jpeg_of_the_rendered_overlay():
    """The panels redrawn while min score moves are JPEG (a PNG's encoding took 16-40 ms of a photo's
    control change): the picture sent is the rendered overlay, up to JPEG's small pixel errors."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from explainers.models import render

    e = LiveModelExplainer(source="live")
    e.sample.value = "coffee"
    for i, task in ((1, "detection"), (2, "instance")):
        src = e.fig.data[i].source
        assert src.startswith("data:image/jpeg;base64,")
        sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
        drawn = render(e.state()[task], e.threshold.value, panel=True)
        assert sent.shape == drawn.shape
        assert np.abs(sent.astype(int) - drawn.astype(int)).mean() < 6       # of 255, on a textured photo


def test_nms_labels_of_a_tall_image_stand_in_a_column_beside_it_with_a_line_to_their_box():
    """The live shapes scenes are taller than wide (128 x 200): labels inside the boxes were wider
    than the image and piled at its left edge. They stand right of the image, the box kept now
    first, a line apart, on the image's height, each with a line from its box's right edge, and the
    axis leaves room for them."""
    e = NMSExplainer(source="live")
    H, W = e._img.shape[:2]
    assert H > W
    line = H / 14
    assert e.fig.layout.xaxis.range[1] > W + 20 * H / 30
    for k in range(e.n_steps()):
        f = e.frame(k)
        labels, lines = f["layout"]["annotations"][1:], f["data"][5]
        xs, ys = [a["x"] for a in labels], [a["y"] for a in labels]
        texts = [html.unescape(a["text"].split("</span> ", 1)[1]) for a in labels]
        assert texts and all(x > W for x in xs) and all(0 < y < H for y in ys)
        assert all(abs(a - b) >= line - 1e-6 for i, a in enumerate(ys) for b in ys[:i])
        if 1 <= k < e.n_steps() - 1:
            assert texts[0].startswith("keep ") and ys[0] == min(ys)
        elif k == e.n_steps() - 1:                    # done: the survivors, named
            assert all(t.startswith("kept ") for t in texts)
        assert lines["x"].count(None) == len(texts)
        ends = [lines["x"][3 * j] for j in range(len(texts))]
        boxes = e.state()["boxes"]
        rights = {round(float(v), 4) for v in boxes[:, 2]}
        assert all(round(x, 4) in rights for x in ends)


def test_nms_labels_of_a_wide_image_stay_inside_their_boxes_without_lines():
    e = NMSExplainer(source="lecture")
    for k in range(e.n_steps()):
        f = e.frame(k)
        assert f["data"][5] == {"x": [], "y": []}
    assert list(e.fig.layout.xaxis.range) == [-0.5, e._img.shape[1] - 0.5]


def test_unpooling_live_max_opens_on_a_block_with_a_real_maximum():
    """The live crop starts at the decoder's strongest input: the first step's block has a non-zero
    maximum (it opened on a block of ReLU zeros, 'the maximum 0')."""
    e = UnpoolingExplainer(source="live")
    e.mode.value = "max"
    cap = e.frame(0)["caption"]
    value = float(re.search(r"the maximum (-?[\d.]+)", cap).group(1))
    assert value != 0, cap


def test_unpooling_bilinear_caption_says_cells_show_their_final_mix():
    """Bilinear: an output cell is drawn with its final value once a first input reaches it; the
    caption says it mixes the neighbours' values, so the picture and the words agree."""
    e = UnpoolingExplainer()
    e.mode.value = "bilinear"
    k = next(k for k in range(e.n_steps()) if "is blended" in e.frame(k)["caption"])
    assert "final value" in e.frame(k)["caption"] and "neighbours" in e.frame(k)["caption"]


def test_each_check_says_in_plain_words_on_hover_what_it_compares():
    """A student who does not know torchvision.ops.batched_nms reads, on hover, what the check
    line means: one plain sentence per check, ✔ and ✘ told apart."""
    e = NMSExplainer()
    titles = [html.unescape(t) for t in re.findall(r"title='([^']*)'", e.check.value)]
    assert len(titles) == sum(c in "✔✘" for c in e.check_text) >= 1
    assert titles[0].startswith("The numbers this page draws, compared with torchvision.ops.batched_nms")
    assert "✔: equal" in titles[0]
    e.set_check("a deliberately different reference", 1.0, False)
    assert "✘: they differ" in html.unescape(re.findall(r"title='([^']*)'", e.check.value)[0])
    e.refresh()


def test_live_model_segmentation_names_only_the_classes_a_student_can_see():
    """Shapes scene 1 holds two squares; the segmenter also labels 6 pixels circle and 4 triangle. The
    panel's title and the legend named all three classes over a picture of two squares: they name a
    class covering at least MIN_SHARE of the pixels, largest first; the shares are the label map's."""
    import torch

    from explainers.widgets.live_model import MIN_SHARE

    e = LiveModelExplainer(source="live")
    seg = e.state()["segmentation"]
    shares = seg.shares()
    counts = torch.bincount(seg.labels.flatten())
    assert shares == pytest.approx({i: int(c) / seg.labels.numel() for i, c in enumerate(counts.tolist()) if c})
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    tiny = [seg.classes[i] for i, f in shares.items() if 0 < f < MIN_SHARE and i]
    seen = [seg.classes[i] for i, f in shares.items() if f >= MIN_SHARE and i]
    assert tiny and seen == ["square"], (tiny, seen)          # the scene this test is about
    title, legend = e.fig.layout.annotations[0].text, e.fig.layout.annotations[3].text
    assert title.startswith("semantic segmentation: square, ") and not any(n in title for n in tiny)
    assert not any(f"</span> {n}" in legend for n in tiny) and "</span> square" in legend
    e.sample.value = "astronaut"                             # a picture where all three are large
    title = e.fig.layout.annotations[0].text
    assert all(n in title for n in ("circle", "square", "triangle")), title


@pytest.mark.parametrize("shape", [(16, 16), (37, 53), (16, 1024)])
def test_sliding_window_on_an_image_no_window_fits_says_so_once(shape):
    """Live, on an image smaller than the patch classifier's 38-px window, the page said "use a smaller
    window" (every smaller one fails as too small for the network), its buttons showed Python's
    AttributeError, and turning "dense" off cleared the line over an empty plot. One line now, that
    the buttons and controls keep."""
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    e = SlidingWindowExplainer(source="live", image=img)
    line = e.error_text
    assert "not one fits" in line and "smaller window" not in line, line
    assert ("at least 38 pixels wide and high" in line) == (max(shape) <= 128), line
    if shape == (16, 1024):                                # shrunk: the shape is the problem, not the size
        assert "shrunk to" in line and "less elongated" in line and "at least 30% of its longer side" in line
    e.dense.value = True
    e.fill.click()
    e.dense.value = False
    e.window.value = 50
    assert e.error_text == line and "Error" not in e.error_text
    with pytest.raises(ValueError, match="this page could not be built: .*not one fits"):
        e.n_steps()                                         # not Python's AttributeError


def test_unpooling_outlines_stay_inside_their_cells_at_any_plot_size():
    """The tour draws a page at 300 px high: outlines of a fixed pixel size (54 px markers) were larger
    than a cell there and were clipped into L shapes. Now they are paths in data units, inside the cell."""
    e = UnpoolingExplainer()
    e.mode.value = "max"
    for k in range(e.n_steps()):
        e.step.value = k
        for i in (3, 4, 5, 6, 8):
            t = e.fig.data[i]
            assert t.mode == "lines"
            xs = [v for v in (t.x or []) if v is not None]
            ys = [v for v in (t.y or []) if v is not None]
            cells = outlined_cells(t)
            assert len(xs) == 6 * len(cells)
            for x, y in zip(xs, ys):           # each corner within half a cell of a framed cell's centre
                assert any(abs(x - c) < 0.5 and abs(y - r) < 0.5 for r, c in cells)
