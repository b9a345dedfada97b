"""A page puts lecture / live and the live image on the page (Voila hides the code)."""
from explainers.app import Page
from explainers.registry import EXPLAINERS
from explainers.widgets import LiveModelExplainer, NMSExplainer, UnpoolingExplainer
from tests.widgets.checks import marks


def test_lecture_and_live_are_one_click_and_each_is_built_once():
    first = UnpoolingExplainer()
    page = Page(first)
    assert page.explainer is first and page.sample.layout.display == "none"
    page.source.value = "live"
    live = page.explainer
    assert live.source == "live" and live.image is None and page.sample.layout.display is None
    assert "decoder's own" in live.check_text and page.body.children == (live.widget,)
    # the switch sits beside the title of the explainer shown, and only there
    assert live.header_tools.children == (page.bar,) and first.header_tools.children == ()
    page.source.value = "lecture"
    assert page.explainer is first and page.body.children == (first.widget,)
    page.source.value = "live"
    assert page.explainer is live                   # kept, not rebuilt
    page.sample.value = "shapes scene 2"            # another image: another live explainer
    other = page.explainer
    assert other is not live and other.image is not None and other.source == "live"
    page.source.value = "lecture"
    assert page.explainer is first                  # the lecture's is always kept


def test_a_page_taught_from_ground_truth_offers_only_images_that_have_one():
    """The training-targets page needs the image's true boxes: live, it offers the shapes scenes (whose
    ground truth the page passes on) and no photo (which has none), so every choice draws."""
    import torch

    from explainers.models import make_scene
    from explainers.widgets import TrainingTargetsExplainer
    from explainers.widgets.live_model import SCENE_SEEDS

    page = Page(TrainingTargetsExplainer())
    assert list(page.sample.options) == list(SCENE_SEEDS)
    page.source.value = "live"
    for name, seed in SCENE_SEEDS.items():
        page.sample.value = name
        e = page.explainer
        assert page.error.value == "" and e.error_text == "" and set(marks(e)) == {"✔"}, (name, e.error_text)
        if name != "shapes scene 1":
            assert torch.equal(torch.as_tensor(e.target["boxes"]), torch.as_tensor(make_scene(seed).target()["boxes"]))
    assert "chelsea (cat)" in Page(NMSExplainer()).sample.options       # the other pages keep every image


def test_a_failure_stays_on_the_page():
    page = Page(NMSExplainer())
    page.cls = lambda **kw: (_ for _ in ()).throw(ValueError("no detector here"))
    page.source.value = "live"
    assert "no detector here" in page.error.value and page.body.children[0] is page._built[("lecture", None)].widget


def test_the_live_model_page_has_its_own_image_chooser():
    page = Page(LiveModelExplainer())
    assert page.explainer.header_tools.children == ()          # no lecture / live switch, no second chooser
    nms = Page(NMSExplainer())
    assert nms.bar.children == (nms.source, nms.sample)
    title = nms.explainer.widget.children[0]
    assert title.children[1].children == (nms.bar,)            # beside the title, not above it


def test_every_notebook_shows_its_explainer_on_a_page_in_four_lines():
    import json

    from explainers.app import NOTEBOOKS_DIR

    for e in EXPLAINERS:
        nb = json.loads((NOTEBOOKS_DIR / f"{e.notebook}.ipynb").read_text())
        code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        assert len(code) == 1 and len([ln for ln in code[0].splitlines() if ln.strip()]) <= 4
        assert ("Page(explainer)" in code[0]) == e.switch


def test_another_image_keeps_the_controls_that_do_not_depend_on_the_image():
    """A student who set the IoU threshold, live, and picks another image keeps that threshold (the new
    image's page started again from the model's values, unsaid); the lecture's numbers are not
    touched by the live page's controls, nor a pixel or a box by another image's."""
    page = Page(NMSExplainer())
    page.source.value = "live"
    first = page.explainer
    first.threshold.value, first.class_aware.value, first.top_n.value = 0.3, False, 40
    page.sample.value = "shapes scene 2"
    other = page.explainer
    assert other is not first and other.error_text == "" and set(marks(other)) == {"✔"}, other.error_text
    assert (other.threshold.value, other.class_aware.value, other.top_n.value) == (0.3, False, 40)
    assert other.state()["iou_threshold"] == 0.3                # drawn with it, not only shown on the control
    other.threshold.value = 0.6
    page.sample.value = "shapes scene 1"                    # back to the first image: it follows too
    assert page.explainer.threshold.value == 0.6
    page.source.value = "lecture"                           # the slide's numbers stay the slide's
    assert page.explainer.threshold.value == 0.5


