"""Each check line can fail: corrupt what a page draws (the op it draws with, monkeypatched) and
its check must turn ✘. A check that stays ✔ whatever is drawn proves nothing."""
import pytest
import torch

from explainers import ops
from explainers.widgets import SlidingWindowExplainer, UnpoolingExplainer
from tests.widgets.checks import marks


def test_unpooling_pooling_switches_are_checked_against_torch(monkeypatch):
    real = ops.max_pool_with_switches

    def top_left(x, *a, **k):             # every block's "maximum" at its top-left: wrong switches
        pooled, switches, *rest = real(x, *a, **k)
        W_ = x.shape[-1]
        r = torch.arange(switches.shape[-2])[:, None] * 2
        c = torch.arange(switches.shape[-1])[None, :] * 2
        return (pooled, (r * W_ + c).expand_as(switches).clone(), *rest)

    e = UnpoolingExplainer(source="lecture")
    e.mode.value = "max"
    assert marks(e) == ["✔", "✔"] and "F.max_pool2d's maxima and indices" in e.check_text
    monkeypatch.setattr(ops, "max_pool_with_switches", top_left)
    e.refresh()
    assert marks(e) == ["✔", "✘"], e.check_text      # unpooling with those switches is still right


def test_unpooling_live_checks_the_decoders_own_switches_against_torch(monkeypatch):
    import dataclasses

    import explainers.widgets.unpooling as up

    e = UnpoolingExplainer(source="live")
    e.mode.value = "max"
    assert marks(e) == ["✔", "✔", "✔"]
    real = up.unpooling_crop

    def moved(*a, **k):                      # the model's switches, each moved to another cell
        crop = real(*a, **k)
        return dataclasses.replace(crop, switches=crop.switches ^ 1)

    monkeypatch.setattr(up, "unpooling_crop", moved)
    e.refresh()
    assert marks(e)[1] == "✘", e.check_text


def test_sliding_window_scores_drawn_as_bars_are_checked_not_only_labels(monkeypatch):
    e = SlidingWindowExplainer(source="lecture")
    e.window.value, e.stride_ctl.value = e._model.window, e._model.stride
    assert marks(e) == ["✔"]
    real = ops.sliding_window_predict

    def inflated(*a, **k):                  # the same labels, scores x 3 + 5 (bars drawn from them)
        labels, tr = real(*a, **k)
        tr.scores.mul_(3).add_(5)
        return labels, tr

    import explainers.widgets.sliding_window as sw
    monkeypatch.setattr(sw.ops, "sliding_window_predict", inflated)
    e.refresh()
    assert marks(e) == ["✘"], e.check_text


def test_sliding_window_at_a_coarser_stride_is_checked_against_the_dense_map_taken_every_k_cells(monkeypatch):
    """Stride 8 = every 4th cell of the fully convolutional map (stride 2): windows shifted by one dense
    cell (2 pixels) are labelled by a real forward pass, yet are not the windows drawn, so ✘."""
    import torch

    import explainers.widgets.sliding_window as sw

    e = SlidingWindowExplainer(source="lecture")
    e.stride_ctl.value = 4 * e._model.stride
    assert marks(e) == ["✔"] and "taken every 4 cells" in e.check_text
    real = ops.sliding_window_predict

    def shifted(net, image, *a, **k):       # the windows one dense cell to the right
        return real(net, torch.roll(torch.as_tensor(image), -e._model.stride, dims=-1), *a, **k)

    monkeypatch.setattr(sw.ops, "sliding_window_predict", shifted)
    e.refresh()
    assert marks(e) == ["✘"], e.check_text


def test_mask_head_checks_the_sigmoid_and_the_features_it_draws(monkeypatch):
    """Lecture: the probabilities (panel 4) and the RoI Align features (panel 2) are each compared
    with torchvision; inverting one or scaling the other turns its check ✘."""
    import explainers.models.mask_head as mh
    from explainers.widgets import MaskHeadExplainer

    e = MaskHeadExplainer(source="lecture")
    assert marks(e) == ["✔", "✔", "✔"]
    real_p, real_f = mh.mask_probability, mh.roi_align_trace
    monkeypatch.setattr(mh, "mask_probability", lambda *a, **k: 1 - real_p(*a, **k))
    e.refresh()
    assert marks(e)[0] == "✘", e.check_text
    monkeypatch.setattr(mh, "mask_probability", real_p)
    monkeypatch.setattr(mh, "roi_align_trace", lambda *a, **k: (lambda f, t: (f * -3 + 1, t))(*real_f(*a, **k)))
    e.refresh()
    assert marks(e) == ["✔", "✘", "✔"], e.check_text


def test_training_targets_live_single_object_is_tied_to_the_model(monkeypatch):
    """The RoI drawn: its scores reversed -> the drawn class term is no longer the model's term;
    its predicted box moved -> no longer torchvision's decoding of the model's regression."""
    import explainers.models.training_targets as tt
    from explainers.widgets import TrainingTargetsExplainer

    e = TrainingTargetsExplainer(source="live")
    assert marks(e) == ["✔", "✔", "✔"]
    real = tt.roi_prediction
    monkeypatch.setattr(tt, "roi_prediction", lambda *a: {**real(*a), "scores": real(*a)["scores"].flip(0)})
    e.refresh()
    assert marks(e) == ["✔", "✘", "✔"], e.check_text
    monkeypatch.setattr(tt, "roi_prediction", lambda *a: {**real(*a), "box_pred": real(*a)["box_pred"] + 20})
    e.refresh()
    assert marks(e) == ["✔", "✔", "✘"], e.check_text


