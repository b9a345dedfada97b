"""Transposed convolution as the transpose of the convolution matrix, in 1D and 2D."""
from __future__ import annotations

import math

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ..models.live_inputs import decoder_window, decoder_window_by_ops, segnet_capture, strongest_kernel
from ._base import ORANGE, Explainer, fmt, rect_path

KERNEL_LABELS = ["x", "y", "z"]
VECTOR_LABELS = "abcdefghijklmnopqrstuvw"
LECTURE = {1: dict(k=3, s=2, p=1, n=4), 2: dict(k=3, s=2, p=1, n=4)}
#: numbers are written in the cells of X and X^T while a side has at most this many cells
MAX_TEXT_CELLS = 24


def _short(v: float) -> str:
    """A learned weight in four characters or so (".057", "-.12"): it fits a narrow cell of X."""
    if v == 0:
        return "0"
    s = f"{v:.2g}"
    if "e" in s:
        return fmt(v)
    return s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s


def _int_ticks(n: int) -> dict:
    """Integer ticks (0, d, 2d, ...) for an ``n``-cell axis, at most about a dozen."""
    return dict(tickmode="linear", tick0=0, dtick=max(1, math.ceil(n / 12)), tickvals=None, ticktext=None)


def _span(n: int, down: bool = False) -> dict:
    """Exactly the ``n`` cells on the axis (no padding around the outlines); rows run downwards."""
    return dict(range=[n - 0.5, -0.5] if down else [-0.5, n - 0.5], autorange=False)


def _cell_outlines(cells) -> dict:
    """Open squares just inside the cells ``(col, row)``: they frame a cell's number, never cover it."""
    return dict(zip("xy", rect_path([(c - 0.46, r - 0.46, c + 0.46, r + 0.46) for c, r in cells]))) \
        if cells else {"x": [], "y": []}