def test_every_image_free_control_is_a_control_of_its_page():
    """Each name in ``image_free`` is a value control of the explainer (not the step or the speed),
    and every page with an image choice keeps at least one control across images."""
    import ipywidgets as W

    for row in EXPLAINERS:
        cls = row.load()
        assert bool(cls.image_free) == row.switch, row.name
        if cls.image_free:
            e = cls()
            for name in cls.image_free:
                control = getattr(e, name)
                assert isinstance(control, W.ValueWidget) and control not in (e.step, e.speed), (row.name, name)


def test_a_page_keeps_two_live_images_and_lets_go_of_older_ones():
    """A student who tried every image kept every live explainer built (0.3-0.4 GB each on the
    unpooling, transposed-convolution and FCN pages). A page keeps the lecture and the last KEEP_LIVE
    live ones; an older one is closed and collected, and built again (with the controls) if chosen."""
    import gc
    import weakref

    from explainers.app.page import KEEP_LIVE

    page = Page(UnpoolingExplainer())
    page.source.value = "live"
    first = page.explainer
    gone = weakref.ref(first)
    from ipywidgets.widgets.widget import _instances

    ids = [w.model_id for w in (first.step, first.plot, first.mode, first.widget)]
    first.mode.value = "nearest"
    names = list(page.sample.options)
    for name in names[1:KEEP_LIVE + 1]:
        page.sample.value = name
    assert len([k for k in page._built if k[0] == "live"]) == KEEP_LIVE and ("lecture", None) in page._built
    del first
    gc.collect()
    assert gone() is None                                   # nothing holds it: its memory is given back
    assert not set(ids) & set(_instances)                   # its widgets closed (in the browser too)
    page.sample.value = names[0]                            # chosen again: built again, the control kept
    again = page.explainer
    assert again.error_text == "" and again.mode.value == "nearest" and set(marks(again)) == {"✔"}


def test_the_tour_keeps_three_pages_and_lets_go_of_older_ones():
    import gc
    import weakref

    from explainers.app.tour import KEEP_PAGES, Tour

    tour = Tour()
    first = weakref.ref(tour._built[tour.pick.value])
    for name in ("NMSExplainer", "RoIPoolAlignExplainer", "TransposedConvExplainer"):
        tour.pick.value = name
    assert len(tour._built) == KEEP_PAGES and list(tour._built)[-1] == "TransposedConvExplainer"
    gc.collect()
    assert first() is None
    tour.pick.value = "UnpoolingExplainer"                  # built again when chosen again
    assert tour.body.children == (tour._built["UnpoolingExplainer"].widget,) and tour.error.value == ""


def test_the_explainer_a_page_was_given_is_never_closed():
    """Page(my_live_explainer) closed the user's own instance (their image, their model) at the first image
    change; coming back built a default one. The instance given is kept and shown again."""
    import numpy as np

    mine = NMSExplainer(source="live", image=np.full((64, 96, 3), 200, np.uint8))
    page = Page(mine)
    names = list(page.sample.options)
    page.sample.value = names[1]
    page.sample.value = names[2]
    assert mine.widget.comm is not None and mine.plot.comm is not None
    page.sample.value = names[0]
    assert page.explainer is mine


def test_closing_an_explainer_leaves_none_of_its_widgets_registered():
    """Widget.close() leaves a widget's layout and style registered: 40-60 widgets a closed explainer,
    about 2,700 a tour cycle. Building and closing a page leaves the registry as it was."""
    import gc

    from ipywidgets.widgets.widget import _instances

    NMSExplainer(source="live").close()                     # a first build warms every cache
    gc.collect()
    before = set(_instances)
    for _ in range(2):
        NMSExplainer(source="live").close()
    gc.collect()
    assert set(_instances) - before == set()
