"""Readable from the back row (a 1280x720 projector), computed from the figures (no browser).

Text at least 16 px, integer ticks on cell grids, open highlight squares, labels that do not
pile up, equal axis scales where shapes matter, and one colour per class on every page."""
import html
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from explainers.models import render
from explainers.models.render import BACKGROUND, PALETTE, class_colour, class_hex, label_font
from explainers.models.results import DetectionResult, SegmentationResult
from explainers.widgets import (AnchorsExplainer, LiveModelExplainer, NMSExplainer, RoIPoolAlignExplainer,
                                SlidingWindowExplainer, TransposedConvExplainer, UnpoolingExplainer)

from explainers.registry import EXPLAINERS

#: every explainer in the registry (a new one is held to the same rules at once)
ALL = [e.load() for e in EXPLAINERS]
_PAGES: dict = {}


def page(cls, source="lecture"):
    """One explainer per class and source for this module (live ones run models: build them once)."""
    if (cls, source) not in _PAGES:
        _PAGES[cls, source] = cls(source=source)
    e = _PAGES[cls, source]
    assert e.error_text == "", e.error_text
    return e


def text_traces(fig):
    """The traces that write text: heatmaps with cell text, scatters in a text mode, bars with text."""
    out = []
    for tr in fig.data:
        if tr.type == "heatmap" and tr.texttemplate and tr.text is not None:
            out.append(tr)
        elif tr.type == "scatter" and "text" in (tr.mode or ""):
            out.append(tr)
        elif tr.type == "bar" and tr.text is not None:
            out.append(tr)
    return out


def axis(fig, ref: str, letter: str):
    """The layout axis a trace refers to ("x", "x2", ... -> xaxis, xaxis2, ...)."""
    return fig.layout[f"{letter}axis{ref[1:]}"]


def integer_ticks(ax) -> bool:
    """Ticks at whole numbers only: integer tickvals, or linear ticks from an integer tick0 by an integer dtick."""
    if ax.tickmode == "array":
        return ax.tickvals is not None and len(ax.tickvals) > 0 and all(float(v).is_integer() for v in ax.tickvals)
    if ax.dtick is None or ax.tickmode not in (None, "linear"):
        return False
    tick0 = 0 if ax.tick0 is None else ax.tick0
    return float(ax.dtick).is_integer() and ax.dtick >= 1 and float(tick0).is_integer()


def y_down(ax) -> bool:
    """The axis runs downwards: reversed autorange, or a fixed range from bottom to top."""
    return ax.autorange == "reversed" or (ax.autorange is False and ax.range[0] > ax.range[1])


def luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b


# ----------------------------------------------------------------------------- text size
@pytest.mark.parametrize("source", ["lecture", "live"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_text_is_at_least_16px_and_ticks_14px(cls, source):
    e = page(cls, source)
    fig = e.fig
    assert fig.layout.font.size >= 16                       # ticks, titles and legends inherit it
    for tr in text_traces(fig):
        size = tr.textfont.size
        assert size is not None and size >= 16, (cls.__name__, tr.type, size)
    for name in [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))] + ["xaxis", "yaxis"]:
        tf = fig.layout[name].tickfont
        assert tf.size is None or tf.size >= 14, (name, tf.size)
    for ann in fig.layout.annotations:
        assert ann.font.size is None or ann.font.size >= 16, (ann.text, ann.font.size)


def test_pages_that_write_numbers_have_text_traces():
    """The size test above is not vacuous: these pages do write numbers or labels in traces (NMS
    in annotations, beyond its legend)."""
    for cls in (RoIPoolAlignExplainer, TransposedConvExplainer, UnpoolingExplainer):
        assert text_traces(page(cls).fig), cls.__name__
    assert text_traces(page(AnchorsExplainer, "live").fig)
    assert len(page(NMSExplainer).fig.layout.annotations) > 1


# ----------------------------------------------------------------------------- captions fit
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")    # Debian's Chromium draws sans text in it
#: the page's text width at a 1280x720 projector (the window less the page's padding)
CAPTION_WIDTH = 1240


