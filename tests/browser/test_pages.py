"""The Voila pages in a real (headless) Chromium: they load offline, plot, and react.

Selected with ``-m browser``; skipped when Chromium or playwright is missing (CI installs both).
Screenshots go to ``test-artifacts/screenshots/`` for a person to look at.
"""
import socket
import subprocess
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from explainers.app.serve import notebook_names, voila_command, voila_env
from explainers.registry import EXPLAINERS

pytestmark = [pytest.mark.browser, pytest.mark.slow]
from tests.chromium import CHROMIUM, require_chromium
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]
PLOT = ".explainers-plot .main-svg"
SERVER: dict = {}
DATA = ".explainers-plot .heatmaplayer .hm, .explainers-plot .imagelayer image, .explainers-plot .scatterlayer .trace"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_chromium()
    port = _free_port()
    log = open(tmp_path_factory.mktemp("voila") / "voila.log", "w")
    env = voila_env()
    env["EXPLAINERS_DEVICE"] = "cpu"
    env["EXPLAINERS_OFFLINE"] = "1"
    # a generous kernel cap: each test page is a kernel until its tab closes (close_page shuts it down)
    proc = subprocess.Popen(voila_command(port, max_kernels=64), env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urlopen(base + "/voila/render/02_unpooling.ipynb", timeout=60).read(100)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("voila did not start")
    SERVER["proc"] = proc
    yield base
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url, viewport=(1400, 1000)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("request", lambda r: problems.append(f"request leaves 127.0.0.1: {r.url}")
            if not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")) else None)
    t0 = time.perf_counter()
    page.goto(url, timeout=180_000)
    page.wait_for_selector(PLOT, timeout=180_000)
    page.wait_for_selector(DATA, timeout=60_000)
    return page, problems, time.perf_counter() - t0


def close_page(page) -> None:
    """Leave the page as a person does (its unload handler asks the server to shut its kernel
    down), then close the tab."""
    page.goto("about:blank")
    page.close()


def plot_html(page) -> str:
    return page.inner_html(".explainers-plot")


def wait_for_plot_change(page, before: str, timeout_ms: int = 30_000) -> None:
    """Wait (with a deadline) until the plot's markup differs from ``before``."""
    page.wait_for_function("(before) => { const el = document.querySelector('.explainers-plot');"
                           " return el && el.innerHTML !== before; }", arg=before, timeout=timeout_ms)


def step_forward_back_forward(page, check=lambda: True) -> None:
    """"step ▶", "◀ step", "step ▶": each must change the plot (every page has at least 2 steps)."""
    for button in ("step ▶", "◀ step", "step ▶"):
        before = plot_html(page)
        page.get_by_text(button).first.click()
        try:
            wait_for_plot_change(page, before)
        except Exception:
            raise AssertionError(f"pressing '{button}' did not change the plot within 30 s") from None
        ok = check()
        assert ok is True, ok


@pytest.mark.parametrize("name", [n for n in notebook_names() if n != "07_live_model"])
def test_page_loads_offline_plots_and_reacts(server, browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, problems, seconds = open_page(browser, f"{server}/voila/render/{name}.ipynb")
    page.screenshot(path=str(SHOTS / f"{name}_0.png"), full_page=True)
    start = plot_html(page)
    step_forward_back_forward(page)
    page.screenshot(path=str(SHOTS / f"{name}_1.png"), full_page=True)
    assert plot_html(page) != start
    assert not problems, problems
    # no source code on the page
    assert "from explainers import" not in page.inner_text("body")
    close_page(page)


def test_typed_arrays_reach_the_plot_as_the_kernel_computed_them(server, browser):
    """Large numeric arrays travel as plotly.js typed arrays (``{dtype, bdata, shape}``, base64):
    on the FCN page plotly.js draws the feature map from exactly the numbers the kernel sent, in
    the right shape and row order, at each step (the step's patch replaces the whole array)."""
    import base64

    import numpy as np

    page, problems, _ = open_page(browser, f"{server}/voila/render/12_fcn.ipynb")

    def drawn():
        return page.evaluate("""() => {
            const gd = document.querySelector('.explainers-plot');
            const sent = gd.data[10].z, z = gd._fullData[10].z;
            return [sent, z.length, z[0].length, Array.from(z[0]), Array.from(z[z.length - 1])];
        }""")

    seen = []
    for k in (0, 1, 2):
        if k:
            before = plot_html(page)
            page.get_by_text("step ▶").first.click()
            wait_for_plot_change(page, before)
        sent, n, m, first, last = drawn()
        assert {"dtype", "bdata", "shape"} <= set(sent), "the map should travel as a typed array"
        a = np.frombuffer(base64.b64decode(sent["bdata"]), dtype=np.dtype(sent["dtype"]))
        a = a.reshape([int(x) for x in sent["shape"].split(",")])
        assert (n, m) == a.shape
        assert first == a[0].tolist() and last == a[-1].tolist()       # float32 values, bit for bit
        seen.append(sent["bdata"])
    assert len(set(seen)) == 3          # each step drew its own stage's map
    assert not problems, problems
    close_page(page)


_PICTURES = "() => Array.from(document.querySelectorAll('svg image')).map(i => i.getAttribute('href')).join('|')"


def _upload(page, path, timeout=180_000):
    """Upload ``path`` and wait until the plot's pictures are others than before (the page's answer
    to this file, not the picture it showed already)."""
    before = page.evaluate(_PICTURES)
    with page.expect_file_chooser(timeout=60_000) as chooser:
        page.get_by_text("upload an image").first.click()
    chooser.value.set_files(str(path))
    return before


def _noise_jpeg(path, megabytes: float) -> int:
    """A JPEG of random noise (incompressible) of about ``megabytes`` MB; returns its size."""
    import numpy as np
    from PIL import Image

    side = int((megabytes * 2**20 / 1.98) ** 0.5)   # noise at quality 100: ~1.98 bytes per pixel
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, quality=100)
    return path.stat().st_size


ONE_SCREEN = [n for n in notebook_names() if n not in ("00_tour", "07_live_model")]


#: the smallest text a projector's back row reads (issue #11): plot text, numbers in cells, labels
MIN_FONT_PX = 16


def smallest_plot_text(page) -> tuple[float, str]:
    """The smallest rendered font size (px) of the visible text drawn in the plot, and that text."""
    return tuple(page.evaluate("""() => {
        let best = [1e9, ''];
        for (const t of document.querySelectorAll('.explainers-plot svg text')) {
            const text = (t.textContent || '').trim();
            const r = t.getBoundingClientRect();
            if (!text || r.width === 0 || r.height === 0) continue;
            const st = getComputedStyle(t);
            if (st.visibility === 'hidden' || st.display === 'none' || Number(st.opacity) === 0) continue;
            const size = parseFloat(st.fontSize);
            if (size < best[0]) best = [size, text.slice(0, 60)];
        }
        return best;
    }"""))


def _box(page, selector):
    return page.eval_on_selector(selector, "el => { const r = el.getBoundingClientRect();"
                                           " return {top: r.top, bottom: r.bottom, height: r.height}; }")


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)], ids=["1280x720", "1920x1080"])
@pytest.mark.parametrize("name", ONE_SCREEN)
def test_one_screen_per_idea_and_resizes_never_collapse_the_plot(server, browser, name, size):
    """Controls, caption, plot and check line fit in the window (a projector at 1280x720 or
    1920x1080), and going fullscreen or to the projector (resizes) never collapses the plot."""
    w, h = size
    page, problems, _ = open_page(browser, f"{server}/voila/render/{name}.ipynb", viewport=size)
    page.wait_for_function("() => (document.body ? document.body.innerText : '').includes('equals')", timeout=30_000)
    height = lambda: _box(page, PLOT)["height"]  # noqa: E731
    page.wait_for_function(f"() => {{ const r = document.querySelector('{PLOT}').getBoundingClientRect();"
                           f" return r.bottom <= {h} && r.height >= 200; }}", timeout=10_000)
    drawn = height()
    page.screenshot(path=str(SHOTS / f"{name}_{w}x{h}.png"))
    size, text = smallest_plot_text(page)
    assert size >= MIN_FONT_PX, f"plot text {text!r} is drawn at {size} px (at least {MIN_FONT_PX} px reads from the back row)"
    # every control's words (labels, checkbox labels, readouts, buttons) at least 15 px
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.widget-label, .widget-label-basic span, .widget-readout, .widget-button, .widget-toggle-button'))
        .filter(e => e.getBoundingClientRect().width > 0 && (e.textContent || '').trim())
        .map(e => [parseFloat(getComputedStyle(e).fontSize), e.textContent.trim().slice(0, 40)])
        .filter(([px]) => px < 15)""")
    assert not small, f"control text below 15 px: {small}"
    for part in (".widget-slider", ".explainers-plot", "text=step ▶"):
        assert _box(page, part)["bottom"] <= h, f"{part} is below the first {w}x{h} screen"
    check = page.get_by_text("equals").first.bounding_box()
    assert check and check["y"] + check["height"] <= h, "the check line is below the first screen"
    caption = page.eval_on_selector(".explainers-plot", "el => el.closest('.widget-vbox')"
                                    ".querySelector('.widget-html div[style*=\"font-size:19px\"]')"
                                    ".getBoundingClientRect().bottom")
    assert caption <= _box(page, PLOT)["top"] + 1, "the step's caption is not above the plot"
    for vw, vh in ((w, 1150), (w, h), (1920, 1080), (1280, 720), (w, h)):
        page.set_viewport_size({"width": vw, "height": vh})
        page.wait_for_function(f"() => window.innerWidth === {vw} && window.innerHeight === {vh}", timeout=10_000)
    step_forward_back_forward(page, check=lambda: height() >= 200 or f"the plot collapsed to {height()} px")
    page.wait_for_function(f"() => Math.abs(document.querySelector('{PLOT}').getBoundingClientRect().height"
                           f" - {drawn}) < 2", timeout=10_000)
    page.screenshot(path=str(SHOTS / f"{name}_{w}x{h}_after_resizes.png"))
    size, text = smallest_plot_text(page)
    assert size >= MIN_FONT_PX, f"after a step, plot text {text!r} is drawn at {size} px"
    assert not problems, problems
    close_page(page)


def test_plotly_js_is_sent_once_per_page(server, browser):
    """The tour shows several explainers; plotly.js (4.6 MB) travels once, not once per plot."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    copies = []

    def count(payload):
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8", "replace")
        copies.extend([1] * text.count("if (!window.Plotly)"))

    def watch(ws):
        ws.on("framereceived", count)
    page.on("websocket", watch)
    response = page.goto(f"{server}/voila/render/00_tour.ipynb", timeout=180_000)
    page.wait_for_selector(DATA, timeout=180_000)
    count(response.text())                     # widget state may come inside the page itself
    for label, text in (("6 NMS", "non-maximum"), ("3 transposed conv", "transposed convolution")):
        page.get_by_text(label).first.click()
        page.wait_for_function("(t) => (document.body ? document.body.innerText : '').toLowerCase().includes(t) && "
                               "document.querySelectorAll('.explainers-plot .main-svg').length >= 1", arg=text,
                               timeout=60_000)
    page.wait_for_selector(DATA, timeout=60_000)
    assert len(copies) == 1, f"plotly.js arrived {len(copies)} times"
    close_page(page)


