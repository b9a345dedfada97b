"""RoI Pool against RoI Align on the same feature map and region."""
from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ._base import ORANGE, SKY, VERMILLION, Explainer, fmt, rect_path

#: an 8x8 feature map and a region whose corners fall between cells (the lecture's picture)
LECTURE_FEATURES = (torch.arange(64, dtype=torch.float32).reshape(8, 8) * 7 % 10).tolist()
LECTURE_BOX = (1.3, 0.6, 6.2, 5.4)


class RoIPoolAlignExplainer(Explainer):
    """Left: RoI Pool snaps the region to whole cells and takes each bin's maximum.
    Right: RoI Align keeps the exact region and averages bilinear samples."""

    title = "RoI Pool (snapping) vs RoI Align (bilinear sampling)"
    play_interval = 500

    def _build(self):
        s = dict(layout=W.Layout(width="250px"), continuous_update=False, readout_format=".1f")
        self.x1, self.y1 = W.FloatSlider(description="x1", **s), W.FloatSlider(description="y1", **s)
        self.x2, self.y2 = W.FloatSlider(description="x2", **s), W.FloatSlider(description="y2", **s)
        self.out_size = W.IntSlider(value=2, min=1, max=7, description="output", layout=W.Layout(width="220px"))
        self.sampling = W.Dropdown(options=[("adaptive (-1)", -1), ("1", 1), ("2", 2), ("4", 4)], value=2,
                                   description="samples/bin", style={"description_width": "initial"},
                                   layout=W.Layout(width="200px"))
        self.aligned = W.Checkbox(value=False, description="aligned (half-pixel)")
        self.channel = W.IntSlider(value=0, min=0, max=0, description="channel", layout=W.Layout(width="250px"))
        self.proposal = W.Dropdown(options=[("(sliders)", -1)], value=-1, description="proposal",
                                   layout=W.Layout(width="260px"))
        rows = [W.HBox([self.x1, self.y1, self.x2, self.y2]), W.HBox([self.out_size, self.sampling, self.aligned])]
        if self.source == "live":
            rows.append(W.HBox([self.channel, self.proposal]))
        self.controls = W.VBox(rows)
        fig = make_subplots(2, 6, specs=[[{"colspan": 3}, None, None, {"colspan": 3}, None, None],
                                         [{"colspan": 2}, None, {"colspan": 2}, None, {"colspan": 2}, None]],
                            row_heights=[0.68, 0.32], vertical_spacing=0.1,
                            subplot_titles=("RoI Pool: snapped to cells", "RoI Align: exact bins, bilinear samples",
                                            "RoI Pool output", "RoI Align output", "Align - Pool"))
        for r, c in ((1, 1), (1, 4), (2, 1), (2, 3), (2, 5)):
            fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=12),
                            colorscale="Viridis" if r == 1 else "Cividis", showscale=False, xgap=1, ygap=1,
                            row=r, col=c)
        fig.data[4].update(colorscale="RdBu", zmid=0)
        add = fig.add_scatter
        add(x=[], y=[], mode="lines", line=dict(color="white", width=2, dash="dash"), row=1, col=1)          # 5
        add(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=3), row=1, col=1)                        # 6
        add(x=[], y=[], mode="markers", marker=dict(symbol="x", size=14, color=VERMILLION), row=1, col=1)   # 7
        add(x=[], y=[], mode="lines", line=dict(color=SKY, width=3), row=1, col=4)                           # 8
        add(x=[], y=[], mode="markers", marker=dict(size=6, color="white"), row=1, col=4)                   # 9
        add(x=[], y=[], mode="markers", marker=dict(size=14, color=VERMILLION), row=1, col=4)               # 10
        add(x=[], y=[], mode="markers+text", textposition="top center", textfont=dict(size=13, color="white"),
            marker=dict(symbol="square-open", size=18, color=ORANGE, line=dict(width=3)), row=1, col=4)    # 11
        add(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), row=1, col=1)                   # 12
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False)
        fig.update_xaxes(showgrid=False, zeroline=False)
        self._use_figure(fig, 720)
        self._load()
        for c in (self.x1, self.y1, self.x2, self.y2, self.out_size, self.sampling, self.aligned, self.channel):
            c.observe(lambda _: self.guard(self.refresh), "value")
        self.proposal.observe(lambda _: self.guard(self._pick_proposal), "value")

    def _set_box(self, box):
        for ctrl, v in zip((self.x1, self.y1, self.x2, self.y2), box):
            ctrl.value = float(v)

    def _load(self):
        if self.source == "lecture":
            self._features = torch.tensor(LECTURE_FEATURES)[None]
            self._scale = 1.0
            limit = 8.0
            box = LECTURE_BOX
        else:
            from ..models import get

            model = self.model or get("detection", "shapes")
            tr = model.trace(self.live_image())
            self._features = tr.features["0"][0]
            self._scale = self._features.shape[-1] / tr.input_tensor.shape[-1]
            limit = float(tr.input_tensor.shape[-1])
            self._proposals = tr.proposals[:10]
            if len(self._proposals) == 0:
                raise ValueError("the detector made no proposals on this image")
            self.proposal.options = [("(sliders)", -1)] + [
                (f"#{i}: " + ", ".join(f"{v:.0f}" for v in p.tolist()), i) for i, p in enumerate(self._proposals)]
            self.channel.max = self._features.shape[0] - 1
            self.out_size.value = 7 if self._features.shape[-1] >= 7 else 2
            box = self._proposals[0].tolist()
            self.sampling.value = -1
        for ctrl in (self.x1, self.x2, self.y1, self.y2):
            ctrl.max = limit
            ctrl.step = limit / 200
        self._set_box(box)

    def _pick_proposal(self):
        if self.proposal.value >= 0:
            self._set_box(self._proposals[self.proposal.value].tolist())
        self.refresh()

    def refresh(self):
        f = self._features
        box = torch.tensor([self.x1.value, self.y1.value, self.x2.value, self.y2.value])
        out = self.out_size.value
        p_out, pt = ops.roi_pool_trace(f, box, out, self._scale)
        a_out, at = ops.roi_align_trace(f, box, out, self._scale, self.sampling.value, self.aligned.value)
        p_ref = ops.reference_roi_pool(f, box, out, self._scale)
        a_ref = ops.reference_roi_align(f, box, out, self._scale, self.sampling.value, self.aligned.value)
        self.set_check("torchvision.ops.roi_pool", float((p_out - p_ref).abs().max()),
                       more=[("torchvision.ops.roi_align", float((a_out - a_ref).abs().max()))])
        c = self.channel.value
        self._pt, self._at = pt, at
        fm = f[c]
        lo, hi = float(fm.min()), float(fm.max())
        small = fm.numel() <= 100
        txt = [[fmt(v) for v in row] for row in fm.tolist()] if small else None
        po, ao = p_out[c], a_out[c]
        d = ao - po
        lim = float(d.abs().max()) or 1.0
        sx1, sy1, sx2, sy2 = pt.snapped_box
        bins = pt.bins.reshape(-1, 4).tolist()
        bin_rects = [(x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5) for x0, y0, x1, y1 in bins]
        cells = pt.argmax_cells(c).reshape(-1, 2)
        cells = cells[cells[:, 0] >= 0]
        with self.fig.batch_update():
            for i in (0, 1):
                self.fig.data[i].update(z=fm.tolist(), text=txt, zmin=lo, zmax=hi)
            self.fig.data[2].update(z=po.tolist(), text=[[fmt(v) for v in r] for r in po.tolist()], zmin=lo, zmax=hi)
            self.fig.data[3].update(z=ao.tolist(), text=[[fmt(v) for v in r] for r in ao.tolist()], zmin=lo, zmax=hi)
            self.fig.data[4].update(z=d.tolist(), text=[[fmt(v) for v in r] for r in d.tolist()], zmin=-lim, zmax=lim)
            sb = pt.scaled_box.tolist()
            self.fig.data[5].update(dict(zip("xy", rect_path([sb]))))
            self.fig.data[6].update(dict(zip("xy", rect_path(bin_rects))))
            self.fig.data[7].update(x=cells[:, 0].tolist(), y=cells[:, 1].tolist())
            self.fig.data[8].update(dict(zip("xy", rect_path(at.bins.reshape(-1, 4).tolist()))))
            pts = at.points.reshape(-1, 2)
            self.fig.data[9].update(x=pts[:, 0].tolist(), y=pts[:, 1].tolist())
        self._reset_steps(keep=True)

    def n_steps(self) -> int:
        return int(np.prod(self._at.points.shape[:4])) or 1

    def frame(self, k: int) -> dict:
        at, pt = self._at, self._pt
        ph, pw, gh, gw = at.points.shape[:4]
        if gh * gw == 0:
            return {"data": {10: {"x": [], "y": []}, 11: {"x": [], "y": [], "text": []}, 12: {"x": [], "y": []}},
                    "caption": "this region is empty: RoI Align outputs zeros"}
        i, rest = divmod(k, pw * gh * gw)
        j, rest = divmod(rest, gh * gw)
        a, b = divmod(rest, gw)
        x, y = at.points[i, j, a, b].tolist()
        nb = at.neighbours[i, j, a, b].tolist()
        w = at.weights[i, j, a, b].tolist()
        x0, y0, x1, y1 = pt.bins[i, j].tolist()
        value = at.samples[self.channel.value, i, j, a, b].item()
        terms = " + ".join(f"{wt:.2f}·f({nx},{ny})" for (nx, ny), wt in zip(nb, w) if wt)
        caption = (
            f"bin ({i}, {j}), sample {a * gw + b + 1}/{gh * gw} at "
            f"({x:.2f}, {y:.2f}): f = {terms or '0 (outside the map)'} = {fmt(value)}; "
            f"weights max(0, 1-|x-x_i|)·max(0, 1-|y-y_j|). RoI Pool's bin ({i}, {j}) covers whole cells "
            f"x {x0}..{x1 - 1}, y {y0}..{y1 - 1}.")
        return {"caption": caption, "data": {
            10: {"x": [x], "y": [y]},
            11: {"x": [n[0] for n in nb], "y": [n[1] for n in nb], "text": [f"{wt:.2f}" for wt in w]},
            12: dict(zip("xy", rect_path([(x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5)]))),
        }}
