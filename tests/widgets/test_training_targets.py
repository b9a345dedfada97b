"""The training-targets page: both sources, checks, state(), pure frames, the notebook's Things to try,
and a live check that fails when the model's loss dict is not what the page computed."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from explainers.widgets.training_targets import VIEWS, TrainingTargetsExplainer
from tests.widgets.checks import marks

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "09_training_targets.ipynb"


@pytest.fixture(scope="module")
def lecture():
    return TrainingTargetsExplainer(source="lecture")


@pytest.fixture(scope="module")
def live():
    return TrainingTargetsExplainer(source="live")


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_both_sources_and_both_views_pass_their_checks(source, lecture, live):
    e = lecture if source == "lecture" else live
    for view in VIEWS:
        e.view.value = view
        assert e.error_text == "" and marks(e) and set(marks(e)) == {"✔"}, e.check_text
        st = e.state()
        assert st["view"] == view and st["n_steps"] == e.n_steps() > 1
    e.view.value = VIEWS[0]


def test_frames_are_pure_and_readable(lecture):
    for view in VIEWS:
        lecture.view.value = view
        before = {k: (v if not isinstance(v, torch.Tensor) else v.clone()) for k, v in lecture.state().items()}
        for k in range(lecture.n_steps()):
            a, b = lecture.frame(k), lecture.frame(k)
            assert json.dumps(a, default=str) == json.dumps(b, default=str)
            assert a["caption"]
        after = lecture.state()
        for key, v in before.items():
            w = after[key]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w
        for t in lecture.fig.data:
            size = getattr(getattr(t, "textfont", None), "size", None)
            assert size is None or size >= 16
    lecture.view.value = VIEWS[0]


def test_faster_view_draws_the_ops_and_equals_torchvision_on_the_drawn_numbers(lecture):
    import torchvision
    from torchvision.models.detection._utils import BoxCoder, Matcher

    lecture.view.value = VIEWS[1]
    st = lecture.state()
    iou = torchvision.ops.box_iou(st["gt_boxes"], st["anchors"])
    m = Matcher(0.7, 0.3, True)(iou)
    expect = torch.where(m >= 0, 1.0, torch.where(m == -1, 0.0, -1.0))
    assert torch.equal(st["anchor_labels"], expect)
    pos = st["sampled_positive"]
    tg = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(st["gt_boxes"][m[pos.sort().values]], st["anchors"][pos.sort().values])
    assert torch.allclose(st["regression_targets"], tg, atol=1e-6)
    for k in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert abs(st["losses"][k] - st["model_losses"][k]) < 1e-5
    # frame 2 draws exactly the sampled anchors: green boxes for the positives, blue dots for the negatives
    fr = lecture.frame(2)["data"]
    assert len(fr[3]["x"]) == len(st["sampled_negative"]) and len(fr[5]["x"]) == 6 * len(pos)
    lecture.view.value = VIEWS[0]


def test_the_model_is_left_as_it_was(live):
    from explainers.models import get

    m = get("detection", "shapes")
    before = copy.deepcopy(m.module.state_dict())
    TrainingTargetsExplainer(source="live").view.value = VIEWS[1]
    assert not m.module.training
    assert all(torch.equal(before[k], v) for k, v in m.module.state_dict().items())


def test_the_iou_the_matcher_and_the_encoder_are_checked_from_the_ground_truth_not_from_the_pages_own(monkeypatch):
    """torchvision's box_iou, Matcher and BoxCoder.encode are given the ground truth and the anchors,
    not the page's IoU matrix or matches: a wrong IoU in the page's targets turns the first two ✘."""
    import explainers.ops.targets as ot

    e = TrainingTargetsExplainer(source="lecture")
    e.view.value = VIEWS[1]
    assert marks(e) == ["✔"] * 6 and e.check_text.startswith("✔ equals torchvision's box_iou")
    real = ot.box_iou
    monkeypatch.setattr(ot, "box_iou", lambda a, b: real(a, b) * 1.2)      # the page's targets' IoU, wrong
    e.refresh()
    assert marks(e)[:2] == ["✘", "✘"], e.check_text


def test_tampering_the_models_loss_dict_flips_the_live_check():
    e = TrainingTargetsExplainer(source="live")
    e.view.value = VIEWS[1]
    assert marks(e) == ["✔"] * 6 and "the model's own loss dict" in e.check_text
    e._run.losses["loss_rpn_box_reg"] += 0.01
    e.refresh()
    assert marks(e) == ["✔"] * 5 + ["✘"]
    e._run.losses["loss_rpn_box_reg"] -= 0.01
    e._run.sampled_proposals[0, 0] += 1.0        # the box head pooled other RoIs than the page drew
    e.refresh()
    assert marks(e)[-1] == "✘"
    e.view.value = VIEWS[0]                        # single object, live: the class term averages to the model's
    assert marks(e) == ["✔", "✔", "✔"]
    e._run.losses["loss_classifier"] += 0.01
    e.refresh()
    assert marks(e) == ["✔", "✘", "✔"]


def test_live_with_an_image_needs_its_ground_truth():
    import numpy as np

    e = TrainingTargetsExplainer(source="live", image=np.zeros((64, 64, 3), np.uint8))
    e.view.value = VIEWS[1]
    assert "ground truth" in e.error_text
    # a missing file says so (not "give its ground truth")
    missing = TrainingTargetsExplainer(source="live", image="no-such-photo.jpg")
    missing.view.value = VIEWS[1]
    assert "no-such-photo.jpg" in missing.error_text and "ground truth" not in missing.error_text


# ----------------------------------------------------------------------------- Things to try
def test_lecture_says_why_a_fixed_output_cannot_hold_a_varying_number_of_objects():
    """lecture.md: "each image needs a different number of outputs (one cat: 4 numbers; dog, dog, cat:
    12 numbers)"."""
    e = TrainingTargetsExplainer()
    assert e.view.value == VIEWS[0] and len(e.state()["box_true"]) == 4
    assert "One object is 4 box numbers; dog, dog and cat would be 12" in e.note.value
    assert "the Faster R-CNN view" in e.note.value


