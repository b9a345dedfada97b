"""MaskHeadExplainer: both sources, checks, state, pure frames, the notebook's Things to try,
and the live check failing when the model's output mask is not what the page pasted."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from explainers.ops.masks_reference import reference_paste_mask
from explainers.widgets.mask_head import MaskHeadExplainer
from tests.widgets.checks import marks

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "11_mask_head.ipynb"


@pytest.fixture(scope="module")
def lecture():
    return MaskHeadExplainer(source="lecture")


@pytest.fixture(scope="module")
def live():
    return MaskHeadExplainer(source="live")


def test_both_sources_construct_and_agree(lecture, live):
    assert lecture.error_text == "" and marks(lecture) == ["✔", "✔", "✔"]
    assert "paste_masks_in_image" in lecture.check_text
    assert live.error_text == "" and marks(live) == ["✔", "✔", "✔", "✔"]
    assert "model's own output mask" in live.check_text and "forward hooks" in live.note.value
    assert lecture.n_steps() == live.n_steps() == 6
    assert "application/vnd.jupyter.widget-view+json" in live._repr_mimebundle_()


def test_state_holds_what_is_drawn(lecture, live):
    for e in (lecture, live):
        st = e.state()
        for key in st:
            if key not in ("source", "step", "n_steps"):
                assert key in type(e)._state.__doc__, key
        assert st["roi_features"].shape[-2:] == (14, 14) and st["logits"].shape[-2:] == (28, 28)
        assert st["padded"].shape == (30, 30) and st["pasted"].shape == e._image_tensor().shape[-2:]
        assert torch.equal(st["binary"], st["pasted"] > st["threshold"])
        # an independent check: torchvision itself on the drawn probability and box
        ref = reference_paste_mask(st["probability"], st["box"], tuple(st["pasted"].shape))
        assert float((ref - st["pasted"]).abs().max()) <= 1e-6
        assert torch.equal(st["probability"], torch.sigmoid(st["logits"][st["label"]]))
        assert e.fig.data[2].z is not None and len(e.fig.data[2].z) == 14
    st = live.state()
    assert st["model_mask"] is not None and torch.equal(st["binary"], st["model_mask"] > 0.5)
    tr = live._trace
    assert torch.equal(st["roi_features"], tr.roi_features[st["detection"]])       # captured, not recomputed
    assert lecture.state()["model_mask"] is None and lecture.state()["score"] is None


def test_frames_are_pure_and_steps_add_panels(live):
    before = json.dumps(live.fig.to_dict(), default=str)
    first = [json.dumps(live.frame(k), default=str) for k in range(6)]
    assert [json.dumps(live.frame(k), default=str) for k in range(6)] == first
    assert json.dumps(live.fig.to_dict(), default=str) == before
    shown = [sum(p["visible"] for p in live.frame(k)["data"].values()) for k in range(6)]
    assert shown == sorted(shown) and shown[0] < shown[-1] == len(live.frame(5)["data"])
    assert all(live.frame(k)["caption"].startswith(f"Step {k + 1}") for k in range(6))


def test_try_pick_another_detection():
    e = MaskHeadExplainer(source="live")
    assert len(e.detection.options) >= 2
    a = e.state()
    e.detection.value = 1
    b = e.state()
    assert not torch.equal(a["box"], b["box"]) and not torch.equal(a["pasted"], b["pasted"])
    assert not torch.equal(a["roi_features"], b["roi_features"])
    assert marks(e) == ["✔", "✔", "✔", "✔"]
    lec = MaskHeadExplainer(source="lecture")
    assert [lec._classes[k] for k in lec._example["labels"].tolist()] == ["circle", "square", "triangle"]
    a = lec.state()
    lec.detection.value = 2          # the notebook's own mode: box, 14 x 14 features and pasted mask follow too
    b = lec.state()
    assert b["name"] == "triangle" and marks(lec) == ["✔", "✔", "✔"]
    assert not torch.equal(a["box"], b["box"]) and not torch.equal(a["pasted"], b["pasted"])
    assert not torch.equal(a["roi_features"], b["roi_features"]) and b["roi_features"].shape[-2:] == (14, 14)


def test_try_raise_the_threshold_to_0_9():
    for source in ("lecture", "live"):
        e = MaskHeadExplainer(source=source)
        low = e.state()["binary"]
        e.threshold.value = 0.9
        high = e.state()["binary"]
        assert high.sum() < low.sum() and not (high & ~low).any()      # shrinks, never grows
        ys, xs = torch.nonzero(high, as_tuple=True)
        x1, y1, x2, y2 = e.state()["box"].tolist()
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert abs(xs.float().mean() - cx) < 0.25 * (x2 - x1) and abs(ys.float().mean() - cy) < 0.25 * (y2 - y1)
        assert "✘" not in e.check_text and "above 0.90" in e.frame(5)["caption"]


def test_try_step_5_the_dashed_box_is_larger_by_30_over_28(lecture):
    lecture.step.value = 4
    st = lecture.state()
    ex, box = st["expanded_box"].float(), st["box"]
    assert lecture._v.paste.scale == 30 / 28 and st["padded"].shape == (30, 30)
    assert ex[0] <= box[0] and ex[1] <= box[1] and ex[2] >= box[2] - 1 and ex[3] >= box[3] - 1
    grown = (box[2:] - box[:2]) * 30 / 28
    assert torch.allclose(ex[2:] - ex[:2], grown, atol=1.01)
    assert "30/28" not in lecture.frame(4)["caption"] and "1.0714" in lecture.frame(4)["caption"]
    assert lecture.frame(4)["data"][7]["visible"]                          # the dashed (expanded) box
    # the notebook's numbers: whole pixels (both edge pixels counted) make it a little larger still
    assert st["name"] == "circle" and float(box[2] - box[0]) == 40 and st["resized"].shape[-1] == 44
    assert "44 pixels wide around the 40-pixel circle" in json.dumps(json.loads(NOTEBOOK.read_text()))
    # the caption's numbers add up for a student: columns x1 to x2 with both ends is x2 - x1 + 1 pixels
    ex = [int(v) for v in lecture._v.paste.expanded_box.tolist()]
    h, w = lecture._v.paste.size
    assert w == ex[2] - ex[0] + 1 and h == ex[3] - ex[1] + 1
    caption = lecture.frame(4)["caption"]
    assert (f"columns {ex[0]} to {ex[2]}, rows {ex[1]} to {ex[3]}, both ends included, so {w}×{h} pixels"
            in caption), caption


def test_try_live_equals_the_models_output_mask_pixel_for_pixel(live):
    for i in range(len(live.detection.options)):
        live.detection.value = i
        st = live.state()
        assert torch.equal(st["binary"], st["model_mask"] > st["threshold"])
        assert st["checks"]["model_diff"] <= 1e-6 and st["checks"]["model_binary_diff"] == 0
        assert marks(live) == ["✔", "✔", "✔", "✔"]
    live.detection.value = 0


def test_tampering_the_models_mask_flips_the_live_check():
    e = MaskHeadExplainer(source="live")
    masks = e._trace.masks.clone()
    masks[0] = torch.roll(masks[0], 3, dims=1)         # the model's output mask, moved 3 pixels
    e._trace = dataclasses.replace(e._trace, masks=masks)   # the cached trace itself stays untouched
    e.refresh()
    assert marks(e) == ["✔", "✔", "✘", "✘"]


def test_a_model_changed_in_place_is_traced_again_not_served_from_the_cache():
    """The traces are cached per model and image; weights changed in place (an optimizer step, a
    load_state_dict) must give a new trace, equal to the changed model's own output mask."""
    import copy

    from explainers.models import get, make_scene, wrap

    model = wrap(copy.deepcopy(get("instance", "shapes").module))
    before = MaskHeadExplainer(source="live", model=model)
    assert marks(before) == ["✔", "✔", "✔", "✔"]
    old = before.state()["logits"].clone()
    with torch.no_grad():
        model.module.roi_heads.mask_predictor.mask_fcn_logits.bias.add_(2.0)
    after = MaskHeadExplainer(source="live", model=model)
    assert marks(after) == ["✔", "✔", "✔", "✔"], after.check_text        # the changed model's own mask
    assert torch.allclose(after.state()["logits"], old + 2.0, atol=1e-4)
    own = model(make_scene(10_000_005).image).masks                    # a plain call of the changed model
    assert torch.equal(after._trace.masks, own[:, 0] if own.dim() == 4 else own)