def test_live_page_detects_an_uploaded_scene(server, browser, tmp_path):
    from PIL import Image

    from explainers.models import make_scene

    path = tmp_path / "scene.png"
    Image.fromarray(make_scene(10_000_017).image).save(path)
    page, problems, _ = open_page(browser, f"{server}/voila/render/07_live_model.ipynb")
    before = _upload(page, path)
    page.wait_for_function(f"before => ({_PICTURES})() !== before", arg=before, timeout=120_000)
    page.wait_for_function("() => /detection: [1-9][0-9]* object/.test((document.body ? document.body.innerText : ''))", timeout=120_000)
    page.screenshot(path=str(SHOTS / "07_live_model_upload.png"), full_page=True)
    text = page.inner_text("body")
    from explainers.models import get, load_image

    found = int((get("detection")(load_image(str(path)).tensor).scores >= 0.5).sum())   # what this file holds
    assert f"detection: {found} object(s)" in text and "⚠" not in text, text
    assert not problems, problems
    close_page(page)


def test_live_page_takes_uploads_up_to_the_limit_and_refuses_larger_ones(server, browser, tmp_path):
    big = tmp_path / "big.jpg"
    size = _noise_jpeg(big, 18.5)
    assert 17 * 2**20 < size < 20 * 2**20, size          # above tornado's 10 MiB default, below the limit
    huge = tmp_path / "huge.jpg"
    assert _noise_jpeg(huge, 22) > 20 * 2**20
    page, problems, _ = open_page(browser, f"{server}/voila/render/07_live_model.ipynb")
    _upload(page, huge)
    page.wait_for_function("() => (document.body ? document.body.innerText : '').includes('huge.jpg is') && "
                           "(document.body ? document.body.innerText : '').includes('the limit is 20 MB')", timeout=60_000)
    before = _upload(page, big)                           # the page is still alive and takes the next file
    page.wait_for_function(f"before => ({_PICTURES})() !== before", arg=before, timeout=180_000)
    page.wait_for_function("() => !(document.body ? document.body.innerText : '').includes('⚠') && "
                           "/detection: [0-9]+ object/.test((document.body ? document.body.innerText : '')) && "
                           "(document.body ? document.body.innerText : '').includes('downscaled')", timeout=180_000)
    page.screenshot(path=str(SHOTS / "07_live_model_big_upload.png"), full_page=True)
    assert not problems, problems
    close_page(page)


