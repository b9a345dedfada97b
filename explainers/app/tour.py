"""The tour page: one explainer at a time, chosen with buttons, created lazily; the last few kept."""
from __future__ import annotations

import html

import ipywidgets as W

from ..registry import EXPLAINERS, entry
from ._memory import keep_recent, release
from .page import Page

#: the first page shown: quick to build (no model), so the first plot appears fast
FIRST = "UnpoolingExplainer"
#: pages the tour keeps built (the one shown and the two before); an older one is closed and its
#: memory given back, and built again if chosen again (a tour through all twelve kept them all)
KEEP_PAGES = 3


class Tour:
    """A button per explainer of the registry; the chosen one is shown below (built on first use)."""

    def __init__(self, first: str = FIRST):
        self._built: dict = {}
        self.pick = W.ToggleButtons(options=[(e.label, e.name) for e in EXPLAINERS], value=first,
                                    style={"button_width": "150px"})
        self.blurb = W.HTML()
        self.body = W.VBox([])
        self.error = W.HTML()
        self.pick.observe(lambda ch: self._show(ch["new"]), "value")
        self.widget = W.VBox([self.pick, self.blurb, self.body, self.error])
        self._show(first)

    def _show(self, name: str) -> None:
        e = entry(name)
        self.blurb.value = (f"<p style='font-size:17px;margin:6px 0'>{html.escape(e.blurb)} "
                            f"&middot; <a href='{e.notebook}.ipynb' target='_blank'>open on its own page</a></p>")
        try:
            if name not in self._built:
                self._built[name] = Page(e.load()(source=e.tour_source))
            self._built[name].explainer.sync_figure()
            self.body.children = [self._built[name].widget]
            self.error.value = ""
            if keep_recent(self._built, name, KEEP_PAGES):
                release()
        except Exception as exc:  # keep the tour usable whatever one explainer does
            self.error.value = f"<span style='color:#D55E00'>⚠ {html.escape(str(exc) or type(exc).__name__)}</span>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