def test_a_model_without_a_mask_branch_is_refused_in_words():
    from explainers.models import get

    e = MaskHeadExplainer(source="live", model=get("segmentation", "shapes"))
    assert "needs a Mask R-CNN" in e.error_text


def test_text_is_projector_sized(live):
    assert live.fig.layout.font.size >= 16
    for a in live.fig.layout.annotations:
        assert a.font.size is None or a.font.size >= 16
    assert 420 <= live.fig.layout.height <= 560


def _panels_at(e, k):
    """For step k: {axis number: (axes shown, any visible trace with content, title)}."""
    import plotly.graph_objects as go

    fr = e.frame(k)
    fig = go.Figure(e.fig)
    for i, props in fr["data"].items():
        fig.data[i].update(props)
    fig.layout.update(fr.get("layout", {}))
    out = {}
    for n in range(1, 11):
        ax = fig.layout[f"xaxis{n if n > 1 else ''}"]
        drawn = [t for t in fig.data if (t.xaxis or "x") == f"x{n if n > 1 else ''}" and t.visible is not False
                 and ((t.type == "image" and t.source) or (t.type == "heatmap" and t.z is not None))]
        out[n] = (ax.visible is not False, bool(drawn), fig.layout.annotations)
    return out, fig


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_no_shown_panel_is_ever_empty(source, lecture, live):
    e = lecture if source == "lecture" else live
    for k in range(6):
        panels, fig = _panels_at(e, k)
        for n, (shown, drawn, _) in panels.items():
            assert not shown or drawn, (k, n)           # a panel with axes always draws something
        hidden = [n for n, (shown, _, _) in panels.items() if not shown]
        titles = [a.text for a in fig.layout.annotations]
        # each hidden panel says at which step it is drawn (the logit maps: their first title)
        for n in hidden:
            if n in (2, 3, 7, 9):
                assert f"at step {dict([(2, 2), (3, 3), (7, 4), (9, 6)])[n]}" in titles[n - 1], (k, n, titles)
    panels, _ = _panels_at(e, 0)
    assert [n for n, p in panels.items() if p[0]] == [1, 8]          # step 1: the image and the box zoomed
    assert all(p[0] for p in _panels_at(e, 5)[0].values())          # the last step: every panel
    assert e.frame(0)["layout"]["annotations"][7]["text"] == "5 the box, zoomed"
    assert e.frame(4)["layout"]["annotations"][7]["text"].startswith("5 pasted")


