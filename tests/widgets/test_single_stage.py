"""SingleStageExplainer: YOLO's grid, SSD's default boxes, the live model's dense predictions."""
import copy

import pytest
import torch

from explainers.widgets.single_stage import SingleStageExplainer
from tests.widgets.checks import marks


@pytest.fixture(scope="module")
def lecture():
    return SingleStageExplainer(source="lecture")


@pytest.fixture(scope="module")
def live():
    return SingleStageExplainer(source="live")


def test_the_page_opens_on_the_slides_yolo_7_x_7_x_19():
    """lecture.md: "7 x 7 grid ... B = 3 ... 7 x 7 x (5B + C)" with C = 4: the page as it opens, untouched."""
    e = SingleStageExplainer(source="lecture")
    assert (e.view.value, e.S.value, e.B.value) == ("YOLO grid", 7, 3)
    assert e.state()["tensor"].shape == (7, 7, 19) and "output 7 x 7 x 19" in e.caption.value


def test_lecture_yolo_reads_the_tensor_cell_by_cell(lecture):
    e = lecture
    e.view.value, e.S.value, e.B.value = "YOLO grid", 7, 3
    assert not e.error_text and marks(e) == ["✔"] * 4 and "BoxCoder" in e.check_text
    st = e.state()
    assert st["tensor"].shape == (7, 7, 5 * 3 + 4) and e.n_steps() == 50
    n = len(st["objects"])
    assert n >= 3 and int(st["confidence"].sum()) == n            # one confident box per object
    # step to an object's cell: its vector is what the read-out shows
    i = int(st["confidence"].flatten().argmax()) // 3
    r, c = divmod(i, 7)
    e.step.value = 1 + i
    fr = e.frame(e.step.value)
    assert e.state()["cell"] == (r, c)
    shown = [v for row in fr["data"][8]["z"] for v in row if v is not None]      # the table, row by row
    assert shown == [round(float(v), 2) for v in st["tensor"][r, c]]
    assert "predicts it" in fr["caption"]


def test_frames_are_pure(lecture):
    e = lecture
    for view in ("YOLO grid", "SSD default boxes"):
        e.view.value = view
        before = copy.deepcopy({k: v for k, v in e.state().items()})
        a, b = e.frame(e.n_steps() - 1), e.frame(e.n_steps() - 1)
        assert a == b and e.frame(0)["caption"]
        after = e.state()
        for k, v in before.items():
            assert (torch.equal(v, after[k]) if isinstance(v, torch.Tensor) else v == after[k]), k


def test_things_to_try_S_13(lecture):
    """'Set S to 13: more, smaller cells; the tensor becomes 13 x 13 x 19.'"""
    e = lecture
    e.view.value, e.B.value = "YOLO grid", 3
    e.S.value = 13
    assert e.state()["tensor"].shape == (13, 13, 19) and e.n_steps() == 13 * 13 + 1 and marks(e) == ["✔"] * 4
    e.S.value = 7


def test_things_to_try_B_1(lecture):
    """'Set B to 1: the tensor becomes 7 x 7 x 9 and each object is predicted by the one base box of its cell.'"""
    e = lecture
    e.view.value, e.S.value = "YOLO grid", 7
    e.B.value = 1
    st = e.state()
    assert st["tensor"].shape == (7, 7, 9) and marks(e) == ["✔"] * 4
    assert int(st["confidence"].sum()) == len(st["objects"])     # no two objects share a cell here
    captions = " ".join(e.frame(k)["caption"] for k in range(e.n_steps()))
    assert "each 1 base box ×" in captions and "its 1 base box." in captions and "its confidence is 0" in captions
    assert "1 base boxes" not in captions and "all 1 confidences" not in captions
    e.B.value = 3


def test_things_to_try_ssd_boxes_grow_as_maps_shrink(lecture):
    """'Choose view SSD default boxes and step through the six feature maps: 38 x 38 down to 1 x 1, the
    boxes growing as the maps shrink; 8,732 boxes in all, equal to torchvision's DefaultBoxGenerator.'"""
    e = lecture
    e.view.value = "SSD default boxes"
    assert marks(e) == ["✔"] and "DefaultBoxGenerator" in e.check_text and e.n_steps() == 6
    st = e.state()
    assert len(st["default_boxes"]) == 8732 and [h for h, _ in st["feature_sizes"]] == [38, 19, 10, 5, 3, 1]
    smallest = []
    for k in range(6):
        e.step.value = k
        w = [row[0] for row in e.frame(k)["data"][8]["z"]]
        smallest.append(min(w))
    assert smallest == sorted(smallest) and smallest[0] < smallest[-1]
    # default boxes belong to no class: never drawn in a class's colour (orange is the circle's)
    from explainers.models.render import class_hex

    classes = {class_hex(c).upper() for c in range(len(e._classes))} | {"#0072B2"}     # and YOLO's blue
    for k in range(6):
        for i in (4, 5):
            line = e.frame(k)["data"][i]["line"]
            assert line["color"].upper() not in classes, (k, i, line)
    # on the 38 x 38 map four boxes of 20-30 px: thin lines, or they merge into one black square
    assert e.frame(0)["data"][5]["line"]["width"] <= 2 < e.frame(5)["data"][5]["line"]["width"]
    e.view.value = "YOLO grid"
    assert e.frame(1)["data"][4]["line"]["color"] == "#0072B2"          # YOLO's base boxes: blue again


