"""RoI Pool against RoI Align on the same feature map and region."""
from __future__ import annotations

import html
import math

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ._base import CHECK_TOLERANCE, halo, ORANGE, SKY, VERMILLION, Explainer, fmt, png_uri, rect_path

#: an 8x8 feature map (channel 0 of the lecture's 512) and a region whose corners fall between
#: cells: RoI Pool snaps it to 5 rows x 4 columns, the slide's "512 x 5 x 4 region -> 512 x 2 x 2"
LECTURE_FEATURES = (torch.arange(64, dtype=torch.float32).reshape(8, 8) * 7 % 10).tolist()
LECTURE_BOX = (1.3, 0.6, 4.4, 5.4)
#: the lecture's box sliders move by this (feature-map cells)
LECTURE_STEP = 0.05
LECTURE_CHANNELS = 512


def lecture_features() -> torch.Tensor:
    """The lecture's ``(512, 8, 8)`` feature map: channel 0 is :data:`LECTURE_FEATURES`, the
    other 511 whole numbers 0..9 drawn with a fixed seed."""
    g = torch.Generator().manual_seed(0)
    f = torch.randint(0, 10, (LECTURE_CHANNELS, 8, 8), generator=g).to(torch.float32)
    f[0] = torch.tensor(LECTURE_FEATURES)
    return f


def _listing(what: str, values: list, total: int) -> str:
    """"row 3", "rows 3, 4 and 7", or "every row of the region" (when ``values`` are all ``total``)."""
    if len(values) == total > 1:
        return f"every {what} of the region"
    if len(values) == 1:
        return f"{what} {values[0]}"
    return f"{what}s {', '.join(map(str, values[:-1]))} and {values[-1]}"


def _int_ticks(n: int) -> dict:
    """Integer ticks (0, d, 2d, ...) on the axis of an ``n``-cell grid, about ten at most."""
    return dict(tickmode="linear", tick0=0, dtick=max(1, math.ceil(n / 10)))


#: a map larger than this (cells, either way) is drawn around the box, not whole
ZOOM_ABOVE = 16