def test_lecture_and_live_are_one_click_on_a_page(server, browser):
    """Voila hides the code: the page itself switches to the live model and picks its image."""
    page, problems, _ = open_page(browser, f"{server}/voila/render/02_unpooling.ipynb")
    page.get_by_text("the live model").first.click()
    page.wait_for_function("() => (document.body ? document.body.innerText : '').includes(\"the decoder's own max unpooling\")",
                           timeout=120_000)
    page.wait_for_selector(DATA, timeout=60_000)
    before = plot_html(page)
    page.locator("select").filter(has_text="shapes scene 1").first.select_option("shapes scene 2")
    wait_for_plot_change(page, before, timeout_ms=120_000)
    assert "⚠" not in page.inner_text("body")
    page.get_by_text("the worked example").first.click()
    page.wait_for_function("() => !(document.body ? document.body.innerText : '').includes(\"decoder's own\")", timeout=60_000)
    assert not problems, problems
    close_page(page)


def test_leaving_a_page_frees_its_kernel(server, browser):
    """A closed tab must not keep its kernel (about 1 GB) until the idle culler comes."""
    from tests.app.ports import page_kernels

    def kernels():
        return {p.pid for p in page_kernels(SERVER["proc"].pid)}

    before = kernels()
    page, problems, _ = open_page(browser, f"{server}/voila/render/06_nms.ipynb")
    mine = kernels() - before
    assert len(mine) == 1
    close_page(page)
    deadline = time.monotonic() + 30
    while mine & kernels() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not mine & kernels(), "the page's kernel still runs 30 s after the page was left"
    assert not problems, problems


