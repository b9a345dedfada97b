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
import plotly
import plotly.graph_objects as go
import plotly.io.json as pjson
import traitlets

_JS = r"""
function merge(target, src) {
  for (const [k, v] of Object.entries(src)) {
    if (v && typeof v === "object" && !Array.isArray(v) && target[k] && typeof target[k] === "object"
        && !Array.isArray(target[k])) {
      merge(target[k], v);
    } else {
      target[k] = v;
    }
  }
  return target;
}

function render({ model, el }) {
  const div = document.createElement("div");
  div.className = "explainers-plot";
  el.appendChild(div);
  let state = null;
  let rev = 0;
  const draw = () => {
    rev += 1;
    state.layout.datarevision = rev;
    window.Plotly.react(div, state.data, state.layout, model.get("config"));
  };
  const full = () => {
    state = JSON.parse(JSON.stringify(model.get("figure")));
    state.data = state.data || [];
    state.layout = state.layout || {};
    draw();
  };
  const patch = () => {
    const p = model.get("patch");
    if (!p || !state) return;
    for (const [i, props] of Object.entries(p.data || {})) {
      merge(state.data[Number(i)], props);
    }
    merge(state.layout, p.layout || {});
    draw();
  };
  full();
  model.on("change:figure", full);
  model.on("change:patch", patch);
  return () => window.Plotly.purge(div);
}
export default { render };
"""


@functools.lru_cache(maxsize=1)
def _esm() -> str:
    src = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    # run plotly.js's UMD wrapper as a plain script: it defines window.Plotly
    return "if (!window.Plotly) {\nconst module = undefined;\n" + src + "\n}\n" + _JS


def _jsonable(obj):
    return json.loads(pjson.to_json_plotly(obj))


class PlotView(anywidget.AnyWidget):
    """Shows a ``go.Figure``; :meth:`apply` updates traces/layout in place (no re-creation)."""

    _esm = traitlets.Unicode().tag(sync=True)
    figure = traitlets.Dict().tag(sync=True)
    patch = traitlets.Dict().tag(sync=True)
    config = traitlets.Dict({"displaylogo": False, "responsive": True}).tag(sync=True)

    def __init__(self, fig: go.Figure, **kwargs):
        super().__init__(_esm=_esm(), **kwargs)
        self.fig = fig
        self._n = 0
        self.sync()

    def sync(self) -> None:
        """Send the whole figure (what a newly created view draws)."""
        self.figure = _jsonable(self.fig.to_plotly_json())

    def apply(self, data: dict | None = None, layout: dict | None = None) -> None:
        """Update traces ``{index: props}`` and layout keys, in Python and in every open view."""
        data = data or {}
        with self.fig.batch_update():
            for i, props in data.items():
                self.fig.data[i].update(props)
            if layout:
                self.fig.layout.update(layout)
        self._n += 1
        payload = {str(i): self.fig.data[i].to_plotly_json() for i in data}
        for p in payload.values():
            p.pop("type", None)
        full = self.fig.layout.to_plotly_json()
        lay = {k: full.get(k) for k in (layout or {})}
        self.patch = {"n": self._n, "data": _jsonable(payload), "layout": _jsonable(lay)}
