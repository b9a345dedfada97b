"""RoIPoolAlignExplainer on live detectors: the model's own pooler parameters, FPN level, checks, state()."""
import json

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

from explainers import ops
from explainers.models import get, make_scene
from explainers.models.live import Detector
from explainers.widgets import RoIPoolAlignExplainer
from explainers.ops import overlapping_bins
from explainers.widgets.roi import LECTURE_BOX, LECTURE_FEATURES, lecture_features
from tests.widgets.checks import marks

MODEL_CHECK = "the model's own pooled features"
SCENE = 10_000_005            # the live explainer's default image (Explainer.live_image)


def shapes_trace(image=None):
    """The bundled shapes detector's own trace of the image the explainer shows (deterministic)."""
    model = get("detection", "shapes")
    return model, model.trace(make_scene(SCENE).image if image is None else image)


def model_check_passes(e):
    """All three checks shown and ticked: roi_pool, roi_align and the model's own pooled features."""
    return marks(e) == ["✔", "✔", "✔"] and MODEL_CHECK in e.check_text


def line(e):
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", " ", e.note.value))


@pytest.fixture(scope="module")
def fpn_detector():
    """A random-weight Faster R-CNN with an FPN (maps '0'..'3', strides 4..32): k_min 2, k_max 5."""
    torch.manual_seed(0)
    module = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=4, min_size=128, max_size=200)
    return Detector("detection", module.eval(), ["bg", "a", "b", "c"], "random", "cpu")


# ----------------------------------------------------------------------------- the shapes model (one map)
def test_live_draws_with_the_models_pooler_and_matches_its_features():
    model, tr = shapes_trace()
    pool = model.module.roi_heads.box_roi_pool
    e = RoIPoolAlignExplainer(source="live")
    assert e.error_text == ""
    assert (e.sampling.value, e.out_size.value, e.aligned.value) == (pool.sampling_ratio, 7, False) == (2, 7, False)
    assert model_check_passes(e), e.check_text
    for i in (1, 5, 9):
        e.proposal.value = i
        st = e.state()
        assert st["proposal"] == i and torch.equal(st["box"], tr.proposals[i])
        assert st["spatial_scale"] == pool.scales[0] == 0.125 and st["level"] == "0"
        torch.testing.assert_close(st["roi_align"], tr.box_features[i], atol=1e-5, rtol=0)
        assert model_check_passes(e), e.check_text
        assert st["model"]["diff"] <= 1e-5
    # the page says there is one map and no level choice
    assert "its one feature map '0' (scale 1/8): there is no FPN" in line(e)
    assert "proposal #9" in line(e) and "Drawn with the model's output 7x7, sampling ratio 2" in line(e)
    # what the explainer drew before (adaptive sampling) is not what the model pooled
    old = [(ops.roi_align_trace(tr.features["0"][0], p, 7, 0.125, -1)[0] - tr.box_features[i]).abs().max()
           for i, p in enumerate(tr.proposals[:10])]
    assert max(old) > 1e-2


def test_moving_a_control_away_from_the_model_says_so_and_skips_the_model_check():
    e = RoIPoolAlignExplainer(source="live")
    e.proposal.value = 2
    assert model_check_passes(e)
    e.sampling.value = 4
    assert "sampling ratio 4 (the model uses 2)" in line(e)
    assert marks(e) == ["✔", "✔"] and MODEL_CHECK not in e.check_text
    assert "applies to its proposals drawn with its parameters only: this box is drawn with sampling ratio 4" in line(e)
    e.out_size.value = 3
    e.aligned.value = True
    assert "output 3x3 (the model uses 7x7)" in line(e) and "aligned True (the model uses False" in line(e)
    assert marks(e) == ["✔", "✔"]
    st = e.state()
    assert st["output_size"] == (3, 3) and st["sampling_ratio"] == 4 and st["aligned"] is True
    assert st["roi_align"].shape == st["roi_pool"].shape == (64, 3, 3)
    assert st["model"]["diff"] is None and len(st["model"]["deviations"]) == 3
    assert st["model"]["output_size"] == (7, 7) and st["model"]["sampling_ratio"] == 2
    e.sampling.value, e.out_size.value, e.aligned.value = 2, 7, False
    assert model_check_passes(e) and "(the model uses" not in line(e)
    # a box that is no proposal: the model check does not apply, and says why
    e.x1.value = e.x1.value + 1.0
    assert marks(e) == ["✔", "✔"] and "this box is not one of the model's proposals" in line(e)
    assert e.state()["proposal"] is None and e.state()["model"]["pooled"] is None