def test_notebook_is_four_line_style_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1 and not code[0]["outputs"] and "TrainingTargetsExplainer(source=\"lecture\")" in "".join(
        code[0]["source"])
    tries = [line for line in "".join(nb["cells"][-1]["source"]).splitlines() if line.startswith("- ")]
    assert len(tries) == 4


def test_try_box_weight_10_makes_the_box_term_tenfold():
    e = TrainingTargetsExplainer(source="lecture")
    one = e.state()
    e.weight.value = 10
    ten = e.state()
    assert ten["box_loss"] == pytest.approx(one["box_loss"])
    assert ten["total"] - ten["class_loss"] == pytest.approx(10 * (one["total"] - one["class_loss"]))
    assert ten["total"] - one["total"] == pytest.approx(9 * (one["total"] - one["class_loss"]))   # the same amount
    assert ten["class_loss"] == pytest.approx(one["class_loss"])                                   # the class term stays
    assert set(marks(e)) == {"✔"}
    # seen at once: at the total's step, a new weight redraws that step (review s12c: it went back to step 1)
    last = e.n_steps() - 1
    e.step.value = last
    before = e.caption.value
    e.weight.value = 5
    assert e.step.value == last and e.caption.value != before and "5 ×" in e.caption.value
    weighted = e.caption.value
    e.box_loss.value = "smooth L1"
    assert e.step.value == last and e.caption.value != weighted
    e.view.value = VIEWS[1]                        # another view has other steps: it starts at its first
    assert e.step.value == 0


