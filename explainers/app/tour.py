"""The tour page: one explainer at a time, chosen with buttons, created lazily and kept."""
from __future__ import annotations

import html

import ipywidgets as W

from .. import EXPLAINERS

NOTEBOOK_OF = {"SlidingWindowExplainer": "01_sliding_window", "UnpoolingExplainer": "02_unpooling",
               "TransposedConvExplainer": "03_transposed_conv", "AnchorsExplainer": "04_anchors_rpn",
               "RoIPoolAlignExplainer": "05_roi_pool_align", "NMSExplainer": "06_nms",
               "LiveModelExplainer": "07_live_model"}
LABELS = {"SlidingWindowExplainer": "1 sliding window", "UnpoolingExplainer": "2 unpooling",
          "TransposedConvExplainer": "3 transposed conv", "AnchorsExplainer": "4 anchors & RPN",
          "RoIPoolAlignExplainer": "5 RoI Pool / Align", "NMSExplainer": "6 NMS",
          "LiveModelExplainer": "7 live model"}
#: the first page shown: quick to build (no model), so the first plot appears fast
FIRST = "UnpoolingExplainer"


class Tour:
    """Buttons for the seven explainers; the chosen one is shown below (built on first use)."""

    def __init__(self, first: str = FIRST):
        self._built: dict = {}
        self.pick = W.ToggleButtons(options=[(LABELS[n], n) for n, _ in EXPLAINERS], value=first,
                                    style={"button_width": "150px"})
        self.blurb = W.HTML()
        self.body = W.VBox([])
        self.error = W.HTML()
        self.pick.observe(lambda ch: self._show(ch["new"]), "value")
        self.widget = W.VBox([self.pick, self.blurb, self.body, self.error])
        self._show(first)

    def _show(self, name: str) -> None:
        import explainers

        line = dict(EXPLAINERS)[name]
        nb = NOTEBOOK_OF[name]
        self.blurb.value = (f"<p style='font-size:17px;margin:6px 0'>{html.escape(line)} "
                            f"&middot; <a href='{nb}.ipynb' target='_blank'>open on its own page</a></p>")
        try:
            if name not in self._built:
                self._built[name] = getattr(explainers, name)(source="live" if name == "AnchorsExplainer"
                                                              else "lecture")
            self._built[name].sync_figure()
            self.body.children = [self._built[name].widget]
            self.error.value = ""
        except Exception as exc:  # keep the tour usable whatever one explainer does
            self.error.value = f"<span style='color:#D55E00'>⚠ {html.escape(str(exc) or type(exc).__name__)}</span>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
