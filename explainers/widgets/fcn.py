"""A fully convolutional network inside: shapes going down and up, feature maps at one pixel,
the receptive field growing with depth, and where the pooling switches travel."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
from plotly.subplots import make_subplots

from ..models.fcn import (
    AUTOGRAD_MARGIN,
    STAGES,
    SWITCHES,
    autograd_field,
    autograd_window,
    capture_stages,
    mask_box,
    own_output_check,
    pixel_path,
    shapes_check,
    unpool_check,
)
from ..models.render import class_hex
from ._base import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    SKY,
    VERMILLION,
    Explainer,
    png_uri,
    rect_path,
)

#: the lecture's picture: a fixed, clear shapes scene (seed, size) and its pixel
LECTURE_SCENE = (7, (160, 160))
#: half the side of the window of cells shown around a switch (pooling / unpooling steps)
WINDOW = 4
POOL_OF = {v: k for k, v in SWITCHES.items()}            # pool stage -> unpool stage


def _channel_options():
    return [("most active at the pixel", -1)] + [(str(i), i) for i in range(64)]


#: random images added to the page's own for the autograd check of the receptive field
AUTOGRAD_RANDOM = 3


class FCNExplainer(Explainer):
    """SegNet stage by stage (Long et al. 2015, Noh et al. 2015): the real tensor shapes along the
    encoder and the decoder, each stage's feature map with the chosen pixel's cell, the receptive
    field of that cell on the image, and the switches max pooling keeps for max unpooling."""

    image_free = ('channel',)

    title = "Inside a fully convolutional network: down, then up again"

    def _build(self):
        if self.source == "lecture":
            from ..models import make_scene

            seed, size = LECTURE_SCENE
            scene = make_scene(seed, size=size)
            self._image = scene.image
            # the object pixel nearest the centre: a pixel worth following
            ys, xs = np.nonzero(scene.semantic)
            H, Wd = scene.semantic.shape
            i = int(np.argmin((ys - H / 2) ** 2 + (xs - Wd / 2) ** 2)) if len(ys) else 0
            start = (int(ys[i]), int(xs[i])) if len(ys) else (H // 2, Wd // 2)
            model = None
        else:
            self._image = self.live_image()
            model = self.model
            start = None
        self._model = model
        self._cap = capture_stages(model, self._image, "the FCN page")
        H, Wd = self._cap.size
        start = start or (H // 2, Wd // 2)
        self.row = W.IntSlider(value=start[0], min=0, max=H - 1, description="pixel row",
                               layout=W.Layout(width="330px"), continuous_update=False)
        self.col = W.IntSlider(value=start[1], min=0, max=Wd - 1, description="column",
                               layout=W.Layout(width="330px"), continuous_update=False)
        self.channel = W.Dropdown(options=_channel_options(), value=-1, description="channel",
                                  layout=W.Layout(width="300px"))
        for w in (self.row, self.col, self.channel):
            w.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.row, self.col, self.channel])
        fig = make_subplots(2, 3, specs=[[{"colspan": 3}, None, None], [{}, {}, {}]], row_heights=[0.34, 0.66],
                            vertical_spacing=0.1, horizontal_spacing=0.07,
                            subplot_titles=("", "image: pixel and receptive field", "feature map", "feature vector"))
        # (make_subplots gives the strip no title: annotations 0, 1, 2 are the bottom row's titles)
        # 0 encoder blocks, 1 decoder blocks, 2 current stage outline, 3 shape labels, 4 names, 5 switch arcs
        fig.add_scatter(x=[], y=[], mode="lines", fill="toself", fillcolor=SKY, line=dict(color=BLUE, width=1),
                        hoverinfo="skip", row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", fill="toself", fillcolor=ORANGE, line=dict(color=VERMILLION, width=1),
                        hoverinfo="skip", row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=5), hoverinfo="skip", row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="text", text=[], textfont=dict(size=16), hoverinfo="skip", row=1, col=1,
                        textposition="bottom center")
        fig.add_scatter(x=[], y=[], mode="text", text=[], textfont=dict(size=16, color="#222"), hoverinfo="skip",
                        row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=GREEN, width=3, dash="dot"), hoverinfo="skip",
                        row=1, col=1)
        # 6 image, 7 earlier fields, 8 this stage's field, 9 the pixel
        fig.add_image(source=png_uri(np.zeros((1, 1, 3), np.uint8)), row=2, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=GREY, width=2), hoverinfo="skip", row=2, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), hoverinfo="skip", row=2, col=1)
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(symbol="cross-thin-open", size=18,
                        line=dict(width=3, color=VERMILLION)), hoverinfo="skip", row=2, col=1)
        # 10 feature map, 11 the cell
        fig.add_heatmap(z=[[0]], colorscale="Viridis", showscale=False, row=2, col=2)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), hoverinfo="skip", row=2, col=2)
        # 12 feature vector, 13 switch window, 14 switches, 15 the cell's block in the window
        fig.add_bar(x=[], y=[], marker=dict(color=[]), row=2, col=3)
        fig.add_heatmap(z=[[None]], colorscale="Viridis", showscale=False, xgap=1, ygap=1, row=2, col=3)
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(symbol="x-thin-open", size=16,
                        line=dict(width=3, color=ORANGE)), hoverinfo="skip", row=2, col=3)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), hoverinfo="skip", row=2, col=3)
        fig.update_xaxes(visible=False, row=1, col=1)
        fig.update_yaxes(visible=False, row=1, col=1)
        for c in (1, 2):
            # square pixels within the panel (the domain shrinks, the ranges stay the map's own)
            fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain", row=2, col=c)
            fig.update_yaxes(showgrid=False, zeroline=False, autorange="reversed", scaleanchor=f"x{c + 1}",
                             constrain="domain", row=2, col=c)
        self._use_figure(fig, 560)
        self.fig.update_layout(margin=dict(l=40, r=20, t=40, b=30))
        # the strip's key: what its colours and its dotted arcs mean
        self.fig.add_annotation(
            text=(f"<span style='color:{SKY}'>■</span> down (encoder) &nbsp; <span style='color:{ORANGE}'>■</span> "
                  f"up (decoder) &nbsp; <span style='color:{GREEN}'>┈</span> pooling switches, reused by the "
                  "unpooling they point to &nbsp; under each block: channels, height×width"),
            x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="bottom", yshift=4, showarrow=False,
            font=dict(size=16))
        self._draw_static()

    # ------------------------------------------------------------------ drawing that never changes
    def _draw_static(self):
        cap = self._cap
        Hp = cap.stages["input"].shape[1]
        xs_e, ys_e, xs_d, ys_d, tx, ty, labels, nx, ny, names = [], [], [], [], [], [], [], [], [], []
        self._blocks = []
        decoder = False
        for i, (name, _, _) in enumerate(STAGES):
            C, h, w = cap.stages[name].shape
            decoder = decoder or name.startswith("unpool")
            half_h = 0.5 * h / Hp
            half_w = 0.12 + 0.3 * np.log2(C) / 6
            box = (i - half_w, -half_h, i + half_w, half_h)
            self._blocks.append(box)
            bx, by = rect_path([box])
            (xs_d if decoder else xs_e).extend(bx)
            (ys_d if decoder else ys_e).extend(by)
            tx.append(i)
            ty.append(-0.56)          # just under the tallest block (its text hangs below: never on a block)
            labels.append(f"{C}<br>{h}×{w}")
            nx.append(i)
            ny.append(0.68)
            names.append(name)
        arcs_x, arcs_y = [], []
        idx = {n: i for i, (n, _, _) in enumerate(STAGES)}
        for unp, pool in SWITCHES.items():
            a, b = idx[pool], idx[unp]
            t = np.linspace(0, np.pi, 30)
            arcs_x += list((a + b) / 2 - (b - a) / 2 * np.cos(t)) + [None]
            arcs_y += list(0.86 + 0.3 * np.sin(t)) + [None]      # above the stage names
        img = np.asarray(cap.image.permute(1, 2, 0).clamp(0, 1).numpy() * 255, dtype=np.uint8)
        with self.fig.batch_update():
            self.fig.data[0].update(x=xs_e, y=ys_e)
            self.fig.data[1].update(x=xs_d, y=ys_d)
            self.fig.data[3].update(x=tx, y=ty, text=labels)
            self.fig.data[4].update(x=nx, y=ny, text=names)
            self.fig.data[5].update(x=arcs_x, y=arcs_y)
            self.fig.data[6].update(source=png_uri(img), x0=0, y0=0, dx=1, dy=1)
            self.fig.layout.xaxis.update(range=[-0.6, len(STAGES) - 0.4])
            self.fig.layout.yaxis.update(range=[-1.5, 1.2])
            H, Wd = cap.size
            self.fig.layout.xaxis2.update(range=[-0.5, Wd - 0.5])
            self.fig.layout.yaxis2.update(range=[H - 0.5, -0.5])

    # ------------------------------------------------------------------ data
    def _channel(self, point) -> int:
        """The channel drawn at a stage: the one chosen, or the most active at the pixel (largest
        |value|); at the class scores, the pixel's predicted class (the most negative score is the
        class it is surest the pixel is not: review s12c)."""
        c, vector = self.channel.value, point.vector
        if c >= 0:
            return min(c, len(vector) - 1)
        return int(vector.argmax()) if point.name == "scores" else int(vector.abs().argmax())

    def refresh(self):
        cap = self._cap
        row, col = self.row.value, self.col.value
        self._path = pixel_path(cap, row, col)
        self._channels = [self._channel(p) for p in self._path]
        own = own_output_check(cap)
        u3 = unpool_check(cap, "unpool3")
        u2 = unpool_check(cap, "unpool2")
        wrong_shapes = shapes_check(cap)
        key = (row, col)
        if getattr(self, "_grad_key", None) != key:
            # this image and 3 random ones: one image's switches and ReLUs open only some paths; together
            # they reach the whole field (about 0.1 s on 2 CPU cores)
            self._grad = autograd_field(self._model, cap.image, row, col, n_random=AUTOGRAD_RANDOM,
                                        box=self._path[-1].box)
            self._grad_key = key
        out_box = self._path[-1].box
        wx1, wy1, wx2, wy2 = autograd_window(out_box, cap.size)
        whole = (wx1, wy1, wx2, wy2) == (0, 0, cap.size[1], cap.size[0])
        x1, y1, x2, y2 = out_box
        inside = np.zeros(tuple(self._grad.shape), dtype=bool)
        inside[y1:y2, x1:x2] = True
        outside = int((self._grad.numpy() & ~inside).sum())
        gbox = mask_box(self._grad)
        self._checks = {"own_logits": own, "unpool3": max(u3), "unpool2": max(u2), "shapes": wrong_shapes,
                        "autograd_outside": outside}
        self.set_check("the model's own output logits (last stage)", own, more=[
            ("F.max_unpool2d with pool 3's switches (unpool 3)", max(u3)),
            ("F.max_unpool2d with pool 2's switches (unpool 2)", max(u2)),
            ("the real tensors' shapes (stages whose shape differs)", float(wrong_shapes), wrong_shapes == 0),
            ("autograd's field (pixels with a gradient outside the box; its extent is the box)", float(outside),
             outside == 0 and gbox == tuple(out_box)),
        ])
        where = ("the lecture's picture with real numbers: the bundled SegNet on a fixed shapes scene"
                 if self.source == "lecture" else "the live SegNet on this image")
        self.set_note(
            f"Drawn: {where}, every stage's output as captured by forward hooks. The receptive field is the "
            f"box of pixels that can change the cell; autograd on the real network (this image"
            + ("" if whole else f", a {wx2 - wx1}×{wy2 - wy1} window around the box: {AUTOGRAD_MARGIN} px more "
                                f"on each side") + ") gives "
            f"non-zero gradients at the output pixel over rows {gbox[1] if gbox else '-'}-"
            f"{gbox[3] - 1 if gbox else '-'}, columns {gbox[0] if gbox else '-'}-{gbox[2] - 1 if gbox else '-'}; "
            f"the box is rows {y1}-{y2 - 1}, columns {x1}-{x2 - 1}.")
        self._reset_steps(keep=True)

    def _state(self) -> dict:
        """``pixel`` (row, col) in the image; ``stages``: per stage, in order, a dict with ``name``,
        ``shape`` (C, h, w), ``cell`` (row, col) under the pixel, ``vector`` (C,) its feature vector,
        ``box`` (x1, y1, x2, y2) its receptive field on the image (ends exclusive), ``channel`` the
        channel drawn, ``jump`` (pixels per cell) and ``size`` (the nominal receptive field side by the
        layer arithmetic: ``box`` is the exact field of this pixel, which depends on where it sits,
        as pooling, unpooling and the stride-2 transposed convolution treat positions unequally); ``switches``: pool stage -> (C, h, w) flat argmax indices
        (the same tensors its unpooling stage uses); ``logits`` (K, H, W): the model's own output;
        ``checks``: the max differences of the check line (``own_logits``, ``unpool3``, ``unpool2``,
        ``shapes``: stages whose shape differs, ``autograd_outside``: pixels with a gradient outside
        the output pixel's box); ``autograd`` (H, W) bool: where that gradient is non-zero."""
        cap = self._cap
        stages = []
        for p, ch in zip(self._path, self._channels):
            f = cap.fields["padded" if p.name == "input" else p.name]
            stages.append(dict(name=p.name, shape=p.shape, cell=p.cell, vector=p.vector, box=p.box, channel=ch,
                               jump=f.jump, size=f.size))
        return {"pixel": (self.row.value, self.col.value), "stages": stages, "switches": dict(cap.switches),
                "logits": cap.logits, "checks": dict(self._checks), "autograd": self._grad}

    def n_steps(self) -> int:
        return len(STAGES)

    # ------------------------------------------------------------------ one step
    def _window(self, k: int, name: str, ch: int):
        """For a pooling / unpooling stage: ``(map, (r0, c0), switch cells, block)`` of a window of
        the full-resolution map around the pixel's cell (its top-left cell is ``(r0, c0)``), the
        switches in it ``(row, col)`` and the top-left ``(col, row)`` of the 2x2 block of the pixel's
        pooled cell, both in the map's own rows and columns (those the caption names)."""
        cap = self._cap
        pool = name if name in POOL_OF else SWITCHES[name]
        pidx = [n for n, _, _ in STAGES].index(pool)
        big = cap.stages[STAGES[pidx - 1][0]] if name == pool else cap.stages[name]   # pool input / unpool output
        Hb, Wb = big.shape[1:]
        cell = self._path[pidx].cell
        # aligned on the 2x2 blocks: WINDOW x WINDOW whole blocks, the pixel's block among them
        r0 = 2 * max(0, min(cell[0] - WINDOW // 2, Hb // 2 - WINDOW))
        c0 = 2 * max(0, min(cell[1] - WINDOW // 2, Wb // 2 - WINDOW))
        win = big[ch, r0:r0 + 2 * WINDOW, c0:c0 + 2 * WINDOW]
        sw = cap.switches[pool][ch].reshape(-1)
        rows, cols = (sw // Wb).numpy(), (sw % Wb).numpy()
        keep = (rows >= r0) & (rows < r0 + 2 * WINDOW) & (cols >= c0) & (cols < c0 + 2 * WINDOW)
        block = (2 * cell[1], 2 * cell[0])
        return win, (r0, c0), list(zip(rows[keep].tolist(), cols[keep].tolist())), block

    def frame(self, k: int) -> dict:
        cap, path = self._cap, self._path
        p, ch = path[k], self._channels[k]
        name, desc = STAGES[k][0], STAGES[k][1]
        C, h, w = p.shape
        data = {}
        bx, by = rect_path([self._blocks[k]])
        data[2] = {"x": bx, "y": by}
        # image: this stage's field and the earlier ones
        ex, ey = rect_path([(q.box[0] - 0.5, q.box[1] - 0.5, q.box[2] - 0.5, q.box[3] - 0.5) for q in path[:k]])
        data[7] = {"x": ex, "y": ey}
        x1, y1, x2, y2 = p.box
        fx, fy = rect_path([(x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5)])
        data[8] = {"x": fx, "y": fy}
        data[9] = {"x": [self.col.value], "y": [self.row.value]}
        # this stage's map, its chosen channel, and the pixel's cell
        fmap = cap.stages[name][ch]
        data[10] = {"z": fmap.numpy(), "zmin": float(fmap.min()), "zmax": float(fmap.max())}
        r, c = p.cell
        cx, cy = rect_path([(c - 0.5, r - 0.5, c + 0.5, r + 0.5)])
        data[11] = {"x": cx, "y": cy}
        layout = {"xaxis3": {"range": [-0.5, w - 0.5]}, "yaxis3": {"range": [h - 0.5, -0.5]}}
        ann = self.fig.layout.annotations
        titles = {0: f"image: field {x2 - x1}×{y2 - y1} px",
                  1: f"{name} channel {ch}: {C}×{h}×{w}"}
        switches = name in SWITCHES or name in POOL_OF
        if switches:
            win, (r0, c0), sw, (bc, br) = self._window(k, name, ch)
            data[12] = {"x": [], "y": [], "marker": {"color": []}}
            # drawn at the map's own rows and columns: cell (19, 21) of the caption is at (19, 21)
            data[13] = {"z": win.numpy(), "x0": c0, "y0": r0, "zmin": float(win.min()), "zmax": float(win.max())}
            data[14] = {"x": [q[1] for q in sw], "y": [q[0] for q in sw]}
            qx, qy = rect_path([(bc - 0.5, br - 0.5, bc + 1.5, br + 1.5)])
            data[15] = {"x": qx, "y": qy}
            n = 2 * WINDOW
            layout.update({"xaxis4": {"range": [c0 - 0.5, c0 + n - 0.5], "autorange": False,
                                      "tickmode": "auto", "tickvals": None, "type": "linear"},
                           "yaxis4": {"range": [r0 + n - 0.5, r0 - 0.5], "autorange": False}})
            pool = name if name in POOL_OF else SWITCHES[name]
            # the window is the 2x finer map (the pool's input, the unpooling's output), numbered in its
            # own rows and columns; the 2x2 outline is the block that the pooled cell covers
            pr, pc = self._path[[s[0] for s in STAGES].index(pool)].cell
            where = f" on {STAGES[[s[0] for s in STAGES].index(pool) - 1][0]}" if name == pool else ""
            titles[2] = f"✕ {pool}'s switches{where}; ▢ = {pool} cell ({pr}, {pc})"
        else:
            v = p.vector
            colours = ([class_hex(i) for i in range(C)] if name == "scores"
                       else [VERMILLION if i == ch else SKY for i in range(C)])
            xs = cap.classes[:C] if name == "scores" else list(range(C))
            data[12] = {"x": xs, "y": v.tolist(), "marker": {"color": colours}}
            data[13] = {"z": [[None]], "x0": None, "y0": None, "zmin": None, "zmax": None}   # as built
            data[14] = {"x": [], "y": []}
            data[15] = {"x": [], "y": []}
            lo, hi = float(min(0.0, v.min())), float(max(0.0, v.max()))
            pad = 0.08 * (hi - lo or 1.0)
            # channel numbers as whole numbers (at most ~16 ticks), class names as they are
            ticks = ({"tickmode": "auto", "tickvals": None} if name == "scores" else
                     {"tickmode": "array", "tickvals": list(range(0, C, -(-C // 16)))})
            # the axis type said each time: plotly keeps the type it first guessed (numbers for the
            # channels), and class names on a number axis draw no bars at all
            layout.update({"xaxis4": {"autorange": True, "range": None, **ticks,
                                      "type": "category" if name == "scores" else "linear"},
                           "yaxis4": {"range": [lo - pad, hi + pad], "autorange": False}})
            titles[2] = f"feature vector at cell ({r}, {c}): {C} values"
        for i, t in titles.items():
            layout[f"annotations[{i}].text"] = t
        f = cap.fields["padded" if name == "input" else name]
        jump = f"{f.jump}" if f.jump.denominator == 1 else f"{float(f.jump):g}"
        caption = (f"<b>{k + 1}/{len(STAGES)} {html.escape(name)}</b>: {html.escape(desc)} → <b>{C}×{h}×{w}</b>. "
                   f"One cell = {jump}×{jump} pixels; pixel ({self.row.value}, {self.col.value}) falls in cell "
                   f"({r}, {c}), which sees a {x2 - x1}×{y2 - y1} box of the image.")
        if name in POOL_OF:
            caption += f" Each 2×2 block keeps its maximum and remembers where it was (✕): {POOL_OF[name]} reuses these."
        elif name in SWITCHES:
            caption += (f" Each value goes back to the position {SWITCHES[name]} remembered (✕); every other cell "
                        "is 0.")
        return {"data": data, "layout": _flatten_annotations(layout, ann), "caption": caption}


def _flatten_annotations(layout: dict, ann) -> dict:
    """Annotation titles as a full ``annotations`` list (plotly updates lists whole)."""
    texts = {int(k[len("annotations["):-len("].text")]): v for k, v in layout.items() if k.startswith("annotations[")}
    out = {k: v for k, v in layout.items() if not k.startswith("annotations[")}
    if texts:
        items = []
        for i, a in enumerate(ann):
            d = a.to_plotly_json()
            if i in texts:
                d["text"] = texts[i]
            items.append(d)
        out["annotations"] = items
    return out