def caption_lines(caption: str, font) -> int:
    """Lines a step caption takes at ``CAPTION_WIDTH`` px: each ``<br>`` part word-wrapped, measured
    with the font the browser uses (bold measured as regular: a little short, so a caption near the
    limit is allowed). An empty caption takes none."""
    if not re.sub(r"<[^>]+>", "", caption).strip():
        return 0
    n = 0
    for part in re.split(r"<br\s*/?>", caption):
        text = html.unescape(re.sub(r"<[^>]+>", "", part))
        line, count = "", 1
        for word in text.split(" "):
            longer = f"{line} {word}".strip()
            if font.getlength(longer) > CAPTION_WIDTH and line:
                count, line = count + 1, word
            else:
                line = longer
        n += count
    return n


def choices(e):
    """The page's views (its first view / mode / pipeline dropdown), as ``(control, value)``."""
    for name in ("view", "mode", "pipeline"):
        c = getattr(e, name, None)
        if c is not None and getattr(c, "options", None):
            return [(c, o[1] if isinstance(o, tuple) else o) for o in c.options]
    return [(None, None)]


@pytest.mark.parametrize("source", ["lecture", "live"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_caption_fits_the_lines_its_page_keeps_for_it(cls, source):
    """The page keeps ``caption_lines`` lines above the plot for the step captions (19 px text), so
    the plot never jumps while a lecture plays. Every step's caption of every view must fit them at
    1280 px (the anchors' pipeline step 2 took three of two; R-CNN's last steps five of three)."""
    if not DEJAVU.exists():
        if os.environ.get("EXPLAINERS_REQUIRE_BROWSER"):
            pytest.fail(f"{DEJAVU} is missing (Debian: apt-get install fonts-dejavu-core)")
        pytest.skip("the browser's font (DejaVu Sans) is not installed")
    from PIL import ImageFont

    font = ImageFont.truetype(str(DEJAVU), 19)
    e = page(cls, source)
    too_long = []
    for control, value in choices(e):
        if control is not None:
            control.value = value
        for k in range(e.n_steps()):
            caption = e.frame(k)["caption"]
            if caption_lines(caption, font) > cls.caption_lines:
                too_long.append((value, k, caption_lines(caption, font), caption))
    if control is not None:
        control.value = choices(e)[0][1]
    assert not too_long, too_long[:3]


# ----------------------------------------------------------------------------- integer ticks
def grid_axes_have_integer_ticks(e):
    fig = e.fig
    checked = 0
    for tr in fig.data:
        if tr.type != "heatmap" or tr.visible is False:
            continue
        for letter, ref in (("x", tr.xaxis or "x"), ("y", tr.yaxis or "y")):
            ax = axis(fig, ref, letter)
            assert integer_ticks(ax), (type(e).__name__, ref, ax.tickmode, ax.tick0, ax.dtick, ax.tickvals)
            checked += 1
    return checked


@pytest.mark.parametrize("source", ["lecture", "live"])
@pytest.mark.parametrize("cls", [RoIPoolAlignExplainer, UnpoolingExplainer, SlidingWindowExplainer,
                                 AnchorsExplainer], ids=lambda c: c.__name__)
def test_cell_grids_have_integer_ticks(cls, source):
    e = page(cls, source)
    for k in sorted({0, e.n_steps() - 1}):
        e.step.value = k
        n = grid_axes_have_integer_ticks(e)
        assert n >= (2 if cls is not AnchorsExplainer or source == "live" else 0)


def test_transposed_conv_grids_have_integer_ticks_in_1d_and_2d():
    e = TransposedConvExplainer()
    for dims, view in ((1, "transposed"), (2, "transposed"), (2, "conv"), (1, "conv"), (1, "transposed")):
        e.dims.value, e.view.value = dims, view
        for k in range(e.n_steps()):
            e.step.value = k
            assert grid_axes_have_integer_ticks(e) == (6 if dims == 1 else 10)
    # the output's row labels are short lines (nothing clipped between the subplots), with room given
    e.dims.value = 1
    ax = e.fig.layout.yaxis3
    assert ax.automargin and max(len(line) for t in ax.ticktext for line in t.split("<br>")) <= 8


def test_unpooling_max_mode_and_roi_outputs_have_integer_ticks():
    e = UnpoolingExplainer()
    e.mode.value = "max"
    assert grid_axes_have_integer_ticks(e) == 8
    r = RoIPoolAlignExplainer()
    r.out_size.value = 7
    assert grid_axes_have_integer_ticks(r) == 10
    assert (r.fig.layout.xaxis3.tick0, r.fig.layout.xaxis3.dtick) == (0, 1)


# ----------------------------------------------------------------------------- highlights and labels
@pytest.mark.parametrize("cls", [RoIPoolAlignExplainer, TransposedConvExplainer, UnpoolingExplainer],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize("source", ["lecture", "live"])
def test_highlights_on_numbers_are_open(cls, source):
    """A marker drawn on a subplot whose cells hold numbers is an open outline (never a filled shape)."""
    e = page(cls, source)
    fig = e.fig
    if cls is RoIPoolAlignExplainer:
        e.out_size.value = 3          # outputs larger than 3 x 3 (live: the model's 7) carry no numbers
    for k in sorted({0, 1, e.n_steps() - 1} & set(range(e.n_steps()))):
        e.step.value = k
        numbered = {(tr.xaxis or "x", tr.yaxis or "y") for tr in fig.data if tr.type == "heatmap"
                    and tr.text is not None and any(any(str(v) for v in row) for row in tr.text)}
        assert numbered
        for tr in fig.data:
            if tr.type != "scatter" or (tr.xaxis or "x", tr.yaxis or "y") not in numbered:
                continue
            if "markers" in (tr.mode or "") and tr.x is not None and len(tr.x):
                assert str(tr.marker.symbol).endswith("-open"), (cls.__name__, tr.marker.symbol)


def test_roi_maxima_are_outlines_around_their_cells():
    e = RoIPoolAlignExplainer()
    tr = e.fig.data[7]
    assert tr.mode == "lines"
    xs = [v for v in tr.x if v is not None]
    cells = e._pt.argmax_cells(0).reshape(-1, 2)
    assert len(xs) == 5 * len(cells[cells[:, 0] >= 0])
    # every outline lies inside its cell: it frames the number at the cell's centre
    for c in cells.tolist():
        assert c[0] - 0.45 in xs and c[0] + 0.45 in xs


def nms_labels(e) -> list[tuple[float, float, str, str, dict]]:
    """The NMS page's box labels: ``(x, y, text, chip colour, annotation)`` (the legend is annotation 0)."""
    out = []
    for a in e.fig.layout.annotations[1:]:
        chip, text = a.text.split("</span> ", 1)
        out.append((a.x, a.y, html.unescape(text), chip.split("color:")[1].split("'")[0], a))
    return out


def test_nms_labels_never_overlap_and_name_the_step():
    """At a 1280x720 projector the 480-pixel-high image is drawn ~330 px high: with 17 px text a
    character is ~9.4 px wide and a line ~21 px high. No two label rectangles may intersect, and
    each label sits on an opaque-enough background above the box outlines (annotations are drawn
    above layout shapes), so no box line crosses its text."""
    e = page(NMSExplainer)
    H = e._img.shape[0]
    px = 330 / H                                            # screen pixels per image pixel
    char, line, chip = 9.4 / px, 21 / px, 22 / px
    for k in range(e.n_steps()):
        e.step.value = k
        labels = nms_labels(e)
        assert labels
        for *_, a in labels:
            assert a.font.size >= 16 and a.xref == "x" and a.yref == "y" and not a.showarrow
            alpha = float(a.bgcolor.rsplit(",", 1)[1].rstrip(") "))
            assert a.bgcolor.startswith("rgba(255, 255, 255") and alpha >= 0.7, a.bgcolor
        rects = [(x, y - line / 2, x + chip + char * len(t), y + line / 2) for x, y, t, _, _ in labels]
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (k, a, b)
        texts = [t for _, _, t, _, _ in labels]
        if 1 <= k < e.n_steps() - 1:
            step = e._tr.steps[k - 1]
            assert texts[0].startswith("keep ") and len(texts) == 1 + len(step.suppressed)
            assert all("IoU" in t for t in texts[1:])
        elif k == e.n_steps() - 1:      # done: every box kept is named (review s12c: kept boxes had no label)
            kept = e._keep.tolist()
            assert len(texts) == len(kept) and all(t.startswith("kept ") for t in texts)
            assert "(labelled)" in e.caption.value


# ----------------------------------------------------------------------------- one palette, legends
def test_sliding_window_background_is_visible_grey():
    e = page(SlidingWindowExplainer)
    bar = list(e.fig.data[6].marker.color)
    assert bar[0].upper() != "#FFFFFF" and luminance(bar[0]) < 230
    scale = e.fig.data[4].colorscale
    assert scale[0][1].upper() == bar[0].upper() == class_hex(0)
    assert tuple(BACKGROUND) not in PALETTE


def heatmap_colour(tr, label: int) -> str:
    """The colour the label map's colorscale gives a cell holding ``label``."""
    t = (label - tr.zmin) / (tr.zmax - tr.zmin)
    for (a, ca), (b, cb) in zip(tr.colorscale, tr.colorscale[1:]):
        if a <= t <= b and ca == cb:
            return ca
    raise AssertionError(f"no flat band at {t}")


def test_one_palette_for_classes_on_every_page():
    sw = page(SlidingWindowExplainer)
    classes = list(sw._model.classes)
    for k in range(len(classes)):
        assert heatmap_colour(sw.fig.data[4], k).upper() == sw.fig.data[6].marker.color[k].upper() == class_hex(k)
    legend = sw.fig.layout.annotations[-1].text
    for k, name in enumerate(classes):
        assert f"color:{class_hex(k)}'>■</span> {name}" in legend

    nms = page(NMSExplainer)
    nms.step.value = 0
    names = nms._classes
    labels = nms_labels(nms)
    for _, _, text, c, _ in labels:
        k = names.index(text.removeprefix("keep ").split()[0])
        assert c == class_hex(k), (text, c)
    shown = {names.index(t.removeprefix("keep ").split()[0]) for _, _, t, _, _ in labels}
    assert len({c for _, _, _, c, _ in labels}) == len(shown) >= 2      # one colour per class on the photo
    legend = nms.fig.layout.annotations[0].text
    for k in shown:
        assert f"color:{class_hex(k)}'>■</span> {names[k]}" in legend

    # the live model's overlays: boxes and masks drawn in class_colour(label)
    image = torch.full((3, 64, 64), 1.0)
    for lab in (1, 2, 3):
        det = DetectionResult(image=image, classes=["background", "a", "b", "c"], task="detection", weights="x",
                              device="cpu", seconds=0.0, boxes=torch.tensor([[10.0, 30, 50, 60]]),
                              scores=torch.tensor([0.9]), labels=torch.tensor([lab]), names=["abc"[lab - 1]],
                              masks=None)
        out = render(det)
        assert tuple(out[45, 10]) == class_colour(lab) == tuple(int(class_hex(lab)[i:i + 2], 16) for i in (1, 3, 5))
    live = page(LiveModelExplainer)
    legend = live.fig.layout.annotations[3].text
    seg = live._results["segmentation"]
    from explainers.widgets.live_model import MIN_SHARE

    for k in {k for k, f in seg.shares().items() if f >= MIN_SHARE} - {0}:
        assert f"color:{class_hex(k)}'>■</span> {seg.classes[k]}" in legend


def test_live_model_legend_follows_the_threshold():
    e = page(LiveModelExplainer)
    det = e._results["detection"]
    for t in (0.95, 0.05):
        e.threshold.value = t
        shown = {int(v) for v in det.labels[det.scores >= t].tolist()}
        legend = e.fig.layout.annotations[3].text
        for k in shown:
            assert f"color:{class_hex(k)}'>■</span> {det.classes[k]}" in legend
    e.threshold.value = 0.5


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("source", ["lecture", "live"])
def test_anchor_shapes_keep_their_aspect_ratio(source):
    e = page(AnchorsExplainer, source)
    assert e.fig.layout.yaxis2.scaleanchor == "x2" and e.fig.layout.yaxis.scaleanchor == "x"
    assert y_down(e.fig.layout.yaxis2)


def test_images_and_label_maps_have_equal_scales_and_y_down():
    sw = page(SlidingWindowExplainer)
    for ax, anchor in (("yaxis", "x"), ("yaxis2", "x2"), ("yaxis3", "x3")):
        assert sw.fig.layout[ax].scaleanchor == anchor and y_down(sw.fig.layout[ax])
    live = page(LiveModelExplainer)
    for ax, anchor in (("yaxis", "x"), ("yaxis2", "x2"), ("yaxis3", "x3")):
        assert live.fig.layout[ax].scaleanchor == anchor and y_down(live.fig.layout[ax])
    nms = page(NMSExplainer)
    assert nms.fig.layout.yaxis.scaleanchor == "x" and y_down(nms.fig.layout.yaxis)


# ----------------------------------------------------------------------------- render() labels
def _dark_rows(img, x0, x1, y0, y1) -> int:
    """How many rows of ``img[y0:y1, x0:x1]`` hold a dark (text) pixel, top to bottom."""
    rows = np.nonzero((img[y0:y1, x0:x1].max(-1) < 80).any(1))[0]
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


def test_render_labels_are_readable_on_a_256px_image():
    text = "circle 0.90"
    font = label_font(256, 256)
    left, top, right, bottom = font.getbbox(text)
    assert bottom - top >= 14, (font.size, (left, top, right, bottom))
    image = torch.full((3, 256, 256), 1.0)                   # white: the label is the only dark thing
    det = DetectionResult(image=image, classes=["background", "circle"], task="detection", weights="x",
                          device="cpu", seconds=0.0, boxes=torch.tensor([[40.0, 80, 200, 220]]),
                          scores=torch.tensor([0.9]), labels=torch.tensor([1]), names=["circle"], masks=None)
    out = render(det)
    # the label sits on a class-coloured strip above the box, the text drawn in it is >= 14 px high
    col = out[:80, 41]                                     # inside the strip, left of the text
    strip = np.nonzero((col == class_colour(1)).all(-1))[0]
    assert len(strip) >= 14 + 2 and strip[-1] == 79
    assert _dark_rows(out, 42, 40 + right, int(strip[0]), 80) >= 14
    assert 40 + right - left < 256                       # and the whole label fits in the image


def test_render_puts_the_second_label_where_it_covers_no_object():
    image = torch.full((3, 256, 256), 1.0)
    det = DetectionResult(image=image, classes=["background", "circle", "square"], task="detection", weights="x",
                          device="cpu", seconds=0.0, boxes=torch.tensor([[40.0, 80, 200, 220], [42.0, 82, 190, 230]]),
                          scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([1, 2]), names=["circle", "square"],
                          masks=None)
    out = render(det)
    alone = render(DetectionResult(**{**det.__dict__, "boxes": det.boxes[:1], "scores": det.scores[:1],
                                      "labels": det.labels[:1], "names": det.names[:1]}))
    # the best box's label (above it) is untouched by the second one ...
    assert np.array_equal(out[:80], alone[:80])
    # ... whose label goes below its own box (not inside the boxes, where the object is)
    rows = np.nonzero((out[230:256, 50:120] == class_colour(2)).all(-1).any(1))[0]
    assert len(rows) >= 14
    assert not (out[90:215, 50:180] == class_colour(2)).all(-1).any()


def test_render_labels_of_small_stacked_objects_cover_none_of_them():
    """Three small squares one above the other (a scene the live page showed with every label on an
    object): each label lands where it covers no box and no other label."""
    from explainers.models.render import _cover, _label_place, label_font

    H, W = 400, 250
    boxes = [[100.0, 40, 140, 80], [100.0, 95, 140, 135], [100.0, 150, 140, 190]]
    fnt = label_font(H, W)
    lh = fnt.getbbox("Ag")[3] - fnt.getbbox("Ag")[1] + 2 * max(2, fnt.size // 8)
    placed = []
    for b in boxes:
        rect = _label_place(b, fnt.getbbox("square 0.99")[2] + 8, lh, W, H, placed, boxes)
        assert all(_cover(rect, p) == 0 for p in placed)
        assert sum(_cover(rect, o) for o in boxes) == 0, (rect, b)
        placed.append(rect)


def test_render_segmentation_names_classes_in_a_legend():
    lab = torch.zeros(256, 256, dtype=torch.long)
    lab[100:200, 100:200] = 2
    seg = SegmentationResult(image=torch.full((3, 256, 256), 1.0), classes=["background", "circle", "square"],
                             task="segmentation", weights="x", device="cpu", seconds=0.0, labels=lab,
                             probabilities=torch.zeros(3, 256, 256))
    out = render(seg)
    assert (out[:40, :40] == class_colour(2)).all(-1).sum() >= 100      # the legend's square for "square"
    assert (out[:40].max(-1) > 200).any() and (out[:40].max(-1) < 30).any()   # white text on a dark strip


def _named_scales(x, path=""):
    """Paths in a frame where a colour scale is given by name."""
    if isinstance(x, dict):
        out = []
        for k, v in x.items():
            if k == "colorscale" and isinstance(v, str):
                out.append(f"{path}.{k}={v}")
            out += _named_scales(v, f"{path}.{k}")
        return out
    if isinstance(x, (list, tuple)):
        return [p for i, v in enumerate(x) for p in _named_scales(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_frames_give_colour_scales_as_lists_never_by_name(cls):
    """plotly.py and plotly.js read some names the opposite way round ("RdBu": plotly.py red low,
    plotly.js blue low); a frame reaches the HTML export and the static site as it is, so a named
    scale would draw other colours there than on the page."""
    import plotly.graph_objects as go

    assert go.Heatmap(colorscale="RdBu").colorscale[0][1] != "rgb(5,10,172)"      # the premise (plotly.js's low)
    e = page(cls)
    views = getattr(e, "view", None)
    for v in (list(views.options) if views is not None and hasattr(views, "options") else [None]):
        if v is not None:
            e.view.value = v[1] if isinstance(v, tuple) else v
        for k in range(e.n_steps()):
            assert _named_scales(e.frame(k)) == [], (cls.__name__, v, k)


def _x_kind(values):
    vals = [v for v in (list(values) if values is not None else []) if v is not None]
    if not vals:
        return None
    return "category" if isinstance(vals[0], str) else "number"


@pytest.mark.parametrize("cls", ALL, ids=[c.__name__ for c in ALL])
@pytest.mark.parametrize("source", ["lecture", "live"])
def test_an_axis_that_shows_names_and_numbers_says_its_type_in_every_frame(cls, source):
    """plotly keeps the type it first guessed for an axis: bars of class names drawn on an axis that
    showed channel numbers a step before draw nothing (the FCN's last step did that). An axis whose
    traces carry names in one step and numbers in another must have its type set in every step."""
    e = page(cls, source)
    fig = e.fig
    kinds: dict = {}
    frames = [e.frame(k) for k in range(max(1, e.n_steps()))]
    base = {"data": {i: {} for i in range(len(fig.data))}}
    for fr in [base] + frames:
        for i, props in (fr.get("data") or {}).items():
            if fig.data[i].type not in ("bar", "scatter"):
                continue
            x = props["x"] if "x" in props else fig.data[i].x
            if _x_kind(x):
                axis = "xaxis" + (fig.data[i].xaxis or "x")[1:]
                kinds.setdefault(axis, set()).add(_x_kind(x))
    for axis, seen in kinds.items():
        if len(seen) > 1:
            for k, fr in enumerate(frames):
                lay = fr.get("layout") or {}
                assert (lay.get(axis) or {}).get("type") in ("category", "linear"), (axis, k)
