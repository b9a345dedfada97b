"""The R-CNN family page: both sources, its checks (and that they can fail), pure frames, the
measured costs, and each "Things to try" line of notebooks/08_rcnn_family.ipynb."""
import json

import pytest
import torch
import torch.nn as nn

from explainers.models import get
from explainers.models.rcnn_family import _crop_pixels, warp_crops
from explainers.widgets.rcnn_family import KINDS, PIPELINES, RCNNFamilyExplainer
from tests.widgets.checks import marks


@pytest.fixture(scope="module")
def lecture():
    return RCNNFamilyExplainer(source="lecture")


@pytest.fixture(scope="module")
def live():
    return RCNNFamilyExplainer(source="live")


def test_both_sources_construct_and_check(lecture, live):
    for e in (lecture, live):
        assert e.error_text == "", e.error_text
        assert marks(e) == ["✔"] * 5, e.check_text
        assert "MultiScaleRoIAlign" in e.check_text and "model's own detections" in e.check_text
        assert "application/vnd.jupyter.widget-view+json" in e._repr_mimebundle_()
    assert "coffee" in lecture.note.value and "shapes detector" in lecture.note.value
    assert "measured on 200 crops, x 2," in lecture.note.value
    warp = lecture._m.rcnn.stages[1]
    assert warp.kind == "warp" and warp.extrapolated and warp.measured_on == 200


def test_state_is_documented_and_frames_are_pure(live):
    doc = RCNNFamilyExplainer._state.__doc__
    for p in PIPELINES:
        live.pipeline.value = p
        assert live.n_steps() == len(live._m.pipeline(p).stages)
        st = live.state()
        assert st["pipeline"] == p and st["n_steps"] == live.n_steps()
        for key in st:
            if key not in ("source", "step", "n_steps"):
                assert key in doc, key
        for k in range(live.n_steps()):
            a, b = live.frame(k), live.frame(k)
            assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
            live.step.value = k                      # and showing it changes nothing the next frame reads
            assert json.dumps(live.frame(k), sort_keys=True, default=str) == json.dumps(a, sort_keys=True,
                                                                                          default=str)
    live.pipeline.value = "R-CNN"


def test_rcnn_costs_most(lecture):
    st = lecture.state()
    assert st["seconds"]["R-CNN"] > st["seconds"]["Fast R-CNN"]
    assert st["macs"]["R-CNN"] > 10 * st["macs"]["Fast R-CNN"]
    # the bars drawn are the measured stages, summed per kind
    fast = lecture._m.fast
    bar = lecture.fig.data[[k for k, _, _ in KINDS].index("backbone")]
    assert bar.y == PIPELINES
    assert bar.x[1] == pytest.approx(sum(s.seconds for s in fast.stages if s.kind == "backbone"))


def _conv_macs(net, h, w):
    """Multiply-accumulates of the shapes backbone on an h x w input, by hand from its layers."""
    macs = 0
    for m in net.body:
        if isinstance(m, nn.Conv2d):       # 3x3, padding 1: the size stays
            macs += h * w * m.out_channels * m.in_channels * 9
        elif isinstance(m, nn.MaxPool2d):
            h, w = h // 2, w // 2
    return macs


def test_macs_by_hand(lecture):
    mm = lecture._m
    net = get("detection", "shapes").module.backbone
    h, w = mm.input_size
    fast_bb = [s for s in mm.fast.stages if s.kind == "backbone"][0]
    assert fast_bb.macs == _conv_macs(net, h, w)
    rc = [s for s in mm.rcnn.stages if s.kind == "backbone"][0]
    assert rc.extrapolated and rc.measured_on == 200 and rc.count == len(mm.ss_boxes)
    assert rc.macs == _conv_macs(net, mm.crop, mm.crop) * len(mm.ss_boxes)     # the same for every crop
    assert mm.crop == 56 and "x 2," in lecture.frame(2)["caption"] and "measured on 200 crops" in \
        lecture.frame(2)["caption"]


def test_warp_by_hand():
    ramp = torch.arange(30, dtype=torch.float32).repeat(3, 8, 1)      # value = column index
    out = warp_crops(ramp, torch.tensor([[10.2, 1.0, 19.5, 6.0]]), 8)
    assert _crop_pixels(torch.tensor([[10.2, 1.0, 19.5, 6.0]]), 8, 30).tolist() == [[10, 1, 20, 6]]
    # 10 columns onto 8: source x = (j + 0.5) * 10 / 8 - 0.5 (clamped at 0), linear in the ramp
    want = torch.tensor([10 + max(0.0, (j + 0.5) * 10 / 8 - 0.5) for j in range(8)])
    assert torch.allclose(out[0, 0, 0], want) and torch.allclose(out[0, 2, 5], want)