def test_try_smooth_l1_halves_the_box_loss():
    e = TrainingTargetsExplainer(source="lecture")
    l2 = e.state()
    e.box_loss.value = "smooth L1"
    sl1 = e.state()
    assert (l2["box_pred"] - l2["box_true"]).abs().max() < 1
    assert sl1["box_loss"] == pytest.approx(l2["box_loss"] / 2)
    assert set(marks(e)) == {"✔"}
    # equal terms (w and h differ from the truth by the same -0.050) carry equal labels, not the
    # float noise of their last digits ("0.0012" and "0.0013")
    e.step.value = 3
    terms, labels = sl1["box_terms"].tolist(), list(e.fig.data[9].text)
    assert abs(terms[2] - terms[3]) < 1e-6 and labels[2] == labels[3], labels


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_paired_loss_bar_labels_never_run_together(source, lecture, live):
    """Steps 5 and 7 of the Faster R-CNN view pair each of the page's losses with the model's: at
    1280 px a bar of the pair is about 50 px wide, so each label is at most 6 characters (it read
    "0.005050.00505" and "2.7e-042.7e-04")."""
    e = lecture if source == "lecture" else live
    e.view.value = VIEWS[1]
    paired = 0
    for k in range(e.n_steps()):
        data = e.frame(k)["data"]
        if data.get(10, {}).get("text"):
            paired += 1
            for text in data[9]["text"] + data[10]["text"]:
                assert len(text) <= 6, (k, text)
    assert paired == 2
    e.view.value = VIEWS[0]


def test_try_faster_view_counts(lecture):
    lecture.view.value = VIEWS[1]
    st = lecture.state()
    assert int((st["anchor_labels"] == 1).sum()) == 2 == len(st["sampled_positive"])
    assert len(st["sampled_negative"]) == 254
    # the counts are bars beside the picture too (the panel stood empty for four steps)
    labels = st["anchor_labels"]
    counts = [int((labels == v).sum()) for v in (1, 0, -1)]
    assert lecture.frame(1)["data"][9]["y"] == counts and lecture.frame(1)["data"][9]["text"][1] == f"{counts[1]:,}"
    # step 1's panel: the anchors to label beside the true boxes; step 2 splits that bar into the three labels
    assert lecture.frame(0)["data"][9]["x"] == ["anchors", "true boxes"]
    assert lecture.frame(0)["data"][9]["y"] == [len(labels), len(st["gt_boxes"])] and sum(counts) == len(labels)
    assert lecture.frame(2)["data"][9]["y"] == [2, 254]
    first = lecture.frame(3)["data"][9]
    assert first["x"] == ["dx", "dy", "dw", "dh"] and f"#1: ({', '.join(first['text'])})" in lecture.frame(3)["caption"]
    roi = st["roi_labels"]
    assert lecture.frame(5)["data"][9]["y"] == [int((roi > 0).sum()), int((roi == 0).sum())]
    assert marks(lecture) == ["✔"] * 6
    caps = [lecture.frame(k)["caption"] for k in range(lecture.n_steps())]
    assert "2 positives" in caps[2] and "254 random negatives" in caps[2]
    lecture.view.value = VIEWS[0]


def test_try_live_single_object_is_one_roi_of_the_model(live):
    live.view.value = VIEWS[0]
    st = live.state()
    rec, run = live._rec, live._run
    terms = rec.box_loss.class_terms
    assert len(terms) == 64
    assert any(abs(float(t) - st["class_loss"]) < 1e-5 for t in terms)
    assert float(terms.mean()) == pytest.approx(run.losses["loss_classifier"], abs=1e-5)
    assert "loss_classifier" in live.check_text and marks(live) == ["✔", "✔", "✔"]
    # the bundled model's BatchNorm layers normalise with this image's statistics in training mode:
    # the page says why its scores are not the detection page's
    assert run.batch_norms == 5 and "BatchNorm layers use this one image's statistics" in live.note.value
    # ... in words a student can act on (review s12c: the trained model gave the square 2%)
    assert "a low probability for the true class here is that, not a wrong model" in live.note.value


