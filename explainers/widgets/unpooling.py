"""Unpooling: nearest neighbour, bed of nails, max unpooling (with the switches), bilinear."""
from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ..models.live_inputs import segnet_capture, strongest_channel, unpooling_crop
from ._base import ORANGE, VERMILLION, Explainer, fmt

LECTURE_INPUT = [[1.0, 2.0], [3.0, 4.0]]
LECTURE_POOL_INPUT = [[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]
MODES = [("nearest neighbour", "nearest"), ('"bed of nails"', "bed_of_nails"), ("max unpooling", "max"),
         ("bilinear", "bilinear")]


def _cell_text(v: float, live: bool) -> str:
    """A cell's number, short enough to sit inside its highlight square: live values with two
    significant digits and no leading zero (".57", "-.12")."""
    if not live or v == 0 or not 1e-3 <= abs(v) < 100:
        return fmt(v)
    s = f"{v:.2g}"
    return s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s


def _cells(points):
    xs = [c for _, c in points]
    ys = [r for r, _ in points]
    return xs, ys


class UnpoolingExplainer(Explainer):
    """Each input cell and the output cells it fills; for max unpooling, the max pooling
    and its remembered positions ("switches") come first."""

    title = "Unpooling: from a small map back to a large one"

    def _build(self):
        self.mode = W.Dropdown(options=MODES, value="max" if self.source == "live" else "nearest",
                               description="mode")
        self.channel = W.IntSlider(value=0, min=0, max=0, description="channel", layout=W.Layout(width="300px"))
        self.mode.observe(lambda _: self.guard(self.refresh), "value")
        self.channel.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.mode] + ([self.channel] if self.source == "live" else []))
        fig = make_subplots(1, 3, subplot_titles=("max pooling (switches)", "input", "output"),
                            horizontal_spacing=0.06)
        for col in (1, 2, 3):
            fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=17),
                            colorscale="Blues", showscale=False, xgap=2, ygap=2, row=1, col=col, zmin=0, zmax=1)
        # open squares around the cells (wider than a cell's number: they frame it, never cross it)
        for col, colour in ((1, ORANGE), (2, ORANGE), (3, ORANGE), (1, VERMILLION)):
            fig.add_scatter(x=[], y=[], mode="markers", row=1, col=col, hoverinfo="skip",
                            marker=dict(symbol="square-open", size=54, color=colour, line=dict(width=4)))
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, tickmode="linear", tick0=0, dtick=1)
        fig.update_xaxes(showgrid=False, zeroline=False, tickmode="linear", tick0=0, dtick=1)
        self._use_figure(fig, 460)
        if self.source == "live":
            self._load_live()

    # ------------------------------------------------------------------ data
    def _load_live(self):
        self._captured = segnet_capture(self.model, self.live_image(), "live unpooling")
        self.channel.max = self._captured["bottleneck"].shape[1] - 1
        self.channel.value = strongest_channel(self._captured["bottleneck"][0])   # the most active first

    def _data(self):
        """(pool_input or None, input, switches or None, reference output or None)."""
        mode = self.mode.value
        if self.source == "lecture":
            x = torch.tensor(LECTURE_INPUT)
            if mode != "max":
                return None, x, None, None
            pin = torch.tensor(LECTURE_POOL_INPUT)
            return pin, x, ops.max_pool_with_switches(pin)[1], None
        crop = unpooling_crop(self._captured, self.channel.value)
        if mode != "max":
            return None, crop.input, None, None
        return crop.pool_input, crop.input, crop.switches, crop.output

    def refresh(self):
        mode = self.mode.value
        pin, x, switches, real = self._data()
        out, trace = ops.unpool(x, mode, 2, indices=switches)
        ref = ops.reference_unpool(x, mode, 2, indices=switches)
        diff = float((out - ref).abs().max())
        what = {"nearest": "F.interpolate(mode='nearest')", "bilinear": "F.interpolate(mode='bilinear')",
                "max": "F.max_unpool2d", "bed_of_nails": "a one-hot stride-2 conv_transpose2d"}[mode]
        more = []
        if real is not None:
            more.append(("the decoder's own max unpooling there", float((out - real).abs().max())))
        if self.source == "live":
            crop = unpooling_crop(self._captured, self.channel.value)
            self.set_note(f"Drawn: channel {self.channel.value}, a {'x'.join(map(str, crop.input.shape))} crop at row "
                          f"{crop.origin[0]}, column {crop.origin[1]} of what SegNet's decoder unpools (its bottleneck), "
                          "with pool 3's switches re-indexed inside the crop. The decoder uses max unpooling: "
                          + ("its own output there is the second check." if mode == "max" else
                             "choose mode 'max' to compare with it."))
        self.set_check(what, diff, more=more)
        self._pin, self._x, self._out, self._trace, self._switches = pin, x, out, trace, switches
        self._pooled = ops.max_pool_with_switches(pin)[0] if pin is not None else None
        n_in = x.numel()
        self._pool_steps = self._pooled.numel() if pin is not None else 0
        self._n = self._pool_steps + n_in + 1
        lo = float(min(x.min(), out.min(), pin.min() if pin is not None else x.min()))
        hi = float(max(x.max(), out.max(), pin.max() if pin is not None else x.max()))
        live = self.source == "live"
        grids = (pin.shape if pin is not None else (1, 1), x.shape, out.shape)
        with self.fig.batch_update():
            for i, (h, w) in enumerate(grids, 1):     # exactly the cells: no padding around the squares
                self.fig.layout[f"xaxis{'' if i == 1 else i}"].update(range=[-0.5, w - 0.5], autorange=False)
                self.fig.layout[f"yaxis{'' if i == 1 else i}"].update(range=[h - 0.5, -0.5], autorange=False)
            for i, (h, w) in ((3, grids[0]), (4, grids[1]), (5, grids[2]), (6, grids[0])):
                # as large as its subplot's cells allow: 4x4 cells are ~85 px, 8x8 ones ~42 px
                self.fig.data[i].marker.size = 54 if max(h, w) <= 4 else 40
            self.fig.data[0].update(z=pin.tolist() if pin is not None else [[None]],
                                    text=[[_cell_text(v, live) for v in row] for row in pin.tolist()]
                                    if pin is not None else [[""]], zmin=lo, zmax=hi)
            self.fig.data[1].update(z=x.tolist(), text=[[_cell_text(v, live) for v in row] for row in x.tolist()],
                                    zmin=lo, zmax=hi)
            self.fig.data[2].update(zmin=lo, zmax=hi)
            title0 = ("max pooling: switches" if pin is not None
                      else "max pooling is used by max unpooling only:<br>choose mode 'max' to see it")
            self.fig.layout.annotations[0].text = title0
            # no empty axes in the other modes
            self.fig.update_xaxes(visible=pin is not None, row=1, col=1)
            self.fig.update_yaxes(visible=pin is not None, row=1, col=1)
            self.fig.layout.annotations[2].text = f"output ({mode.replace('_', ' ')})"
        self._reset_steps()

    def _state(self) -> dict:
        """``mode``; ``input (h, w)``: what is unpooled; ``output (2h, 2w)``; for "max":
        ``pool_input (2h, 2w)`` and ``switches (h, w)`` (flat indices into it), else None;
        live: ``channel`` and ``crop_origin`` (row, col) in the pooled map, ``model_output``: the
        decoder's own unpooling there (max mode)."""
        out = {"mode": self.mode.value, "input": self._x, "output": self._out, "pool_input": self._pin,
               "switches": self._switches}
        if self.source == "live":
            crop = unpooling_crop(self._captured, self.channel.value)
            out.update(channel=self.channel.value, crop_origin=crop.origin,
                       model_output=crop.output if self.mode.value == "max" else None)
        return out

    def n_steps(self) -> int:
        return self._n

    def frame(self, k: int) -> dict:
        out, tr, x = self._out, self._trace, self._x
        h, w = x.shape
        Ho, Wo = out.shape
        data = {}
        # cells of the output filled so far: by the first (k - pool_steps) input cells
        j = k - self._pool_steps
        filled = np.zeros((Ho, Wo), dtype=bool)
        src = tr.src_index[0, 0].numpy()
        wgt = tr.src_weight[0, 0].numpy()
        if j >= 0:
            upto = min(j + 1, h * w)  # input cells 0..j have been placed
            contributes = (src >= 0) & (src < upto) & (wgt != 0)
            filled = contributes.any(-1) | ((src < 0).all(-1) & (j >= h * w))
            if j >= h * w:
                filled[:] = True
        z = np.where(filled, out.numpy(), np.nan)
        live = self.source == "live"
        text = [[_cell_text(out[r, c].item(), live) if filled[r, c] else "" for c in range(Wo)] for r in range(Ho)]
        data[2] = {"z": [[None if np.isnan(v) else float(v) for v in row] for row in z], "text": text}
        caption = ""
        empty = {"x": [], "y": []}
        data[3], data[4], data[5] = dict(empty), dict(empty), dict(empty)
        if self._pin is not None:
            # switches found so far
            sw = self._switches.numpy().reshape(-1)
            Wp = self._pin.shape[1]
            found = sw[: min(k + 1, self._pool_steps)] if k < self._pool_steps else sw
            data[6] = {"x": (found % Wp).tolist(), "y": (found // Wp).tolist()}
        else:
            data[6] = dict(empty)
        if k < self._pool_steps:
            r, c = divmod(k, self._pooled.shape[1])
            block = [(2 * r + a, 2 * c + b) for a in range(2) for b in range(2)]
            xs, ys = _cells(block)
            data[3] = {"x": xs, "y": ys}
            caption = (f"max pooling, block ({r}, {c}): the maximum {fmt(self._pooled[r, c].item())} "
                       f"is remembered at its position (switch)")
        elif j < h * w:
            r, c = divmod(j, w)
            data[4] = {"x": [c], "y": [r]}
            targets = tr.targets(r, c)
            xs, ys = _cells(targets)
            data[5] = {"x": xs, "y": ys}
            mode = self.mode.value
            verb = {"nearest": "is copied into", "bed_of_nails": "goes to the top-left of",
                    "max": "goes back to the remembered position in", "bilinear": "is blended (bilinear weights) into"}
            caption = f"input ({r}, {c}) = {fmt(x[r, c].item())} {verb[mode]} {len(targets)} output cell(s)"
        else:
            caption = "done: every output cell is filled"
        return {"data": data, "caption": caption}