def test_tampering_flips_the_checks(live):
    mm = live._m
    boxes, pooled = mm.model_output["boxes"], mm.fast_pooled
    try:
        mm.model_output["boxes"] = boxes + 2.0          # the model's own output is not what was drawn
        live.refresh()
        assert marks(live) == ["✔", "✔", "✔", "✔", "✘"]
        mm.model_output["boxes"] = boxes
        mm.fast_pooled = pooled + 0.5                   # pooled features no longer torchvision's
        live.refresh()
        assert marks(live) == ["✘", "✘", "✔", "✔", "✔"]
        mm.fast_pooled = pooled
        fast_boxes = mm.fast.boxes
        mm.fast.boxes = fast_boxes * 1.1                # Fast R-CNN's detections drawn, scaled
        live.refresh()
        assert marks(live) == ["✔", "✔", "✘", "✔", "✔"]
        mm.fast.boxes = fast_boxes
        rcnn_scores = mm.rcnn.scores
        mm.rcnn.scores = rcnn_scores * 0.9              # R-CNN's detections drawn, other scores
        live.refresh()
        assert marks(live) == ["✔", "✔", "✔", "✘", "✔"]
        mm.rcnn.scores = rcnn_scores
    finally:
        mm.model_output["boxes"], mm.fast_pooled = boxes, pooled
        live.refresh()
    assert marks(live) == ["✔"] * 5


def test_rcnn_crops_are_checked_against_torchvision_resized_crop(monkeypatch):
    """R-CNN's warp (each proposal cut out and resized, run through the network) is compared with
    torchvision's resized_crop: a warp that does not widen boxes to whole pixels turns it ✘."""
    import torch.nn.functional as F

    import explainers.models.rcnn_family as rf
    from explainers.widgets.rcnn_family import RCNNFamilyExplainer

    def shifted(image, boxes, size):              # each crop one pixel to the right
        out = []
        for x1, y1, x2, y2 in torch.as_tensor(boxes).reshape(-1, 4).tolist():
            c1, r1 = int(x1) + 1, int(y1)
            c2, r2 = max(int(x2) + 1, c1 + 1), max(int(y2), r1 + 1)
            out.append(F.interpolate(image[None, :, r1:r2, c1:c2], size=(size, size), mode="bilinear",
                                     align_corners=False)[0])
        return torch.stack(out)

    rf._SS_CACHE.clear()
    monkeypatch.setattr(rf, "warp_crops", shifted)
    e = RCNNFamilyExplainer(source="lecture")
    assert marks(e)[3] == "✘" and marks(e)[:3] == ["✔"] * 3, e.check_text


def test_pasting_masks_is_timed_in_the_mask_branch_not_in_faster_rcnns_nms(monkeypatch):
    """Faster R-CNN's last stage (per-class NMS, boxes back to the image) must not time the pasting
    of Mask R-CNN's masks into the image: that is the mask branch's, which the totals leave out
    (on the lecture photo it made NMS the slowest stage). A paste slowed by 0.3 s shows where it
    is counted; the stage-by-stage masks still equal the model's own."""
    import time

    import torchvision.models.detection.roi_heads as roi_heads
    import torchvision.models.detection.transform as transform

    import explainers.models.rcnn_family as rf
    from explainers.models import make_scene

    original = roi_heads.paste_masks_in_image

    def slow_paste(*args, **kwargs):
        time.sleep(0.3)
        return original(*args, **kwargs)

    monkeypatch.setattr(roi_heads, "paste_masks_in_image", slow_paste)
    monkeypatch.setattr(transform, "paste_masks_in_image", slow_paste)
    mm = rf.measure(make_scene(10_000_005).image, max_timed_crops=8)
    nms = mm.faster.stages[-1]
    assert nms.kind == "nms" and nms.seconds < 0.3, nms
    assert mm.mask_branch.seconds >= 0.3
    assert "masks" in mm.faster_stagewise and rf.checks(mm).detections_equal


# ---------------------------------------------------------------------- Things to try (08_rcnn_family)
def test_try_fast_rcnn_backbone_once_selective_search_slowest(lecture):
    lecture.pipeline.value = "Fast R-CNN"
    st = lecture.state()["stages"]
    fast = {s["kind"]: s for s in st["Fast R-CNN"]}
    rcnn = {s["kind"]: s for s in st["R-CNN"]}
    assert fast["backbone"]["count"] == 1 and rcnn["backbone"]["count"] == len(lecture._m.ss_boxes) > 1000
    assert fast["proposals"]["seconds"] == max(s["seconds"] for s in st["Fast R-CNN"])
    assert "once" in lecture.frame(2)["caption"]
    lecture.pipeline.value = "R-CNN"