def test_training_run_counts_only_batch_norms_that_use_the_batch():
    """A torchvision detector's frozen BatchNorm keeps its statistics in training mode: no such note."""
    import torchvision

    from explainers.models import wrap
    from explainers.models.training_targets import training_run

    from torchvision.ops.misc import FrozenBatchNorm2d

    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=160, max_size=160)
    target = {"boxes": torch.tensor([[20.0, 20.0, 80.0, 90.0]]), "labels": torch.tensor([1])}
    image = torch.rand(3, 120, 160)
    live = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert live > 0 and training_run(wrap(net), image, target).batch_norms == live
    # as with pretrained weights: every BatchNorm frozen (torchvision's FrozenBatchNorm2d)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(parent, name, FrozenBatchNorm2d(child.num_features))
    assert training_run(wrap(net), image, target).batch_norms == 0


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_true_and_predicted_boxes_differ_and_are_named_at_every_step(source, lecture, live):
    """The single-object view: the true box (solid, its class colour, a layout shape) and the predicted
    box (black, dashed, trace 6) never share a colour or a dash, at every step; the image panel's title
    says which is which, and each box is named on the image beside its own outline."""
    from explainers.models.render import class_hex
    from explainers.widgets.training_targets import PRED_COLOUR

    e = lecture if source == "lecture" else live
    e.view.value = VIEWS[0]
    st = e.state()
    c, (w, h) = st["true_class"], e._frac
    x, y, bw, bh = st["box_true"].tolist()
    px, py, pw, ph = st["box_pred"].tolist()
    true_corners = [x * w, y * h, (x + bw) * w, (y + bh) * h]
    pred_xs = [px * w, (px + pw) * w]
    pred_line = e.fig.data[6].line
    for k in range(e.n_steps()):
        e.step.value = k
        # (plotly's layout.update repeats a shorter shapes list over the old one: count distinct shapes)
        drawn = {(s.x0, s.y0, s.x1, s.y1, s.line.color, s.line.dash): s for s in e.fig.layout.shapes if s.xref == "x"}
        assert len(drawn) == 1, (k, list(drawn))
        (shape,) = drawn.values()
        assert [shape.x0, shape.y0, shape.x1, shape.y1] == pytest.approx(true_corners)
        assert shape.line.color == class_hex(c if source == "live" else c + 1) and shape.line.dash in (None, "solid")
        assert pred_line.color == PRED_COLOUR and pred_line.dash == "dash"
        assert pred_line.color.lower() != shape.line.color.lower()
        assert sorted({v for v in e.fig.data[6].x if v is not None}) == pytest.approx(pred_xs)
        title = e.fig.layout.annotations[0].text
        assert "true box" in title and "predicted box (black, dashed)" in title
        labels = dict(zip(e.fig.data[8].text, e.fig.data[8].y))
        name = e._names[c]
        assert set(labels) == {f"true box: {name}", "predicted box"}
        # each label outside both boxes (above their top or below their bottom): on no box line
        top = min(true_corners[1], py * h)
        bottom = max(true_corners[3], (py + ph) * h)
        pos = dict(zip(e.fig.data[8].text, e.fig.data[8].textposition))
        for text, ty in labels.items():
            assert (ty <= top and pos[text].startswith("top")) or (ty >= bottom and pos[text].startswith("bottom"))
        # two labels stacked below the boxes do not touch: a 16-px line with its halo is about 1/20 of
        # the image's height on the page (the live picture's labels were 1/20 apart and touched)
        ys = sorted(labels.values())
        if all(p.startswith("bottom") for p in pos.values()):
            assert ys[1] - ys[0] >= e._img.shape[0] / 15, (k, ys)
    e.view.value = VIEWS[1]                   # the Faster R-CNN view: the panel is just "image" again
    assert e.fig.layout.annotations[0].text == "image"
    e.view.value = VIEWS[0]
    e.step.value = 0


