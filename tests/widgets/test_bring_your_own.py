"""Every page that applies works live on a user's torchvision model (random weights here); the
others say in one line why they cannot use it, instead of failing."""
import pytest
import torch
import torchvision

from explainers.models import wrap
from explainers.registry import EXPLAINERS
from explainers.widgets import AnchorsExplainer, NMSExplainer, RoIPoolAlignExplainer
from tests.widgets.checks import marks

D = torchvision.models.detection


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    from tests.models.test_wrap import _faster_rcnn_without_fpn

    return {
        "faster_no_fpn": wrap(_faster_rcnn_without_fpn()),
        "faster": wrap(D.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=4)),
        "fcos": wrap(D.fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=128,
                                         max_size=160, score_thresh=0.01)),
        "ssdlite": wrap(D.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4,
                                                        score_thresh=0.01)),
        "deeplab": wrap(torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=4)),
    }


@pytest.mark.parametrize("name", ["faster", "faster_no_fpn"])
def test_two_stage_model_every_detection_page_checks_green(models, name):
    for cls in (AnchorsExplainer, NMSExplainer, RoIPoolAlignExplainer):
        e = cls(source="live", model=models[name])
        assert not e.failed and e.error_text == ""
        assert marks(e) and set(marks(e)) == {"✔"}, (cls.__name__, e.check_text)
        assert "model's own" in e.check_text


def test_one_stage_model_anchors_and_nms_work_and_roi_says_why_not(models):
    a = AnchorsExplainer(source="live", model=models["fcos"])
    assert not a.failed and marks(a) == ["✔", "✔"] and "no region proposal network" in a.note.value
    n = NMSExplainer(source="live", model=models["fcos"])
    assert not n.failed and marks(n) == ["✔", "✔"]
    r = RoIPoolAlignExplainer(source="live", model=models["fcos"])
    assert r.failed and "FCOS is a one-stage detector" in r.error_text and "no RoI pooling" in r.error_text
    s = AnchorsExplainer(source="live", model=models["ssdlite"])
    assert s.failed and "default boxes" in s.error_text
    assert set(marks(NMSExplainer(source="live", model=models["ssdlite"]))) == {"✔"}


@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_a_segmentation_model_on_any_page_is_one_line_or_works(models, entry):
    e = entry.load()(source="live", model=models["deeplab"])
    if e.failed:
        assert e.error_text.startswith("⚠") and "\n" not in e.error_text
        # one line naming the kind of model the page needs (or the one it was given)
        assert any(w in e.error_text for w in ("segmentation", "SegNet", "patch classifier", "detector"))
        assert e.widget.children[1] is e.error          # the page shows the reason, not a broken plot
    else:
        assert entry.name == "LiveModelExplainer" and e.error_text == ""


def test_a_torchvision_model_as_it_is_works_like_a_wrapped_one():
    """README: "model= on any explainer" takes the torchvision module itself (no wrap() first); what is
    not a model is one line on the page."""
    from explainers.models.live import LiveModel
    from explainers.widgets import LiveModelExplainer, RCNNFamilyExplainer

    torch.manual_seed(0)
    raw = D.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=4)
    for cls in (NMSExplainer, AnchorsExplainer, RoIPoolAlignExplainer, LiveModelExplainer):
        e = cls(source="live", model=raw)
        assert not e.failed and e.error_text == "", (cls.__name__, e.error_text)
        assert isinstance(e.model, LiveModel) and e.model.module is raw
    assert set(marks(NMSExplainer(source="live", model=raw))) == {"✔"}
    r = RCNNFamilyExplainer(source="live", model=raw)
    assert "needs a two-stage detector" not in r.error_text
    for bad in ("mask_rcnn", torch.nn.Linear(2, 2)):
        e = NMSExplainer(source="live", model=bad)
        assert e.failed and e.error_text.startswith("⚠") and "AttributeError" not in e.error_text, e.error_text


@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_a_model_that_fails_on_the_page_is_one_line_and_state_says_so(entry):
    """A model whose forward pass raises something other than a ValueError (here a RuntimeError
    from torch, as a shape mismatch inside a user's module raises) is one line on the page, never a
    traceback out of the constructor; the page draws nothing, so its check line is hidden and
    state() says why."""
    import copy

    from explainers.models import get

    def fail(module, args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x12 and 16x4)")

    for task in ("detection", "segmentation"):
        module = copy.deepcopy(get(task, "shapes").module)
        module.register_forward_pre_hook(fail)
        e = entry.load()(source="live", model=module)         # must not raise
        if e.error_text:
            assert "\n" not in e.error_text and e.check.layout.visibility == "hidden"
            with pytest.raises(ValueError, match="this page shows an error"):
                e.state()
        else:                                                  # a page that does not run this model
            assert e.state()["source"] == "live"


