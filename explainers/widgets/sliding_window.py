"""Sliding-window segmentation, then the same network run fully convolutionally."""
from __future__ import annotations

import math

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ..models.render import class_hex, legend_html, to_uint8
from ._base import CHECK_TOLERANCE, ORANGE, VERMILLION, Explainer, png_uri

#: the lecture's picture: a 120 x 120 held-out shapes scene with all three classes, one the patch
#: classifier labels well (92 % of its object pixels right; its held-out mean is lower, see the model
#: card), so the map a class sees fill in is the scene
LECTURE_SEED, LECTURE_SIZE = 10_000_051, 120


def _objects_only(z: list) -> list:
    """The label map for the overlay on the image: background cells (0) left out (transparent), so
    the photo shows through and only the objects the map finds are coloured."""
    return [[v if v else None for v in row] for row in z]


def _int_ticks(n: int) -> dict:
    """Integer ticks (0, d, 2d, ...) on the axis of an ``n``-cell grid, about ten of them at most."""
    return dict(tickmode="linear", tick0=0, dtick=max(1, math.ceil(n / 10)))


def _grid_lines(nH: int, nW: int) -> tuple[list, list]:
    """The borders of the ``nH x nW`` label map's cells as one line trace (None-separated); on a
    map too fine for a line per cell (over 48 cells a side), a line every few cells."""
    d = max(1, math.ceil(max(nH, nW) / 48))
    xs, ys = [], []
    for c in sorted(set(range(0, nW + 1, d)) | {nW}):
        xs += [c - 0.5, c - 0.5, None]
        ys += [-0.5, nH - 0.5, None]
    for r in sorted(set(range(0, nH + 1, d)) | {nH}):
        xs += [-0.5, nW - 0.5, None]
        ys += [r - 0.5, r - 0.5, None]
    return xs, ys


#: the titles of the crop and the scores panels while windows slide (the dense pass changes them)
WINDOW_TITLES = ("the window", "class scores")
#: live, the image is shrunk to this many pixels on its longer side (one window per pixel step is slow)
LIVE_SIDE = 128