def test_a_mismatch_with_the_models_features_is_a_cross():
    base = get("detection", "shapes")

    class Off(Detector):
        """The shapes detector, with one pooled value of proposal 0 moved by 0.25."""

        def trace(self, image):
            tr = super().trace(image)
            tr.box_features = tr.box_features.clone()
            tr.box_features[0, 3, 2, 4] += 0.25
            return tr

    e = RoIPoolAlignExplainer(source="live", model=Off("detection", base.module, base.classes, base.weights, "cpu"))
    assert marks(e) == ["✔", "✔", "✘"] and "max |diff| = 0.25" in e.check_text
    assert e.state()["model"]["diff"] == pytest.approx(0.25, abs=1e-6)


def test_tall_image_keeps_y_below_the_width():
    scene = make_scene(10_000_010, size=(256, 112))
    _, tr = shapes_trace(scene.image)
    e = RoIPoolAlignExplainer(source="live", image=scene.image)
    hp, wp = tr.input_tensor.shape[-2:]
    assert (hp, wp) == (256, 128)
    assert (e.x1.max, e.x2.max, e.y1.max, e.y2.max) == (128, 128, 256, 256)
    p = tr.proposals[0]
    assert float(p[3]) > wp                              # this proposal lies below the width
    assert [e.x1.value, e.y1.value, e.x2.value, e.y2.value] == p.tolist()
    assert torch.equal(e.state()["box"], p) and model_check_passes(e)
    # any proposal, set with the sliders, is recognised as the model's
    i = int((tr.proposals[:, 1] > wp).nonzero()[-1, 0])
    for ctrl, v in zip((e.x1, e.y1, e.x2, e.y2), tr.proposals[i].tolist()):
        ctrl.value = v
    assert e.state()["proposal"] == i and model_check_passes(e), e.check_text


def test_live_frames_are_pure():
    e = RoIPoolAlignExplainer(source="live")
    e.step.value = 1
    caption, fig = e.caption.value, json.dumps(e.fig.to_dict(), default=str)
    first = [json.dumps(e.frame(k), default=str) for k in range(e.n_steps())[::-1][:30]]
    assert [json.dumps(e.frame(k), default=str) for k in range(e.n_steps())[::-1][:30]] == first
    assert e.caption.value == caption and json.dumps(e.fig.to_dict(), default=str) == fig


# ----------------------------------------------------------------------------- an FPN detector
def test_fpn_level_is_the_models_level_mapper(fpn_detector):
    image = make_scene(SCENE).image
    tr = fpn_detector.trace(image)
    e = RoIPoolAlignExplainer(source="live", model=fpn_detector, image=image)
    pool = fpn_detector.module.roi_heads.box_roi_pool
    assert (pool.map_levels.k_min, pool.map_levels.k_max) == (2, 5)
    names = [k for k in tr.features if k in pool.featmap_names]
    assert names == ["0", "1", "2", "3"]
    picks = [v for _, v in e.proposal.options if v >= 0]
    seen = set()
    for i in picks:
        e.proposal.value = i
        box = tr.proposals[i]
        idx = int(pool.map_levels([box[None]])[0])
        st = e.state()
        assert st["level"] == names[idx] and st["spatial_scale"] == pool.scales[idx]
        assert st["level_k"] == 2 + idx and f"k = {2 + idx}, map '{names[idx]}'" in line(e)
        assert model_check_passes(e), (i, e.check_text)
        seen.add(st["level"])
    assert len(seen) >= 2, seen
    assert "k = floor(k0 + log2(√(wh)/224)) = floor(4 + log2(√(" in line(e) and "clamped to [2, 5]" in line(e)
    # boxes drawn with the sliders get their level too: small on the finest map, large on a coarser one
    e.proposal.value = -1
    for box, name in (([10.0, 10, 30, 30], "0"), ([0.0, 0, 120, 190], "1")):
        for ctrl, v in zip((e.x1, e.y1, e.x2, e.y2), box):
            ctrl.value = v
        assert e.state()["level"] == name and e.error_text == ""
        assert marks(e) == ["✔", "✔"] and "not one of the model's proposals" in line(e)


