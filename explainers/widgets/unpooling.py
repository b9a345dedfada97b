"""Unpooling: nearest neighbour, bed of nails, max unpooling (with the switches), bilinear."""
from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ..models.live_inputs import segnet_capture, strongest_channel, unpooling_crop
from ._base import CHECK_TOLERANCE, ORANGE, VERMILLION, Explainer, fmt

LECTURE_INPUT = [[1.0, 2.0], [3.0, 4.0]]
LECTURE_POOL_INPUT = [[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]
#: a wide window holds about this many cells across per cell down: narrower layouts are centred
PACK_ASPECT = 3.0
#: an output cell not yet filled (a value of 0 is drawn in the colour scale's lightest blue, not this)
EMPTY_FILL = "#F2F2F2"
#: the Blues scale without its near-white end, so that a filled cell (even the smallest value) never
#: looks empty
CELL_SCALE = [[0.0, "#C6DBEF"], [0.35, "#6BAED6"], [0.7, "#2171B5"], [1.0, "#08306B"]]
MODES = [("nearest neighbour", "nearest"), ('"bed of nails"', "bed_of_nails"), ("max unpooling", "max"),
         ("bilinear", "bilinear")]


def _cell_text(v: float, live: bool) -> str:
    """A cell's number, short enough to sit inside its highlight square: live values with two
    significant digits and no leading zero (".57", "-.12")."""
    if not live or v == 0 or not 1e-3 <= abs(v) < 100:
        return fmt(v)
    s = f"{v:.2g}"
    return s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s


#: half the side of a cell's outline, in cells: the orange frame just inside the cell (around its
#: number, never across it), the red switch inside that
FRAME, SWITCH = 0.44, 0.34


def _cells(points, half: float = FRAME) -> dict:
    """Outlines of the cells ``(row, col)`` as one line trace, in data units: they scale with the
    plot (a marker of a fixed pixel size overflowed its cell on a smaller plot and was clipped)."""
    xs, ys = [], []
    for r, c in points:      # from the middle of the top edge round to it: every corner a joint
        x1, y1, x2, y2 = c - half, r - half, c + half, r + half
        xs += [c, x2, x2, x1, x1, c, None]
        ys += [y1, y1, y2, y2, y1, y1, None]
    return {"x": xs, "y": ys}


class UnpoolingExplainer(Explainer):
    """Each input cell and the output cells it fills; for max unpooling, the max pooling
    and its remembered positions ("switches") come first."""

    image_free = ('mode', 'channel')

    title = "Unpooling: from a small map back to a large one"

    def _build(self):
        self.mode = W.Dropdown(options=MODES, value="max" if self.source == "live" else "nearest",
                               description="mode")
        self.channel = W.IntSlider(value=0, min=0, max=0, description="channel", layout=W.Layout(width="300px"))
        self.mode.observe(lambda _: self.guard(self.refresh), "value")
        self.channel.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.mode] + ([self.channel] if self.source == "live" else []))
        # the slide's path, left to right: max pooling (switches) -> the pooled map -> "rest of the
        # network" -> the map to unpool -> the unpooled output; every cell the same size, so a 2x2
        # map is drawn half as wide as a 4x4 one (the other modes show the last two panels only)
        fig = make_subplots(1, 4, subplot_titles=("max pooling: switches", "pooled", "input", "output"))
        for col in (1, 3, 4):                                                             # 0, 1, 2
            fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=17),
                            colorscale=CELL_SCALE, showscale=False, xgap=2, ygap=2, row=1, col=col, zmin=0, zmax=1)
        # outlines of the cells (in data units, so they frame a cell's number at any plot size)
        for col, colour in ((1, ORANGE), (3, ORANGE), (4, ORANGE), (1, VERMILLION)):      # 3, 4, 5, 6
            fig.add_scatter(x=[], y=[], mode="lines", row=1, col=col, hoverinfo="skip",
                            line=dict(color=colour, width=4))
        fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=17),     # 7 pooled
                        colorscale=CELL_SCALE, showscale=False, xgap=2, ygap=2, row=1, col=2, zmin=0, zmax=1)
        fig.add_scatter(x=[], y=[], mode="lines", row=1, col=2, hoverinfo="skip",                  # 8
                        line=dict(color=ORANGE, width=4))
        fig.update_yaxes(showgrid=False, zeroline=False, tickmode="array")
        fig.update_xaxes(showgrid=False, zeroline=False, tickmode="array", constrain="domain")
        for c in (1, 2, 3, 4):                 # square cells in every panel
            fig.update_yaxes(scaleanchor=f"x{'' if c == 1 else c}", constrain="domain", row=1, col=c)
        # between the pooled map and the map that is unpooled: the rest of the network
        fig.add_annotation(text="", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           font=dict(size=17), align="center")
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
        pooled = ops.max_pool_with_switches(pin)[0] if pin is not None else None
        if pin is not None:
            # the pooling drawn before the unpooling: its maxima and switches against torch's own
            t_val, t_idx = ops.reference_max_pool(pin)
            d_pool = float((pooled - t_val).abs().max())
            more.append(("F.max_pool2d's maxima and indices (the switches drawn" + (", the decoder's own" if
                                                                                   real is not None else "") + ")",
                         d_pool, torch.equal(switches.reshape(t_idx.shape), t_idx) and d_pool <= CHECK_TOLERANCE))
        if real is not None:
            more.append(("the decoder's own max unpooling there", float((out - real).abs().max())))
        if self.source == "live":
            crop = unpooling_crop(self._captured, self.channel.value)
            self.set_note(f"Drawn: channel {self.channel.value}, a {'x'.join(map(str, crop.input.shape))} crop at row "
                          f"{crop.origin[0]}, column {crop.origin[1]} of what SegNet's decoder unpools (its bottleneck), "
                          "with pool 3's switches re-indexed inside the crop. The decoder uses max unpooling: "
                          + ("the last check line compares with its own output there." if mode == "max" else
                             "choose mode 'max' to compare with it."))
        self.set_check(what, diff, more=more)
        self._pin, self._x, self._out, self._trace, self._switches = pin, x, out, trace, switches
        self._pooled = pooled
        n_in = x.numel()
        self._pool_steps = self._pooled.numel() if pin is not None else 0
        # pooling, one block a step; then "the rest of the network"; then unpooling, one input cell a step
        self._net_steps = 1 if pin is not None else 0
        self._n = self._pool_steps + self._net_steps + n_in + 1
        lo = float(min(x.min(), out.min(), pin.min() if pin is not None else x.min()))
        hi = float(max(x.max(), out.max(), pin.max() if pin is not None else x.max()))
        live = self.source == "live"
        pooled = self._pooled
        with self.fig.batch_update():
            self._lay_out(pin, pooled, x, out)
            for i in (3, 4, 5, 6, 8):
                # every panel's cells are the same size: ~68 px with a 4x4 output, ~40 px with 8x8
                self.fig.data[i].marker.size = 54 if max(out.shape) <= 4 else 34
            cells = lambda t: [[_cell_text(v, live) for v in row] for row in t.tolist()]  # noqa: E731
            self.fig.data[0].update(z=pin.tolist() if pin is not None else [[None]],
                                    text=cells(pin) if pin is not None else [[""]], zmin=lo, zmax=hi)
            self.fig.data[7].update(z=pooled.tolist() if pooled is not None else [[None]],
                                    text=cells(pooled) if pooled is not None else [[""]], zmin=lo, zmax=hi)
            self.fig.data[1].update(z=x.tolist(), text=cells(x), zmin=lo, zmax=hi)
            self.fig.data[2].update(zmin=lo, zmax=hi)
            self.fig.layout.annotations[3].text = f"output ({mode.replace('_', ' ')})"
            self.fig.layout.annotations[2].text = "input (to unpool)" if pin is not None else "input"
        self._reset_steps()

    def _lay_out(self, pin, pooled, x, out) -> None:
        """Every cell the same size: panel widths in proportion to their columns and heights to their
        rows (a 2x2 map is a quarter of a 4x4 one, centred on the same middle line, its title and
        ticks right at its edges). The panels are packed in the middle of the figure, not spread
        over its whole width; in modes without pooling the two pooling panels take no room."""
        Ho = out.shape[0]
        shown = pin is not None
        units = [pin.shape[1] if shown else 0, pooled.shape[1] if shown else 0, x.shape[1], out.shape[1]]
        gaps = [1.0, 3.0, 1.5] if shown else [0.0, 0.0, 2.5]
        used = sum(units) + sum(gaps)
        # about PACK_ASPECT cells across per cell down fill a wide window; fewer are centred, not stretched
        total = max(used, PACK_ASPECT * Ho)
        left = (total - used) / 2
        doms = []
        grids = (pin.shape if shown else (1, 1), pooled.shape if shown else (1, 1), x.shape, out.shape)
        for c, ((h, w), u, gap) in enumerate(zip(grids, units, gaps + [0.0]), 1):
            dom = [left / total, (left + u) / total] if u else [0.0, 0.0]
            left += u + gap
            doms.append(dom)
            visible = bool(u)
            ydom = [0.5 - h / Ho / 2, 0.5 + h / Ho / 2]
            name = "" if c == 1 else str(c)
            self.fig.layout[f"xaxis{name}"].update(domain=dom, range=[-0.5, w - 0.5], autorange=False,
                                                   tickvals=list(range(w)), visible=visible)
            self.fig.layout[f"yaxis{name}"].update(domain=ydom, range=[h - 0.5, -0.5], autorange=False,
                                                   tickvals=list(range(h)), visible=visible)
            # the title on the grid's drawn top edge (its domain after the square-cell constraint)
            ann = self.fig.layout.annotations[c - 1]
            ann.update(xref=f"x{name} domain", yref=f"y{name} domain", x=0.5, y=1.0, visible=visible)
        # the empty output grid, cell by cell in data units (under the map: a filled cell covers its own);
        # built again only when the output's size changes (a channel change keeps it)
        Wo = out.shape[1]
        if getattr(self, "_grid_size", None) != (Ho, Wo):
            self._grid_size = (Ho, Wo)
            self.fig.layout.shapes = [dict(type="rect", xref="x4", yref="y4", layer="below", x0=c - 0.47,
                                           x1=c + 0.47, y0=r - 0.47, y1=r + 0.47, fillcolor=EMPTY_FILL,
                                           line=dict(color="#BBBBBB", width=1))
                                      for r in range(Ho) for c in range(Wo)]
        net = self.fig.layout.annotations[4]
        if shown:
            net.x = (doms[1][1] + doms[2][0]) / 2
            net.text = "→<br>rest of<br>the network<br>→"
        net.visible = shown
        for c in (1, 2):
            for i in (0, 3, 6) if c == 1 else (7, 8):
                self.fig.data[i].visible = shown

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
        # cells of the output filled so far: by the first (k - pool_steps - net_steps) input cells
        j = k - self._pool_steps - self._net_steps
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
        data[3], data[4], data[5], data[8] = dict(empty), dict(empty), dict(empty), dict(empty)
        if self._pin is not None:
            # switches found so far, and the pooled cells computed so far
            sw = self._switches.numpy().reshape(-1)
            Wp = self._pin.shape[1]
            done = min(k + 1, self._pool_steps)
            data[6] = _cells([(int(v) // Wp, int(v) % Wp) for v in sw[:done]], SWITCH)
            pooled = self._pooled.numpy()
            data[7] = {"text": [[_cell_text(float(v), live) if r * pooled.shape[1] + c < done else ""
                                 for c, v in enumerate(row)] for r, row in enumerate(pooled)]}
        else:
            data[6] = dict(empty)
        if k < self._pool_steps:
            r, c = divmod(k, self._pooled.shape[1])
            block = [(2 * r + a, 2 * c + b) for a in range(2) for b in range(2)]
            data[3] = _cells(block)
            data[8] = _cells([(r, c)])
            caption = (f"max pooling, block ({r}, {c}): the maximum {fmt(self._pooled[r, c].item())} goes to the "
                       f"pooled map, and its position in the block is remembered (the switch, red)")
            if float(self._pin[2 * r:2 * r + 2, 2 * c:2 * c + 2].abs().max()) == 0:
                caption += ("; all four values are 0 (the ReLU before the pooling zeroed them), so the switch is "
                            "the first of the tied positions")
        elif k < self._pool_steps + self._net_steps:
            caption = ("the rest of the network works on the pooled map; the decoder's matching layer receives "
                       + ("these numbers (the slide's 1, 2, 3, 4)" if self.source == "lecture" else
                          "the map in the middle") + " and puts each value back at its block's switch")
        elif j < h * w:
            r, c = divmod(j, w)
            data[4] = _cells([(r, c)])
            targets = tr.targets(r, c)
            data[5] = _cells(targets)
            mode = self.mode.value
            verb = {"nearest": "is copied into", "bed_of_nails": "goes to the top-left of",
                    "max": "goes back to the remembered position (switch) in", "bilinear":
                    "is blended (bilinear weights) into"}
            caption = f"input ({r}, {c}) = {fmt(x[r, c].item())} {verb[mode]} {len(targets)} output cell(s)"
            if mode == "bilinear":
                # the cells show their final values: say what else is in them
                caption += ("; each shows its final value, this input mixed with its neighbours' (the weights "
                            "add up to 1), so a cell is not simply this input's share")
        else:
            caption = "done: every output cell is filled"
            if self._pin is None:
                caption += " (mode 'max' also shows the max pooling whose switches it uses)"
        return {"data": data, "caption": caption}
