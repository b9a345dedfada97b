"""What every explainer shares: the step animation, the check line, the error line,
HTML export, and a projector-friendly look.  Subclasses hold layout and callbacks only;
all numbers come from :mod:`explainers.ops` and :mod:`explainers.models`."""
from __future__ import annotations

import functools
import html
import inspect
import traceback
from pathlib import Path

import base64
import io

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ._plotview import PlotView, update_figure
from ..models.live import LiveModel

#: Okabe-Ito colour-blind-safe palette
ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE, GREY = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
CLASS_COLOURS = [ORANGE, SKY, GREEN, VERMILLION, BLUE, PURPLE, YELLOW]
FONT = dict(size=16)
SOURCES = ("lecture", "live")
#: a check line passes when the largest difference is at most this (float32 sums in another order)
CHECK_TOLERANCE = 1e-4


def rect_path(boxes) -> tuple[list, list]:
    """Closed outlines of ``(x1, y1, x2, y2)`` boxes as one scatter line (None-separated)."""
    xs, ys = [], []
    for x1, y1, x2, y2 in boxes:
        xs += [x1, x2, x2, x1, x1, None]
        ys += [y1, y1, y2, y2, y1, None]
    return xs, ys


def png_uri(img: np.ndarray) -> str:
    """An ``(H, W, 3)`` uint8 array as a PNG data URI (a go.Image ``source``: small to send)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jpeg_uri(img: np.ndarray, quality: int = 92) -> str:
    """An ``(H, W, 3)`` uint8 array as a JPEG data URI (full colour resolution, so coloured labels
    stay sharp): for a photo with boxes redrawn while a control moves, encoded in about 1 ms where
    :func:`png_uri` takes 16-40 ms, and in less than half its bytes (the coffee photo's panel:
    200 KB of base64 against 470 KB)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="JPEG", quality=quality, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def halo() -> dict:
    """Text font settings for a contrasting outline around trace text (plotly.js >= 2.31), so
    numbers read on any image or heatmap colour; ``{}`` on an older plotly."""
    try:
        go.scatter.Textfont(shadow="auto")
    except ValueError:
        return {}
    return {"shadow": "auto"}


def stack_label(placed: list, x: float, y: float, w: float, line: float, max_y: float) -> float:
    """A label ``w`` wide at ``(x, y)``, moved down a ``line`` at a time while it would cover one
    already in ``placed`` (``(x, y, w)`` each, a line high) and may still go down (``y + line <=
    max_y``); then added to ``placed``. Returns its ``y``. (NMS's and R-CNN's box labels.)"""
    while y + line <= max_y and any(abs(y - py) < line and x < px + pw and px < x + w for px, py, pw in placed):
        y += line
    placed.append((x, y, w))
    return y


def close_widgets(roots) -> None:
    """Close each widget in ``roots`` (other values are skipped), its children, and their layouts and
    styles (``Widget.close`` leaves those registered in the kernel)."""
    seen: set[int] = set()

    def walk(w):
        if not isinstance(w, W.Widget) or id(w) in seen:
            return
        seen.add(id(w))
        for child in getattr(w, "children", None) or ():
            walk(child)
        for part in (getattr(w, "layout", None), getattr(w, "style", None)):
            if isinstance(part, W.Widget) and id(part) not in seen:
                seen.add(id(part))
                part.close()
        w.close()

    for root in list(roots):
        walk(root)


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


