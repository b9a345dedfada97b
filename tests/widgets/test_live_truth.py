"""Live pages check the drawn numbers against the model's own tensors, and say what they draw.

Each check is shown to fail when the model's tensor is not what the page drew (tampering)."""
import pytest
import torch

from explainers.registry import EXPLAINERS
from explainers.widgets import (AnchorsExplainer, NMSExplainer, SlidingWindowExplainer, TransposedConvExplainer,
                                UnpoolingExplainer)
from tests.widgets.checks import marks


def test_unpooling_live_checks_the_decoders_own_unpooling():
    e = UnpoolingExplainer(source="live")
    assert e.mode.value == "max" and marks(e) == ["✔", "✔", "✔"] and "decoder's own" in e.check_text
    assert "crop at row" in e.note.value
    st = e.state()
    assert torch.equal(st["output"], st["model_output"])
    e._captured["unpooled"][0] += 1.0          # the model's tensor is no longer what the page draws
    e.refresh()
    assert marks(e) == ["✔", "✔", "✘"]
    e.mode.value = "nearest"
    assert "choose mode 'max'" in e.note.value


def test_transposed_conv_live_says_what_it_draws_and_checks_the_decoder():
    e = TransposedConvExplainer(source="live")
    assert e.dims.value == 2 and marks(e) == ["✔", "✔", "✔"]
    assert "without the bias" in e.note.value and "input channel" in e.note.value
    e._up1["bias"] = e._up1["bias"] + 0.5      # a wrong bias: the sum no longer equals the decoder's output
    e.refresh()
    assert marks(e) == ["✔", "✔", "✘"]
    e.stride.value = 1
    assert "applies there only" in e.note.value and marks(e) == ["✔", "✔"]


def test_nms_live_checks_the_models_detections():
    e = NMSExplainer(source="live")
    assert marks(e) == ["✔", "✔"] and "model's own" in e.check_text
    e.threshold.value = 0.3
    assert "applies with those settings only" in e.note.value and marks(e) == ["✔"]
    e.threshold.value = e._trace.nms_threshold
    e._trace.detections.boxes = e._trace.detections.boxes + 2.0
    e.refresh()
    assert marks(e) == ["✔", "✘"]


def test_anchors_live_compares_with_the_models_anchors_separately():
    e = AnchorsExplainer(source="live")
    assert marks(e) == ["✔"] * 5 and "the model's own anchors" in e.check_text
    e._model_anchors = e._model_anchors + 1
    e.refresh()
    assert marks(e) == ["✔", "✘", "✔", "✔", "✔"]


def test_sliding_window_live_says_it_downscales():
    e = SlidingWindowExplainer(source="live")
    assert "downscaled from" in e.note.value and "128" in e.note.value


@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_state_is_documented_and_matches_the_page(entry):
    cls = entry.load()
    e = cls(source="lecture")
    e.step.value = e.n_steps() - 1
    st = e.state()
    assert st["source"] == "lecture" and st["step"] == e.n_steps() - 1 and st["n_steps"] == e.n_steps()
    doc = type(e)._state.__doc__ or type(e).state.__doc__
    assert doc, f"{entry.name}.state() is not documented"
    for key in st:
        if key not in ("source", "step", "n_steps"):
            assert key in doc, f"{entry.name}: state key {key!r} is not documented"


def test_anchors_page_plots_recall_per_stage_against_an_independent_count():
    import torchvision

    from explainers.models import make_scene

    scene = make_scene(10_000_005)
    e = AnchorsExplainer(source="live")
    tr = e._trace
    sy, sx = tr.scale
    gt = torch.from_numpy(scene.boxes) * torch.tensor([sx, sy, sx, sy])

    def covered(boxes):
        return int((torchvision.ops.box_iou(gt, boxes).max(1).values >= 0.5).sum())

    rec = e.state()["recall"]
    assert rec["all anchors"] == (covered(tr.anchors), len(gt))
    assert rec["after the RPN's NMS"] == (covered(tr.proposals), len(gt))
    assert rec["final detections"] == (covered(tr.detections.boxes * torch.tensor([sx, sy, sx, sy])), len(gt))
    note = e.note.value.replace("&#x27;", "'")
    assert all(f"{stage} {c}/{t}" in note for stage, (c, t) in rec.items())
    e.top_k.value = 1                       # one corrected anchor can cover at most one object
    assert e.state()["recall"]["top 1 corrected"][0] <= 1
    other = AnchorsExplainer(source="live", image=scene.image, gt_boxes=scene.boxes[:1])
    assert other.state()["recall"]["all anchors"][1] == 1
    none = AnchorsExplainer(source="live", image=scene.image)
    assert "recall" not in none.state() and "Objects found" not in none.note.value