def _view(box, W: int, H: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The map cells to draw, ``((x_lo, x_hi), (y_lo, y_hi))`` as axis ranges: the whole ``W x H``
    map when it is small, else a square window around ``box`` (map coordinates) with a margin
    (at least 3 cells, half the box's size), moved inside the map: a live map of 16 x 28 cells
    squeezed into a third of a projector's width leaves cells too small to read."""
    if W <= ZOOM_ABOVE and H <= ZOOM_ABOVE:
        return (-0.5, W - 0.5), (-0.5, H - 0.5)
    x1, y1, x2, y2 = box
    half = max(x2 - x1, y2 - y1) / 2 + max(3.0, 0.5 * max(x2 - x1, y2 - y1))

    def span(c, n):
        lo, hi = c - half, c + half
        if hi - lo >= n:
            return -0.5, n - 0.5
        if lo < -0.5:
            lo, hi = -0.5, hi + (-0.5 - lo)
        if hi > n - 0.5:
            lo, hi = lo - (hi - (n - 0.5)), n - 0.5
        return float(lo), float(hi)
    return span((x1 + x2) / 2 - 0.5, W), span((y1 + y2) / 2 - 0.5, H)


def _cell_text(v: float, many: bool) -> str:
    """A cell's number; in a large grid with at most two significant digits, so that it fits its cell."""
    if not many or v == 0:
        return fmt(v)
    return f"{v:.2g}" if 1e-3 <= abs(v) < 1e3 else f"{v:.0e}"


def _cell_outlines(cells) -> list:
    """Closed outlines just inside the cells ``(col, row)``: they frame a number, never cover it."""
    return rect_path([(c - 0.45, r - 0.45, c + 0.45, r + 0.45) for c, r in cells])


def _sr_text(v: int, grid: bool = False) -> str:
    """A sampling ratio: torchvision's number (``sampling_ratio=2``), or with ``grid`` as a student
    reads it on the control (2 takes 2×2 samples in each bin)."""
    return f"adaptive ({v})" if v <= 0 else (f"{v}×{v}" if grid else str(v))


def _scale_text(s: float) -> str:
    inv = 1 / s
    return f"1/{round(inv)}" if s < 1 and abs(inv - round(inv)) < 1e-9 else fmt(s)


class RoIPoolAlignExplainer(Explainer):
    """Left: RoI Pool snaps the region to whole cells and takes each bin's maximum.
    Right: RoI Align keeps the exact region and averages bilinear samples.

    Live (``source="live"``), on a detector's trace: the box is in the model's input frame
    (sliders cap x at its width and y at its height); the feature map is the one the model's
    own box pooler (torchvision's ``MultiScaleRoIAlign``) pools that box from (its
    ``LevelMapper`` picks the FPN level), with that map's spatial scale; output size,
    sampling ratio and ``aligned`` start at the model's values, and a control moved away
    from them is named on the page. The check line compares the ops with torchvision on the
    drawn parameters and, when the box is one of the model's proposals drawn with all the
    model's parameters, the RoI Align output (all channels) with the model's own pooled
    features for that proposal (:attr:`DetectorTrace.box_features`); otherwise it says why
    that comparison does not apply. :meth:`state` returns what is drawn.
    """

    image_free = ('out_size', 'sampling', 'aligned', 'channel')

    title = "RoI Pool (snapping) vs RoI Align (bilinear sampling)"
    play_interval = 500

    def _build(self):
        self._hold = False            # True while a proposal fills the four sliders: one refresh after
        s = dict(layout=W.Layout(width="250px"), continuous_update=False, readout_format=".2f")
        self.x1, self.y1 = W.FloatSlider(description="x1", **s), W.FloatSlider(description="y1", **s)
        self.x2, self.y2 = W.FloatSlider(description="x2", **s), W.FloatSlider(description="y2", **s)
        self.out_size = W.IntSlider(value=2, min=1, max=7, description="output", layout=W.Layout(width="220px"))
        self.sampling = W.Dropdown(options=[(_sr_text(v, grid=True), v) for v in (-1, 1, 2, 4)], value=2,
                                   description="samples per bin", style={"description_width": "initial"},
                                   layout=W.Layout(width="200px"))
        self.aligned = W.Checkbox(value=False, description="aligned (half-pixel)")
        self.channel = W.IntSlider(value=0, min=0, max=0, description="channel", layout=W.Layout(width="250px"))
        self.proposal = W.Dropdown(options=[("(sliders)", -1)], value=-1, description="proposal",
                                   layout=W.Layout(width="260px"))
        rows = [W.HBox([self.x1, self.y1, self.x2, self.y2]),
                W.HBox([self.out_size, self.sampling, self.aligned] + ([] if self.source == "live" else [self.channel]))]
        if self.source == "live":
            rows.append(W.HBox([self.channel, self.proposal]))
        self.controls = W.VBox(rows)
        # the two feature maps side by side over the whole height (a 1280x720 screen leaves the plot
        # about 400 px: cells large enough for their numbers), the three small outputs stacked right
        fig = make_subplots(3, 3, specs=[[{"rowspan": 3}, {"rowspan": 3}, {}], [None, None, {}], [None, None, {}]],
                            column_widths=[0.39, 0.39, 0.22], horizontal_spacing=0.07, vertical_spacing=0.16,
                            subplot_titles=("RoI Pool: snapped to cells", "RoI Align: exact bins, bilinear samples",
                                            "RoI Pool output (max)", "RoI Align output (mean)",
                                            "Align (a mean) − Pool (a max)"))
        # the outputs in the map's colours and range: the same colour is the same number everywhere
        for r, c in ((1, 1), (1, 2), (1, 3), (2, 3), (3, 3)):
            fig.add_heatmap(z=[[0]], text=[[""]], texttemplate="%{text}", textfont=dict(size=16),
                            colorscale="Viridis", showscale=False, xgap=1, ygap=1, row=r, col=c)
        fig.data[4].update(colorscale="RdBu", zmid=0)
        add = fig.add_scatter
        add(x=[], y=[], mode="lines", line=dict(color="white", width=2, dash="dash"), row=1, col=1)          # 5
        add(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=3), row=1, col=1)                        # 6
        # 7: each bin's maximum, an open square just inside its cell (its number stays readable)
        add(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=3), row=1, col=1)                   # 7
        add(x=[], y=[], mode="lines", line=dict(color=SKY, width=3), row=1, col=2)                           # 8
        add(x=[], y=[], mode="markers", marker=dict(size=6, color="white"), row=1, col=2)                   # 9
        add(x=[], y=[], mode="markers", marker=dict(size=14, color=VERMILLION), row=1, col=2)               # 10
        # 11: the four neighbours' values f(x, y) and weights, written in their cells (the RoI Align map
        # has no numbers of its own: these are the ones the caption's f = ... uses)
        add(x=[], y=[], text=[], mode="text", textposition="middle center", cliponaxis=False,
            textfont=dict(size=17, color="black", **halo()), row=1, col=2)                                # 11
        add(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), row=1, col=1)                   # 12
        add(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=3), row=1, col=2)                        # 13
        # 14: live, the model's input image under the RoI Align map (each image pixel where its
        # centre falls on the map: x = (u + 0.5) * scale), so the proposal's image region shows through
        fig.add_image(source=png_uri(np.full((2, 2, 3), 255, np.uint8)), hoverinfo="skip", visible=False,
                      row=1, col=2)
        # 15, 16: the output cell the current sample belongs to, on the RoI Pool and RoI Align outputs: an
        # outline just inside the cell, so its number stays readable
        add(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), row=1, col=3)                    # 15
        add(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), row=2, col=3)                    # 16
        # 17: on a small map, each neighbour's weight at its outer corner (its value fills the cell)
        add(x=[], y=[], text=[], mode="text", cliponaxis=False, textfont=dict(size=17, color="black", **halo()),
            row=1, col=2)                                                                                   # 17
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False)
        fig.update_xaxes(showgrid=False, zeroline=False)
        # the feature maps with square cells: the box's shape on the map is its true shape
        for c in (1, 2):
            fig.update_yaxes(scaleanchor=f"x{'' if c == 1 else 2}", constrain="domain", constraintoward="top",
                             row=1, col=c)
            fig.update_xaxes(constrain="domain", row=1, col=c)
        self._use_figure(fig, 720)
        self._load()
        for c in (self.x1, self.y1, self.x2, self.y2, self.out_size, self.sampling, self.aligned, self.channel):
            c.observe(lambda _: None if self._hold else self.guard(self.refresh), "value")
        self.proposal.observe(lambda _: self.guard(self._pick_proposal), "value")

    def _set_box(self, box):
        self._hold = True
        try:
            for ctrl, v in zip((self.x1, self.y1, self.x2, self.y2), box):
                ctrl.value = float(v)
        finally:
            self._hold = False

    def _load(self):
        self._trace = self._pooler = None
        if self.source == "lecture":
            self._features = lecture_features()
            self.channel.max = LECTURE_CHANNELS - 1
            self._scale = 1.0
            limits = (8.0, 8.0)
            box = LECTURE_BOX
        else:
            from ..models import live_inputs

            tr = live_inputs.detector_trace(self.model, self.live_image(), "the RoI Pool / RoI Align page",
                                            needs_roi_pooling=True)
            pooler = live_inputs.box_pooler(tr)
            self._trace, self._pooler = tr, pooler
            self._proposals = tr.proposals
            if len(self._proposals) == 0:
                raise ValueError("the detector made no proposals on this image")
            picks = live_inputs.proposal_picks(tr, pooler, 10)
            levels = [None if pooler.single else live_inputs.box_level(pooler, tr.proposals[i]).name for i in picks]
            self.proposal.options = [("(sliders)", -1)] + [
                (f"#{i}: " + ", ".join(f"{v:.0f}" for v in self._proposals[i].tolist())
                 + ("" if lv is None else f" (map '{lv}')"), i) for i, lv in zip(picks, levels)]
            self._features = tr.features[pooler.names[0]][0]
            self._scale = pooler.scales[0]
            self.channel.max = self._features.shape[0] - 1
            ph, pw = pooler.output_size
            self.out_size.max = max(self.out_size.max, ph, pw)
            self.out_size.value = ph
            if pooler.sampling_ratio not in [v for _, v in self.sampling.options]:
                self.sampling.options = list(self.sampling.options) + [(_sr_text(pooler.sampling_ratio, grid=True),
                                                                        pooler.sampling_ratio)]
            self.sampling.value = pooler.sampling_ratio
            self.aligned.value = pooler.aligned
            hp, wp = tr.input_tensor.shape[-2:]
            limits = (float(wp), float(hp))           # x up to the input's width, y up to its height
            box = self._proposals[0].tolist()
            from ..models.render import to_uint8

            self._image_uri = png_uri(to_uint8(tr.input_image))
            self.fig.data[14].update(source=self._image_uri, visible=True)
            self.fig.data[1].opacity = 0.55
            self._pick_channel(box)
        for ctrls, limit in (((self.x1, self.x2), limits[0]), ((self.y1, self.y2), limits[1])):
            for ctrl in ctrls:
                ctrl.max = limit
                # lecture: a twentieth of a cell, so the slide's box (1.3, 0.6, ...) and the
                # snapping point 1.5 are on the slider; live: 200 positions across the input
                ctrl.step = LECTURE_STEP if self.source == "lecture" else limit / 200
        self._set_box(box)

    def _pick_channel(self, box) -> None:
        """Live: show the channel with the most signal inside ``box`` (not one that is 0 there)."""
        from ..models import live_inputs

        level = live_inputs.box_level(self._pooler, torch.as_tensor(box, dtype=torch.float32))
        f = self._trace.features[level.name][0]
        self._hold = True
        try:
            self.channel.value = live_inputs.strongest_channel_in_box(f, box, level.scale)
        finally:
            self._hold = False

    def _pick_proposal(self):
        if self.proposal.value >= 0:
            box = self._proposals[self.proposal.value].tolist()
            self._set_box(box)
            self._pick_channel(box)
        self.refresh()

    def refresh(self):
        for a, b, across in ((self.x1, self.x2, ("left", "right")), (self.y1, self.y2, ("up", "down"))):
            if a.value > b.value:        # in the sliders' words (the operator speaks of box[0] and x2 < x1)
                raise ValueError(f"{a.description} ({a.value:g}) is past {b.description} ({b.value:g}): move "
                                 f"{a.description} {across[0]} or {b.description} {across[1]}")
        box = torch.tensor([self.x1.value, self.y1.value, self.x2.value, self.y2.value])
        out = self.out_size.value
        if self.source == "live":
            from ..models import live_inputs

            level = live_inputs.box_level(self._pooler, box)
            f, scale = self._trace.features[level.name][0], level.scale
        else:
            level, f, scale = None, self._features, self._scale
        p_out, pt = ops.roi_pool_trace(f, box, out, scale)
        a_out, at = ops.roi_align_trace(f, box, out, scale, self.sampling.value, self.aligned.value)
        p_ref = ops.reference_roi_pool(f, box, out, scale)
        a_ref = ops.reference_roi_align(f, box, out, scale, self.sampling.value, self.aligned.value)
        checks = [("torchvision.ops.roi_align", float((a_out - a_ref).abs().max()))]
        model = self._model_check(box, out, level, a_out) if self.source == "live" else None
        if model is not None and model["diff"] is not None:
            checks.append((f"the model's own pooled features (box_features[{model['proposal']}], all channels)",
                           model["diff"]))
        # the cell each bin took is drawn as "the maximum": among equal values (ReLU features have many)
        # it must be the one torchvision's operator takes too
        other_cells = int((pt.argmax != ops.reference_roi_pool_argmax(f, box, out, scale)).sum())
        p_diff = float((p_out - p_ref).abs().max())
        what = "torchvision.ops.roi_pool" + (f" (values; the cell taken differs in {other_cells} bins)"
                                             if other_cells else "")
        self.set_check(what, p_diff, p_diff <= CHECK_TOLERANCE and not other_cells, more=checks)
        rows, cols = ops.overlapping_bins(pt.bins)
        sx1, sy1, sx2, sy2 = pt.snapped_box
        n_rows, n_cols = sy2 - sy1 + 1, sx2 - sx1 + 1
        parts = [_listing(what, v, n) for what, v, n in (("row", rows, n_rows), ("column", cols, n_cols)) if v]
        shared = " and ".join(parts)
        single = len(rows) + len(cols) == 1 or (len(parts) == 1 and parts[0].startswith("every "))
        if len(rows) == n_rows > 1 and len(cols) == n_cols > 1:
            shared, single = "every row and column of the region", True
        overlap = (f" torchvision's bins overlap here: {shared} {'belongs' if single else 'each belong'} to two "
                   "neighbouring bins, because the snapped region's "
                   f"{sy2 - sy1 + 1} rows x {sx2 - sx1 + 1} columns do not divide evenly by {out} (each bin runs from "
                   f"floor(i x size / {out}) to ceil((i + 1) x size / {out})).") if shared else ""
        if model is not None:
            self.set_note(self._model_note(box, level, model) + overlap)
        else:
            C = f.shape[0]
            self.set_note(f"The slide's example: a {C}-channel feature map; RoI Pool snaps the box to a {C} x "
                          f"{sy2 - sy1 + 1} x {sx2 - sx1 + 1} region and pools it to {C} x {out} x {out}, every channel "
                          f"the same way (the channel slider shows one). Align − Pool (bottom right) is mostly a mean "
                          f"against a max, not the snapping; the snapping shows in where the bins lie (move x1 and "
                          f"watch them).{overlap}")
        c = self.channel.value
        self._drawn = dict(box=box, level=level, scale=scale, out=out, sampling_ratio=int(self.sampling.value),
                           aligned=bool(self.aligned.value), channel=c, p_out=p_out, a_out=a_out, model=model)
        self._pt, self._at = pt, at
        fm = f[c]
        self._map_shape = tuple(fm.shape)
        self._fmap = fm
        if level is not None:
            # which map, in words a student reads: its scale; an FPN's level by name as well
            where = (f"the {_scale_text(scale)}-scale map" if self._pooler.single
                     else f"FPN map '{level.name}' ({_scale_text(scale)} scale)")
            self.fig.layout.annotations[0].text = f"RoI Pool on {where}: snapped to cells"
            self.fig.layout.annotations[1].text = f"RoI Align on {where}: bilinear samples"
        lo, hi = float(fm.min()), float(fm.max())
        small = fm.numel() <= 100
        txt = [[fmt(v) for v in row] for row in fm.tolist()] if small else None
        many = out > 4
        # the outputs' numbers only where their cells can hold them (a third of the plot's height
        # each): from 4 x 4 on, the colours (the map's) and the caption's numbers say it
        numbered = out <= 3

        def cells(t):
            return [[_cell_text(v, many) for v in row] for row in t.tolist()] if numbered else None
        po, ao = p_out[c], a_out[c]
        d = ao - po
        lim = float(d.abs().max()) or 1.0
        bins = pt.bins.reshape(-1, 4).tolist()
        bin_rects = [(x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5) for x0, y0, x1, y1 in bins]
        maxima = pt.argmax_cells(c).reshape(-1, 2)
        maxima = maxima[maxima[:, 0] >= 0]
        with self.fig.batch_update():
            # the values are written on the RoI Pool map; the RoI Align map holds the sampling picture
            self.fig.data[0].update(z=fm.tolist(), text=txt, zmin=lo, zmax=hi)
            self.fig.data[1].update(z=fm.tolist(), text=None, zmin=lo, zmax=hi)
            self.fig.data[2].update(z=po.tolist(), text=cells(po), zmin=lo, zmax=hi)
            self.fig.data[3].update(z=ao.tolist(), text=cells(ao), zmin=lo, zmax=hi)
            self.fig.data[4].update(z=d.tolist(), text=cells(d), zmin=-lim, zmax=lim)
            if self.source == "live":      # the image in map coordinates: pixel centre u + 0.5 -> (u + 0.5) * scale
                self.fig.data[14].update(x0=0.5 * scale, y0=0.5 * scale, dx=scale, dy=scale)
            H, W_ = fm.shape
            # the map's cells exactly (a large map: around the box), integer ticks
            (vx0, vx1), (vy0, vy1) = _view(pt.scaled_box.tolist(), W_, H)
            for ax in ("xaxis", "xaxis2"):
                self.fig.layout[ax].update(_int_ticks(round(vx1 - vx0)), range=[vx0, vx1], autorange=False)
            for ax in ("yaxis", "yaxis2"):
                self.fig.layout[ax].update(_int_ticks(round(vy1 - vy0)), range=[vy1, vy0], autorange=False)
            for ax in ("xaxis3", "yaxis3", "xaxis4", "yaxis4", "xaxis5", "yaxis5"):
                self.fig.layout[ax].update(_int_ticks(out))
            sb = pt.scaled_box.tolist()
            self.fig.data[5].update(dict(zip("xy", rect_path([sb]))))
            self.fig.data[6].update(dict(zip("xy", rect_path(bin_rects))))
            self.fig.data[7].update(dict(zip("xy", _cell_outlines(maxima.tolist()))))
            self.fig.data[8].update(dict(zip("xy", rect_path(at.bins.reshape(-1, 4).tolist()))))
            pts = at.points.reshape(-1, 2)
            # the sampling points: 6 px dots, smaller where many fall in one cell (a 7x7 output with
            # 2x2 samples per bin on a small box would otherwise paint the box white)
            ax1, ay1, ax2, ay2 = at.scaled_box.tolist()
            cells = max(1e-6, (ax2 - ax1) * (ay2 - ay1))
            per_cell = len(pts) / cells
            self.fig.data[9].update(x=pts[:, 0].tolist(), y=pts[:, 1].tolist(),
                                    marker_size=6 if per_cell <= 2 else max(2, round(6 / per_cell ** 0.5)))
        self._reset_steps(keep=True)

    # ------------------------------------------------------------------ live: the model's pooler
    def _deviations(self, out: int) -> list[str]:
        """The drawn parameters that differ from the model's box pooler, as page text."""
        m = self._pooler
        sr, al = self.sampling.value, self.aligned.value
        dev = []
        if (out, out) != m.output_size:
            dev.append(f"output {out}x{out} (the model uses {m.output_size[0]}x{m.output_size[1]})")
        if not (sr == m.sampling_ratio or (sr <= 0 and m.sampling_ratio <= 0)):
            dev.append(f"sampling ratio {_sr_text(sr)} (the model uses {_sr_text(m.sampling_ratio)})")
        if al != m.aligned:
            dev.append(f"aligned {al} (the model uses {m.aligned}: MultiScaleRoIAlign calls roi_align without it)")
        return dev

    def _model_check(self, box, out, level, a_out) -> dict:
        """The comparison with the model's own pooled features, or why it does not apply."""
        from ..models import live_inputs

        idx = live_inputs.find_proposal(self._trace, box)
        dev = self._deviations(out)
        diff, why = None, ""
        if idx is None:
            why = "this box is not one of the model's proposals (pick one in the list)"
        elif dev:
            why = "this box is drawn with " + "; ".join(dev)
        else:
            diff = float((a_out - self._trace.box_features[idx]).abs().max())
        return dict(proposal=idx, deviations=dev, diff=diff, why=why)

    def _model_note(self, box, level, model) -> str:
        """The live note: which map is pooled and why (the level formula), and how the drawing
        relates to the model's own pooling of this box."""
        m = self._pooler
        esc = html.escape
        if level.single:
            where = (f"its one feature map '{esc(level.name)}' (scale {_scale_text(level.scale)}): there is no FPN, "
                     "so MultiScaleRoIAlign pools every box from that map, whatever its size")
        else:
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            k0, s0 = m.canonical_level, m.canonical_scale
            where = (f"map '{esc(level.name)}' (scale {_scale_text(level.scale)}), the level the model's LevelMapper "
                     f"gives this box: k = floor(k0 + log2(√(wh)/{s0:g})) = floor({k0:g} + log2(√({w:.1f}·{h:.1f})"
                     f"/{s0:g})) = floor({k0:g} + log2({level.size:.1f}/{s0:g})) = floor({level.raw:.2f}) = "
                     f"{math.floor(level.raw)}, clamped to [{m.k_min}, {m.k_max}]: k = {level.k}, map "
                     f"'{esc(level.name)}'")
        drawn = (f"Drawn: a box in the model's input frame, pooled from {where}; under the RoI Align map, the "
                 f"image region each cell sees (channel {self.channel.value}: the most active inside the box).<br>")
        if model["deviations"]:
            drawn += (f"<span style='color:{VERMILLION}'>Drawn with "
                      + "; ".join(esc(d) for d in model["deviations"]) + ".</span> ")
        else:
            drawn += (f"Drawn with the model's output {m.output_size[0]}x{m.output_size[1]}, sampling ratio "
                      f"{_sr_text(m.sampling_ratio)}, aligned {m.aligned}. ")
        if model["diff"] is not None:
            return drawn + (f"This box is the model's proposal #{model['proposal']}: the last check compares "
                            "RoI Align (all channels) with the model's own pooled features for it.")
        return drawn + (f"The check against the model's own pooled features applies to its proposals drawn with "
                        f"its parameters only: {esc(model['why'])}.")

    def _state(self) -> dict:
        """What is drawn now, as tensors with their parameters (nothing is recomputed).

        Keys (besides ``source``, ``step``, ``n_steps``):
            ``box``: ``(4,)`` float32 ``(x1, y1, x2, y2)`` in image coordinates (live: the model's
                input frame, after its resize; lecture: feature cells, scale 1).
            ``level``: name of the feature map pooled (live: the one the model's ``LevelMapper``
                assigns to the box; lecture: None, the lecture's 8x8 map).
            ``level_k``: its FPN level ``k`` (live; None in lecture).
            ``spatial_scale``: feature cells per image pixel used for both ops.
            ``sampling_ratio``: RoI Align's samples per bin along each axis (0 or negative: adaptive).
            ``aligned``: RoI Align's half-pixel shift.
            ``output_size``: ``(ph, pw)``.
            ``channel``: the channel shown in the figure (the outputs hold every channel).
            ``roi_pool``: ``(C, ph, pw)`` RoI Pool output (every channel).
            ``roi_align``: ``(C, ph, pw)`` RoI Align output (every channel).
            ``proposal``: live: index into ``trace.proposals`` of the proposal equal to the box,
                else None; None in lecture.
            ``model``: live: the model's values, a dict with ``output_size``, ``sampling_ratio``,
                ``aligned``, ``level`` (the map it pools this box from), ``spatial_scale`` (that
                map's), ``featmap_names``, ``scales``, ``k_min``, ``k_max``, ``canonical_scale``,
                ``canonical_level``, ``pooled`` (``(C, ph, pw)`` its own pooled features
                ``trace.box_features[proposal]``, None when the box is no proposal),
                ``deviations`` (page text for each drawn parameter that differs from the model's),
                ``diff`` (max |RoI Align - pooled| over all channels, None when not compared) and
                ``why`` (why not, "" when compared); None in lecture.
        """
        d = self._drawn
        level, model = d["level"], d["model"]
        st = dict(box=d["box"].clone(), level=None if level is None else level.name,
                  level_k=None if level is None else level.k, spatial_scale=float(d["scale"]),
                  sampling_ratio=d["sampling_ratio"], aligned=d["aligned"],
                  output_size=(d["out"], d["out"]), channel=d["channel"],
                  roi_pool=d["p_out"].clone(), roi_align=d["a_out"].clone(), proposal=None, model=None)
        if model is not None:
            m, idx = self._pooler, model["proposal"]
            st["proposal"] = idx
            st["model"] = dict(output_size=m.output_size, sampling_ratio=m.sampling_ratio, aligned=m.aligned,
                               level=level.name, spatial_scale=level.scale, featmap_names=m.names,
                               scales=m.scales, k_min=m.k_min, k_max=m.k_max, canonical_scale=m.canonical_scale,
                               canonical_level=m.canonical_level,
                               pooled=None if idx is None else self._trace.box_features[idx].clone(),
                               deviations=list(model["deviations"]), diff=model["diff"], why=model["why"])
        return st

    def n_steps(self) -> int:
        return int(np.prod(self._at.points.shape[:4])) or 1

    def frame(self, k: int) -> dict:
        at, pt = self._at, self._pt
        ph, pw, gh, gw = at.points.shape[:4]
        if gh * gw == 0:
            return {"data": {10: {"x": [], "y": []}, 11: {"x": [], "y": [], "text": []}, 12: {"x": [], "y": []},
                             13: {"x": [], "y": []}, 15: {"x": [], "y": []}, 16: {"x": [], "y": []},
                             17: {"x": [], "y": [], "text": []}},
                    "caption": "this region is empty: RoI Align outputs zeros"}
        i, rest = divmod(k, pw * gh * gw)
        j, rest = divmod(rest, gh * gw)
        a, b = divmod(rest, gw)
        x, y = at.points[i, j, a, b].tolist()
        nb = at.neighbours[i, j, a, b].tolist()
        w = at.weights[i, j, a, b].tolist()
        x0, y0, x1, y1 = pt.bins[i, j].tolist()
        c = self.channel.value
        value = at.samples[c, i, j, a, b].item()
        fmap = self._fmap
        # the neighbours' values as drawn (0 outside the map, where bilinear sampling reads nothing)
        vals = [float(fmap[ny, nx]) if 0 <= nx < fmap.shape[1] and 0 <= ny < fmap.shape[0] else 0.0
                for nx, ny in nb]
        out_a, out_p = float(self._drawn["a_out"][c, i, j]), float(self._drawn["p_out"][c, i, j])
        # a small map: each neighbour's value in its cell and its weight just outside the 2x2 block, at the
        # cell's outer corner; a large one (cells smaller than the text): value and weight together outside
        # the 2x2 block, on the neighbour's side of the sample point
        outward = [("top " if ny <= y else "bottom ") + ("left" if nx <= x else "right") for nx, ny in nb]
        small = max(self._map_shape) <= 12
        if small:
            values = {"x": [n[0] for n in nb], "y": [n[1] for n in nb], "text": [fmt(v) for v in vals],
                      "textposition": "middle center"}
            # a label that would run off the map onto the tick labels (its ~1.4 cells of text past the
            # map's edge) turns inward along the edge, clear of the numbered cells
            Hm, Wm = self._map_shape
            def inward(nx, ny, pos):
                v, h = pos.split()
                if h == "left" and nx <= 1:
                    h = "right"
                elif h == "right" and nx >= Wm - 2:
                    h = "left"
                if v == "top" and ny <= 0:
                    v = "bottom"
                elif v == "bottom" and ny >= Hm - 1:
                    v = "top"
                return f"{v} {h}"
            weights = {"x": [nx + (-0.5 if nx <= x else 0.5) for nx, ny in nb],
                       "y": [ny + (-0.5 if ny <= y else 0.5) for nx, ny in nb],
                       "text": [f"×{wt:.2f}" for wt in w],
                       "textposition": [inward(nx, ny, pos) for (nx, ny), pos in zip(nb, outward)]}
        else:
            values = {"x": [n[0] for n in nb], "y": [n[1] for n in nb],
                      "text": [f"{fmt(v)} ×{wt:.2f}" for v, wt in zip(vals, w)], "textposition": outward}
            weights = {"x": [], "y": [], "text": []}
        terms = " + ".join(f"{wt:.2f}·f({nx},{ny})" for (nx, ny), wt in zip(nb, w) if wt)
        caption = (
            f"bin ({i}, {j}), sample {a * gw + b + 1}/{gh * gw} at "
            f"({x:.2f}, {y:.2f}): f = {terms or '0 (outside the map)'} = {fmt(value)} (weights "
            # the formula on one line: a break inside "|x - x_i|" reads as two formulas
            f"<span style='white-space:nowrap'>max(0, 1-|x-x_i|)·max(0, 1-|y-y_j|)</span>); "
            f"output = mean of {gh * gw} samples = {fmt(out_a)}. "
            f"RoI Pool: cells x {x0}..{x1 - 1}, y {y0}..{y1 - 1}, max = {fmt(out_p)}.")
        return {"caption": caption, "data": {
            10: {"x": [x], "y": [y]},
            11: values,
            17: weights,
            12: dict(zip("xy", rect_path([(x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5)]))),
            13: dict(zip("xy", _cell_outlines(nb))),
            15: dict(zip("xy", _cell_outlines([(j, i)]))),
            16: dict(zip("xy", _cell_outlines([(j, i)]))),
        }}