def test_tour_is_fast_when_warm(server, browser):
    close_page(open_page(browser, f"{server}/voila/render/00_tour.ipynb")[0])       # warm up
    page, problems, seconds = open_page(browser, f"{server}/voila/render/00_tour.ipynb")
    print(f"warm tour: first plot after {seconds:.1f} s")
    assert not problems, problems
    close_page(page)


@pytest.mark.parametrize("name", [e.name for e in EXPLAINERS])
def test_exported_html_steps_with_its_captions_offline(server, browser, tmp_path, name):
    """An export opened from disk (file://, no server, no internet) draws its plot, and the step
    buttons, the step slider and play each show another step with that step's caption; no console
    error, no request. The sliding window's crops, cut in the browser, are the page's pixels."""
    import base64
    import html
    import io
    import re

    import numpy as np
    from PIL import Image

    from explainers.registry import entry

    def plain(fragment):
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())

    def pixels(uri):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))

    e = entry(name).load()()
    path = e.export_html(tmp_path / f"{name}.html")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url[:120]}"))
    page.on("request", lambda r: problems.append(f"request: {r.url[:120]}")
            if not r.url.startswith(("file://", "data:", "blob:", "about:")) else None)
    page.goto(path.as_uri(), timeout=60_000)
    page.wait_for_selector("#explainer[data-ready='1']", timeout=60_000)
    page.wait_for_selector(PLOT, timeout=60_000)
    page.wait_for_selector(DATA, timeout=60_000)
    assert page.inner_text("h1") == e.title
    # the export's check line is the page's (every explainer but the live model's has one)
    assert " ".join(page.inner_text("#explainer-check").split()) == " ".join(e.check_text.split())
    assert name == "LiveModelExplainer" or "equals" in e.check_text

    def shows(k=None):
        """The step shown (waiting for ``k`` when given), with its own caption and slider position."""
        if k is not None:
            page.wait_for_function("(k) => document.getElementById('explainer').dataset.step === String(k)",
                                   arg=k, timeout=10_000)
        shown, text, slider = page.evaluate(   # at once: play may be moving on
            "() => [Number(document.getElementById('explainer').dataset.step),"
            " document.getElementById('explainer-caption').innerText,"
            " document.getElementById('explainer-step').value]")
        want = plain(e.frame(shown)["caption"])
        assert " ".join(text.split()) == want, f"step {shown}: the caption shown is {text!r}, not {want!r}"
        assert slider == str(shown) and (k is None or shown == k)
        return shown

    start = shows()
    assert start == e.step.value
    if e.n_steps() > 1:
        before = plot_html(page)
        page.get_by_text("step ▶").first.click()
        shows(start + 1)
        wait_for_plot_change(page, before)
        page.get_by_text("◀ step").first.click()
        shows(start)
        # the step slider: a click three quarters along its track
        box = page.locator("#explainer-step").bounding_box()
        page.locator("#explainer-step").click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
        page.wait_for_function("(k) => document.getElementById('explainer').dataset.step !== String(k)",
                               arg=start, timeout=10_000)
        assert shows() > start
    if e.n_steps() > 2:
        page.get_by_text("◀ step").first.click()
        at = shows()
        page.get_by_text("▶ play").first.click()
        page.wait_for_function("(k) => Number(document.getElementById('explainer').dataset.step) > k", arg=at,
                               timeout=30_000)
        shows()
        page.evaluate("() => { const b = document.getElementById('explainer-play');"   # pause, unless it ended
                      " if (b.textContent.includes('pause')) b.click(); }")
        shows()
    wanted = [(i, pixels(p["source"])) for i, p in e.frame(shows())["data"].items() if "source" in p]
    missing = wanted
    for _ in range(50):                       # the images of the step drawn last (a redraw may be under way)
        shown = [pixels(h) for h in page.eval_on_selector_all(
            ".explainers-plot .imagelayer image",
            "els => els.map(el => el.getAttribute('href') || el.getAttribute('xlink:href'))") if h]
        missing = [i for i, want in wanted if not any(s.shape == want.shape and np.array_equal(s, want)
                                                      for s in shown)]
        if not missing:
            break
        page.wait_for_timeout(200)
    assert not missing, f"the images of traces {missing} are not the page's pixels"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"export_{entry(name).module}.png"), full_page=True)
    assert not problems, problems
    page.close()