def test_try_faster_rcnn_rpn_replaces_selective_search(lecture):
    lecture.pipeline.value = "Faster R-CNN"
    st = lecture.state()
    assert len(st["proposals"]) == 100 and len(st["selective_search"]) == 2000
    kinds = [s["kind"] for s in st["stages"]["Faster R-CNN"]]
    assert "rpn" in kinds and "proposals" not in kinds
    assert st["seconds"]["Faster R-CNN"] < st["seconds"]["Fast R-CNN"] < st["seconds"]["R-CNN"]
    lecture.pipeline.value = "R-CNN"


def test_faster_rcnn_totals_leave_out_mask_rcnns_mask_branch(lecture):
    """The bundled detector is a Mask R-CNN: its mask branch is measured (and its masks checked) but
    it is not one of Faster R-CNN's stages, nor in its bars or totals; the last step says so."""
    lecture.pipeline.value = "Faster R-CNN"
    st = lecture.state()
    stages = st["stages"]["Faster R-CNN"]
    assert [s["kind"] for s in stages][-1] == "nms" and "mask" not in {s["kind"] for s in stages}
    assert st["macs"]["Faster R-CNN"] == sum(s["macs"] for s in stages)
    assert st["mask_branch"]["kind"] == "mask" and st["mask_branch"]["macs"] > 0
    assert "masks" in lecture._m.faster_stagewise                   # ... and still checked
    last = lecture.frame(lecture.n_steps() - 1)["caption"]
    assert "Not counted: its mask branch" in last and "Mask R-CNN" in last
    assert "mask branch" not in lecture.frame(0)["caption"]
    assert "mask" not in {k for k, _, _ in KINDS}
    lecture.pipeline.value = "R-CNN"


def test_try_rcnn_backbone_hundreds_of_times_the_macs(lecture):
    lecture.pipeline.value = "R-CNN"
    stages = lecture.state()["stages"]
    names = [s["name"] for s in stages["R-CNN"]]
    assert names[2] == f"backbone x {len(lecture._m.ss_boxes):,} crops"
    rc = stages["R-CNN"][2]["macs"]
    once = [s for s in stages["Fast R-CNN"] if s["kind"] == "backbone"][0]["macs"]
    assert rc > 100 * once


def test_try_live_shapes_scene(lecture, live):
    n_live, n_lecture = len(live._m.ss_boxes), len(lecture._m.ss_boxes)
    assert 20 < n_live < 500 < n_lecture
    assert marks(live) == ["✔"] * 5


def test_proposals_are_readable_a_few_thin_see_through_boxes_counted_in_words(lecture):
    """A few dozen thin, see-through proposals by default, the count said, a control for more; the
    image takes the left half of the page and the bars keep their own column."""
    from explainers.widgets.rcnn_family import DRAWN_CHOICES, NUMBERED

    e = lecture
    e.pipeline.value = "R-CNN"
    i0 = e._img0
    thin = e.fig.data[i0 + 1]
    assert thin.line.width <= 1 and 0.3 <= thin.opacity < 1
    assert e.drawn.value == 30 and e.state()["drawn"] == 30
    total = len(e._m.pipeline("R-CNN").proposals)
    for n in DRAWN_CHOICES:
        e.drawn.value = n
        fr = e.frame(0)
        boxes = fr["data"][i0 + 1]["x"].count(None)
        assert boxes == min(n, total)
        assert fr["data"][i0 + 2]["x"].count(None) == min(n, NUMBERED)
        assert f"top {min(n, total)} of {total:,} proposals" in fr["caption"]
        assert "proposals drawn" in fr["caption"]
    e.drawn.value = 30
    # the counts and timing bars stay, beside a larger image
    lay = e.fig.layout
    assert lay.xaxis.domain[1] - lay.xaxis.domain[0] >= 0.55
    assert lay.xaxis2.domain[0] > lay.xaxis.domain[1] + 0.1 and lay.xaxis3.domain[0] > lay.xaxis.domain[1] + 0.1
    H, W_ = e._m.image.shape[-2:]
    plot_w = 1280 - lay.margin.l - lay.margin.r
    plot_h = lay.height - lay.margin.t - lay.margin.b
    shown = min(plot_w * 0.55 / W_, plot_h / H)          # pixels per image pixel (equal axes)
    assert shown * W_ >= 600                                # was about 555 px wide
    assert sum(tr.type == "bar" for tr in e.fig.data) == 2 * len(KINDS)


def test_try_proposals_drawn_100_then_300_and_10(lecture):
    """'Set *proposals drawn* to 100, then 300: more of R-CNN's proposals on the photo (the caption says
    "Showing the top 300 of 2,000 proposals"); 10 leaves only the numbered best ten.'"""
    e = lecture
    e.pipeline.value = "R-CNN"
    i0 = e._img0
    counts = {}
    for n in (100, 300, 10):
        e.drawn.value = n
        e.step.value = 0
        counts[n] = list(e.fig.data[i0 + 1].x).count(None)
        if n == 300:
            assert "Showing the top 300 of 2,000 proposals" in e.caption.value
    assert counts[10] < counts[100] < counts[300] == 300
    assert list(e.fig.data[i0 + 2].x).count(None) == 10 == counts[10]     # the thin ones are the numbered ones
    e.drawn.value = 30