def test_yolo_base_boxes_and_target_deltas_are_checked_against_torchvision(monkeypatch):
    """The base boxes drawn, shifted (the op's grid wrong): the box_convert check turns ✘; the deltas
    drawn, changed in the tensor: the BoxCoder.encode check turns ✘."""
    import explainers.ops.single_stage as ss
    import explainers.widgets.single_stage as page
    from explainers.widgets import SingleStageExplainer

    e = SingleStageExplainer(source="lecture")
    e.view.value = "YOLO grid"
    assert marks(e) == ["✔"] * 4
    real_base = ss.yolo_base_boxes
    monkeypatch.setattr(ss, "yolo_base_boxes", lambda *a, **k: real_base(*a, **k) + 30)
    e.refresh()
    assert marks(e)[1] == "✘", e.check_text
    monkeypatch.setattr(ss, "yolo_base_boxes", real_base)
    real_encode = page.yolo_encode

    def nudged(*a, **k):                   # every target delta (dx) of the tensor drawn, moved by 0.1
        t, enc = real_encode(*a, **k)
        t = t.clone()
        t[..., 0:5 * a[3]:5] += 0.1
        return t, enc

    monkeypatch.setattr(page, "yolo_encode", nudged)
    e.refresh()
    assert marks(e)[2] == "✘", e.check_text


def test_transposed_conv_steps_are_checked_not_only_the_result(monkeypatch):
    """The copies drawn step by step (reversed and halved) and the matrix drawn (rows flipped) give
    the same final output: only the check of what the steps draw turns ✘."""
    import dataclasses

    import explainers.widgets.transposed_conv as page
    from explainers.widgets import TransposedConvExplainer

    e = TransposedConvExplainer(source="lecture")
    e.dims.value = 2
    assert marks(e) == ["✔", "✔", "✔"]
    real = page.conv_transpose_canvas

    def scrambled(*a, **k):
        out, tr = real(*a, **k)
        return out, dataclasses.replace(tr, partial_sums=tr.partial_sums.flip(0) / 2,
                                        canvas_matrix=tr.canvas_matrix.flip(0))

    monkeypatch.setattr(page, "conv_transpose_canvas", scrambled)
    e.refresh()
    assert marks(e) == ["✔", "✘", "✔"], e.check_text


def test_anchors_proposals_drawn_are_checked_against_torchvisions_selection(monkeypatch):
    """Lecture: the proposals drawn, moved 25 px, turn the filter_proposals check ✘; with tied
    objectness scores (an untrained model) the selection is not compared, and the note says why."""
    import dataclasses

    import explainers.widgets.anchors as page
    from explainers.widgets import AnchorsExplainer

    e = AnchorsExplainer(source="lecture")
    assert marks(e) == ["✔", "✔", "✔"] and "filter_proposals (the 3 proposals drawn)" in e.check_text
    real = page.rpn_select
    # the lecture's IoU targets tie among overlapping anchors: a moved or missing proposal is not
    # a valid choice either, so ✘ all the same
    for change in (lambda p: p + 25, lambda p: p[:-1]):
        monkeypatch.setattr(page, "rpn_select", lambda *a, change=change, **k: (lambda s: dataclasses.replace(
            s, proposals=change(s.proposals)))(real(*a, **k)))
        e.refresh()
        assert marks(e) == ["✔", "✔", "✘"], e.check_text
    monkeypatch.setattr(page, "rpn_select", real)
    e._rpn["scores"] = torch.full_like(e._rpn["scores"], 0.5)          # every anchor equally likely
    e.refresh()
    assert marks(e) == ["✔", "✔", "✔"]              # another valid choice than torchvision's, or the same
    e._load()                                                          # the lecture's scores again
    e.refresh()
    assert marks(e) == ["✔", "✔", "✔"] and "equal objectness scores" not in e.note.value


def test_fcn_receptive_field_drawn_must_be_autograds_extent_not_only_contain_it(monkeypatch):
    """A box drawn too large (the whole image) used to pass, as only gradients outside it counted:
    now autograd's extent (this image and 3 random ones) must be the box itself."""
    import dataclasses

    import explainers.widgets.fcn as page
    from explainers.widgets import FCNExplainer

    e = FCNExplainer(source="lecture")
    assert marks(e)[-1] == "✔"
    H, W_ = e._cap.image.shape[-2:]
    real = page.pixel_path

    def whole_image(*a, **k):
        path = list(real(*a, **k))
        path[-1] = dataclasses.replace(path[-1], box=(0, 0, W_, H))
        return path

    monkeypatch.setattr(page, "pixel_path", whole_image)
    e.refresh()
    assert marks(e)[-1] == "✘", e.check_text


