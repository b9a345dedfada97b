"""A small, robust plotly view widget (anywidget): full figure once, small patches after.

Why not plotly's ``FigureWidget``?  With plotly 6/7 (where it became an anywidget) a
FigureWidget placed inside an ipywidgets box shows the state it had when it was built,
and later updates are applied unreliably under Voila (plotly/plotly.py#4998 and our own
browser checks).  This widget keeps one rule: the Python side owns a ``go.Figure``;
``figure`` (sent whole) is what a new view draws, ``patch`` (small: changed traces and
layout keys) is what an existing view applies with ``Plotly.react``.  plotly.js comes
from the installed plotly package, so nothing is fetched from the internet.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import anywidget
from ipywidgets import widget_serialization
import plotly
import plotly.graph_objects as go
from plotly.basedatatypes import BasePlotlyType, _str_to_dict_path_full
import plotly.io.json as pjson
import traitlets

#: the axes of a plotly layout whose scale is tied to another's (``scaleanchor``, both ends), sorted.
#: plotly.js's react stretches a new range on such an axis instead of shrinking its domain, so the
#: plot view (below) and the exported player (``_export``) draw afresh when one of them changes.
#: ES5, as the exported player is.
TIED_AXES_JS = r"""
function tiedAxes(layout) {
  var tied = {};
  Object.keys(layout).forEach(function (k) {
    var v = layout[k], m;
    if (!/^[xy]axis[0-9]*$/.test(k) || !v || typeof v !== "object" || !v.scaleanchor) return;
    tied[k] = true;
    m = String(v.scaleanchor).match(/^([xy])([0-9]*)$/);
    if (m) tied[m[1] + "axis" + m[2]] = true;
  });
  return Object.keys(tied).sort();
}
"""

#: the height a plot takes on a projector (shared by the plot view and the exported player, ES5):
#: when the plot starts in the first screen it takes the height left below it (less room for the
#: check lines), between 300 px and the figure's own height; further down, the figure's height
FIT_JS = r"""
function fittedHeight(el, figHeight) {
  var MIN = 300, RESERVE = 70;
  var top = el.getBoundingClientRect().top + window.scrollY;
  if (!el.isConnected || top <= 0 || top > 0.75 * window.innerHeight) return figHeight;
  return Math.round(Math.max(MIN, Math.min(figHeight, window.innerHeight - top - RESERVE)));
}
"""

_JS = TIED_AXES_JS + FIT_JS + r"""
function merge(target, src) {
  for (const [k, v] of Object.entries(src)) {
    // null: back to plotly's default, as None does in Python (plotly.js fails on a null container)
    if (v === null) { delete target[k]; continue; }
    // objects merge key by key, except a typed array ({dtype, bdata, shape}), which is one value
    if (v && typeof v === "object" && !Array.isArray(v) && !("bdata" in v) && target[k]
        && typeof target[k] === "object" && !Array.isArray(target[k]) && !("bdata" in target[k])) {
      merge(target[k], v);
    } else {
      target[k] = v;
    }
  }
  return target;
}

async function plotlyReady(deadlineMs) {
  // plotly.js arrives once per page, with the PlotlyJS widget; wait for it with a deadline
  const t0 = Date.now();
  while (!window.Plotly) {
    if (Date.now() - t0 > deadlineMs) throw new Error("plotly.js did not load");
    await new Promise((r) => setTimeout(r, 25));
  }
  return window.Plotly;
}

