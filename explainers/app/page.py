"""An explainer as a page for a class: lecture and live are one click, and live takes any sample image.

Voila hides the code, so "change one line to ``source="live"``" is impossible there; a
:class:`Page` puts that choice (and, live, the choice of image) on the page. Each combination
is built on first use; the lecture's is kept, and live only the image shown (``KEEP_LIVE``): another
image's explainer is closed and its memory given back, and the controls that do not depend on the
image carry over to the next one.
"""
from __future__ import annotations

import html

import ipywidgets as W

from ..registry import entry
from ._memory import keep_recent, release

#: the image a live page starts with (the bundled scene whose objects it knows)
DEFAULT_SAMPLE = "shapes scene 1"
#: live explainers a page keeps built (the image shown); an older one is closed and its memory given
#: back (a live page holds its model's captured tensors: a student who tried every image on every
#: page of the tour kept them all, and the kernel grew from 0.56 to 2.4 GB)
KEEP_LIVE = 1


def _samples() -> dict:
    from ..widgets.live_model import sample_images

    return sample_images()


def _targets() -> dict:
    from ..widgets.live_model import sample_targets

    return sample_targets()


class Page:
    """``Page(explainer)``: the explainer under a lecture / live switch and, live, an image chooser.
    Another image keeps the controls that do not depend on the image (``Explainer.image_free``).

    ``explainer`` is an explainer instance (shown first) or class. The explainers of the registry
    whose row says ``switch=False`` (the live model page, with its own image chooser) are shown
    as they are.
    """

    def __init__(self, explainer):
        first = explainer if not isinstance(explainer, type) else explainer()
        self.cls, self.entry = type(first), entry(type(first).__name__)
        self._samples = _samples()
        # a page that is taught from ground truth (needs_target) offers only the images that have one
        self._targets = _targets() if getattr(self.cls, "needs_target", False) else None
        names = [n for n in self._samples if self._targets is None or n in self._targets]
        self._built = {(first.source, DEFAULT_SAMPLE if first.source == "live" else None): first}
        self._last_live = first if first.source == "live" else None     # whose controls another image takes
        self._given = first if not isinstance(explainer, type) else None
        self.source = W.ToggleButtons(options=[("the worked example", "lecture"), ("the live model", "live")],
                                      value=first.source, style={"button_width": "170px"},
                                      tooltips=["the lecture's worked example", "real tensors from the running model"])
        self.sample = W.Dropdown(options=names, value=DEFAULT_SAMPLE if DEFAULT_SAMPLE in names else names[0],
                                 description="image", layout=W.Layout(width="300px"))
        self.error = W.HTML()
        self.body = W.VBox([first.widget])
        #: lecture / live and the image, beside the title of the explainer shown (not above it)
        self.bar = W.HBox([self.source, self.sample], layout=W.Layout(flex_flow="row wrap"))
        self.source.observe(lambda _: self._show(), "value")
        self.sample.observe(lambda _: self._show(), "value")
        self.widget = W.VBox([self.error, self.body])
        self._place_bar(first)
        self._sync_sample_visibility()

    def _place_bar(self, shown) -> None:
        if not self.entry.switch:
            return
        for built in self._built.values():
            built.header_tools.children = (self.bar,) if built is shown else ()

    @property
    def explainer(self):
        """The explainer shown now."""
        return self._built[self._key()]

    def _key(self):
        live = self.source.value == "live"
        return (self.source.value, self.sample.value if live else None)

    def _sync_sample_visibility(self) -> None:
        self.sample.layout.display = None if self.source.value == "live" else "none"

    def _show(self) -> None:
        self._sync_sample_visibility()
        key = self._key()
        try:
            if key not in self._built:
                source, sample = key
                image = None if sample is None or sample == DEFAULT_SAMPLE else self._samples[sample]()
                extra = {"target": self._targets[sample]()} if image is not None and self._targets else {}
                self._built[key] = self.cls(source=source, image=image, **extra)
            shown, before = self._built[key], self._last_live
            if shown.source == "live" and before is not None and shown is not before:
                # another image, the same page: what the student set that does not depend on the
                # image (a threshold, a view, a kernel size) stays as it was
                shown.take_controls(before)
            if shown.source == "live":
                self._last_live = shown
            shown.sync_figure()
            self._place_bar(shown)
            self.body.children = [shown.widget]
            # the explainer the page was given is the user's own (their image, their model): never closed
            keep_recent(self._built, key, KEEP_LIVE, lambda k, built: k[0] == "live" and built is not self._given)
            self.error.value = ""
            release()          # the build's temporaries (a live model's activations) go back to the machine
        except Exception as exc:  # keep the page usable whatever one combination does
            self.error.value = (f"<span style='color:#D55E00;font-size:17px'>⚠ "
                                f"{html.escape(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}</span>")

    def close(self) -> None:
        """Close the page: every explainer it built or was given, and its own widgets."""
        from ..widgets._base import close_widgets      # (not at import: the server imports this module)

        for built in self._built.values():
            built.close()
        self._built.clear()
        close_widgets([self.widget, self.bar])

    def _repr_mimebundle_(self, **kwargs):
        self.explainer.sync_figure()
        return self.widget._repr_mimebundle_(**kwargs)