@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_help_on_state_lists_the_explainers_own_keys(entry):
    cls = entry.load()
    doc = cls.state.__doc__
    assert "Always present" in doc and cls._state.__doc__.split()[0] in doc and cls.__name__ in doc


def test_torchvisions_fcos_with_five_levels_draws_its_dense_predictions(models):
    """torchvision's FCOS predicts on five FPN levels: the dense view draws every location, its map
    the finest level, and names the levels; its checks hold."""
    from explainers.widgets import SingleStageExplainer

    e = SingleStageExplainer(source="live", model=models["fcos"])
    assert e.view.value == "dense predictions" and e.error_text == "", e.error_text
    assert set(marks(e)) == {"✔"}, e.check_text
    tr = e._trace
    assert len(tr.feature_sizes) == 5 and "on 5 feature maps" in e.note.value
    first = e.frame(0)
    Hf, Wf = tr.feature_sizes[0]
    heat = next(d for d in first["data"].values() if "z" in d)["z"]
    assert (len(heat), len(heat[0])) == (Hf, Wf) and "the finest of its 5 maps" in first["caption"]
    for k in range(1, min(4, e.n_steps())):
        assert e.frame(k)["caption"]


def test_notes_say_whose_model_is_drawn():
    """A live page on a user's model says "your model's", not the bundled model's name."""
    from explainers.widgets import MaskHeadExplainer, RCNNFamilyExplainer

    import copy

    from explainers.models import get

    own = wrap(copy.deepcopy(get("detection", "shapes").module))      # the user's copy: another model
    mine = RCNNFamilyExplainer(source="live", model=own)
    assert "use your model's network" in mine.note.value and "shapes detector" not in mine.note.value
    assert "use the shapes detector's network" in RCNNFamilyExplainer(source="live").note.value
    assert "Live: the shapes Mask R-CNN's detection #0" in MaskHeadExplainer(source="live").note.value
    assert "Live: your model's detection #0" in MaskHeadExplainer(source="live", model=own).note.value


def test_a_half_precision_model_works_on_every_live_page_and_the_note_says_it_was_converted():
    """A float16 model (as one saved after ``model.half()``) is converted to float32 by the page, not
    refused: the detector pages run with every check ✔ and the note says what was converted."""
    import copy
    import warnings

    from explainers.models import get
    from explainers.widgets.roi import RoIPoolAlignExplainer
    from explainers.widgets.nms import NMSExplainer

    for cls in (RoIPoolAlignExplainer, NMSExplainer):
        module = copy.deepcopy(get("detection", "shapes").module).half()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = cls(source="live", model=module)
        assert not e.error_text, e.error_text
        assert "✔" in e.check_text and "✘" not in e.check_text, e.check_text
        assert "float16 weights were converted to float32" in e.note.value


def test_the_live_model_page_says_a_model_was_converted():
    import copy
    import warnings

    from explainers.models import get
    from explainers.widgets.live_model import LiveModelExplainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = LiveModelExplainer(model=copy.deepcopy(get("detection", "shapes").module).double())
    assert not e.error_text, e.error_text
    assert "float64 weights were converted to float32" in e.info.value


def test_a_model_given_to_a_lecture_page_that_draws_none_is_said_to_be_unused():
    """NMSExplainer(model=m) showed the slide's numbers and said nothing: a notebook user believed the
    boxes were their model's. The note says the model is not used and how to draw it; live, or on a
    page whose lecture runs the model (the live model page), nothing is said."""
    from explainers.models import get
    from explainers.widgets import LiveModelExplainer, NMSExplainer, UnpoolingExplainer

    det = get("detection", "shapes")
    lecture = NMSExplainer(model=det)
    assert "not used here" in lecture.note.value and 'source="live"' in lecture.note.value
    assert "not used here" in UnpoolingExplainer(model=get("segmentation", "shapes")).note.value
    assert "not used here" not in NMSExplainer(source="live", model=det).note.value
    assert "not used here" not in NMSExplainer().note.value
    assert "not used here" not in LiveModelExplainer(model=det).note.value


def test_the_live_model_page_draws_a_one_stage_detector_and_refuses_a_patch_classifier_in_words():
    """A bundled one-stage model gave three empty "(no model)" panels and no word: it is drawn in the
    detection panel; the patch classifier is refused with one line naming the page that shows it."""
    from explainers.models import load
    from explainers.widgets import LiveModelExplainer

    e = LiveModelExplainer(source="live", model=load("onestage", "shapes"))
    titles = [a.text for a in e.fig.layout.annotations]
    assert e.error_text == "" and titles[1].startswith("detection: ") and "object(s)" in titles[1]
    assert "not what your model does" in titles[0] and e.state()["detection"] is not None
    p = LiveModelExplainer(source="live", model=load("patch", "shapes"))
    assert "does none of them" in p.error_text and "sliding-window page" in p.error_text