def test_lecture_says_the_bundled_models_names_mean_nothing_on_the_photo(lecture, live):
    """Lecture mode runs the shapes detector on a photo to measure costs: where it draws detections,
    they are labelled "shape?" with their score (a cup labelled "circle" would mislead, "score 1.00" read
    as a sure detector) and the caption says why;
    live (a shapes scene) they carry their class names."""
    shapes = ("circle", "square", "triangle")
    for e, says in ((lecture, True), (live, False)):
        for p in PIPELINES:
            e.pipeline.value = p
            with_dets = [k for k in range(e.n_steps()) if " detections" in e.frame(k)["caption"]
                         and "best first" in e.frame(k)["caption"]]
            assert with_dets
            for k in range(e.n_steps()):
                warned = "'shape?': how shape-like a region looks to a model that knows only shapes" in e.frame(k)["caption"]
                assert warned == (says and k in with_dets), (e.source, k)
            labels = [t for t in e.frame(with_dets[-1])["data"][e._text]["text"] if not t.isdigit()]
            named = [t for t in labels if t.split(" ")[0] in shapes]
            if says:
                assert not named and all(t.startswith("shape? ") for t in labels), labels
            elif labels:
                assert named == labels, labels


def test_box_labels_stay_inside_the_image(lecture):
    """Every number and detection label starts inside the image, a line above its bottom edge (none is
    cut at the edge), and still next to its box's top-left corner where that is inside."""
    H, W_ = lecture._img_u8.shape[:2]
    for p in PIPELINES:
        lecture.pipeline.value = p
        for k in range(lecture.n_steps()):
            t = lecture.frame(k)["data"][lecture._text]
            assert all(0 <= x <= 0.9 * W_ for x in t["x"]) and all(0 <= y <= H - H / 18 for y in t["y"])


def test_detection_labels_do_not_cover_one_another(lecture):
    """Overlapping detections on the photo put their labels on one another ("score 0.67" over
    "score 0.38"): a label moves down a line until it covers none (16 px text: a line is 1/18 of the
    image's height, a character about half of that)."""
    H, W_ = lecture._img_u8.shape[:2]
    line = H / 18
    for p in PIPELINES:
        lecture.pipeline.value = p
        t = lecture.frame(lecture.n_steps() - 1)["data"][lecture._text]
        rects = [(x, y, x + len(s) * line / 2, y + line) for x, y, s in zip(t["x"], t["y"], t["text"])]
        for i, a in enumerate(rects):
            for b in rects[:i]:
                covered = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] - 1e-6 and b[1] < a[3] - 1e-6
                assert not covered or a[1] >= H - 2 * line, (p, a, b)
    lecture.pipeline.value = PIPELINES[0]


def test_rcnn_keeps_selective_searchs_best_2000_and_says_so(lecture):
    """An ordinary photo gives selective search 6,000-9,000 boxes, whose pooled features passed the size
    limit after seconds of work ("pool fewer boxes at a time", with no control for it). R-CNN keeps the
    best ~2k (the slide's number): the lecture's photo gives 2,512, the pipelines run on the best 2,000,
    and the page says so."""
    from explainers.models.rcnn_family import MAX_PROPOSALS

    mm = lecture._m
    assert mm.ss_found == 2512 and len(mm.ss_boxes) == MAX_PROPOSALS == 2000
    from explainers.models.rcnn_family import cached_selective_search

    assert torch.equal(mm.ss_boxes, cached_selective_search(mm.image)[0][:2000])       # the best, in rank order
    assert "the best 2,000 of 2,512 selective-search proposals" in lecture.note.value
    lecture.pipeline.value = "R-CNN"
    assert "2,512 boxes, of which R-CNN keeps the best 2,000," in lecture.frame(0)["caption"]


def test_fewer_proposals_where_their_pooled_features_would_pass_the_limit(monkeypatch):
    """The cap is decided before anything is pooled: a backbone whose 2,000 pooled boxes would pass
    MAX_ELEMENTS pools as many as fit (here the limit is lowered to 40 boxes' worth), and every
    check still holds on them."""
    import explainers.models.rcnn_family as rf

    model = get("detection", "shapes")
    per_box = model.module.backbone.out_channels * 7 * 7
    monkeypatch.setattr(rf, "MAX_ELEMENTS", 40 * per_box)
    e = RCNNFamilyExplainer(source="live")
    assert e.error_text == "" and len(e._m.ss_boxes) == 40 < e._m.ss_found
    assert set(marks(e)) == {"✔"}, e.check_text
