"""The plot view's JavaScript alone in a real (headless) Chromium, without a server: a stand-in
for the widget model feeds it the figures and patches the kernel sends, and the tests read what
plotly.js drew (axis types, ranges, bars).

Its own module: one playwright instance at a time (the Voila pages' tests hold theirs for their
module). Selected with ``-m browser``; skipped when Chromium or playwright is missing.
"""
from pathlib import Path

import pytest

from explainers.registry import EXPLAINERS

pytestmark = [pytest.mark.browser, pytest.mark.slow]
from tests.chromium import CHROMIUM, require_chromium
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def bare_browser():
    """Chromium without a server: the plot view's JavaScript alone (see :func:`view_page`)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def view_page(browser, folder, figure):
    """A page with the plot view (its JavaScript, with a stand-in for the widget model) showing
    ``figure``; ``window.applyPatch(p)`` and ``window.setFigure(f)`` do what the kernel's messages do."""
    import json

    import plotly

    from explainers.widgets._plotview import _JS

    (folder / "plotly.min.js").write_bytes((Path(plotly.__file__).parent / "package_data" / "plotly.min.js")
                                           .read_bytes())
    html = folder / "view.html"
    html.write_text(
        "<html><body><div id='el' style='width:1200px'></div>"
        "<script src='plotly.min.js'></script><script type='module'>"
        f"const src = {json.dumps(_JS)};"
        "const mod = await import(URL.createObjectURL(new Blob([src], {type: 'text/javascript'})));"
        f"const values = {{figure: {json.dumps(figure)}, patch: null, config: {{}}}};"
        "const handlers = {};"
        "const model = {get: (k) => values[k], on: (ev, f) => { handlers[ev] = f; }};"
        "await mod.default.render({model, el: document.getElementById('el')});"
        "window.applyPatch = (p) => { values.patch = p; handlers['change:patch'](); };"
        "window.setFigure = (f) => { values.figure = f; handlers['change:figure'](); };"
        "window.viewReady = true;</script></body></html>", encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(html.as_uri())
    page.wait_for_function("() => window.viewReady === true", timeout=60_000)
    return page


_RANGES = ("(axes) => { const gd = document.querySelector('.explainers-plot'); const o = {};"
           " for (const a of axes) o[a] = gd._fullLayout[a].range; return o; }")


def _ranges_drawn_as_asked(page, asked: dict, reversed_axes=()) -> list:
    """The axes not drawn with the range asked for (in its direction), and the axes asked to be
    reversed (autorange="reversed", y down) that are not."""
    got = page.evaluate(_RANGES, list(asked) + list(reversed_axes))
    wrong = [(a, r, got[a]) for a, r in asked.items()
             if r is not None and any(abs(x - y) > 1e-6 for x, y in zip(got[a], r))]
    return wrong + [(a, "reversed", got[a]) for a in reversed_axes if not got[a][0] > got[a][1]]


def test_an_axis_that_changes_from_numbers_to_names_draws_its_bars(bare_browser, tmp_path):
    """plotly.js keeps the axis type it guessed first; a patch that turns channel numbers into class
    names must still draw its bars (the FCN page's last step drew an empty panel), and a type the
    figure sets stays as set."""
    figure = {"data": [{"type": "bar", "x": [0, 1, 2, 3], "y": [1, 2, 3, 4]}],
              "layout": {"height": 300, "yaxis": {"type": "log"}}}
    bars = ("() => { const gd = document.querySelector('.explainers-plot');"
            " return [gd._fullLayout.xaxis.type, gd._fullLayout.yaxis.type,"
            " Array.from(gd.querySelectorAll('.bars .point path')).filter(p => (p.getAttribute('d') || '')"
            ".length > 3).length]; }")
    page = view_page(bare_browser, tmp_path, figure)
    try:
        assert page.evaluate(bars) == ["linear", "log", 4]
        page.evaluate("() => window.applyPatch({data: {0: {x: ['background', 'circle', 'square'],"
                      " y: [1, 2, 3]}}, layout: {}})")
        page.wait_for_function(f"() => ({bars})()[0] === 'category'", timeout=10_000)
        assert page.evaluate(bars) == ["category", "log", 3]
    finally:
        page.close()


@pytest.mark.parametrize("source", ["lecture", "live"])
@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_every_step_draws_the_axis_ranges_it_asks_for(bare_browser, tmp_path, entry, source):
    """Each step's patch, applied by the plot view in Chromium, draws exactly the axis ranges the
    step asks for. plotly.js's own update stretched the range of an axis whose scale is tied to
    another's (square cells) instead of shrinking its domain: the FCN's feature map at 40 x 40
    was drawn on an axis running -15..54."""
    e = entry.load()(source=source)
    assert e.error_text == "", e.error_text        # every page builds in both sources (a skip hid that)
    figure = e.plot.figure
    patches = []
    # a step's patch holds every property its frame sets, whatever came before: a sample of the
    # steps (at most 25, the first and the last among them) is drawn in turn
    n = e.n_steps()
    for k in sorted({round(i * (n - 1) / 24) for i in range(25)} if n > 25 else range(n)):
        e.show_step(k)
        patches.append(e.plot.patch)
    page = view_page(bare_browser, tmp_path, figure)
    try:
        wrong = []
        autorange = {a: v.get("autorange") for a, v in figure["layout"].items()
                     if a.startswith(("xaxis", "yaxis")) and isinstance(v, dict)}
        for k, p in enumerate(patches):
            page.evaluate("(p) => window.applyPatch(p)", p)
            axes = {a: v for a, v in p["layout"].items() if a.startswith(("xaxis", "yaxis")) and isinstance(v, dict)}
            autorange.update({a: v["autorange"] for a, v in axes.items() if "autorange" in v})
            asked = {a: v["range"] for a, v in axes.items() if "range" in v and v.get("autorange") is not True}
            flipped = [a for a, r in autorange.items() if r == "reversed" and a not in asked]
            wrong += [(k, *w) for w in _ranges_drawn_as_asked(page, asked, flipped)]
        assert not wrong, wrong[:5]
    finally:
        page.close()


def test_a_control_change_draws_the_new_ranges(bare_browser, tmp_path):
    """A control change sends the whole figure: the sliding window's label map, 22 columns wide at
    stride 2, is 8 wide at stride 5, and its axis must say so (it kept 22, ticks past the map)."""
    from explainers.widgets import SlidingWindowExplainer

    e = SlidingWindowExplainer(source="live")
    page = view_page(bare_browser, tmp_path, e.plot.figure)
    try:
        e.stride_ctl.value = 5
        e.window.value = 44
        page.evaluate("(f) => window.setFigure(f)", e.plot.figure)
        lay = e.plot.figure["layout"]
        asked = {a: lay[a]["range"] for a in ("xaxis3", "yaxis3")}
        assert asked["xaxis3"][1] - asked["xaxis3"][0] < 10
        assert not _ranges_drawn_as_asked(page, asked)
    finally:
        page.close()


@pytest.mark.parametrize("source", ["lecture", "live"])
def test_an_exported_animation_draws_each_steps_ranges(bare_browser, tmp_path, source):
    """The exported HTML draws each step as the page does: the FCN's feature map panel (its scale
    tied to the other axis's: square cells) has each stage's range, not a stretched one."""
    from explainers.widgets import FCNExplainer

    e = FCNExplainer(source=source)
    path = e.export_html(tmp_path / "fcn.html")
    asked = [e.frame(k)["layout"]["xaxis3"]["range"] for k in range(e.n_steps())]
    page = bare_browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(path.as_uri())
        page.wait_for_selector("#explainer[data-ready='1']", timeout=60_000)
        wrong = []
        for k in range(e.n_steps()):
            if k:
                page.get_by_text("step ▶").first.click()
            page.wait_for_function(f"() => document.getElementById('explainer').getAttribute('data-step') === '{k}'",
                                   timeout=10_000)
            got = page.evaluate("() => document.getElementById('explainer-plot')._fullLayout.xaxis3.range")
            if any(abs(a - b) > 1e-6 for a, b in zip(got, asked[k])):
                wrong.append((k, asked[k], got))
        assert not wrong, wrong
    finally:
        page.close()


def test_an_exported_page_fits_a_projectors_first_screen(bare_browser, tmp_path):
    """As the page's plot view does, an export fits its plot to the window: at 1280x720 the RoI
    page (a 700 px figure) showed its check lines below the first screen. The plot shrinks to the
    room left (no less than 300 px), and grows back to the figure's height in a taller window."""
    from explainers.widgets import RoIPoolAlignExplainer

    e = RoIPoolAlignExplainer()
    fig_height = e.fig.layout.height
    path = e.export_html(tmp_path / "roi.html")
    page = bare_browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        page.goto(path.as_uri())
        page.wait_for_selector("#explainer[data-ready='1']", timeout=60_000)
        box = lambda sel: page.evaluate(f"() => {{ const r = document.querySelector('{sel}').getBoundingClientRect();"  # noqa: E731
                                        " return {top: r.top, bottom: r.bottom, height: r.height}; }")
        plot, check = box("#explainer-plot"), box("#explainer-check")
        assert fig_height > 720 - plot["top"], "the figure would fit anyway: the test shows nothing"
        assert 300 <= plot["height"] < fig_height and check["top"] < 720 - 20, (plot, check)
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.wait_for_function(f"() => Math.abs(document.getElementById('explainer-plot')"
                               f".getBoundingClientRect().height - {fig_height}) < 2", timeout=10_000)
    finally:
        page.close()


def test_the_view_follows_its_width_when_the_page_widens_it(bare_browser, tmp_path):
    """A page swapped in by the lecture / live switch was first drawn in a narrow container and
    stayed so (the image under the legend) until the next step: the view follows its width when
    the page's layout changes it, the window staying as it is."""
    figure = {"data": [{"type": "bar", "x": ["a", "b"], "y": [1, 2]}], "layout": {"height": 300}}
    page = view_page(bare_browser, tmp_path, figure)
    try:
        width = "() => document.querySelector('.explainers-plot .main-svg').getBoundingClientRect().width"
        page.evaluate("() => { document.getElementById('el').style.width = '400px'; }")
        page.wait_for_function(f"() => Math.abs(({width})() - 400) < 3", timeout=10_000)
        page.evaluate("() => { document.getElementById('el').style.width = '1100px'; }")
        page.wait_for_function(f"() => Math.abs(({width})() - 1100) < 3", timeout=10_000)
    finally:
        page.close()


def _view_values(e, entry) -> list:
    """(control, value) for every choice of the page's views: its ``view`` control and the
    registry's switch when it names views (strings), each option in turn; [(None, None)] if none."""
    import ipywidgets as W

    out = []
    for name in dict.fromkeys(["view", entry.control]):
        ctl = getattr(e, name, None)
        if isinstance(ctl, (W.ToggleButtons, W.Dropdown, W.RadioButtons)) and all(
                isinstance(v, str) for v in entry.values if name == entry.control):
            out += [(ctl, v) for v in ctl.options if not isinstance(v, tuple)]
            out += [(ctl, v[1]) for v in ctl.options if isinstance(v, tuple)]
    return out or [(None, None)]


@pytest.mark.parametrize("source", ["lecture", "live"])
@pytest.mark.parametrize("entry", EXPLAINERS, ids=[e.name for e in EXPLAINERS])
def test_every_view_steps_without_a_browser_error_in_the_page_and_in_its_export(bare_browser, tmp_path, entry,
                                                                                 source):
    """Every view of every page, in both sources: its steps (first, middle, last) drawn by the
    plot view from the kernel's patches, and its export opened from disk and stepped, with no
    page error. (A frame that reset a trace's marker to None was sent as `"marker": null`: the
    export of the single-stage page's live dense view never drew.)"""
    e = entry.load()(source=source)
    assert e.error_text == "", e.error_text
    checked = []
    for k, (ctl, value) in enumerate(_view_values(e, entry)):
        if ctl is not None:
            ctl.value = value
        assert e.error_text == "", (value, e.error_text)
        n = e.n_steps()
        steps = sorted({0, n // 2, n - 1})
        # the page: its plot view, fed the figure and each step's patch as the kernel sends them
        figure = e.plot.figure
        patches = []
        for s in steps:
            e.show_step(s)
            patches.append(e.plot.patch)
        page = view_page(bare_browser, tmp_path, figure)
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        try:
            for p in patches:
                page.evaluate("(p) => window.applyPatch(p)", p)
            page.wait_for_selector(".explainers-plot .main-svg", timeout=30_000)
        finally:
            page.close()
        assert not errors, (value, "page", errors[:3])
        # its export, from disk, each of those steps shown by the slider
        path = e.export_html(tmp_path / f"export{k}.html")
        page = bare_browser.new_page(viewport={"width": 1280, "height": 720})
        page.on("pageerror", lambda err: errors.append(str(err)))
        try:
            page.goto(path.as_uri(), timeout=60_000)
            try:
                page.wait_for_selector("#explainer[data-ready='1']", state="attached", timeout=30_000)
            except Exception:               # never ready: say why (the page error), not only "timeout"
                raise AssertionError((value, "export never ready", errors[:3])) from None
            for s in steps:
                page.eval_on_selector("#explainer-step", "(el, s) => { el.value = String(s);"
                                      " el.dispatchEvent(new Event('input')); }", s)
                page.wait_for_function("(s) => document.getElementById('explainer').dataset.step === String(s)",
                                       arg=s, timeout=10_000)
            page.wait_for_selector(".main-svg", timeout=30_000)
        finally:
            page.close()
        assert not errors, (value, "export", errors[:3])
        checked.append(value)
    assert checked