class Explainer:
    """Base of every explainer (see explainers.registry).

    Subclasses set ``title``, build ``self.fig`` traces and controls in ``_build()``,
    return the number of animation steps from ``n_steps()``, and describe step ``k``
    as trace/layout updates in ``frame(k)``.  ``refresh()`` recomputes after a control
    change (inside :meth:`guard`, so bad parameters land in the error line).
    """

    title = "Explainer"
    play_interval = 700
    #: lines (19 px text, 1280 px wide) the page reserves for its step captions
    caption_lines = 2
    #: the controls (attribute names) that mean the same on any image: a page that shows another
    #: image live keeps them as the student left them (:meth:`take_controls`); the others (a pixel,
    #: a cell, a box, a detection) start again on the new image
    image_free: tuple[str, ...] = ()
    #: whether the lecture's numbers come from a model too (then ``model=`` is used in both sources);
    #: otherwise a ``model=`` given with ``source="lecture"`` is said to be unused, in the note
    lecture_uses_model = False

    def __init__(self, source: str = "lecture", image=None, model=None):
        if source not in SOURCES:
            raise ValueError(f"source must be 'lecture' or 'live', got {source!r}")
        self.source, self.image, self.model = source, image, model
        self.error = W.HTML()
        self.check = W.HTML()
        self.note = W.HTML()      # live mode: exactly what is drawn, and where it differs from the model
        self.caption = W.HTML()
        # the slider counts from 0 (frame(k) takes k); its readout says "step k + 1 of n", as the
        # captions count steps from 1
        self.step = W.IntSlider(value=0, min=0, max=0, description="step", continuous_update=True,
                                readout=False, layout=W.Layout(width="380px"))
        self.step_label = W.HTML(layout=W.Layout(width="110px"))   # "1764 of 1764" on one line
        self.play = W.Play(value=0, min=0, max=0, interval=self.play_interval, description="play",
                           show_repeat=False)
        self._link = W.jslink((self.play, "value"), (self.step, "value"))
        self.back = W.Button(description="◀ step", layout=W.Layout(width="90px"), tooltip="one step back")
        self.forward = W.Button(description="step ▶", layout=W.Layout(width="90px"), tooltip="one step forward")
        self.speed = W.Dropdown(options=[("slow", 1400), ("normal", 700), ("fast", 250)], value=700,
                                description="speed", layout=W.Layout(width="170px"))
        self.back.on_click(lambda _: self._nudge(-1))
        self.forward.on_click(lambda _: self._nudge(1))
        self.speed.observe(lambda ch: setattr(self.play, "interval", ch["new"]), "value")
        self.step.observe(lambda ch: self.guard(self.show_step, ch["new"]), "value")
        self.plot = None
        self.fig = go.Figure()
        self.fig.update_layout(font=FONT, template="plotly_white", margin=dict(l=40, r=20, t=70, b=40),
                               height=520, showlegend=False)
        self.controls = placeholder = W.HBox([])
        # the animation controls: shown only when there is more than one step to go through
        self.anim = W.HBox([self.play, self.back, self.forward, self.step, self.step_label, self.speed])
        self.failed = ""
        try:
            if self.model is not None and not isinstance(self.model, LiveModel):
                # any torchvision detector or segmenter as it is (the README's model=): wrapped as
                # explainers.models.wrap does; anything else is one line on the page
                from ..models import wrap

                self.model = wrap(self.model)
            self._build()
        except Exception as exc:    # e.g. a model this page cannot use, or one that fails on it: say so
            self.failed = self._error_line(exc)
            self._show_error(self.failed)
        else:
            self.guard(self.refresh)
        if self.controls is not placeholder:      # the page's own controls took its place
            placeholder.layout.close()
            placeholder.close()
        if self._model_unused() and not self.note.value:
            self.set_note("")
        self.plot = PlotView(self.fig)
        if self.error.value:                 # the first refresh failed: no stale or empty picture
            self.plot.layout.visibility = "hidden"
        try:
            if max(1, self.n_steps()) <= 1:
                self.anim.layout.display = "none"
        except Exception:                    # nothing built to count steps of: the error line says why
            self.anim.layout.display = "none"
        # the title, and beside it what a page puts there (app.Page: lecture / live, the image)
        # the tools beside the title (a page's lecture / live switch and image chooser) take the room
        # left of the title and wrap inside it: a chooser that does not fit goes under the switch,
        # and the switch stays where it was (it jumped to a line of its own when the chooser appeared)
        self.header_tools = W.HBox(layout=W.Layout(margin="0 0 0 24px", flex="1 1 350px", flex_flow="row wrap"))
        header = W.HBox([W.HTML(f"<h3 style='margin:2px 0;font-size:24px'>{html.escape(self.title)}</h3>"),
                         self.header_tools], layout=W.Layout(align_items="center", flex_flow="row wrap"))
        anim = self.anim
        # one screen per idea: controls, then what this step shows (large, above the plot), the
        # plot (sized to the window by PlotView), then the checks
        # room for the longest caption of the page (1280 px wide), kept while stepping: the plot
        # below never jumps when a caption takes another line
        self.caption.layout.min_height = f"{self.caption_lines * 26}px"
        self.widget = W.VBox([header, self.controls, anim, self.error, self.caption, self.plot, self.check,
                              self.note] if not self.failed else [header, self.error, self.note])

    def close(self) -> None:
        """Close every widget of this explainer (its controls, plot and the play link), so that the
        kernel lets go of it and of what it holds (a live model's captured tensors): a page that is
        no longer shown is closed and, if asked for again, built again."""
        close_widgets(vars(self).values())

    def take_controls(self, other: "Explainer") -> list[str]:
        """Set this explainer's :attr:`image_free` controls to ``other``'s values (the same page on
        another image); returns the names changed. A value this one cannot take is left as it is."""
        taken = []
        if type(other) is not type(self) or self.failed or other.failed:
            return taken
        for name in self.image_free:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine.value != theirs.value:
                try:
                    mine.value = theirs.value
                except Exception:             # e.g. an option this image does not offer: keep its own
                    continue
                taken.append(name)
        return taken

    # ------------------------------------------------------------------ subclass API
    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def refresh(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def n_steps(self) -> int:
        return 1

    def state(self) -> dict:
        """The numbers this explainer draws right now, with the parameters they were computed
        with, as plain tensors and Python values (documented per explainer in ``_state``).

        Always present: ``source`` ("lecture" or "live"), ``step`` (the current step) and
        ``n_steps``. A notebook or a test can take what a student sees and compare it with
        anything (the model's own tensors, torchvision, a hand computation). A page that shows an
        error in place of its picture draws nothing: its ``state()`` raises a ValueError with that
        error (an upload refused above a picture still shown leaves that picture's numbers).
        """
        hidden = self.plot is None or self.plot.layout.visibility == "hidden"
        if self.error_text and hidden:
            raise ValueError(f"this page shows an error, so it draws no numbers: {self.error_text.lstrip('⚠ ')}")
        return {"source": self.source, "step": self.step.value, "n_steps": self.n_steps(), **self._state()}

    def __init_subclass__(cls, **kwargs):
        """Each explainer's ``state()`` documents its own keys (``help(NMSExplainer.state)``): its
        ``_state`` docstring under the common one."""
        super().__init_subclass__(**kwargs)
        if "n_steps" in cls.__dict__:
            counted = cls.__dict__["n_steps"]

            @functools.wraps(counted)
            def n_steps(self) -> int:
                if getattr(self, "failed", ""):     # nothing was built to count: the page's own line
                    raise ValueError(f"this page could not be built: {self.failed}")
                return counted(self)

            cls.n_steps = n_steps
        if "_state" in cls.__dict__ and "state" not in cls.__dict__ and cls._state.__doc__:
            def state(self) -> dict:
                return Explainer.state(self)

            state.__doc__ = (inspect.cleandoc(Explainer.state.__doc__) + "\n\n" + cls.__name__ + ": "
                             + inspect.cleandoc(cls._state.__doc__))
            state.__qualname__ = f"{cls.__qualname__}.state"
            cls.state = state

    def _state(self) -> dict:  # pragma: no cover - every explainer overrides it
        return {}

    def set_note(self, text: str) -> None:
        """One line under the check line (HTML), e.g. what exactly a live page draws; a live page
        adds what loading the model changed (e.g. float16 weights converted to float32)."""
        notice = getattr(self.model, "notice", "") if self.source == "live" else ""
        if text and notice:
            text = f"{text} ({html.escape(notice)})"
        if self._model_unused():
            text = (f"{text} " if text else "") + ("<b>The model you passed is not used here</b>: the lecture's "
                                                   "numbers are the slide's; pass <code>source=\"live\"</code> "
                                                   "with <code>model=</code> to draw your model's.")
        self.note.value = f"<span style='font-size:15px;color:#444'>{text}</span>" if text else ""

    def _model_unused(self) -> bool:
        """``model=`` given to a lecture page that draws no model."""
        return self.model is not None and self.source == "lecture" and not self.lecture_uses_model

    def frame(self, k: int) -> dict:
        """``{"data": {trace_index: {prop: value}}, "layout": {...}, "caption": html}`` for step ``k``.

        A pure function of ``k`` and the parameters: it reads the explainer's state and
        changes nothing (:meth:`show_step` applies it, :meth:`export_html` records it)."""
        return {"data": {}, "layout": {}, "caption": ""}

    def _use_figure(self, fig, height: int = 520) -> go.Figure:
        """Make ``fig`` (e.g. from ``make_subplots``) this explainer's figure."""
        self.fig = go.Figure(fig)
        self.fig.update_layout(font=FONT, template="plotly_white", margin=dict(l=40, r=20, t=80, b=40),
                               height=height, showlegend=False)
        return self.fig

    def _keep_as_built(self) -> None:
        """Remember the figure as built (traces and layout), for :meth:`_restore_as_built`."""
        import copy

        self._as_built = copy.deepcopy(self.fig.to_plotly_json())

    def _start_view(self, view) -> None:
        """Before a refresh draws ``view``: the figure as built if another view was drawn last (a
        control of the same view redraws it over itself, and costs no restore)."""
        if getattr(self, "_view_drawn", view) != view:
            self._restore_as_built()
        self._view_drawn = view

    def _restore_as_built(self) -> None:
        """The figure as built, every trace's styles included: a page with several views draws each
        from nothing of another's (a view may restyle a trace another draws differently)."""
        import copy

        built, now = self._as_built, self.fig.to_plotly_json()
        with self.fig.batch_update():     # only the properties that differ (plotly validates each set)
            for trace, props, current in zip(self.fig.data, built["data"], now["data"]):
                for k in (set(props) | set(current)) - {"type"}:
                    if props.get(k) != current.get(k):
                        trace[k] = copy.deepcopy(props.get(k))
            layout, current = built["layout"], now["layout"]
            for k in set(layout) | set(current):
                if layout.get(k) != current.get(k):
                    self.fig.layout[k] = copy.deepcopy(layout.get(k))

    def _whose(self, what: str) -> str:
        """Whose model a live page draws, for its note: "the shapes <what>'s" (the bundled model) or
        "your model's"."""
        if self.model is None or getattr(self.model, "is_shapes", False):
            return f"the shapes {what}'s"
        return "your model's"

    def live_image(self):
        """The image of a live explainer: the one given, else a held-out shapes scene."""
        if self.image is not None:
            return self.image
        from ..models import make_scene

        return make_scene(10_000_005).image

    # ------------------------------------------------------------------ machinery
    def guard(self, fn, *args, **kwargs):
        """Run a callback; a failure becomes one readable line in the widget. A page that could not be
        built does nothing more: its line says why (a control set in code must not replace it with an
        internal error about what was never built)."""
        if getattr(self, "failed", ""):
            return None
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:  # the widget must keep working whatever happens
            self._show_error(self._error_line(exc))
            return None
        self.error.value = ""
        if self.plot is not None:
            self.plot.layout.visibility = "visible"
        for w in (self.check, self.caption, self.anim):
            w.layout.visibility = "visible"
        return out

    def _error_line(self, exc: Exception) -> str:
        """One readable line for a failure; the type's name is kept where the words alone would not
        say what went wrong (the traceback is kept in ``_last_traceback`` for a developer)."""
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, (ValueError, LookupError, RuntimeError)):
            msg = f"{type(exc).__name__}: {msg}"
            self._last_traceback = traceback.format_exc()
        return msg

    def _show_error(self, msg: str) -> None:
        """The error in words, in the page; the plot, its check line, the step's caption and the step
        controls (now out of date: they described the last setting that worked) are hidden until a
        change works. Hidden, not removed: the page keeps its place and does not jump."""
        self.error.value = f"<span style='color:{VERMILLION};font-size:17px'>⚠ {html.escape(msg)}</span>"
        for w in (self.check, self.caption, self.anim):
            w.layout.visibility = "hidden"
        if getattr(self, "plot", None) is not None:
            self.plot.layout.visibility = "hidden"

    @property
    def error_text(self) -> str:
        """The error line as plain text ("" when there is none)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.error.value))

    def set_check(self, what: str, diff: float, equal: bool | None = None, more: list | None = None) -> None:
        """Show "equals <what>: max |diff| = <diff>" for each check, computed by the caller.

        ``more`` holds further ``(what, diff)`` or ``(what, diff, equal)`` checks. A check passes
        (✔) when ``equal`` is True, or, when ``equal`` is not given, when ``diff <= CHECK_TOLERANCE``
        (float32 sums in another order differ by a few ulps). A caller's ``equal=False`` is always ✘.
        """
        parts = []
        for w, d, *eq in [(what, diff, equal)] + [tuple(m) for m in (more or [])]:
            eq = eq[0] if eq else None
            ok = (d <= CHECK_TOLERANCE) if eq is None else bool(eq)
            mark, colour = ("✔", GREEN) if ok else ("✘", VERMILLION)
            # one block per check: a line breaks between checks, never inside one; in plain words on
            # hover, for a student who does not know the torch function named
            plain = (f"The numbers this page draws, compared with {w}: the largest difference is {fmt(d)}. "
                     + ("✔: equal (up to float rounding): the picture is what the real operator or model gives."
                        if ok else "✘: they differ by more than float rounding."))
            parts.append(f"<span style='color:{colour}; display:inline-block' title='{html.escape(plain, quote=True)}'>"
                         f"{mark} equals {html.escape(w)}: max |diff| = {fmt(d)}</span>")
        self.check.value = "<span style='font-size:16px'>" + " &nbsp; ".join(parts) + "</span>"

    @property
    def check_text(self) -> str:
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.check.value)).replace("\xa0", " ")

    def _reset_steps(self, keep: bool = False) -> None:
        n = max(1, self.n_steps())
        self.anim.layout.display = "none" if n <= 1 else None    # no Play/step where nothing moves
        value = min(self.step.value, n - 1) if keep else 0
        with self.step.hold_trait_notifications():
            self.play.max = self.step.max = n - 1
            self.play.value = self.step.value = value
        self.show_step(value)
        self.sync_figure()  # the control change may have touched any trace: send the whole figure

    def _nudge(self, d: int) -> None:
        self.step.value = max(self.step.min, min(self.step.max, self.step.value + d))

    def push(self, data: dict | None = None, layout: dict | None = None) -> None:
        """Update traces ``{index: props}`` and layout in place (figure and open views)."""
        if self.plot is not None:
            self.plot.apply(data, layout)
            return
        update_figure(self.fig, data, layout)

    def show_step(self, k: int) -> None:
        self.step_label.value = f"<span style='font-size:15px;white-space:nowrap'>{k + 1} of {self.step.max + 1}</span>"
        fr = self.frame(k)
        self.push(fr.get("data"), fr.get("layout"))
        self.caption.value = (f"<div style='font-size:19px;line-height:1.35;margin:2px 0'>"
                              f"{fr.get('caption', '')}</div>")

    # ------------------------------------------------------------------ display / export
    def sync_figure(self) -> None:
        """Send the whole current figure to the view (after control changes, before re-display)."""
        if self.plot is not None:
            self.plot.sync()

    def _repr_mimebundle_(self, **kwargs):
        self.sync_figure()
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self):
        from IPython.display import display

        self.sync_figure()
        display(self.widget)

    def export_html(self, path, plotly_src: str | None = None, overwrite: bool = False) -> Path:
        """A standalone HTML file of the animation as the page shows it: the title, the controls
        (play, step back and forward, a step slider, speed), each step's caption, the plot, the
        check line and the note. plotly.js is inlined: no kernel and no internet needed.

        Each step is drawn as on the page: its :meth:`frame` merged onto the base figure, then
        ``Plotly.react`` (axes, ranges and colour ranges as on the page). A step stores only what
        changed since the one before it (a small patch), and image crops of a figure image are
        cut from it in the browser, so long animations stay small. The same page with the same
        parameters exports the same bytes at whichever step it is, but for the step shown first (the
        R-CNN family, sliding window and live model pages show times they measured, which differ
        from one build to the next). ``path`` must end
        in ``.html``; an existing file is kept (FileExistsError) unless ``overwrite=True``, and a
        directory is refused; the file is written whole or not at all. A page that shows an error
        (its picture hidden) is not exported (ValueError), except a page that could not be built at
        all, whose export shows its error line. ``plotly_src``: the address of a plotly.js file to
        load instead of inlining it (a static site shares one copy)."""
        from ._export import write_export

        return write_export(self, path, plotly_src, overwrite)