async function render({ model, el }) {
  const div = document.createElement("div");
  div.className = "explainers-plot";
  div.style.width = "100%";
  el.appendChild(div);
  const Plotly = await plotlyReady(60000);
  let state = null;
  let rev = 0;
  let figHeight = 520;   // the figure's own height: the most the plot takes
  let height = 520;      // what it is drawn at now
  // On a projector the page must fit the window (FIT_JS)
  const fitted = () => fittedHeight(div, figHeight);
  // plotly.js writes back into the layout it is given what it guessed or adjusted, and the view
  // keeps that layout between draws (patches merge into it): an axis type it guessed (bars of class
  // names on an axis that showed channel numbers the step before drew nothing), the autorange of an
  // axis asked to be "reversed" (it comes back as true and flipped at the next step), ranges and
  // domains it adjusted to keep an axis' scale tied to another's (scaleanchor). So every draw puts
  // back what the figure asked for (and drops what it did not ask for, to be guessed again), and a
  // change on a tied axis is drawn afresh: Plotly.react stretches such a range instead of shrinking
  // the domain (a label map of 8 columns drawn on an axis of 22).
  const AXIS = /^[xy]axis[0-9]*$/;
  const ASKED = ["type", "range", "domain", "autorange"];
  let requested = {};
  let lastTied = null;
  const noteAxes = (layout) => {
    for (const [k, v] of Object.entries(layout || {})) {
      if (!AXIS.test(k) || !v || typeof v !== "object") continue;
      const r = requested[k] || (requested[k] = {});
      for (const p of ASKED) {
        if (p in v) r[p] = v[p] === null ? null : JSON.parse(JSON.stringify(v[p]));
      }
    }
  };
  const draw = () => {
    rev += 1;
    for (const [k, v] of Object.entries(state.layout)) {
      if (!AXIS.test(k) || !v || typeof v !== "object") continue;
      const r = requested[k] || {};
      for (const p of ASKED) {
        if (p in r && r[p] !== null) v[p] = JSON.parse(JSON.stringify(r[p])); else delete v[p];
      }
    }
    const tied = JSON.stringify(tiedAxes(state.layout).map((k) => [k, requested[k] || {}]));
    if (lastTied !== null && tied !== lastTied) Plotly.purge(div);
    lastTied = tied;
    // The height is always a number of pixels held by the div: `responsive` then only follows
    // the width. (Sizing to the container let a window resize draw the next step at 0 px.)
    state.layout.height = height;
    state.layout.autosize = true;
    div.style.height = height + "px";
    state.layout.datarevision = rev;
    Plotly.react(div, state.data, state.layout, model.get("config"));
  };
  const refit = () => {
    if (!state) return;
    const h = fitted();
    if (h !== height) { height = h; draw(); }
  };
  let pending = false;
  const onResize = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; refit(); });
  };
  const full = () => {
    state = JSON.parse(JSON.stringify(model.get("figure")));
    state.data = state.data || [];
    state.layout = state.layout || {};
    figHeight = state.layout.height || figHeight;
    requested = {};
    noteAxes(state.layout);
    height = fitted();
    draw();
  };
  const patch = () => {
    const p = model.get("patch");
    if (!p || !state) return;
    for (const [i, props] of Object.entries(p.data || {})) {
      merge(state.data[Number(i)], props);
    }
    merge(state.layout, p.layout || {});
    noteAxes(p.layout);
    if (p.layout && p.layout.height) { figHeight = p.layout.height; height = fitted(); }
    draw();
  };
  full();
  // the view may be attached to the page only after render(): fit again once it is
  requestAnimationFrame(() => requestAnimationFrame(refit));
  window.addEventListener("resize", onResize);
  // the page's layout may widen the view without the window changing (a page swapped in by the
  // lecture / live switch was first drawn narrow, its image under the legend): follow the width.
  // A window resize is plotly's own (`responsive`): not drawn a second time, late, from here
  let drawnWidth = div.clientWidth, windowWidth = window.innerWidth;
  const widths = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => {
    const w = div.clientWidth;
    if (window.innerWidth !== windowWidth) { windowWidth = window.innerWidth; drawnWidth = w; return; }
    if (!state || w <= 0 || Math.abs(w - drawnWidth) < 2) return;
    drawnWidth = w;
    Plotly.Plots.resize(div);
  });
  if (widths) widths.observe(div);
  model.on("change:figure", full);
  model.on("change:patch", patch);
  return () => {
    window.removeEventListener("resize", onResize);
    if (widths) widths.disconnect();
    Plotly.purge(div);
  };
}
export default { render };
"""


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    src = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    # run plotly.js's UMD wrapper as a plain script: it defines window.Plotly
    return "if (!window.Plotly) {\nconst module = undefined;\n" + src + "\n}\nexport default {};\n"


class PlotlyJS(anywidget.AnyWidget):
    """plotly.js (from the installed plotly package), sent to the page once per kernel: every
    :class:`PlotView` refers to the same instance instead of carrying 4.6 MB of script each."""

    _esm = traitlets.Unicode().tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(_esm=_plotly_js(), **kwargs)


_LOADER: PlotlyJS | None = None


def plotly_js() -> PlotlyJS:
    """The kernel's one :class:`PlotlyJS` widget."""
    global _LOADER
    if _LOADER is None:
        _LOADER = PlotlyJS()
    return _LOADER


try:   # plotly >= 6 (plotly.js >= 2.28 reads typed arrays); with an older plotly, arrays go as lists
    from _plotly_utils.utils import convert_to_base64 as _to_typed_arrays
except ImportError:  # pragma: no cover - plotly 5
    def _to_typed_arrays(obj):
        return None


