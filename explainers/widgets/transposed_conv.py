"""Transposed convolution (the slides' items 4 and 5): the convolution as a matrix X, the
transposed convolution as X^T, drawn in 1D as matrix-vector products and in 2D as weighted copies
of the kernel moving ``stride`` cells per input cell; and the strided convolution ("learnable
downsampling") whose filter moves ``stride`` pixels in the input per output pixel."""
from __future__ import annotations

import math

import ipywidgets as W
import torch
from plotly.subplots import make_subplots

from .. import ops
from ..ops.conv_matrix import (conv_transpose_canvas, conv_transpose_output_shape, flip_kernel, flip_labels,
                               strided_conv, zero_stuffed)
from ..ops.reference import reference_conv_transpose_explicit, reference_copies
from ..models.live_inputs import decoder_window, decoder_window_by_ops, segnet_capture, strongest_kernel
from ._base import ORANGE, Explainer, fmt, rect_path

KERNEL_LABELS = ["x", "y", "z"]
VECTOR_LABELS = "abcdefghijklmnopqrstuvwxyz"
VIEWS = [("transposed conv: X^T y", "transposed"), ("strided conv: X x (downsampling)", "conv")]
#: lecture defaults per view: the slide's 2 -> 4 transposed convolution and 4 -> 2 strided one
SIZES = {"transposed": 2, "conv": 4}
#: numbers are written in the cells of X and X^T in 1D while a side has at most this many cells
MAX_TEXT_CELLS = 24
BLACK = "#222222"


def _short(v: float) -> str:
    """A learned value in four characters or so (".057", "-.12"): it fits a narrow cell."""
    if v == 0:
        return "0"
    s = f"{v:.2g}"
    if "e" in s:
        return fmt(v)
    return s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s


def _int_ticks(n: int, start: int = 0, most: int = 12) -> dict:
    """Integer ticks (start, start + d, ...) for an ``n``-cell axis, at most about ``most``."""
    return dict(tickmode="linear", tick0=start, dtick=max(1, math.ceil(n / most)), tickvals=None, ticktext=None)


def _span(n: int, down: bool = False, start: int = 0) -> dict:
    """Exactly the ``n`` cells ``start .. start + n - 1`` on the axis; rows run downwards."""
    lo, hi = start - 0.5, start + n - 0.5
    return dict(range=[hi, lo] if down else [lo, hi], autorange=False)


def _outlines(cells) -> dict:
    """Open squares just inside the cells ``(col, row)``: they frame a cell's number, never cover it."""
    return dict(zip("xy", rect_path([(c - 0.44, r - 0.44, c + 0.44, r + 0.44) for c, r in cells]))) \
        if cells else {"x": [], "y": []}


def _frame(c0, r0, c1, r1) -> dict:
    """A rectangle around the cells ``c0..c1`` x ``r0..r1`` (on the cell borders)."""
    return dict(zip("xy", rect_path([(c0 - 0.5, r0 - 0.5, c1 + 0.5, r1 + 0.5)])))


def _names(n: int) -> list[str]:
    return list(VECTOR_LABELS[:n]) if n <= len(VECTOR_LABELS) else [f"v{i}" for i in range(n)]