@pytest.fixture(scope="module")
def static_site(tmp_path_factory):
    from explainers.app.site import export_site

    out = tmp_path_factory.mktemp("static") / "site"
    export_site(out)
    return out


@pytest.mark.parametrize("how", ["file", "http.server"])
def test_static_site_draws_every_page_offline(browser, static_site, how):
    """The exported site, from disk and from a plain `python -m http.server`: the index links every
    page and every page draws its plot; no request leaves the machine."""
    import re
    import sys

    proc = None
    if how == "file":
        base = static_site.as_uri()
    else:
        proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                                 "--directory", str(static_site)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        line = proc.stdout.readline()
        port = re.search(r"port (\d+)", line).group(1)
        base = f"http://127.0.0.1:{port}"
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        problems = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("request", lambda r: problems.append(f"request leaves the machine: {r.url}")
                if not r.url.startswith(("file://", "http://127.0.0.1", "data:", "blob:", "about:")) else None)
        page.goto(f"{base}/index.html")
        links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        assert links == [f"{e.notebook}.html" for e in EXPLAINERS]
        for href in links:
            page.goto(f"{base}/{href}")
            page.wait_for_selector(DATA.replace(".explainers-plot", "#explainer-plot"), timeout=60_000)
        page.screenshot(path=str(SHOTS / f"static_site_{how.replace('.', '_')}.png"))
        assert not problems, problems
        page.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