def test_lecture_ssd_check_flips_when_tampered(lecture, monkeypatch):
    import explainers.widgets.single_stage as mod

    real = mod.reference_default_boxes
    monkeypatch.setattr(mod, "reference_default_boxes", lambda *a, **k: real(*a, **k) + 0.5)
    lecture.view.value = "SSD default boxes"
    lecture.refresh()
    assert marks(lecture) == ["✘"]
    monkeypatch.undo()
    lecture.refresh()
    assert marks(lecture) == ["✔"]
    lecture.view.value = "YOLO grid"


def test_live_dense_predictions_are_the_models(live):
    """'SingleStageExplainer(source="live") draws the bundled FCOS model's prediction at every location
    before NMS, checked against the model's own tensors; the steps walk through the best locations, best first.'"""
    e = live
    assert e.view.value == "dense predictions" and not e.error_text
    assert marks(e) == ["✔", "✔", "✔"] and "model's own" in e.check_text
    st = e.state()
    tr = e._trace
    assert st["dense_boxes"].shape == (len(tr.anchors), 4) and st["best_score"].shape == (len(tr.anchors),)
    scores = []
    for k in range(1, e.n_steps()):
        e.step.value = k
        scores.append(float(e.state()["best_score"][e.state()["location"]]))
    assert scores == sorted(scores, reverse=True) and scores[0] == float(st["best_score"].max())
    assert e.frame(0) == e.frame(0)


def test_live_checks_flip_when_the_models_tensors_are_tampered():
    e = SingleStageExplainer(source="live")
    assert marks(e) == ["✔", "✔", "✔"]
    tr = e._trace
    logits, reg = tr.class_logits, tr.box_regression
    tr.class_logits = logits + 0.5              # the page would now draw other scores than the model's
    e.refresh()
    assert marks(e)[0] == "✘"
    tr.class_logits = logits
    tr.box_regression = reg * 1.1               # other boxes than the model's box coder made
    e.refresh()
    assert marks(e)[1:] == ["✘", "✘"]
    tr.box_regression = reg
    e.refresh()
    assert marks(e) == ["✔", "✔", "✔"]
    tr.detections.boxes = tr.detections.boxes + 2.0
    e.refresh()
    assert marks(e) == ["✔", "✔", "✘"]


def test_live_other_views_work(live):
    e = live
    e.view.value = "YOLO grid"
    assert marks(e) == ["✔"] * 4 and "live model" in e.note.value
    e.view.value = "SSD default boxes"
    assert marks(e) == ["✔"]
    e.view.value = "dense predictions"


def test_a_two_stage_model_is_refused_in_words():
    from explainers.models import get

    e = SingleStageExplainer(source="live", model=get("detection", "shapes"))
    assert "FCOS" in e.error_text and "this is a MaskRCNN (two-stage)" in e.error_text   # no internal class name
    assert "Detector" not in e.error_text


@pytest.mark.parametrize("B", [1, 3, 6])
def test_every_number_of_the_yolo_cell_vector_is_labelled(lecture, B):
    """Issue #12: all 5B + C numbers of a cell under a label at 16 px, none skipped or clipped: a row
    per base box (dx, dy, dw, dh, conf), then a row per class score, every row tick given explicitly."""
    from explainers.ops.single_stage import yolo_channel_names

    e = lecture
    e.view.value, e.S.value, e.B.value = "YOLO grid", 7, B
    C = len(e._classes)
    fr = e.frame(2)
    heat = fr["data"][8]
    z, rows, cols = heat["z"], heat["y"], heat["x"]
    assert cols == ["dx", "dy", "dw", "dh", "conf", "score"] and len(rows) == len(z) == B + C
    # each number sits under a (row, column) name that is the channel's own name: box numbers under
    # dx ... conf, class scores under "score" alone
    names = yolo_channel_names(B, e._classes)
    labelled = [(f"{rows[i]} {cols[j]}" if i < B else rows[i]) for i in range(len(z)) for j in range(6)
                if z[i][j] is not None]
    assert all((z[i][5] is None) == (i < B) and all((z[i][j] is None) == (i >= B) for j in range(5))
               for i in range(len(z)))
    # one colour scale (-1 .. 1) at every cell: the same number, the same colour
    assert (heat["zmin"], heat["zmax"], heat["zauto"]) == (-1, 1, False)
    assert labelled == names and len(labelled) == 5 * B + C
    assert all(t != "" for row, zr in zip(heat["text"], z) for t, v in zip(row, zr) if v is not None)
    # every row's tick is given (plotly skips none), at 16 px
    y2 = fr["layout"]["yaxis2"]
    assert y2["tickmode"] == "array" and list(y2["tickvals"]) == list(y2["ticktext"]) == list(rows)
    e.step.value = 2
    assert e.fig.layout.yaxis2.tickfont.size >= 16 and e.fig.data[8].textfont.size >= 16
    assert list(e.fig.layout.yaxis2.tickvals) == list(rows)
    # rows tall enough for 16 px labels at the smallest plot the page allows (300 px)
    lay = e.fig.layout
    assert (300 - lay.margin.t - lay.margin.b) / len(rows) >= 16
    e.B.value = 3