class TransposedConvExplainer(Explainer):
    """X (the convolution), X^T (its transpose) and the transposed convolution X^T y, built one
    input cell at a time: each scales a copy of the filter placed ``stride`` cells further on the
    output, and overlapping copies add up. The other view walks the strided convolution X x one
    output pixel at a time: the filter moves ``stride`` pixels in the input per output pixel."""

    image_free = ('dims', 'view', 'flip', 'ksize', 'stride', 'padding', 'out_pad', 'size')

    title = "Transposed convolution = multiplying by X^T"
    caption_lines = 3

    def _build(self):
        live = self.source == "live"
        # live: the decoder's kernel is 2D, and 2D is where the page checks against its output
        self.dims = W.ToggleButtons(options=[("1D", 1), ("2D", 2)], value=2 if live else 1, description="",
                                    style={"button_width": "60px"})
        self.view = W.ToggleButtons(options=VIEWS, value="transposed", description="",
                                    style={"button_width": "250px"})
        self.flip = W.Checkbox(value=False, description="flip kernel 180°", indent=False,
                               layout=W.Layout(width="150px"))
        sl = dict(layout=W.Layout(width="230px"), style={"description_width": "95px"})
        self.ksize = W.IntSlider(value=3, min=1, max=5, description="kernel", **sl)
        self.stride = W.IntSlider(value=2, min=1, max=4, description="stride", **sl)   # 0 is no stride
        self.padding = W.IntSlider(value=1, min=0, max=3, description="padding", **sl)
        self.out_pad = W.IntSlider(value=1, min=0, max=1, description="output_padding",   # the whole name shown
                                   layout=W.Layout(width="270px"), style={"description_width": "initial"})
        self.size = W.IntSlider(value=SIZES["transposed"], min=1, max=8, description="input n", **sl)
        for c in (self.ksize, self.padding, self.out_pad, self.size, self.flip):
            c.observe(lambda _: self.guard(self.refresh), "value")
        self.stride.observe(lambda _: self.guard(self._stride_changed), "value")
        self.dims.observe(lambda _: self.guard(self._rebuild), "value")
        self.view.observe(lambda _: self.guard(self._switch_view), "value")
        self.controls = W.VBox([W.HBox([self.dims, self.view, self.flip]),
                                W.HBox([self.ksize, self.stride, self.padding, self.out_pad, self.size])])
        self._layout_key, self._figures = None, {}
        self._use_figure(make_subplots(1, 1), 540)
        if live:
            self._load_live()
            self.ksize.disabled = True

    # ------------------------------------------------------------------ live data
    def _load_live(self):
        from ..models import get

        model = self.model or get("segmentation", "shapes")
        self._captured = segnet_capture(model, self.live_image(), "the live transposed convolution")
        up1 = model.module.up1
        self._up1 = dict(stride=up1.stride[0], padding=up1.padding[0], output_padding=up1.output_padding[0],
                         bias=up1.bias.detach(), c_in=up1.in_channels)
        pick = strongest_kernel(self._captured)
        self._kernel2d, self._feat = pick.kernel, pick.features
        self._live_pick = (pick.c_in, pick.c_out, *pick.peak)

    def _model_check(self, d, shape, r0, c0) -> tuple[list, str]:
        """Live: what exactly is drawn, and (2D, transposed, the model's settings) a check that all
        input channels' copies plus the bias, by the same op, give the decoder's own output."""
        i, o, _, _ = self._live_pick
        m = self._up1
        H, W_ = self._feat.shape
        s, p, op = self.stride.value, self.padding.value, self.out_pad.value
        what = (f"Drawn: input channel {i} → output channel {o} of SegNet's learned transposed convolution "
                f"(3x3, stride {m['stride']}, padding {m['padding']}, output_padding {m['output_padding']}, "
                f"{m['c_in']} input channels), on the {'x'.join(map(str, shape))} crop at row {r0}, column {c0} "
                f"of its {W_}x{H} input (width x height): one channel, without the bias b[{o}] = "
                f"{fmt(float(m['bias'][o]))}.")
        if self.view.value == "conv":
            return [], what + (" Here the learned kernel is used as an ordinary strided filter, to show the "
                               "downsampling direction; the decoder uses it transposed (choose that view to "
                               "compare with the decoder).")
        if d != 2 or (s, p, op) != (m["stride"], m["padding"], m["output_padding"]) or self.flip.value:
            return [], what + (f" The model uses stride {m['stride']}, padding {m['padding']} and output_padding "
                               f"{m['output_padding']} in 2D, unflipped: the check against its own output "
                               "applies there only.")
        win = decoder_window(self._captured, m["bias"], o, (r0, c0), shape[0])
        diff = float((decoder_window_by_ops(win, s, p) - win.output).abs().max())
        return ([(f"the decoder's own output there (all {m['c_in']} channels + bias, by the same op)", diff)],
                what)

    # ------------------------------------------------------------------ controls
    def _stride_changed(self):
        # output_padding only adds rows a strided convolution could skip: 0 .. stride - 1 (torch's rule)
        with self.out_pad.hold_trait_notifications():
            self.out_pad.unobserve_all("value")
            self.out_pad.max = max(0, self.stride.value - 1)
            self.out_pad.observe(lambda _: self.guard(self.refresh), "value")
        self.refresh()

    def _switch_view(self):
        self.size.unobserve_all("value")
        self.size.value = SIZES[self.view.value]
        self.size.observe(lambda _: self.guard(self.refresh), "value")
        self._rebuild()

    def _rebuild(self):
        self.refresh()

    def _kernel_and_labels(self):
        """The kernel drawn (flipped if asked) and its names (lecture) or short values (live)."""
        d, k = self.dims.value, self.ksize.value
        if self.source == "live":
            kern = self._kernel2d[1] if d == 1 else self._kernel2d
            names = None
        elif d == 1:
            kern = torch.arange(1, k + 1, dtype=torch.float32)
            names = list(KERNEL_LABELS) if k == 3 else [f"w{i + 1}" for i in range(k)]
        else:
            kern = torch.arange(1, k * k + 1, dtype=torch.float32).reshape(k, k)
            names = [[f"w{i + 1}{j + 1}" for j in range(k)] for i in range(k)]
        if self.flip.value:
            kern = flip_kernel(kern)
            names = flip_labels(names) if names is not None else None
        if names is None:
            names = [_short(v) for v in kern.tolist()] if d == 1 else [[_short(v) for v in r] for r in kern.tolist()]
        return kern, names

    def _input(self, shape):
        """The input the view starts from: the slide's 1, 2, 3, ... (named a, b, c, ...) or a live crop."""
        if self.source == "lecture":
            return torch.arange(1, math.prod(shape) + 1, dtype=torch.float32).reshape(shape), (0, 0)
        _, _, r, c = self._live_pick
        f = self._feat
        if any(n > m for n, m in zip(shape[::-1], f.shape[::-1])):
            raise ValueError(f"the feature map ({f.shape[1]}x{f.shape[0]}) is too small for a "
                             f"{'x'.join(map(str, shape))} input")
        if len(shape) == 1:
            c0 = max(0, min(c, f.shape[1] - shape[0]))
            return f[r, c0:c0 + shape[0]], (r, c0)
        r0, c0 = max(0, min(r, f.shape[0] - shape[0])), max(0, min(c, f.shape[1] - shape[1]))
        return f[r0:r0 + shape[0], c0:c0 + shape[1]], (r0, c0)

    # ------------------------------------------------------------------ figure
    def _figure(self, d, view):
        """A fresh layout for (dims, view); traces: heatmaps 0-2 (1D) or 0-4 (2D), then one outline
        trace per heatmap, then the frame of the kept output (transposed) or of the real input (conv)."""
        if d == 1:
            if view == "transposed":
                titles, widths = ("X", "X^T", "X^T y"), [0.46, 0.17, 0.37]
            else:
                titles, widths = ("X", "x", "X x"), [0.6, 0.1, 0.3]
            fig = make_subplots(1, 3, subplot_titles=titles, column_widths=widths, horizontal_spacing=0.09)
            cells = [(1, c) for c in (1, 2, 3)]
        else:
            big, small = [0.34, 0.17, 0.19, 0.3], [0.13, 0.2, 0.37, 0.3]
            fig = make_subplots(2, 4, specs=[[{"rowspan": 2}, {"rowspan": 2}, {"rowspan": 2}, {}],
                                             [None, None, None, {}]],
                                subplot_titles=("input", "kernel", "output", "X", "X^T"), row_heights=[0.3, 0.7],
                                column_widths=small if view == "transposed" else big,
                                horizontal_spacing=0.05, vertical_spacing=0.2)
            cells = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 4)]
        for r, c in cells:
            fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=16),
                            colorscale="RdBu", zmid=0, showscale=False, xgap=1, ygap=1, row=r, col=c,
                            hovertemplate="%{text}<extra></extra>")
        for r, c in cells:
            fig.add_scatter(x=[], y=[], mode="lines", row=r, col=c, hoverinfo="skip",
                            line=dict(color=ORANGE, width=4))
        r, c = cells[2] if view == "transposed" else cells[0 if d == 2 else 1]
        fig.add_scatter(x=[], y=[], mode="lines", row=r, col=c, hoverinfo="skip",
                        line=dict(color=BLACK, width=3, dash="dash"))
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, automargin=True,
                         tickmode="linear", tick0=0, dtick=1)
        fig.update_xaxes(showgrid=False, zeroline=False, tickmode="linear", tick0=0, dtick=1)
        if d == 2:     # the pictures (not the matrices) are drawn with square cells
            for i in (1, 2, 3):
                fig.layout[f"yaxis{'' if i == 1 else i}"].update(scaleanchor=f"x{'' if i == 1 else i}",
                                                                constrain="domain")
                fig.layout[f"xaxis{'' if i == 1 else i}"].update(constrain="domain")
        return fig

    def _install(self, d, view):
        """Show the figure of (dims, view): built once per layout, then swapped in (building a
        subplot layout takes ~40 ms; a view switch redraws every trace of the swapped figure)."""
        if self._layout_key == (d, view):
            return
        fig = self._figures.get((d, view))
        if fig is None:
            fig = self._figure(d, view)
            fig.update_layout(font=dict(size=16), template="plotly_white",
                              margin=dict(l=40, r=20, t=80, b=40), height=540, showlegend=False)
            self._figures[(d, view)] = fig
        self.fig = fig
        if self.plot is not None:
            self.plot.fig = fig            # the next sync_figure sends it whole
        self._layout_key = (d, view)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        """``dims`` (1 or 2); ``view`` ("transposed" or "conv"); ``flip`` (kernel rotated by 180°);
        ``kernel`` (k,) or (k, k) as used; ``input``: y (transposed) or x (conv); ``output``: X^T y
        or X x; ``matrix``: X; ``stride``, ``padding``, ``output_padding`` (transposed; 0 for conv).
        Transposed: ``canvas`` (the output before the padding is cropped), ``contribution`` (the
        copy of the kernel added at the current step, on the canvas) and ``partial_sum`` after it.
        Conv: ``window`` (top-left of the current output pixel's window in the padded input) and
        ``products`` (kernel times that window). Live: ``channels`` (c_in, c_out) and ``crop_origin``."""
        k = self.step.value
        tr = self._tr
        out = {"dims": self.dims.value, "view": self.view.value, "flip": self.flip.value, "kernel": tr.kernel,
               "matrix": tr.matrix, "stride": self.stride.value, "padding": self.padding.value,
               "output_padding": self.out_pad.value if self.view.value == "transposed" else 0,
               "output": tr.output}
        if self.view.value == "transposed":
            out.update(input=tr.y, canvas=tr.canvas, contribution=tr.contributions[k],
                       partial_sum=tr.partial_sums[k])
        else:
            out.update(input=tr.x, window=tuple(tr.windows[k].tolist()), products=tr.products[k])
        if self.source == "live":
            out.update(channels=self._live_pick[:2], crop_origin=self._crop_origin)
        return out

    # ------------------------------------------------------------------ compute
    @staticmethod
    def _matrix_side(view: str, k: int, s: int, p: int, op: int, n: int) -> tuple[int, int]:
        """``(rows, columns)`` per dimension of the matrix X the page draws: the convolution's output
        cells by its zero-padded input's cells (the transposed view's convolution runs on its output)."""
        if view == "transposed":
            return n, (n - 1) * s + k + op
        return (n + 2 * p - k) // s + 1 if s > 0 else 0, n + 2 * p

    def _check_matrix_fits(self, d: int, view: str, k: int, s: int, p: int, op: int, n: int) -> None:
        """One line in the page's own terms before anything is built (the operator's own limit named
        an input shape the student never set and a file of the source)."""
        from ..ops._checks import MAX_LABELS

        def fits(m: int) -> bool:
            r, c = self._matrix_side(view, k, s, p, op, m)
            return (r * c) ** d <= MAX_LABELS

        rows, cols = self._matrix_side(view, k, s, p, op, n)
        if min(rows, cols) <= 0 or fits(n):
            return                                 # sizes the operator refuses in its own words
        smaller = [m for m in range(n - 1, 0, -1) if self._matrix_side(view, k, s, p, op, m)[0] > 0 and fits(m)]
        side = "x".join([str(cols - 2 * p if view == "transposed" else rows)] * d)
        what = "output" if view == "transposed" else "result"
        advice = f"use input n ≤ {smaller[0]}" if smaller else "use a smaller kernel"
        raise ValueError(f"input {'x'.join([str(n)] * d)}, kernel {k}, stride {s}: the {what} is {side} and the "
                         f"matrix X would have {rows ** d:,} x {cols ** d:,} entries, too many to draw "
                         f"(at most {MAX_LABELS:,}): {advice}")

    def refresh(self):
        d, view = self.dims.value, self.view.value
        s, p, op, n = self.stride.value, self.padding.value, self.out_pad.value, self.size.value
        kern, names = self._kernel_and_labels()
        shape = (n,) * d
        self._check_matrix_fits(d, view, int(kern.shape[-1]), s, p, op, n)
        if view == "transposed":
            ops.output_shape(tuple(kern.shape), (1,) * d, s, p) if s < 1 else None   # stride 0: one sentence
            conv_transpose_output_shape(    # checks the sizes first, with a clear error
                tuple(kern.shape), shape, s, p, op)
            y, origin = self._input(shape)
            out, tr = conv_transpose_canvas(y, kern, s, p, op)
            ref = reference_conv_transpose_explicit(y, kern, s, p, op)
            what = f"F.conv_transpose{d}d (stride {s}, padding {p}, output_padding {op})"
        else:
            y, origin = self._input(shape)
            out, tr = strided_conv(y, kern, s, p)
            ref = ops.reference_conv(y, kern, s, p)
            what = f"F.conv{d}d (stride {s}, padding {p})"
        self._crop_origin = origin
        more = []
        if view == "transposed":
            # what the steps draw, not only the result: the canvas matrix X (its rows) and the running
            # sum of the weighted copies after each input cell, each by F.conv_transpose
            rows, partial = reference_copies(y, kern, s, op)
            d_steps = max(float((tr.canvas_matrix - rows).abs().max()),
                          float((tr.partial_sums - partial).abs().max()))
            more.append((f"F.conv_transpose{d}d of each one-hot input and of y's first 1..{y.numel()} cells "
                         "(the matrix and the copies drawn)", d_steps))
        if view == "transposed" and self.source == "lecture":
            stuffed = zero_stuffed(y, tuple(kern.shape), s, p, op)
            other = ops.reference_conv(stuffed, flip_kernel(kern))
            more.append((f"F.conv{d}d of y with {s - 1} zero(s) inserted, kernel flipped", float((out - other).abs().max())))
        if self.source == "live":
            m, note = self._model_check(d, shape, *origin)
            more += m
            self.set_note(note)
        self.set_check(what, float((out - ref).abs().max()), more=more)
        self._tr, self._kernel_names = tr, names
        self._install(d, view)
        if d == 1:
            self._draw_1d(view, tr, names)
        else:
            self._draw_2d(view, tr, names)
        self._reset_steps()

    def _vector_text(self, v: torch.Tensor) -> list[str]:
        return _names(v.numel()) if self.source == "lecture" else [_short(x) for x in v.reshape(-1).tolist()]

    def _draw_1d(self, view, tr, names):
        live = self.source == "live"
        if view == "transposed":
            L = tr.canvas.numel()
            X = tr.canvas_matrix
            Xl = ops.conv_matrix_labels(names, L, tr.stride, 0) if not live else \
                [[_short(v) for v in row] for row in X.tolist()]
        else:
            L = tr.padded.numel()
            X = ops.conv_matrix(tr.kernel, L, tr.stride, 0)         # over the padded input, as on the slide
            Xl = ops.conv_matrix_labels(names, L, tr.stride, 0) if not live else \
                [[_short(v) for v in row] for row in X.tolist()]
        if max(X.shape) > MAX_TEXT_CELLS:          # too many cells for readable numbers: colours only
            Xl = [["" for _ in row] for row in Xl]
        self._X, self._Xl = X, Xl
        rows, cols = X.shape
        with self.fig.batch_update():
            self.fig.data[0].update(z=X.tolist(), text=Xl)
            self.fig.layout.annotations[0].text = f"X: {rows}x{cols} (columns: the padded {'output' if view == 'transposed' else 'input'})"
            self.fig.layout.xaxis.update(**_int_ticks(cols), **_span(cols))
            self.fig.layout.yaxis.update(**_int_ticks(rows), **_span(rows, down=True))
            if view == "transposed":
                self.fig.data[1].update(z=X.T.tolist(), text=ops.transpose_labels(Xl))
                lim = float(max(tr.canvas.abs().max(), tr.contributions.abs().max(), 1e-6))
                self.fig.data[2].update(zmin=-lim, zmax=lim)
                self._ylabels = self._vector_text(tr.y)
                self.fig.layout.annotations[1].text = f"X^T: {cols}x{rows}"
                self.fig.layout.annotations[2].text = f"X^T y, y = ({', '.join(self._ylabels)})" \
                    if rows <= 6 else "X^T y"
                self.fig.layout.xaxis2.update(**_int_ticks(rows), **_span(rows))
                self.fig.layout.yaxis2.update(**_int_ticks(cols), **_span(cols, down=True))
                p, N = tr.padding[0], tr.output.numel()
                self.fig.layout.xaxis3.update(**_int_ticks(cols, -p), **_span(cols, start=-p))
                self.fig.layout.yaxis3.update(tickmode="array", tickvals=[0, 1], ticktext=["copy", "sum"],
                                              **_span(2, down=True))
                self.fig.data[2].x = list(range(-p, cols - p))
                self.fig.data[6].update(_frame(0, 0, N - 1, 1))
            else:
                xp = tr.padded
                names_x = ["0"] * L
                real = self._vector_text(tr.x)
                p = tr.padding[0]
                names_x[p:p + tr.x.numel()] = real
                self._xlabels = names_x
                self.fig.data[1].update(z=[[v] for v in xp.tolist()], text=[[t] for t in names_x])
                self.fig.data[1].y = list(range(-p, L - p))
                self.fig.layout.annotations[1].text = "x, padded"
                self.fig.layout.annotations[2].text = "X x"
                self.fig.layout.xaxis2.update(tickmode="array", tickvals=[0], ticktext=["0"], **_span(1))
                self.fig.layout.yaxis2.update(**_int_ticks(L, -p), **_span(L, down=True, start=-p))
                self.fig.layout.xaxis3.update(tickmode="array", tickvals=[0], ticktext=["0"], **_span(1))
                self.fig.layout.yaxis3.update(**_int_ticks(rows), **_span(rows, down=True))
                lim = float(max(tr.output.abs().max(), 1e-6))
                self.fig.data[2].update(zmin=-lim, zmax=lim)
                self.fig.data[6].update(_frame(0, 0, 0, tr.x.numel() - 1))
                self._results = ops.symbolic_matvec(Xl, names_x) if not live and max(X.shape) <= MAX_TEXT_CELLS \
                    else [_short(v) if live else fmt(v) for v in tr.output.tolist()]

    def _draw_2d(self, view, tr, names):
        live = self.source == "live"
        X = tr.matrix
        k = tr.kernel
        cell = _short if live else fmt
        kz, kt = k.tolist(), [[f"{nm}" if live else f"{nm}<br>{fmt(v)}" for nm, v in zip(rn, rv)]
                              for rn, rv in zip(names, k.tolist())]
        if view == "transposed":
            small, big_shape, p = tr.y, tuple(tr.canvas.shape), tr.padding
        else:
            small, big_shape, p = tr.output, tuple(tr.padded.shape), tr.padding
        Xl = ops.conv_matrix_labels(names, tuple(tr.output.shape if view == "transposed" else tr.x.shape),
                                    tr.stride, tr.padding) if not live else [[cell(v) for v in r] for r in X.tolist()]
        self._X, self._Xl = X, Xl
        rows, cols = X.shape
        H, Wd = big_shape
        with self.fig.batch_update():
            self.fig.data[1].update(z=kz, text=kt, zmid=0)
            self.fig.layout.annotations[1].text = "kernel" + (" (flipped)" if self.flip.value else "")
            # X and X^T: colours (hover for the names); row k of X is copy k, flattened
            self.fig.data[3].update(z=X.tolist(), text=Xl, texttemplate="")
            self.fig.data[4].update(z=X.T.tolist(), text=ops.transpose_labels(Xl), texttemplate="")
            self.fig.layout.annotations[3].text = f"X ({rows}x{cols})"
            self.fig.layout.annotations[4].text = f"X^T ({cols}x{rows})"
            # X and X^T share one column, a small panel each: a few ticks along each side (a dozen
            # on a 25 x 256 matrix ran together into blots)
            self.fig.layout.xaxis4.update(**_int_ticks(cols, most=6), **_span(cols))
            self.fig.layout.yaxis4.update(**_int_ticks(rows, most=4), **_span(rows, down=True))
            self.fig.layout.xaxis5.update(**_int_ticks(rows, most=4), **_span(rows))
            self.fig.layout.yaxis5.update(**_int_ticks(cols, most=6), **_span(cols, down=True))
            self.fig.layout.xaxis2.update(**_int_ticks(k.shape[1]), **_span(k.shape[1]))
            self.fig.layout.yaxis2.update(**_int_ticks(k.shape[0]), **_span(k.shape[0], down=True))
            if view == "transposed":
                ynames = self._vector_text(tr.y)
                self._ylabels = ynames
                yt = [[f"{ynames[i * small.shape[1] + j]}" + ("" if live else f"<br>{fmt(v)}") for j, v in enumerate(r)]
                      for i, r in enumerate(small.tolist())]
                self.fig.data[0].update(z=small.tolist(), text=yt)
                self.fig.layout.annotations[0].text = "input y"
                lim = float(max(tr.canvas.abs().max(), 1e-6))
                self.fig.data[2].update(x=list(range(-p[1], Wd - p[1])), y=list(range(-p[0], H - p[0])),
                                        zmin=-lim, zmax=lim)
                self.fig.layout.annotations[2].text = (f"output {tr.output.shape[0]}x{tr.output.shape[1]} "
                                                       "(dashed; outside: cropped)")
                self.fig.layout.xaxis.update(**_int_ticks(small.shape[1]), **_span(small.shape[1]))
                self.fig.layout.yaxis.update(**_int_ticks(small.shape[0]), **_span(small.shape[0], down=True))
                self.fig.layout.xaxis3.update(**_int_ticks(Wd, -p[1]), **_span(Wd, start=-p[1]))
                self.fig.layout.yaxis3.update(**_int_ticks(H, -p[0]), **_span(H, down=True, start=-p[0]))
                No = tr.output.shape
                self.fig.data[10].update(_frame(0, 0, No[1] - 1, No[0] - 1))
                self._symbolic = ops.symbolic_matvec(ops.transpose_labels(
                    ops.conv_matrix_labels(names, big_shape, tr.stride, 0)), ynames) if not live else None
            else:
                xnames = self._vector_text(tr.x)
                xt = [["0"] * Wd for _ in range(H)]
                for i in range(tr.x.shape[0]):
                    for j in range(tr.x.shape[1]):
                        xt[i + p[0]][j + p[1]] = xnames[i * tr.x.shape[1] + j] + ("" if live else "")
                if not live:   # the slide's numbers are 1, 2, 3, ...: the names say which is which
                    xt = [[t if t == "0" else f"{t}<br>{fmt(v)}" for t, v in zip(rt, rv)]
                          for rt, rv in zip(xt, tr.padded.tolist())]
                else:
                    xt = [[_short(v) for v in r] for r in tr.padded.tolist()]
                self.fig.data[0].update(z=tr.padded.tolist(), text=xt, x=list(range(-p[1], Wd - p[1])),
                                        y=list(range(-p[0], H - p[0])))
                self.fig.layout.annotations[0].text = f"input {tr.x.shape[0]}x{tr.x.shape[1]}, padded"
                self.fig.layout.annotations[2].text = f"output {small.shape[0]}x{small.shape[1]}"
                self.fig.layout.xaxis.update(**_int_ticks(Wd, -p[1]), **_span(Wd, start=-p[1]))
                self.fig.layout.yaxis.update(**_int_ticks(H, -p[0]), **_span(H, down=True, start=-p[0]))
                self.fig.layout.xaxis3.update(**_int_ticks(small.shape[1]), **_span(small.shape[1]))
                self.fig.layout.yaxis3.update(**_int_ticks(small.shape[0]), **_span(small.shape[0], down=True))
                lim = float(max(tr.output.abs().max(), 1e-6))
                self.fig.data[2].update(zmin=-lim, zmax=lim)
                self.fig.data[10].update(_frame(0, 0, tr.x.shape[1] - 1, tr.x.shape[0] - 1))
                self._symbolic = ops.symbolic_matvec(Xl, xnames) if not live else None

    # ------------------------------------------------------------------ steps
    def n_steps(self) -> int:
        tr = self._tr
        return int(tr.y.numel()) if self.view.value == "transposed" else int(tr.output.numel())

    def _copy_cells(self, k):
        """Canvas cells ``(col, row)`` (output coordinates) covered by copy ``k`` of the kernel."""
        tr = self._tr
        ks, s, p = tuple(tr.kernel.shape), tr.stride, tr.padding
        if len(ks) == 1:
            return [(s[0] * k + t - p[0], 0) for t in range(ks[0])]
        i, j = divmod(k, tr.y.shape[1])
        return [(s[1] * j + b - p[1], s[0] * i + a - p[0]) for a in range(ks[0]) for b in range(ks[1])]

    def frame(self, k: int) -> dict:
        d, view = self.dims.value, self.view.value
        if view == "transposed":
            return self._frame_1d_t(k) if d == 1 else self._frame_2d_t(k)
        return self._frame_1d_c(k) if d == 1 else self._frame_2d_c(k)

    def _frame_1d_t(self, k):
        tr, live = self._tr, self.source == "live"
        copy, total = tr.contributions[k], tr.partial_sums[k]
        L = tr.canvas.numel()
        if not live and max(self._X.shape) <= MAX_TEXT_CELLS:
            XT = ops.transpose_labels(self._Xl)
            sums = ops.symbolic_matvec(XT, [lab if i <= k else "0" for i, lab in enumerate(self._ylabels)])
            copy_txt = ops.symbolic_matvec(XT, [lab if i == k else "0" for i, lab in enumerate(self._ylabels)])
        else:
            sums, copy_txt = [fmt(v) for v in total.tolist()], [fmt(v) for v in copy.tolist()]
        p, N = tr.padding[0], tr.output.numel()
        cells = self._copy_cells(k)
        note = ""
        if k == self.n_steps() - 1:
            extra = f" (the last {tr.output_padding[0]} cell(s) kept by output_padding)" if tr.output_padding[0] else ""
            note = f" Output = the {N} cells inside the dashed frame{extra}: [{', '.join(sums[p:p + N])}]."
        elif k == 0:
            # the frame is on the page from the first step: say at once what it marks
            note = (f" The dashed frame marks the {N} output cells kept" +
                    (f": padding {p} crops the {p} cell(s) outside it at each end" if p else "") + ".")
        data = {
            2: {"z": [copy.tolist(), total.tolist()], "text": [copy_txt, sums]},
            3: _outlines([(c, k) for c in range(L)]),                       # row k of X
            4: _outlines([(k, r) for r in range(L)]),                       # column k of X^T
            5: _outlines([(c, 0) for c, _ in cells if -p <= c < L - p]),     # where this copy lands
        }
        where = ("the first copy; each next one lands" if k == 0 else "placed") + \
            f" {tr.stride[0]} cells further" + ("" if k == 0 else " than the one before")
        caption = (f"step {k + 1}/{self.n_steps()}: input {self._ylabels[k]} scales a copy of the kernel "
                   f"(row {k} of X, column {k} of X^T), {where}; where copies overlap they add up.{note}")
        return {"data": data, "layout": {}, "caption": caption}

    def _frame_1d_c(self, k):
        tr = self._tr
        ks, s = tr.kernel.numel(), tr.stride[0]
        p = tr.padding[0]
        L = tr.padded.numel()
        res = [t if i <= k else "" for i, t in enumerate(self._results)]
        z = [[v if i <= k else None] for i, v in enumerate(tr.output.tolist())]
        data = {
            2: {"z": z, "text": [[t] for t in res]},
            3: _outlines([(c, k) for c in range(L)]),
            4: _outlines([(0, s * k + t - p) for t in range(ks)]),
            5: _outlines([(0, k)]),
        }
        caption = (f"step {k + 1}/{self.n_steps()}: output {k} = row {k} of X times the padded input "
                   f"({', '.join(self._xlabels)}) = {self._results[k]}. The filter moves {s} cells in the "
                   "input for each output cell: learnable downsampling.")
        return {"data": data, "layout": {}, "caption": caption}

    def _frame_2d_t(self, k):
        tr, live = self._tr, self.source == "live"
        total = tr.partial_sums[k]
        text = [[(_short(v) if live else fmt(v)) if v != 0 else "" for v in r] for r in total.tolist()]
        z = total.tolist()
        cells = self._copy_cells(k)
        i, j = divmod(k, tr.y.shape[1])
        ncols = tr.matrix.shape[1]
        data = {
            2: {"z": z, "text": text},
            5: _outlines([(j, i)]),
            7: _frame(min(c for c, _ in cells), min(r for _, r in cells), max(c for c, _ in cells),
                      max(r for _, r in cells)),          # the copy: one frame, the numbers stay readable
            8: _frame(0, k, ncols - 1, k),                 # row k of X
            9: _frame(k, 0, k, ncols - 1),                 # column k of X^T
        }
        # the cells this copy lands on that an earlier copy reached too: they add up
        prev_cover = set()
        for kk in range(k):
            prev_cover |= set(self._copy_cells(kk))
        No = tr.output.shape
        over = [c for c in cells if c in prev_cover]
        # the example named in the caption: an overlap inside the output, the one most copies reach
        inside = [c for c in over if 0 <= c[0] < No[1] and 0 <= c[1] < No[0]] or over
        inside.sort(key=lambda c: -sum(c in self._copy_cells(q) for q in range(k + 1)))
        name = self._ylabels[k]
        sy = ""
        if over and not live:
            W_ = tr.canvas.shape[1]
            c, r = inside[0]
            sym = ops.symbolic_matvec(ops.transpose_labels(ops.conv_matrix_labels(
                self._kernel_names, tuple(tr.canvas.shape), tr.stride, 0)),
                [lab if q <= k else "0" for q, lab in enumerate(self._ylabels)])
            pr, pc = tr.padding
            sy = f": e.g. output ({r}, {c}) = {sym[(r + pr) * W_ + (c + pc)]}."
        caption = (f"step {k + 1}/{self.n_steps()}: input cell ({i}, {j}) = {name} scales a copy of the kernel; "
                   f"it lands {tr.stride[0]} cells further per input cell (row {k} of X, column {k} of X^T). "
                   + (f"{len(over)} cell(s) overlap earlier copies and add up{sy or '.'}" if over else
                      "No overlap yet.") + ("" if k < self.n_steps() - 1 or not any(tr.padding) else
                                           " Cells outside the dashed frame are cropped by the padding."))
        return {"data": data, "layout": {}, "caption": caption}

    def _frame_2d_c(self, k):
        tr, live = self._tr, self.source == "live"
        r0, c0 = tr.windows[k].tolist()
        p = tr.padding
        kh, kw = tr.kernel.shape
        Wo = tr.output.shape[1]
        z = [[v if i * Wo + j <= k else None for j, v in enumerate(r)] for i, r in enumerate(tr.output.tolist())]
        text = [[((_short(v) if live else fmt(v)) if i * Wo + j <= k else "") for j, v in enumerate(r)]
                for i, r in enumerate(tr.output.tolist())]
        oi, oj = divmod(k, Wo)
        ncols = tr.matrix.shape[1]
        data = {
            2: {"z": z, "text": text},
            5: _frame(c0 - p[1], r0 - p[0], c0 + kw - 1 - p[1], r0 + kh - 1 - p[0]),   # the window
            7: _outlines([(oj, oi)]),
            8: _frame(0, k, ncols - 1, k),
            9: _frame(k, 0, k, ncols - 1),
        }
        sym = f" = {self._symbolic[k]}" if self._symbolic else ""
        caption = (f"step {k + 1}/{self.n_steps()}: output pixel ({oi}, {oj}){sym} = {fmt(float(tr.output[oi, oj]))}: "
                   f"the {kh}x{kw} window starts at input ({r0 - p[0]}, {c0 - p[1]}); the filter moves "
                   f"{tr.stride[0]} pixels in the input per output pixel (row {k} of X).")
        return {"data": data, "layout": {}, "caption": caption}