def _shifted(fn, k: int = 0, by: float = 1.0):
    """``fn`` whose ``k``-th returned value is moved by ``by`` (a wrong result drawn)."""
    def wrong(*a, **kw):
        out = list(fn(*a, **kw))
        out[k] = out[k] + by
        return tuple(out)
    return wrong


def _reversed_keep(fn):
    def wrong(*a, **kw):
        keep, tr = fn(*a, **kw)
        return keep.flip(0), tr
    return wrong


@pytest.mark.parametrize("name, source, attr, make, setup, index", [
    ("RoIPoolAlignExplainer", "lecture", "roi_pool_trace", _shifted, None, 0),
    ("RoIPoolAlignExplainer", "lecture", "roi_align_trace", _shifted, None, 1),
    ("NMSExplainer", "lecture", "batched_nms_trace", _reversed_keep, None, 0),
    ("NMSExplainer", "lecture", "nms_trace", _reversed_keep, {"class_aware": False}, 0),
    ("UnpoolingExplainer", "lecture", "unpool", _shifted, None, 0),
    ("UnpoolingExplainer", "lecture", "unpool", _shifted, {"mode": "bilinear"}, 0),
    ("AnchorsExplainer", "lecture", "anchor_grid", _shifted, None, 0),
    ("AnchorsExplainer", "lecture", "decode_boxes", lambda fn: (lambda *a, **k: fn(*a, **k) + 1.0), None, 1),
])
def test_a_wrong_drawing_op_turns_its_check_red(monkeypatch, name, source, attr, make, setup, index):
    """The op a page draws with, made wrong: the check line entry that compares it with torch /
    torchvision turns ✘ (the others may stay ✔)."""
    from explainers.registry import entry

    e = entry(name).load()(source=source)
    for k, v in (setup or {}).items():
        getattr(e, k).value = v
    assert "✘" not in marks(e), e.check_text
    monkeypatch.setattr(ops, attr, make(getattr(ops, attr)))
    e.refresh()
    assert marks(e)[index] == "✘", e.check_text


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_training_targets_faster_view_checks_each_stage_it_draws(monkeypatch, source):
    """Faster R-CNN view: the anchors' matches, the regression targets and the sampled anchors that
    the page draws (recomputed by explainers.ops), each made wrong, turn their own check ✘."""
    import explainers.models.training_targets as tt
    from explainers.widgets import TrainingTargetsExplainer
    from explainers.widgets.training_targets import VIEWS

    e = TrainingTargetsExplainer(source=source)
    e.view.value = VIEWS[1]
    assert marks(e) == ["✔"] * 6, e.check_text
    real = tt.recompute

    def tampered(what):
        def wrong(run):
            rec = real(run)
            if what == "match":
                m = rec.rpn.match.matches
                m[(m >= 0).nonzero()[0, 0]] = -1                  # one matched anchor said unmatched
            elif what == "encode":
                rec.rpn.regression_targets.add_(0.5)
            else:
                st = rec.rpn_sample
                st.pos_mask[st.pos_mask.nonzero()[0, 0]] = False   # one sampled positive dropped
            return rec
        return wrong

    for what, index in (("match", 1), ("sample", 2), ("encode", 3)):   # 0: the IoU itself
        monkeypatch.setattr(tt, "recompute", tampered(what))
        e.refresh()
        assert marks(e)[index] == "✘", (what, e.check_text)
    monkeypatch.setattr(tt, "recompute", real)
    e.refresh()
    assert marks(e) == ["✔"] * 6


def test_ssd_default_boxes_drawn_are_checked_against_torchvision(monkeypatch):
    import explainers.widgets.single_stage as page
    from explainers.widgets import SingleStageExplainer

    e = SingleStageExplainer(source="lecture")
    e.view.value = "SSD default boxes"
    assert marks(e) == ["✔"] and "DefaultBoxGenerator" in e.check_text
    monkeypatch.setattr(page, "ssd_default_boxes", _shifted(page.ssd_default_boxes, 0, 0.01))
    e.refresh()
    assert marks(e) == ["✘"], e.check_text


def test_roi_pool_checks_which_of_equal_cells_each_bin_took(monkeypatch):
    """Live ReLU features have many tied maxima; the cell drawn as "the maximum" is torchvision's own
    choice (the first in row-major order). Taking the last of equal cells keeps every value, yet ✘."""
    import explainers.ops.roi_pool as rp
    from explainers.widgets import RoIPoolAlignExplainer

    e = RoIPoolAlignExplainer(source="live")
    assert marks(e)[0] == "✔"
    real_argmax = torch.Tensor.argmax

    def last_of_equal(t, dim=None, keepdim=False):
        if dim != 1:
            return real_argmax(t, dim, keepdim)
        return t.shape[1] - 1 - real_argmax(t.flip(1), 1, keepdim)

    monkeypatch.setattr(rp.torch.Tensor, "argmax", last_of_equal)
    e.refresh()
    monkeypatch.undo()
    assert marks(e)[0] == "✘" and "the cell taken differs in" in e.check_text, e.check_text
    assert "max |diff| = 0" in e.check_text.split("✔")[0]        # the values themselves are equal