def _jsonable(obj):
    """``obj`` (a dict or list this module built) as JSON values, its numpy arrays in plotly.js's
    typed-array form (``{"dtype", "bdata", "shape"}``, as plotly's own ``Figure.to_dict`` gives
    them): one base64 string instead of a nested list of numbers (a 224x192 map: ~6 times quicker)."""
    _to_typed_arrays(obj)
    return json.loads(pjson.to_json_plotly(obj))


#: layout properties that are lists of objects: a frame gives the whole list
ARRAY_LAYOUT_KEYS = ("shapes", "annotations", "images", "selections", "sliders", "updatemenus")


def _as_json(value):
    if isinstance(value, BasePlotlyType):
        return value.to_plotly_json()
    if isinstance(value, tuple) and value and isinstance(value[0], BasePlotlyType):
        return [v.to_plotly_json() for v in value]
    return value


def _changed(obj, props: dict) -> dict:
    """The values now in ``obj`` (a trace, the layout, or a part of them) at the paths ``props``
    named, nested as plotly.js reads them: a patch of just what an update touched.

    The view merges it into what it holds (objects key by key, anything else replaced), so this
    equals sending the whole object, without copying and sending the parts that did not change
    (a heatmap's z, an image's data). A value set to None is sent as null, which the view drops so
    that plotly.js uses its default, as the Python figure does (a reset ``marker`` read back from
    Python is an empty object, which merged would leave the old one; null itself as a container's
    value makes plotly.js fail).
    """
    out: dict = {}
    for key, value in props.items():
        path = _str_to_dict_path_full(key)[0] if isinstance(key, str) else tuple(key)
        now = obj[key]
        if value is None:                          # reset: the view drops it, plotly.js uses its default
            piece = None
        elif isinstance(value, dict) and value and isinstance(now, BasePlotlyType):
            piece = _changed(now, value)           # plotly merged the dict: send its keys only
        else:
            piece = _as_json(now)
        node = out
        for name in path[:-1]:
            node = node.setdefault(name, {})
        if isinstance(piece, dict) and isinstance(node.get(path[-1]), dict):
            node[path[-1]].update(piece)
        else:
            node[path[-1]] = piece
    return out


def update_layout(fig, layout: dict) -> None:
    """``fig.layout.update(layout)``, except that list properties (shapes, annotations, images)
    are replaced, not merged: plotly's update merges a shorter list into the longer one element
    by element (three shapes updated with one become three copies of it; an empty list changes
    nothing), which leaves boxes of an earlier frame on the plot."""
    rest = {k: v for k, v in layout.items() if k not in ARRAY_LAYOUT_KEYS}
    for key in ARRAY_LAYOUT_KEYS:
        if key in layout:
            setattr(fig.layout, key, list(layout[key] or ()))
    if rest:
        fig.layout.update(rest)


def update_figure(fig, data: dict | None = None, layout: dict | None = None) -> None:
    """A frame's traces ``{index: props}`` and layout applied to ``fig`` in place (what a page
    does at each step, and what its export draws step 0 with)."""
    with fig.batch_update():
        for i, props in (data or {}).items():
            fig.data[int(i)].update(props)
        if layout:
            update_layout(fig, layout)


class PlotView(anywidget.AnyWidget):
    """Shows a ``go.Figure``; :meth:`apply` updates traces/layout in place (no re-creation)."""

    _esm = traitlets.Unicode(_JS).tag(sync=True)
    plotly = traitlets.Instance(PlotlyJS).tag(sync=True, **widget_serialization)
    figure = traitlets.Dict().tag(sync=True)
    patch = traitlets.Dict().tag(sync=True)
    config = traitlets.Dict({"displaylogo": False, "responsive": True}).tag(sync=True)

    def __init__(self, fig: go.Figure, **kwargs):
        super().__init__(plotly=plotly_js(), **kwargs)
        self.fig = fig
        self._n = 0
        self.sync()

    def sync(self) -> None:
        """Send the whole figure (what a newly created view draws)."""
        self.figure = _jsonable(self.fig.to_plotly_json())

    def apply(self, data: dict | None = None, layout: dict | None = None) -> None:
        """Update traces ``{index: props}`` and layout keys, in Python and in every open view."""
        data = data or {}
        update_figure(self.fig, data, layout)
        self._n += 1
        payload = {str(i): _changed(self.fig.data[i], props) for i, props in data.items()}
        lay = _changed(self.fig.layout, layout or {})      # a list (shapes, ...) is sent whole
        self.patch = {"n": self._n, "data": _jsonable(payload), "layout": _jsonable(lay)}