class SlidingWindowExplainer(Explainer):
    """A window slides over the image, the patch classifier labels its centre pixel and the
    label map fills in; then one fully convolutional pass of the same network gives the same map."""

    image_free = ('window', 'stride_ctl')
    lecture_uses_model = True

    title = "Segmentation by sliding window vs one fully convolutional pass"
    play_interval = 150

    def _build(self):
        self.window = W.IntSlider(value=40, min=8, max=72, step=2, description="window",
                                  layout=W.Layout(width="280px"), continuous_update=False)
        self.stride_ctl = W.IntSlider(value=4, min=1, max=16, description="stride",
                                      layout=W.Layout(width="280px"), continuous_update=False)
        self.dense = W.ToggleButton(value=False, description="run fully convolutionally",
                                    layout=W.Layout(width="240px"))
        # filling the map at Play speed takes minutes: jump to the last window (the whole map)
        self.fill = W.Button(description="fill the whole map »", layout=W.Layout(width="190px"),
                             tooltip="skip to the last window: every cell of the label map filled")
        self.fill.on_click(lambda _: self.guard(self.fill_map))
        self.window.observe(lambda _: self.guard(self.refresh), "value")
        self.stride_ctl.observe(lambda _: self.guard(self.refresh), "value")
        self.dense.observe(lambda _: self.guard(self._toggle_dense), "value")
        self._dense_caption = None     # the dense pass's measured caption while it is shown (one step)
        self.controls = W.HBox([self.window, self.stride_ctl, self.fill, self.dense])
        fig = make_subplots(1, 4, column_widths=[0.32, 0.18, 0.32, 0.18], horizontal_spacing=0.05,
                            subplot_titles=("image and window", WINDOW_TITLES[0], "label map", WINDOW_TITLES[1]))
        fig.add_image(source=png_uri(np.zeros((4, 4, 3), np.uint8)), row=1, col=1, hoverinfo="skip")  # 0
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=3), row=1, col=1)     # 1
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(size=9, color=VERMILLION), row=1, col=1)  # 2
        fig.add_image(source=png_uri(np.zeros((4, 4, 3), np.uint8)), row=1, col=2, hoverinfo="skip")  # 3
        fig.add_heatmap(z=[[None]], zmin=-0.5, zmax=0.5, showscale=False, row=1, col=3)           # 4
        fig.add_scatter(x=[], y=[], mode="markers", row=1, col=3, hoverinfo="skip", cliponaxis=False,  # 5
                        marker=dict(symbol="square-open", size=14, color=VERMILLION, line=dict(width=3)))
        fig.add_bar(x=[], y=[], row=1, col=4)                                                          # 6
        # the label map laid over the image: map cell (r, c) sits on the centre pixel of its window
        fig.add_heatmap(z=[[None]], zmin=-0.5, zmax=0.5, showscale=False, opacity=0.5, row=1, col=1,   # 7
                        hoverinfo="skip")
        # the label map's cells as a light grid: the empty map reads as a map to fill, not a blank panel
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color="#C8C8C8", width=1), hoverinfo="skip",  # 8
                        row=1, col=3)
        # images and the label map: y down, one pixel (cell) as wide as it is high
        for col in (1, 2, 3):
            fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", constrain="domain",
                             row=1, col=col)
            fig.update_xaxes(constrain="domain", row=1, col=col)
        fig.update_yaxes(showgrid=False, zeroline=False, row=1, col=3)
        fig.update_xaxes(showgrid=False, zeroline=False, row=1, col=3)
        fig.update_yaxes(range=[0, 1], row=1, col=4)
        self._use_figure(fig, 460)
        # the class legend (the colours of the label map and the bars) above the subplot titles
        self.fig.add_annotation(text="", x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                                yshift=32, showarrow=False, font=dict(size=17))
        from ..models import get
        from ..models.live import PatchModel

        self._model = self.model or get("patch", "shapes")
        if not isinstance(self._model, PatchModel):
            raise ValueError("the sliding-window explainer needs the patch classifier (models.load('patch'))")
        from ..models import load_image, make_scene

        if self.source == "lecture":
            img = make_scene(LECTURE_SEED, size=LECTURE_SIZE).tensor()
        else:
            loaded = load_image(self.live_image(), max_side=LIVE_SIDE)  # windows are slow on purpose: keep it small
            img = loaded.tensor
            h, w = img.shape[-2:]
            rf = self._model.window
            if min(h, w) < rf:
                # no window fits: say so once, in words the student can act on (every window the slider
                # offers would fail, the smaller ones as "too small for this network")
                if max(loaded.original_size) > LIVE_SIDE:     # shrunk: the shape, not the size, is the problem
                    oh, ow = loaded.original_size
                    raise ValueError(f"this image is {ow}x{oh} pixels, shrunk to {w}x{h} ({LIVE_SIDE} pixels on its "
                                     f"longer side); the patch classifier looks at {rf}x{rf}-pixel windows, so not "
                                     f"one fits: give a less elongated image (its shorter side at least "
                                     f"{math.ceil(100 * rf / LIVE_SIDE)}% of its longer side)")
                raise ValueError(f"this image is {w}x{h} pixels; the patch classifier looks at {rf}x{rf}-pixel "
                                 f"windows, so not one fits: give an image at least {rf} pixels wide and high")
            self.set_note(f"Drawn: the image at {w}x{h} pixels" + (f" ({loaded.note}: one window per pixel step is "
                                                                      "slow on purpose)" if loaded.note else "") +
                          f"; the patch classifier's own window {self._model.window} px and stride "
                          f"{self._model.stride}.")
        self._img = img
        self._img_u8 = to_uint8(img)
        self._set_class_colours()
        self.window.value = self._model.window
        self.stride_ctl.value = self._model.stride

    def _set_class_colours(self) -> None:
        """One colour per class (the palette of every page), background grey: label map, bars, legend."""
        classes = list(self._model.classes)
        n = len(classes)
        colours = [class_hex(k) for k in range(n)]
        scale = []
        for k, c in enumerate(colours):            # label k is the band [k - 0.5, k + 0.5]
            scale += [[k / n, c], [(k + 1) / n, c]]
        self.fig.data[4].update(colorscale=scale, zmin=-0.5, zmax=n - 0.5)
        self.fig.data[7].update(colorscale=scale, zmin=-0.5, zmax=n - 0.5)
        self.fig.data[6].update(marker_color=colours, marker_line=dict(color="#555555", width=1))
        self.fig.layout.annotations[4].text = legend_html(classes, range(n), "label map and scores")

    def refresh(self):
        net = self._model.module
        w, s = self.window.value, self.stride_ctl.value
        labels, tr = ops.sliding_window_predict(net, self._img, w, s, batch_size=256)
        self._labels, self._tr = labels, tr
        self._probs = tr.probabilities
        rf, total = self._model.window, self._model.stride
        self._dense = None
        if w == rf and s % total == 0:
            # the fully convolutional map labels a window every `total` pixels; these windows are
            # every k-th of them in each direction, so they are compared with that subsampled map
            k = s // total
            dl, ds, cost = ops.dense_predict(net, self._img)
            same = torch.equal(dl[::k, ::k], labels)
            d = float((ds[:, ::k, ::k] - tr.scores).abs().max())   # the scores drawn as bars, not only labels
            if k == 1:
                # timed here, once per image, window and stride, so that switching "fully convolutional" on
                # again shows the same figures: the best of three runs (one pass is a few milliseconds, and
                # the first pays one-time costs); the windows' pass, hundreds of forward calls, is timed once
                seconds = min([cost.seconds] + [ops.dense_predict(net, self._img)[2].seconds for _ in range(2)])
                self._dense = (dl, cost, seconds)
                what = "the fully convolutional map"
            else:
                what = (f"the fully convolutional map ({dl.shape[1]}x{dl.shape[0]} cells, one per {total} "
                        f"pixels) taken every {k} cells")
            self.set_check(f"{what} (labels identical: " + ("yes" if same else "no") + ")",
                           d, same and d <= CHECK_TOLERANCE)
        else:
            self.check.value = (f"<span style='font-size:16px'>the fully convolutional map has one label per "
                                f"{total} pixels with {rf}x{rf} windows: set window {rf} and a stride that is a "
                                f"multiple of {total} to compare them cell by cell</span>")
        with self.fig.batch_update():
            self.fig.data[0].source = png_uri(self._img_u8)
            self.fig.layout.annotations[2].text = f"label map ({labels.shape[1]}x{labels.shape[0]} windows)"
            nH, nW = labels.shape
            self.fig.layout.xaxis3.update(_int_ticks(nW), range=[-0.5, nW - 0.5], autorange=False)
            self.fig.layout.yaxis3.update(_int_ticks(nH), range=[nH - 0.5, -0.5], autorange=False)
            self.fig.data[8].update(dict(zip("xy", _grid_lines(nH, nW))))
            self.fig.data[6].x = list(self._model.classes)
            centres = tr.centres.reshape(nH, nW, 2)
            self.fig.data[7].update(x=centres[0, :, 0].tolist(), y=centres[:, 0, 1].tolist())
            H, W_ = self._img_u8.shape[:2]     # the image's own extent (the overlay must not widen it)
            pixel_ticks = dict(tickmode="linear", tick0=0, dtick=50 if max(H, W_) > 150 else 20)
            self.fig.layout.xaxis.update(pixel_ticks, range=[-0.5, W_ - 0.5], autorange=False)
            self.fig.layout.yaxis.update(pixel_ticks, range=[H - 0.5, -0.5], autorange=False)
        self.dense.value = False
        self._reset_steps()

    def _state(self) -> dict:
        """``image (3, H, W)``; ``window``, ``stride``; ``labels (nH, nW)``: the label of each
        window's centre pixel; ``probabilities (K, nH, nW)``; ``windows (n, 4)`` (x1, y1, x2, y2);
        ``current_window``: the one the current step shows."""
        return {"image": self._img, "window": self.window.value, "stride": self.stride_ctl.value,
                "labels": self._labels, "probabilities": self._probs, "windows": self._tr.windows,
                "current_window": self._tr.windows[self.step.value]}

    def fill_map(self) -> None:
        """Jump to the last window: the whole label map filled (Play would take minutes)."""
        self.play.playing = False
        self.step.value = self.n_steps() - 1

    def _toggle_dense(self):
        """On: the fully convolutional pass (run and timed by :meth:`refresh`); the page is then one
        step, the whole map at once (:meth:`frame` draws it, so the export shows it too). Off: the
        windows again."""
        if not self.dense.value:
            if self._dense_caption is not None:
                self._dense_caption = None
                # the titles the dense frame changed (the window frames leave them: 1,764 of them
                # would each carry the list), then the whole figure is sent again
                self.fig.layout.annotations = self._titles(*WINDOW_TITLES)
                self.fig.layout.xaxis4.visible = self.fig.layout.yaxis4.visible = None   # as built
                self._reset_steps()
            return
        if self._dense is None:
            self.dense.value = False
            raise ValueError(f"set window {self._model.window} and stride {self._model.stride} "
                             "(the network's receptive field and stride) to run it fully convolutionally")
        dl, cost, t_dense = self._dense
        slide = self._tr.cost
        t_slide = slide.seconds
        self._dense_caption = (
            f"fully convolutional, the whole image at once: {t_dense * 1e3:.1f} ms and "
            f"{cost.macs / 1e6:,.1f} M multiply-accumulates, against {t_slide * 1e3:.1f} ms and "
            f"{slide.macs / 1e6:,.1f} M for {len(self._tr.windows)} windows one by one: "
            f"<b>{t_slide / t_dense:.0f}x faster</b>, {slide.macs / cost.macs:.0f}x fewer MACs, "
            f"same map.")
        self._reset_steps()

    def n_steps(self) -> int:
        return 1 if self._dense_caption is not None else int(self._labels.numel())

    def _titles(self, crop: str, scores: str) -> list:
        """The four panel titles (plotly replaces the list whole): the crop's and the scores' as given."""
        items = [a.to_plotly_json() for a in self.fig.layout.annotations]
        items[1]["text"], items[3]["text"] = crop, scores
        return items

    def _frame_dense(self) -> dict:
        """The fully convolutional pass: no window, the whole image in, the whole map out."""
        dl = self._dense[0].tolist()
        H, W_ = self._img_u8.shape[:2]
        # no window, so no window's class scores: that panel is hidden
        titles = self._titles("the whole image, at once", "")
        return {"caption": self._dense_caption,
                "layout": {"annotations": titles, "xaxis4": {"visible": False}, "yaxis4": {"visible": False}},
                "data": {1: {"x": [-0.5, W_ - 0.5, W_ - 0.5, -0.5, -0.5], "y": [-0.5, -0.5, H - 0.5, H - 0.5, -0.5]},
                         2: {"x": [], "y": []}, 3: {"source": png_uri(self._img_u8)}, 4: {"z": dl},
                         5: {"x": [], "y": []}, 7: {"z": _objects_only(dl)}, 6: {"y": []}}}

    def frame(self, k: int) -> dict:
        if self._dense_caption is not None:
            return self._frame_dense()
        tr = self._tr
        nH, nW = self._labels.shape
        r, c = divmod(k, nW)
        x1, y1, x2, y2 = tr.windows[k].tolist()
        cx, cy = tr.centres[k].tolist()
        flat = self._labels.reshape(-1).tolist()
        z = [[flat[i * nW + j] if i * nW + j <= k else None for j in range(nW)] for i in range(nH)]
        probs = self._probs[:, r, c]
        name = self._model.classes[int(self._labels[r, c])]
        # pixels as x, y (the image's axes), map cells as row, column (the map's): each named, never mixed
        shown = "" if self._labels[r, c] else "; background is not coloured on the image"
        caption = (f"window {k + 1} of {self.n_steps()} at x = {x1}, y = {y1}: its centre pixel (x = {cx}, y = {cy}) "
                   f"is <b>{name}</b> (p = {probs.max():.2f}), the map's cell (row {r}, column {c}){shown}")
        if k < nW:         # the first row: say what the empty cells are and how they fill
            left = self.n_steps() - k - 1
            caption += f". The {left:,} empty cells (white) fill one per window: ▶ play, or 'fill the whole map'"
        return {"caption": caption, "data": {
            1: {"x": [x1, x2, x2, x1, x1], "y": [y1, y1, y2, y2, y1]},
            2: {"x": [cx], "y": [cy]},
            3: {"source": png_uri(self._img_u8[y1:y2, x1:x2])},
            4: {"z": z},
            5: {"x": [c], "y": [r]},
            7: {"z": _objects_only(z)},
            6: {"y": probs.tolist()},
        }}