def test_the_bar_panel_is_never_empty_under_a_plain_title(lecture):
    """A step without bars greys the panel's title and names the step that fills it; BAR_STEPS
    lists exactly the steps that draw bars (so the title never promises a step that draws none)."""
    from explainers.widgets.training_targets import BAR_STEPS, BARS_TITLE, COUNT_TITLES

    for view in VIEWS:
        lecture.view.value = view
        for k in range(lecture.n_steps()):
            f = lecture.frame(k)
            bars = bool(f["data"][9]["x"])
            assert bars == (k in BAR_STEPS[view]), (view, k)
            title = f["layout"]["annotations"][1]
            later = [s for s in BAR_STEPS[view] if s > k]
            named = COUNT_TITLES if view == VIEWS[1] else {}
            if bars:
                assert title["text"] == named.get(k, BARS_TITLE) and title["font"].get("color") is None
            else:
                assert title["font"]["color"] != "black"
                assert title["text"].endswith(f"at step {later[0] + 1}" if later else "none at this step")
                assert not later or title["text"].startswith(named.get(later[0], BARS_TITLE))
                # the named step (1-based in the caption) really draws bars
                if later:
                    assert lecture.frame(later[0])["data"][9]["x"]
    lecture.view.value = VIEWS[0]


def test_class_score_bars_are_in_their_classes_colours(lecture):
    """The scores and probabilities of each class are drawn in that class's colour (the true box's
    colour is its class's), the loss bars in one colour."""
    lecture.view.value = VIEWS[0]
    for k in (1, 2):
        bars = lecture.frame(k)["data"][9]
        assert bars["marker"]["color"] == lecture._colour and len(set(bars["marker"]["color"])) == len(bars["x"])
    true_colour = lecture.frame(0)["layout"]["shapes"][0]["line"]["color"]
    assert true_colour == lecture._colour[lecture._mt.true_class]
    assert isinstance(lecture.frame(3)["data"][9]["marker"]["color"], str)


def test_the_true_box_frames_a_cat(lecture):
    """The single-object picture: scikit-image's cat photo fills exactly the true box (cropped to its
    shape, not stretched), the rest is a plain canvas, so "true box: cat" frames a cat."""
    import numpy as np

    from explainers.widgets.training_targets import LECTURE_BOX_TRUE, LECTURE_IMAGE, lecture_picture

    img = lecture_picture()
    H, W_ = LECTURE_IMAGE
    assert img.shape == (H, W_, 3) and img.dtype == np.uint8
    x, y, w, h = LECTURE_BOX_TRUE
    x0, y0, x1, y1 = round(x * W_), round(y * H), round(x * W_) + round(w * W_), round(y * H) + round(h * H)
    inside = img[y0:y1, x0:x1]
    outside = img.copy()
    outside[y0:y1, x0:x1] = 245
    assert (outside == 245).all() and inside.std() > 20            # a photo in the box, nothing outside
    lecture.view.value = VIEWS[0]
    assert lecture.frame(0)["data"][0]["source"].startswith("data:image/png")
    assert "chelsea" in lecture.note.value


def test_ground_truth_a_model_cannot_learn_from_is_one_line_before_any_run():
    """Labels outside the model's classes, a Mask R-CNN without masks, a Keypoint R-CNN without
    keypoints, malformed boxes: each a plain sentence (torchvision's own errors name none of this)."""
    import torchvision

    from explainers.models import get
    from explainers.models.training_targets import training_run

    image = torch.rand(3, 120, 160)
    box = torch.tensor([[20.0, 20.0, 80.0, 90.0]])
    mask_rcnn = get("detection", "shapes")                            # the bundled detector has a mask branch
    with pytest.raises(ValueError, match="label 5 is not an object class of this model: its classes are 1 to 3"):
        training_run(mask_rcnn, image, {"boxes": box, "labels": torch.tensor([5]), "masks": torch.ones(1, 120, 160)})
    with pytest.raises(ValueError, match=r"this Mask R-CNN also learns masks: give target\['masks'\]"):
        training_run(mask_rcnn, image, {"boxes": box, "labels": torch.tensor([1])})
    with pytest.raises(ValueError, match=r"boxes \(G, 4\) and labels \(G,\)"):
        training_run(mask_rcnn, image, {"boxes": box[0], "labels": torch.tensor([1])})
    keypoint = torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                      num_classes=2, num_keypoints=5)
    with pytest.raises(ValueError, match=r"this Keypoint R-CNN also learns keypoints: give target\['keypoints'\]"):
        training_run(keypoint, image, {"boxes": box, "labels": torch.tensor([1])})