def test_fpn_level_follows_a_changed_level_mapper(fpn_detector):
    """The explainer asks the pooler's own mapper: with a different canonical scale the model pools
    from other levels, and the explainer still reproduces its features."""
    pool = fpn_detector.module.roi_heads.box_roi_pool
    real = pool.map_levels
    pool.map_levels = LevelMapper(real.k_min, real.k_max, canonical_scale=56, canonical_level=4)
    try:
        image = make_scene(SCENE).image
        tr = fpn_detector.trace(image)
        e = RoIPoolAlignExplainer(source="live", model=fpn_detector, image=image)
        levels = pool.map_levels([tr.proposals])
        seen = set()
        for idx in levels.unique().tolist()[:3]:
            i = int((levels == idx).nonzero()[0, 0])
            for ctrl, v in zip((e.x1, e.y1, e.x2, e.y2), tr.proposals[i].tolist()):
                ctrl.value = v
            assert e.state()["level"] == e.state()["model"]["featmap_names"][idx]
            assert model_check_passes(e), (i, e.check_text)
            seen.add(idx)
        assert len(seen) >= 2
        assert "/56)" in line(e)
    finally:
        pool.map_levels = real


# ----------------------------------------------------------------------------- state() in lecture mode
def test_state_in_lecture_mode():
    e = RoIPoolAlignExplainer()
    st = e.state()
    assert st["box"].tolist() == pytest.approx(list(LECTURE_BOX))
    assert st["source"] == "lecture" and st["n_steps"] == e.n_steps()
    assert (st["level"], st["level_k"], st["proposal"], st["model"]) == (None, None, None, None)
    assert (st["spatial_scale"], st["sampling_ratio"], st["aligned"], st["output_size"], st["channel"]) == \
        (1.0, 2, False, (2, 2), 0)
    assert [list(r) for r in e.fig.data[2].z] == st["roi_pool"][0].tolist()
    assert [list(r) for r in e.fig.data[3].z] == st["roi_align"][0].tolist()
    f = lecture_features()
    assert f.shape == (512, 8, 8) and f[0].tolist() == LECTURE_FEATURES
    assert torch.equal(st["roi_align"], ops.reference_roi_align(f, st["box"], 2, 1.0, 2, False))
    assert torch.equal(st["roi_pool"], ops.reference_roi_pool(f, st["box"], 2, 1.0))
    e.sampling.value = -1
    assert e.state()["sampling_ratio"] == -1


def test_lecture_is_the_slides_512_x_5_x_4_region_pooled_to_2_x_2_with_overlapping_bins():
    """Slide 7: "512 x 5 x 4 region -> 512 x 2 x 2"; 5 rows into 2 bins share a row in torchvision."""
    e = RoIPoolAlignExplainer()
    st = e.state()
    sx1, sy1, sx2, sy2 = e._pt.snapped_box
    assert (sy2 - sy1 + 1, sx2 - sx1 + 1) == (5, 4) and st["roi_pool"].shape == (512, 2, 2)
    assert overlapping_bins(e._pt.bins) == ([3], [])
    note = e.note.value
    assert "512 x 5 x 4 region" in note and "512 x 2 x 2" in note and "row 3 belongs to two neighbouring bins" in note
    # the bins of torchvision's roi_pool: moving the value in the shared row changes both bins' maxima
    f = lecture_features()
    f[7, 3, 1:5] = 100.0
    out = ops.reference_roi_pool(f, st["box"], 2, 1.0)[7]
    assert (out == 100).all()
    e.channel.value = 511
    assert e.error_text == "" and e.state()["channel"] == 511
    e.out_size.value = 1
    assert "overlap" not in e.note.value