def test_the_step_0_map_keeps_automatic_ticks(lecture):
    e = lecture
    e.view.value, e.S.value, e.B.value = "YOLO grid", 13, 3
    e.step.value = 0
    assert e.frame(0)["layout"]["yaxis2"]["tickmode"] == "auto" and e.fig.layout.yaxis2.tickmode == "auto"
    e.S.value = 7


def test_yolo_true_boxes_are_drawn_in_the_legends_class_colours(lecture):
    """The scene's shapes have random colours; the legend's colours are the boxes': each true box is
    drawn dotted in its class's colour (and the other views draw no such boxes)."""
    from explainers.models.render import class_hex

    e = lecture
    e.view.value, e.S.value, e.B.value = "YOLO grid", 7, 3
    st = e.state()
    shapes = e.fig.layout.shapes
    objects, labels = st["objects"], st["labels"]
    assert len(shapes) == len(objects) >= 3
    for sh, box, label in zip(shapes, objects, labels):
        assert sh.line.color == class_hex(int(label)) and sh.line.dash == "dot"
        assert [sh.x0, sh.y0, sh.x1, sh.y1] == pytest.approx([float(v) for v in box])
    legend = e.fig.layout.annotations[0].text
    for label in {int(lab) for lab in labels}:
        assert class_hex(label) in legend
    # one fixed view for all cells: the image and every cell's base boxes (no jump between steps)
    lay = e.fig.layout
    bb = st["base_boxes"].reshape(-1, 4)
    assert lay.xaxis.autorange is False and lay.yaxis.autorange is False
    assert lay.xaxis.range[0] <= float(bb[:, 0].min()) and lay.xaxis.range[1] >= float(bb[:, 2].max())
    assert lay.yaxis.range[1] <= float(bb[:, 1].min()) and lay.yaxis.range[0] >= float(bb[:, 3].max())
    assert all("xaxis" not in e.frame(k)["layout"] and "yaxis" not in e.frame(k)["layout"] for k in range(3))
    e.view.value = "SSD default boxes"
    assert len(e.fig.layout.shapes) == 0 and e.fig.layout.yaxis.range[0] > e.fig.layout.yaxis.range[1]  # y down
    e.view.value = "YOLO grid"


def test_lecture_shapes_are_painted_in_their_classes_colours(lecture):
    """The lecture's picture: each shape's pixels take its class's colour (what the legend says), so no
    orange triangle sits beside "orange = circle"; the background is the scene's own."""
    import numpy as np

    from explainers.models.render import class_colour
    from explainers.models.shapes import make_scene
    from explainers.widgets.single_stage import LECTURE_SEED, LECTURE_SIZE

    lecture.view.value = "YOLO grid"
    sc = make_scene(LECTURE_SEED, size=LECTURE_SIZE)
    img = lecture._img.astype(int)
    visible = np.zeros(sc.masks.shape[1:], int) - 1
    for i, m in enumerate(sc.masks):
        visible[m] = i                                  # the shape drawn last at each pixel
    for i, lab in enumerate(sc.labels):
        px = img[visible == i]
        if len(px):
            assert np.abs(px.mean(0) - np.asarray(class_colour(int(lab)))).max() < 40, (i, lab)
    bg = visible < 0
    assert np.array_equal(img[bg], sc.image[bg].astype(int))
    assert "painted in its class's colour" in lecture.note.value


def test_ssd_image_stays_put_while_the_boxes_grow(lecture):
    """The SSD view's axes are set once for the six maps: every box a step draws is inside them, and no
    step changes them (before, the axes followed each map's boxes, and the image shrank and moved as
    the boxes grew, which hid the very growth the view shows)."""
    e = lecture
    e.view.value = "SSD default boxes"
    lay = e.fig.layout
    (x0, x1), (y1, y0) = lay.xaxis.range, lay.yaxis.range
    assert lay.xaxis.autorange is False and lay.yaxis.autorange is False
    assert x0 < 0 and y0 < 0 and x1 >= 299.5 and y1 >= 299.5          # the big boxes stick out
    for k in range(e.n_steps()):
        fr = e.frame(k)
        assert not {"xaxis", "yaxis"} & set(fr.get("layout", {})), k
        for i in (4, 5):
            xs = [v for v in fr["data"][i]["x"] if v is not None]
            ys = [v for v in fr["data"][i]["y"] if v is not None]
            assert xs and x0 <= min(xs) and max(xs) <= x1 and y0 <= min(ys) and max(ys) <= y1, (k, i)