def test_a_users_model_is_not_taught_the_shapes_scenes_labels():
    """Without an image of the user's, the page would use the shapes scene's ground truth, whose
    labels are the shapes models' classes: for another model it asks for an image and its truth."""
    import torchvision

    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
                                                                            num_classes=91)
    e = TrainingTargetsExplainer(source="live", model=net)
    assert "give an image of yours and its ground truth" in e.error_text and "\n" not in e.error_text


def test_live_single_object_says_why_a_trained_models_probability_is_low():
    """Live, the RoI's p(true class) comes from the training-mode run (BatchNorm on one image): when
    it is low, the softmax step's caption says why, where a student reads."""
    from explainers.widgets.training_targets import TrainingTargetsExplainer

    e = TrainingTargetsExplainer(source="live")
    tr = e._mt
    cap = e.frame(2)["caption"]
    low = float(tr.probabilities[tr.true_class]) < 0.5
    assert ("High for a trained model" in cap) == low
    assert "Low for" not in cap                # a low p next to a high loss: the words name the loss
    if low:
        assert "training-mode run" in cap and ("BatchNorm" in cap) == bool(e._run.batch_norms)


def test_positive_anchors_show_around_the_ground_truth_drawn_on_them(lecture):
    """A positive anchor often lies almost on its object's box, and the ground-truth boxes (layout
    shapes) are drawn above the anchors (traces): the positives are wider, so they show around it."""
    e = lecture
    e.view.value = VIEWS[1]
    e.step.value = 1
    gt = [s for s in e.fig.layout.shapes if s.type == "rect"]
    assert gt and len(e.fig.data[5].x) > 0
    assert all(s.line.width < e.fig.data[5].line.width for s in gt)
    e.view.value = VIEWS[0]


def test_a_caption_does_not_repeat_its_step_title(lecture):
    """Each caption is "<b>k. title</b>: words": the words do not start with the title again
    ("5. RPN losses: RPN losses: ...")."""
    import re

    for view in VIEWS:
        lecture.view.value = view
        for k in range(lecture.n_steps()):
            cap = lecture.frame(k)["caption"]
            title, words = re.match(r"<b>\d+\. (.*?)</b>: (.*)", cap).groups()
            assert not words.lower().startswith(title.lower()[:10]), (view, k, cap[:120])
    lecture.view.value = VIEWS[0]


@pytest.mark.parametrize("target, words", [
    ([{"boxes": [[20, 20, 80, 90]], "labels": [1]}], "the ground truth is a dict"),
    ({"boxes": [[100, 120, 30, 40]], "labels": [1]}, r"box 0 = \[100.0, 120.0, 30.0, 40.0\] has no area.*not x, y, width"),
    ({"boxes": [[1000, 1000, 1200, 1200]], "labels": [1]}, "lies outside the 160x120 image"),
    ({"boxes": [[0.1, 0.1, 0.5, 0.6]], "labels": [1]}, "look normalised"),
    ({"boxes": [[20, 20, 80, 90]], "labels": [1.5]}, "whole numbers"),
    ({"boxes": [[20, 20, 80, 90]], "labels": [1], "masks": torch.ones(1, 50, 50)}, r"masks must be \(G, H, W\) = \(1, 120, 160\)"),
    ({"boxes": torch.tensor([[20.0, 20, 80, 90]]).repeat(5000, 1), "labels": torch.ones(5000, dtype=torch.long)},
     "5,000 boxes; this page trains on at most 200"),
])
def test_ground_truth_mistakes_are_one_line_in_the_images_own_pixels(target, words):
    """A float label leaked torchvision's TypeError, x2 < x1 its AssertionError in the model's resized frame;
    boxes outside the image, 0-1 boxes and masks of another size trained without a word (the check still ✔)."""
    from explainers.models import get
    from explainers.models.training_targets import training_run

    with pytest.raises(ValueError, match=words):
        training_run(get("detection", "shapes"), torch.rand(3, 120, 160), target)