class TransposedConvExplainer(Explainer):
    """X (the convolution), X^T (its transpose) and the transposed convolution X^T y,
    built one input element at a time: each scales a copy of the filter placed in the
    output, and overlapping copies add up."""

    title = "Transposed convolution = multiplying by X^T"

    def _build(self):
        # live: the decoder's kernel is 2D, and 2D is where the page checks against its output
        self.dims = W.ToggleButtons(options=[("1D", 1), ("2D", 2)], value=2 if self.source == "live" else 1,
                                    description="")
        self.ksize = W.IntSlider(value=3, min=1, max=5, description="kernel", layout=W.Layout(width="240px"))
        self.stride = W.IntSlider(value=2, min=0, max=4, description="stride", layout=W.Layout(width="240px"))
        self.padding = W.IntSlider(value=1, min=0, max=3, description="padding", layout=W.Layout(width="240px"))
        self.size = W.IntSlider(value=4, min=1, max=8, description="input n", layout=W.Layout(width="240px"))
        for c in (self.ksize, self.stride, self.padding, self.size):
            c.observe(lambda _: self.guard(self.refresh), "value")
        self.dims.observe(lambda _: self.guard(self._switch_dims), "value")
        self.controls = W.VBox([W.HBox([self.dims, self.ksize, self.stride]), W.HBox([self.padding, self.size])])
        # X gets the most room: in 2D it is 4 x 16 cells, each holding a number
        fig = make_subplots(1, 3, subplot_titles=("X (convolution)", "X^T (transposed)", "output = X^T y"),
                            column_widths=[0.48, 0.19, 0.33], horizontal_spacing=0.075)
        for col in (1, 2, 3):
            fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=16),
                            colorscale="RdBu", zmid=0, showscale=False, xgap=1, ygap=1, row=1, col=col)
        for col in (1, 2, 3):      # 3, 4, 5: outlines of the cells this step uses (open: the numbers show)
            fig.add_scatter(x=[], y=[], mode="lines", row=1, col=col, hoverinfo="skip",
                            line=dict(color=ORANGE, width=3))
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, automargin=True,
                         tickmode="linear", tick0=0, dtick=1)
        fig.update_xaxes(showgrid=False, zeroline=False, tickmode="linear", tick0=0, dtick=1)
        self._use_figure(fig, 520)
        if self.source == "live":
            self._load_live()

    def _load_live(self):
        from ..models import get

        model = self.model or get("segmentation", "shapes")
        self._captured = segnet_capture(model, self.live_image(), "the live transposed convolution")
        up1 = model.module.up1
        self._up1 = dict(stride=up1.stride[0], padding=up1.padding[0], bias=up1.bias.detach(),
                         c_in=up1.in_channels)
        pick = strongest_kernel(self._captured)
        self._kernel2d, self._feat = pick.kernel, pick.features
        self._live_pick = (pick.c_in, pick.c_out, *pick.peak)
        self.ksize.disabled = True

    def _model_check(self, d, s, p, r0, c0, out_shape) -> tuple[list, str]:
        """Live: what exactly is drawn, and (2D, the model's stride and padding) a check that all
        input channels' copies plus the bias, by the same op, give the decoder's own output."""
        i, o, _, _ = self._live_pick
        m = self._up1
        H, W_ = self._feat.shape
        what = (f"Drawn: input channel {i} → output channel {o} of SegNet's learned transposed convolution "
                f"(3x3, stride {m['stride']}, padding {m['padding']}, {m['c_in']} input channels), on the "
                f"{'x'.join(map(str, out_shape))} crop at row {r0}, column {c0} of its {W_}x{H} input (width x height): one channel's "
                f"copies, without the bias b[{o}] = {fmt(float(m['bias'][o]))}.")
        if d != 2 or (s, p) != (m["stride"], m["padding"]):
            return [], what + (f" The model uses stride {m['stride']} and padding {m['padding']} in 2D: the "
                               "check against its own output applies there only.")
        win = decoder_window(self._captured, m["bias"], o, (r0, c0), out_shape[0])
        diff = float((decoder_window_by_ops(win, s, p) - win.output).abs().max())
        return ([(f"the decoder's own output there (all {m['c_in']} channels + bias, by the same op)", diff)],
                what)

    def _state(self) -> dict:
        """``dims`` (1 or 2); ``kernel`` (k,) or (k, k); ``input``: y, the vector or grid the
        transposed convolution spreads; ``output``: X^T y; ``matrix``: X; ``stride``, ``padding``,
        ``output_padding``; ``contribution``: the copy of the kernel added at the current step and
        ``partial_sum`` after it. Live: ``channels`` (c_in, c_out) and ``crop_origin``."""
        k = self.step.value
        tr = self._tr
        out = {"dims": self.dims.value, "kernel": self._kernel(), "input": self._y, "output": self._out,
               "matrix": tr.matrix, "stride": self.stride.value, "padding": self.padding.value,
               "output_padding": tr.output_padding, "contribution": tr.contributions[k],
               "partial_sum": tr.partial_sums[k]}
        if self.source == "live":
            out.update(channels=self._live_pick[:2], crop_origin=self._crop_origin)
        return out

    def _switch_dims(self):
        d = self.dims.value
        with self.ksize.hold_trait_notifications(), self.stride.hold_trait_notifications():
            for ctrl, key in ((self.ksize, "k"), (self.stride, "s"), (self.padding, "p"), (self.size, "n")):
                ctrl.unobserve_all("value")
                ctrl.value = LECTURE[d][key] if not (self.source == "live" and key == "k") else 3
                ctrl.observe(lambda _: self.guard(self.refresh), "value")
        self.refresh()

    def _kernel(self):
        d, k = self.dims.value, self.ksize.value
        if self.source == "live":
            k2 = self._kernel2d
            return k2[1] if d == 1 else k2
        vals = torch.arange(1, k + 1, dtype=torch.float32)
        return vals if d == 1 else (vals[:, None] * 10 + vals[None, :]) / 10

    def refresh(self):
        d, s, p, n = self.dims.value, self.stride.value, self.padding.value, self.size.value
        kernel = self._kernel()
        shape = (n,) if d == 1 else (n, n)
        out_shape = ops.output_shape(tuple(kernel.shape), shape, s, p)
        if self.source == "live":
            i, o, r, c = self._live_pick
            f = self._feat
            r0, c0 = max(0, min(r, f.shape[0] - out_shape[0])), max(0, min(c, f.shape[1] - out_shape[-1]))
            y = f[r0:r0 + out_shape[0], c0:c0 + out_shape[-1]] if d == 2 else f[r0, c0:c0 + out_shape[0]]
            self._crop_origin = (r0, c0)
            if tuple(y.shape) != out_shape:
                raise ValueError(f"the feature map is too small for a {out_shape} input")
        else:
            y = torch.arange(1, int(np.prod(out_shape)) + 1, dtype=torch.float32).reshape(out_shape)
        out, tr = ops.conv_transpose_via_matrix(y, kernel, shape, s, p)
        ref = ops.reference_conv_transpose(y, kernel, shape, s, p)
        more = []
        if self.source == "live":
            more, note = self._model_check(d, s, p, r0, c0, out_shape)
            self.set_note(note)
        self.set_check(f"F.conv_transpose{d}d (output_padding={tr.output_padding[0] if d == 1 else tr.output_padding})",
                       float((out - ref).abs().max()), more=more)
        symbolic = self.source == "lecture" and d == 1 and kernel.numel() == 3
        if symbolic:
            # as on the slide: columns of the *padded* input (0, a, b, c, d, 0); the transposed
            # convolution then crops the padding positions off the end result
            tr = ops.conv_transpose_via_matrix(y, kernel, (n + 2 * p,), s, 0)[1]
            self._pad = p
        self._y, self._out, self._tr, self._shape = y, out, tr, tuple(tr.output.shape)
        X = tr.matrix
        if symbolic:
            Xl = ops.conv_matrix_labels(KERNEL_LABELS, n + 2 * p, s, 0)
            self._ylabels = list(VECTOR_LABELS[: y.numel()])
        else:
            cell = fmt if self.source == "lecture" else _short      # learned weights: short enough for a cell
            Xl = [[cell(v) if v else "0" for v in row] for row in X.tolist()]
            self._ylabels = [fmt(v) for v in y.reshape(-1).tolist()]
        if max(X.shape) > MAX_TEXT_CELLS:          # too many cells for readable numbers: colours only
            Xl = [["" for _ in row] for row in X.tolist()]
        self._symbolic = symbolic
        XT = ops.transpose_labels(Xl)
        with self.fig.batch_update():
            self.fig.data[0].update(z=X.tolist(), text=Xl)
            self.fig.data[1].update(z=X.T.tolist(), text=XT)
            lim = float(max(out.abs().max(), tr.contributions.abs().max(), 1e-6))
            self.fig.data[2].update(zmin=-lim, zmax=lim)
            sym = f" (y = {' '.join(self._ylabels)})"
            self.fig.layout.annotations[0].text = f"X: {X.shape[0]}x{X.shape[1]}"
            self.fig.layout.annotations[1].text = f"X^T: {X.shape[1]}x{X.shape[0]}"
            self.fig.layout.annotations[2].text = "output = X^T y" + ("" if d == 2 else sym)
            rows, cols = X.shape
            out_rows = 2 if d == 1 else self._shape[0]          # 1D: "this copy" and "running sum"
            self.fig.layout.xaxis.update(**_int_ticks(cols), **_span(cols))
            self.fig.layout.yaxis.update(**_int_ticks(rows), **_span(rows, down=True))
            self.fig.layout.xaxis2.update(**_int_ticks(rows), **_span(rows))
            self.fig.layout.yaxis2.update(**_int_ticks(cols), **_span(cols, down=True))
            self.fig.layout.xaxis3.update(**_int_ticks(self._shape[-1]), **_span(self._shape[-1]))
            self.fig.layout.yaxis3.update(_span(out_rows, down=True))
        self._reset_steps()

    def n_steps(self) -> int:
        return int(self._y.numel())

    def frame(self, k: int) -> dict:
        tr, d = self._tr, self.dims.value
        note = ""
        copy = tr.contributions[k]
        total = tr.partial_sums[k]
        if d == 1:
            if self._symbolic:
                labels = [lab if i <= k else "0" for i, lab in enumerate(self._ylabels)]
                sums = ops.symbolic_matvec(ops.transpose_labels(
                    ops.conv_matrix_labels(KERNEL_LABELS, self._shape, self._tr.stride, self._tr.padding)), labels)
                copy_txt = ops.symbolic_matvec(ops.transpose_labels(
                    ops.conv_matrix_labels(KERNEL_LABELS, self._shape, self._tr.stride, self._tr.padding)),
                    [lab if i == k else "0" for i, lab in enumerate(self._ylabels)])
            else:
                sums = [fmt(v) for v in total.tolist()]
                copy_txt = [fmt(v) for v in copy.tolist()]
            z = [copy.tolist(), total.tolist()]
            text = [copy_txt, sums]
            nz = copy.nonzero()[:, 0].tolist()
            hx, hy = nz, [0] * len(nz)
            ylab = dict(tickmode="array", tickvals=[0, 1], ticktext=["this<br>copy", "running<br>sum"])
            if self._symbolic and self._pad and k == self.n_steps() - 1:
                note = (f" The {self._pad} padding position(s) at each end are cropped: "
                        f"output = [{', '.join(sums[self._pad:-self._pad])}].")
        else:
            z = total.tolist()
            text = [[fmt(v) for v in row] for row in total.tolist()]
            nz = copy.nonzero().tolist()
            hx, hy = [c for _, c in nz], [r for r, _ in nz]
            ylab = _int_ticks(self._shape[0])
        ncols = self._tr.matrix.shape[1]
        data = {
            2: {"z": z, "text": text},
            3: _cell_outlines([(c, k) for c in range(ncols)]),      # row k of X
            4: _cell_outlines([(k, r) for r in range(ncols)]),      # column k of X^T
            5: _cell_outlines(list(zip(hx, hy))),                   # the output cells this copy reaches
        }
        ylabel = self._ylabels[k]
        caption = (f"step {k + 1}/{self.n_steps()}: input element {ylabel} scales a copy of the filter placed "
                   f"at {len(nz)} output cell(s); where copies overlap they add up.{note}")
        return {"data": data, "layout": {"yaxis3": ylab}, "caption": caption}
