"""The HTML export keeps the teaching: title, each step's caption, the check and note lines, the
page's figure (axes, ranges, colour ranges), every step's frame, offline, and small.

The export stores the base figure once and, per step, only what changed since the step before
(a patch); image crops of a figure image are stored as ``{"$crop": [trace, x, y, w, h]}``. These
tests decode that independently of ``explainers.widgets._base`` and compare with ``frame(k)``.
"""
import base64
import html
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from explainers.registry import EXPLAINERS, entry
from explainers.widgets._base import Explainer
from tests.widgets.checks import jsonable

MAX_BYTES = 8 * 2**20            # plotly.js alone is ~4.8 MB
SIZES: dict = {}                 # what each export weighs (printed at the end of the module)
CASES = [(e.name, "lecture") for e in EXPLAINERS] + [("UnpoolingExplainer", "live")]


def plain(fragment: str) -> str:
    """HTML as the text a reader sees (tags dropped, entities decoded, spaces collapsed)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment or "")).split())


def payload_of(text: str) -> dict:
    m = re.search(r"<script type='application/json' id='explainer-data'>(.*?)</script>", text, re.DOTALL)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def apply(value, patch):
    """A patch: {"=": value}, {"~": {key: patch}} or {"#": [[index, patch], ...]}."""
    if "=" in patch:
        return patch["="]
    if "~" in patch:
        out = dict(value) if isinstance(value, dict) else {}
        for k, p in patch["~"].items():
            out[k] = apply(out.get(k), p)
        return out
    out = list(value)
    for i, p in patch["#"]:
        out[i] = apply(out[i], p)
    return out


def contents_of(payload: dict) -> list:
    out, content = [], {}
    for k, fr in enumerate(payload["frames"]):
        assert fr["name"] == str(k)
        content = apply(content, fr["patch"])
        out.append(content)
    return out


def pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


class Visible(HTMLParser):
    """The text outside scripts and styles, and the first heading."""

    def __init__(self):
        super().__init__()
        self.text, self.heading, self._skip, self._h = [], None, 0, None

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")
        if tag in ("h1", "h2", "h3") and self.heading is None:
            self._h = []

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")
        if tag in ("h1", "h2", "h3") and self._h is not None and self.heading is None:
            self.heading = "".join(self._h)

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)
            if self._h is not None and self.heading is None:
                self._h.append(data)


def same_value(got, want, figure) -> bool:
    if isinstance(got, dict) and "$crop" in got:
        i, x, y, w, h = got["$crop"]
        return np.array_equal(pixels(figure["data"][i]["source"])[y:y + h, x:x + w], pixels(want))
    return got == want


@pytest.fixture(scope="module", autouse=True)
def _report_sizes():
    yield
    if SIZES:
        print("\nexport sizes: " + ", ".join(f"{k} {v / 2**20:.2f} MB" for k, v in SIZES.items()))


@pytest.mark.parametrize("name,source", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_export_keeps_the_teaching(name, source, tmp_path, record_property):
    e = entry(name).load()(source=source)
    assert e.error_text == "", e.error_text
    path = e.export_html(tmp_path / f"{name}.html")
    size = path.stat().st_size
    SIZES[f"{name}-{source}"] = size
    record_property("export_bytes", size)
    assert size < MAX_BYTES, f"{name} ({source}) exports {size / 2**20:.1f} MB"
    text = path.read_text(encoding="utf-8")
    page = Visible()
    page.feed(text)
    visible = " ".join("".join(page.text).split())

    # the title as a heading, the check and the note lines as on the page
    assert html.unescape(page.heading or "") == e.title
    assert plain(e.check.value) in visible
    assert plain(e.note.value) in visible
    # offline: plotly.js inlined, nothing fetched
    assert "plotly.js v" in text.split("<script", 2)[1][:200]
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", text, flags=re.DOTALL)
    assert not re.search(r"<script[^>]*\bsrc=", text) and not re.search(r"(src|href)=['\"]?(https?:)?//", markup)

    payload = payload_of(text)
    n = e.n_steps()
    assert len(payload["frames"]) == len(payload["captions"]) == n
    # play / step controls only where there is more than one step (as on the page)
    controls = re.search(r"<div class='explainer-controls'( hidden)?>", text)
    assert controls and bool(controls.group(1)) == (n == 1) and ".explainer-controls[hidden]{display:none}" in text
    # the page's figure, unchanged: same axes and ranges (y reversed where the page reverses it),
    # heatmap colour ranges kept
    assert payload["figure"] == jsonable(e.fig.to_plotly_json())
    active = payload["active"]
    assert active == e.step.value
    assert plain(e.frame(active)["caption"]) in visible       # shown before any script runs

    # every step: its caption and its frame, complete, as frame(k) gives them
    contents = contents_of(payload)
    for k in range(n):
        want = jsonable(e.frame(k))
        assert plain(payload["captions"][k]) == plain(want.get("caption", "")), k
        got = contents[k]
        for i, props in (want.get("data") or {}).items():
            for prop, value in props.items():
                assert same_value(got["data"][i][prop], value, payload["figure"]), (k, i, prop)
        for key, value in (want.get("layout") or {}).items():
            assert got["layout"][key] == value, (k, key)

    # the same page exported at its last step: the same file but for the step shown first (the base
    # figure is the page's at step 0, whatever step the page is at)
    e.step.value = n - 1
    again = payload_of(e.export_html(tmp_path / f"{name}-last.html").read_text(encoding="utf-8"))
    assert again["active"] == n - 1
    assert {k: v for k, v in again.items() if k != "active"} == {k: v for k, v in payload.items() if k != "active"}


def test_unpooling_export_keeps_the_reversed_axes_and_colour_ranges(tmp_path):
    for source in ("lecture", "live"):
        e = entry("UnpoolingExplainer").load()(source=source)
        fig = payload_of(e.export_html(tmp_path / f"u_{source}.html").read_text(encoding="utf-8"))["figure"]
        for axis in ("yaxis", "yaxis2", "yaxis3"):          # row 0 on top: reversed, by autorange or range
            ax = fig["layout"][axis]
            assert ax.get("autorange") == "reversed" or (ax.get("autorange") is False
                                                         and ax["range"][0] > ax["range"][1])
        out = fig["data"][2]
        assert out["type"] == "heatmap" and out["zmin"] < out["zmax"]
        assert (out["zmin"], out["zmax"]) == (e.fig.data[2].zmin, e.fig.data[2].zmax)


def test_sliding_window_export_stores_the_pixels_once(tmp_path):
    e = entry("SlidingWindowExplainer").load()()
    text = e.export_html(tmp_path / "sw.html").read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") <= len(e.fig.data)      # the figure's images, not one per step
    payload = payload_of(text)
    contents = contents_of(payload)
    image = next(i for i, t in enumerate(e.fig.data) if t.type == "image" and i > 0)    # "the window"
    crops = {json.dumps(c["data"][str(image)]["source"]) for c in contents}
    assert len(crops) == e.n_steps() and all('"$crop"' in c for c in crops)
    # the label map gains one cell a step: each step after the first stores that cell, not the map
    label_map = str(next(i for i, t in enumerate(e.fig.data) if t.type == "heatmap"))
    for fr in payload["frames"][1:]:
        assert len(json.dumps(fr["patch"]["~"]["data"]["~"][label_map])) < 120, fr["name"]


def test_export_refuses_a_directory_and_is_deterministic(tmp_path):
    e = entry("NMSExplainer").load()()
    folder = tmp_path / "a.html"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(IsADirectoryError):
        e.export_html(folder)
    assert (folder / "keep.txt").read_text() == "x"
    first = e.export_html(tmp_path / "one.html")
    assert first == tmp_path / "one.html"
    assert first.read_bytes() == e.export_html(tmp_path / "two.html").read_bytes()
    assert e.export_html(str(tmp_path / "three.html")) == tmp_path / "three.html"


def test_export_never_replaces_a_users_file_unless_asked(tmp_path):
    """An existing file is kept byte for byte (even the export's own earlier file) unless
    overwrite=True; only .html names are written; no temporary file is left behind."""
    e = entry("NMSExplainer").load()()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 a photo")
    with pytest.raises(ValueError, match=r"give a name ending in \.html, e\.g\. nms\.html \(got photo\.jpg\)"):
        e.export_html(photo)
    with pytest.raises(ValueError, match="ending in .html"):
        e.export_html(tmp_path / "notes.txt")
    assert photo.read_bytes() == b"\xff\xd8 a photo" and not (tmp_path / "notes.txt").exists()
    essay = tmp_path / "essay.html"
    essay.write_text("my essay")
    with pytest.raises(FileExistsError, match="already exists and is kept.*overwrite=True"):
        e.export_html(essay)
    assert essay.read_text() == "my essay"
    first = e.export_html(tmp_path / "nms.html")
    with pytest.raises(FileExistsError):
        e.export_html(first)                                       # the second time too
    e.threshold.value = 0.3
    assert e.export_html(first, overwrite=True) == first and "0.3" in first.read_text(encoding="utf-8")
    assert e.export_html(essay, overwrite=True) == essay and essay.read_text(encoding="utf-8").startswith("<!DOCTYPE")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["essay.html", "nms.html", "photo.jpg"]


def test_a_page_showing_an_error_is_not_exported(tmp_path):
    """The page hides its picture while it shows an error: an export would show the old picture with
    green checks. It is refused in words, and works again once the page draws."""
    e = entry("RoIPoolAlignExplainer").load()(source="live")
    e.x1.value = e.x1.max
    e.x2.value = e.x2.min
    assert e.error_text
    with pytest.raises(ValueError, match="the page shows an error .*then export"):
        e.export_html(tmp_path / "roi.html")
    assert not (tmp_path / "roi.html").exists()
    e.x2.value, e.x1.value = e.x2.max, e.x1.min
    assert not e.error_text
    assert e.export_html(tmp_path / "roi.html").exists()


class _Patchy(Explainer):
    """Steps that set different props: a step that does not set one keeps the last value set."""

    title = "patchy <b>&</b> steps"

    def _build(self):
        self.fig.add_scatter(x=[0], y=[0], marker={"color": "blue", "size": 10})
        self.fig.add_heatmap(z=[[1, 2], [3, 4]], zmin=0, zmax=9)

    def refresh(self):
        self._reset_steps()

    def n_steps(self):
        return 4

    def frame(self, k):
        data = {0: {"x": [k]}, 1: {"z": [[k, None], [None, k]]}}
        if k == 1:
            data[0]["marker"] = {"color": "red"}
        layout = {"yaxis": {"autorange": "reversed"}} if k >= 2 else {}
        return {"data": data, "layout": layout, "caption": f"step <i>{k}</i> &amp; more"}


def test_steps_are_complete_whatever_each_frame_sets(tmp_path):
    e = _Patchy()
    text = e.export_html(tmp_path / "p.html").read_text(encoding="utf-8")
    assert "<h1 class='explainer-title'>patchy &lt;b&gt;&amp;&lt;/b&gt; steps</h1>" in text
    payload = payload_of(text)
    assert [plain(c) for c in payload["captions"]] == [f"step {k} & more" for k in range(4)]
    c = contents_of(payload)
    assert [s["data"]["0"]["x"] for s in c] == [[0], [1], [2], [3]]
    assert c[0]["data"]["0"]["marker"] == {"color": "blue", "size": 10}        # the base figure's
    assert [s["data"]["0"]["marker"]["color"] for s in c[1:]] == ["red"] * 3    # as when played from 0
    assert [s["data"]["1"]["z"] for s in c] == [[[k, None], [None, k]] for k in range(4)]
    assert [s["layout"].get("yaxis") for s in c] == [None, None] + [{"autorange": "reversed"}] * 2


class _Broken(Explainer):
    title = "a page that cannot draw"

    def _build(self):
        raise ValueError("this model cannot be used here")


def test_a_page_that_failed_exports_its_error_line(tmp_path):
    e = _Broken()
    text = e.export_html(tmp_path / "broken.html").read_text(encoding="utf-8")
    page = Visible()
    page.feed(text)
    assert page.heading == e.title
    assert "⚠ this model cannot be used here" in "".join(page.text)
    assert "<script" not in text                 # nothing to animate


def test_export_says_which_folder_is_missing_or_locked_and_takes_only_a_real_yes(tmp_path, monkeypatch):
    """A missing or unwritable folder named a hidden temporary file (".n.html.3dwd66om.tmp"); "~" was not
    expanded; ".html" was "a name ending in .html"; overwrite="no" (a true string) replaced the file."""
    import os

    e = entry("NMSExplainer").load()()
    with pytest.raises(FileNotFoundError, match=r"the folder .*nofolder does not exist") as err:
        e.export_html(tmp_path / "nofolder" / "n.html")
    assert ".tmp" not in str(err.value)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == os.fspath(locked) else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"the folder .*locked is not writable"):
        e.export_html(locked / "n.html")
    monkeypatch.setattr(os, "access", real_access)
    with pytest.raises(ValueError, match="e.g. nms.html"):
        e.export_html(tmp_path / ".html")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert e.export_html("~/home.html") == tmp_path / "home.html" and (tmp_path / "home.html").exists()
    kept = tmp_path / "kept.html"
    kept.write_text("mine")
    for no in ("no", "False", 0, None):
        with pytest.raises(TypeError, match="overwrite must be True or False"):
            e.export_html(kept, overwrite=no)
    assert kept.read_text() == "mine"