def test_whole_float_labels_are_taken_and_a_downscaled_photos_boxes_shrink_with_it():
    """Labels 1.0 are class 1; a photo above the size limit is downscaled, and its ground truth (in the
    photo's pixels) with it: the boxes the page trains on sit on the same objects."""
    from explainers.models import MAX_SIDE, make_scene

    scene = make_scene(10_000_017)
    big = np.kron(scene.image, np.ones((8, 8, 1), np.uint8))                 # 8x larger, above MAX_SIDE
    assert max(big.shape[:2]) > MAX_SIDE
    t = scene.target()
    target = {"boxes": torch.as_tensor(t["boxes"]) * 8, "labels": torch.as_tensor(t["labels"]).float(),
              "masks": torch.as_tensor(t["masks"]).repeat_interleave(8, 1).repeat_interleave(8, 2)}
    from explainers.models import load_image
    from explainers.models.training_targets import target_for_image

    loaded = load_image(big)
    shrunk = target_for_image(target, loaded)
    assert loaded.scale < 1
    assert torch.allclose(shrunk["boxes"], torch.as_tensor(t["boxes"]).float() * 8 * loaded.scale)
    assert shrunk["masks"].shape[-2:] == loaded.tensor.shape[-2:]
    keypoints = torch.tensor([[[80.0, 40.0, 1.0]]]).repeat(len(t["boxes"]), 1, 1)       # (x, y, visible)
    kp = target_for_image({**target, "keypoints": keypoints}, loaded)["keypoints"]
    assert torch.allclose(kp[..., :2], keypoints[..., :2] * loaded.scale) and torch.equal(kp[..., 2], keypoints[..., 2])
    assert abs(float(shrunk["masks"].float().mean()) - float(torch.as_tensor(t["masks"]).float().mean())) < 0.01
    e = TrainingTargetsExplainer(source="live", image=big, target=target)
    e.view.value = VIEWS[1]
    assert e.error_text == "" and set(marks(e)) == {"✔"}, e.error_text


def test_ground_truth_for_a_phone_photo_is_checked_upright_and_the_error_says_it_was_turned(tmp_path):
    """A phone photo stored sideways (EXIF orientation 6) is shown upright; boxes given in the stored
    (sideways) pixels fall outside the upright picture, and the error says the photo was turned and in
    which pixels to give them. Boxes in the upright picture's pixels train as usual."""
    from PIL import Image

    from explainers.models import load_image
    from explainers.models.images import EXIF_ORIENTATION
    from explainers.models.training_targets import target_for_image

    stored = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[EXIF_ORIENTATION] = 6                          # upright: 200 high, 120 wide
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.orientation == 6 and loaded.original_size == (200, 120)
    sideways = {"boxes": [[130.0, 10.0, 190.0, 60.0]], "labels": [1]}      # x beyond the upright width
    with pytest.raises(ValueError, match=r"lies outside the 120x200 image \(the photo is shown as its EXIF orientation "
                                         r"tag says, 90° clockwise, at 120x200"):
        target_for_image(sideways, loaded)
    # an error the turn cannot cause says nothing of it
    with pytest.raises(ValueError, match=r"labels are class numbers \(whole numbers\); got \[1.5\]$"):
        target_for_image({"boxes": [[10.0, 130.0, 60.0, 190.0]], "labels": [1.5]}, loaded)
    upright = {"boxes": [[10.0, 130.0, 60.0, 190.0]], "labels": [1]}
    assert target_for_image(upright, loaded) is upright
    e = TrainingTargetsExplainer(source="live", image=path, target=sideways)
    assert "EXIF orientation tag" in e.error_text and "120x200" in e.error_text, e.error_text
    # a photo as stored (no tag) keeps the plain message
    plain = tmp_path / "plain.png"
    stored.save(plain)
    with pytest.raises(ValueError, match=r"lies outside the 200x120 image$"):
        target_for_image({"boxes": [[10.0, 130.0, 60.0, 190.0]], "labels": [1]}, load_image(plain))