def test_panels_read_in_order(lecture):
    """The panel numbers read 1, 2, 3 across the top row and 4, 5, 6 across the bottom row."""
    fig = go_figure_at(lecture, 5)
    by_row = {}
    for a in fig.layout.annotations:
        num = (a.text or "").split(" ")[0]
        if num.isdigit():
            by_row.setdefault(round(a.y, 2), []).append((a.x, int(num)))
    rows = [[n for _, n in sorted(r)] for _, r in sorted(by_row.items(), reverse=True)]
    assert rows == [[1, 2, 3], [4, 5, 6]], rows


def go_figure_at(e, k):
    return _panels_at(e, k)[1]


def test_logit_colours_match_the_caption(lecture):
    """Blue > 0 inside, as the caption says: the colour scale runs red (low) to blue (high)."""
    import plotly.colors as pc

    hm = lecture.fig.data[10]
    scale = pc.get_colorscale(hm.colorscale) if isinstance(hm.colorscale, str) else [list(c) for c in hm.colorscale]
    low, high = scale[0][1], scale[-1][1]
    rgb = lambda c: pc.unlabel_rgb(c) if c.startswith("rgb") else pc.hex_to_rgb(c)
    assert not hm.reversescale
    assert rgb(high)[2] > rgb(high)[0] and rgb(low)[0] > rgb(low)[2]
    assert "blue > 0" in lecture.frame(2)["caption"]


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_a_threshold_change_draws_what_a_full_redraw_draws(source):
    """A threshold change redraws only the thresholded panels: the figure must equal the one
    drawn from scratch, after any mix of detection and threshold changes."""
    e = MaskHeadExplainer(source=source)
    for detection, threshold in ((0, 0.3), (0, 0.8), (len(e.detection.options) - 1, 0.8), (0, 0.45)):
        e.detection.value = e.detection.options[detection][1] if isinstance(e.detection.options[0], tuple) \
            else e.detection.options[detection]
        e.threshold.value = threshold
        e.step.value = e.n_steps() - 1
        quick = json.dumps(e.fig.to_dict(), default=str)
        e._drawn_for = None                   # forget what was drawn: the next refresh draws everything
        e.refresh()
        assert json.dumps(e.fig.to_dict(), default=str) == quick, (detection, threshold)