def test_roi_things_to_try_are_true():
    """notebooks/05_roi_pool_align.ipynb, line by line."""
    e = RoIPoolAlignExplainer()
    base = e.state()
    # "Move x1 from 1.30 to 1.60, a twentieth of a cell at a time: RoI Pool's output jumps once, at
    # 1.50 (it rounds x1 to a whole cell), while RoI Align's changes a little at every step."
    assert e.x1.step == 0.05 and e.x1.readout_format == ".2f"             # each position on the slider, readable
    pool, align = [], []
    xs = [round(1.30 + 0.05 * i, 2) for i in range(7)]
    for x1 in xs:
        e.x1.value = x1
        st = e.state()
        pool.append(st["roi_pool"])
        align.append(st["roi_align"])
    pool_steps = [float((b - a).abs().max()) for a, b in zip(pool, pool[1:])]
    align_steps = [float((b - a).abs().max()) for a, b in zip(align, align[1:])]
    jumps = [x for x, s in zip(xs[1:], pool_steps) if s > 0]
    assert jumps == [1.5] and max(pool_steps) >= 1.0                     # flat, one jump (snapping)
    assert all(0 < s < 1.0 for s in align_steps)                         # a little every time
    # "Tick aligned ...: every sample point moves half a cell up and to the left, and only RoI
    # Align's output changes."
    e.x1.value = base["box"][0].item()
    before, b_st = e._at.points.clone(), e.state()
    e.aligned.value = True
    moved = e._at.points - before
    assert torch.allclose(moved, torch.full_like(moved, -0.5)) and "✘" not in e.check_text
    assert torch.equal(e.state()["roi_pool"], b_st["roi_pool"])
    assert not torch.allclose(e.state()["roi_align"], b_st["roi_align"])
    # "source='live' uses the detector's real feature map and its real proposals"
    live = RoIPoolAlignExplainer(source="live")
    st = live.state()
    assert st["proposal"] is not None and st["level"] is not None
    assert torch.equal(st["box"], live._trace.proposals[st["proposal"]])
    assert "model's own pooled features" in live.check_text and "✘" not in live.check_text


def test_live_shows_the_image_under_the_map_and_a_channel_with_signal_in_the_box():
    e = RoIPoolAlignExplainer(source="live")
    img = e.fig.data[14]
    st = e.state()
    scale = st["spatial_scale"]
    assert img.visible is True and img.source.startswith("data:image/png") and e.fig.data[1].opacity < 1
    assert (img.x0, img.dx) == (0.5 * scale, scale)
    f = e._trace.features[st["level"]][0]
    x1, y1, x2, y2 = (float(v) * scale for v in st["box"])
    inside = f[:, int(y1):int(y2) + 1, int(x1):int(x2) + 1].abs().flatten(1).mean(1)
    assert st["channel"] == int(inside.argmax()) and float(inside[st["channel"]]) > 0
    assert "the most active inside the box" in e.note.value
    # another proposal: the channel follows it
    e.proposal.value = e.proposal.options[-1][1]
    st = e.state()
    x1, y1, x2, y2 = (float(v) * st["spatial_scale"] for v in st["box"])
    f = e._trace.features[st["level"]][0]
    inside = f[:, int(y1):int(y2) + 1, int(x1):int(x2) + 1].abs().flatten(1).mean(1)
    assert st["channel"] == int(inside.argmax())


def test_the_shared_bins_note_reads_as_a_sentence():
    """The overlap note names one row, a list ("rows 3, 4 and 7 each belong"), or all of them
    ("every row and column of the region belongs"): it read "row 3, 4, 5, 6, 7 ... belongs"."""
    from explainers.widgets.roi import _listing

    assert _listing("row", [3], 9) == "row 3" and _listing("row", [3, 4, 7], 9) == "rows 3, 4 and 7"
    assert _listing("column", [1, 2, 3], 3) == "every column of the region"
    e = RoIPoolAlignExplainer(source="live")
    rows, cols = overlapping_bins(e._pt.bins)
    sx1, sy1, sx2, sy2 = e._pt.snapped_box
    assert (len(rows), len(cols)) == (sy2 - sy1 + 1, sx2 - sx1 + 1)       # the live box: 5 x 5 into 7 x 7
    assert "every row and column of the region belongs to two neighbouring bins" in e.note.value
