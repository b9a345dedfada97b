"""Anchors at every feature-map cell, objectness, box corrections, top-k RPN proposals."""
from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from .. import ops
from ..models.live_inputs import anchor_level, detector_trace, rpn_recall
from ..models.render import to_uint8
from ._base import GREY, ORANGE, SKY, VERMILLION, Explainer, png_uri, rect_path

#: the slide: a 3 x 640 x 480 image gives 512 x 20 x 15 features; K = 3 sizes x 3 ratios
LECTURE = dict(image_size=(640, 480), feature_size=(20, 15), sizes=(64, 128, 256), ratios=(0.5, 1.0, 2.0))
VIEWS = [("anchors of one cell", "anchors"), ("top-k anchors (no correction)", "before"),
         ("top-k after box corrections", "after"), ("after the RPN's NMS", "nms")]


class AnchorsExplainer(Explainer):
    """The feature-map grid over the image; the K anchors of a cell; the RPN's objectness;
    the top-k proposals before and after the predicted corrections and the NMS."""

    title = "Anchors and Region Proposal Network proposals"
    play_interval = 300

    def __init__(self, source: str = "lecture", image=None, model=None, gt_boxes=None, iou_threshold: float = 0.5):
        """``gt_boxes (G, 4)`` on ``image`` (live): the objects whose recall is plotted per stage;
        by default the bundled scene's own boxes (none for an image of yours unless given)."""
        self.gt_boxes, self.iou_threshold = gt_boxes, iou_threshold
        super().__init__(source, image, model)

    def _build(self):
        self.view = W.Dropdown(options=VIEWS, value="anchors", description="show",
                               layout=W.Layout(width="340px"))
        self.top_k = W.IntSlider(value=10, min=1, max=100, description="top k", layout=W.Layout(width="300px"))
        self.view.observe(lambda _: self.guard(self.refresh), "value")
        self.top_k.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.view, self.top_k] if self.source == "live" else [])
        right = "objectness (best anchor per cell)" if self.source == "live" else "the K anchor shapes"
        live = self.source == "live"
        fig = make_subplots(1, 3 if live else 2, column_widths=[0.5, 0.27, 0.23] if live else [0.62, 0.38],
                            subplot_titles=("image and feature grid", right) + (("recall per stage",) if live else ()),
                            horizontal_spacing=0.07)
        fig.add_image(source=png_uri(np.full((8, 8, 3), 245, np.uint8)), row=1, col=1, hoverinfo="skip")          # 0
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=GREY, width=0.7), row=1, col=1)    # 1 grid
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=2.5), row=1, col=1)  # 2 boxes
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(size=12, color=VERMILLION), row=1, col=1)  # 3 centre
        fig.add_heatmap(z=[[0]], colorscale="Viridis", showscale=False, row=1, col=2)               # 4
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=SKY, width=2), row=1, col=2)       # 5 shapes
        fig.add_scatter(x=[], y=[], mode="markers", row=1, col=2,                                    # 6 cell
                        marker=dict(symbol="square-open", size=16, color=VERMILLION, line=dict(width=3)))
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False)
        fig.update_xaxes(showgrid=False, zeroline=False)
        fig.update_yaxes(scaleanchor="x", row=1, col=1)
        # the anchor shapes (lecture) and the objectness grid (live): one unit as long on both axes,
        # so an aspect ratio 2 anchor is drawn twice as high as wide
        fig.update_yaxes(scaleanchor="x2", constrain="domain", row=1, col=2)
        fig.update_xaxes(constrain="domain", row=1, col=2)
        if live:                                                                                      # 7 recall
            fig.add_bar(x=[], y=[], text=[], textposition="auto", textfont=dict(size=16), marker_color=SKY,
                        row=1, col=3)
            fig.update_yaxes(autorange=False, range=[0, 1.05], showgrid=True, title_text="objects found",
                             row=1, col=3)
            fig.update_xaxes(tickangle=-35, row=1, col=3)
        self._use_figure(fig, 560)
        self._load()

    def _load(self):
        if self.source == "lecture":
            H, W_ = LECTURE["image_size"]
            self._img = np.full((H, W_, 3), 245, np.uint8)
            self._image_size, self._feature_size = (H, W_), LECTURE["feature_size"]
            self._sizes, self._ratios = LECTURE["sizes"], LECTURE["ratios"]
            self._rpn = None
            return
        tr = detector_trace(self.model, self.live_image(), "the anchors page")
        self._trace = tr
        self._gt = self.gt_boxes
        if self._gt is None and self.image is None:       # the bundled scene knows its objects
            from ..models import make_scene

            self._gt = make_scene(10_000_005).boxes
        self._img = to_uint8(tr.input_image)
        self._image_size = tuple(tr.input_tensor.shape[-2:])
        lv = anchor_level(tr, 0)                       # with an FPN: the finest level
        self._feature_size, self._sizes, self._ratios = lv.feature_size, lv.sizes, lv.ratios
        self._model_anchors = lv.anchors
        if lv.objectness is None:     # a one-stage detector: anchors, but no RPN
            self._rpn = None
            self.view.options, self.view.disabled, self.top_k.disabled = VIEWS[:1], True, True
            self.set_note(f"This model has no region proposal network (a one-stage detector): it classifies "
                          f"and corrects every anchor directly. Drawn: its anchors on the finest level, "
                          f"{lv.feature_size[1]}x{lv.feature_size[0]} cells.")
        else:
            self._rpn = dict(anchors=lv.anchors, objectness=lv.objectness, deltas=lv.deltas,
                             proposals=tr.proposals)
        self.top_k.max = min(300, len(lv.anchors))

    def refresh(self):
        anchors, at = ops.anchor_grid(self._image_size, self._feature_size, self._sizes, self._ratios)
        Hf, Wf = self._feature_size
        ref = ops.reference_anchors(self._image_size, self._feature_size, self._sizes, self._ratios)
        diff = float((anchors - ref).abs().max())
        more = []
        if self.source == "live":
            more.append(("the model's own anchors", float((anchors - self._model_anchors).abs().max())))
        if self._rpn is not None:
            d = self._rpn["deltas"]
            ours = ops.decode_boxes(d, anchors, ops.RPN_WEIGHTS)
            theirs = ops.reference_decode_boxes(d, anchors, ops.RPN_WEIGHTS)
            more.append(("BoxCoder.decode (box corrections)", float((ours - theirs).abs().max())))
        self.set_check("torchvision's AnchorGenerator", diff, more=more)
        self._anchors, self._at = anchors, at
        H, W_ = self._image_size
        sy, sx = at.stride
        grid_x, grid_y = [], []
        for c in range(Wf + 1):
            grid_x += [c * sx - sx / 2, c * sx - sx / 2, None]
            grid_y += [-sy / 2, Hf * sy - sy / 2, None]
        for r in range(Hf + 1):
            grid_x += [-sx / 2, Wf * sx - sx / 2, None]
            grid_y += [r * sy - sy / 2, r * sy - sy / 2, None]
        K = at.per_cell
        with self.fig.batch_update():
            self.fig.data[0].source = png_uri(self._img)
            self.fig.data[1].update(x=grid_x, y=grid_y)
            if self._rpn is not None:
                obj = torch.sigmoid(self._rpn["objectness"]).reshape(Hf, Wf, K).max(-1).values
                self.fig.data[4].update(z=obj.tolist(), zmin=0, zmax=1, visible=True)
                self.fig.data[5].update(x=[], y=[])
                for ax, n in (("xaxis2", Wf), ("yaxis2", Hf)):      # cell indices: integer ticks, no padding
                    step = next(d for d in (1, 2, 5, 10, 20, 50, 100, 10**9) if d >= n / 5)   # <= 5 labels
                    self.fig.layout[ax].update(tickmode="linear", tick0=0, dtick=step,
                                               autorange=False,
                                               range=[n - 0.5, -0.5] if ax == "yaxis2" else [-0.5, n - 0.5])
            else:
                self.fig.data[4].update(visible=False)
                self.fig.data[5].update(dict(zip("xy", rect_path(at.base_anchors.tolist()))))
            self.fig.layout.annotations[0].text = (f"image {W_}x{H} with the {Wf}x{Hf} feature grid "
                                                   f"(stride {sx}); K = {K} anchors per cell")
            if self.source == "live":
                self._draw_recall()
        self._reset_steps(keep=True)

    def _draw_recall(self) -> None:
        """Live: how many ground-truth objects each stage still covers (IoU >= iou_threshold)."""
        title = self.fig.layout.annotations[2]
        if self._gt is None:
            self.fig.data[7].update(x=[], y=[], text=[])
            title.text = "recall: give gt_boxes="
            return
        self._recall = rpn_recall(self._trace, self._gt, self.iou_threshold, self.top_k.value)
        self.fig.data[7].update(x=[r.stage for r in self._recall],
                                y=[r.covered / max(1, r.total) for r in self._recall],
                                text=[f"{r.covered}/{r.total}" for r in self._recall])
        title.text = f"recall of {self._recall[0].total} object(s), IoU ≥ {self.iou_threshold:g}"

    def _state(self) -> dict:
        """``image_size`` (H, W) and ``feature_size`` (Hf, Wf); ``sizes``, ``aspect_ratios``;
        ``stride`` (sy, sx); ``anchors (Hf * Wf * K, 4)``; ``boxes (n, 4)``: what the current
        step draws (the K anchors of one cell, or the top-k proposals of the chosen view);
        live: ``objectness (Hf * Wf * K,)`` logits of the model's RPN, and ``recall``: per stage,
        (objects covered, objects) of the ground truth."""
        if self.source == "live" and self.view.value != "anchors":
            boxes = self._proposals()[0]
        else:
            boxes = self._at.cell_anchors(*divmod(self.step.value, self._feature_size[1]))
        out = {"image_size": tuple(self._image_size), "feature_size": tuple(self._feature_size),
               "sizes": tuple(self._sizes), "aspect_ratios": tuple(self._ratios), "stride": tuple(self._at.stride),
               "anchors": self._anchors, "boxes": boxes}
        if self._rpn is not None:
            out["objectness"] = self._rpn["objectness"]
        if self.source == "live" and self._gt is not None:
            out["recall"] = {r.stage: (r.covered, r.total) for r in self._recall}
        return out

    def n_steps(self) -> int:
        if self.source == "live" and self.view.value != "anchors":
            return 1
        Hf, Wf = self._feature_size
        return Hf * Wf

    def _proposals(self):
        rpn, k, view = self._rpn, self.top_k.value, self.view.value
        if view == "nms":
            boxes = rpn["proposals"][:k]
            return boxes, f"the first {len(boxes)} proposals that survive the RPN's NMS"
        top = torch.argsort(rpn["objectness"], descending=True)[:k]
        if view == "before":
            return self._anchors[top], f"the {k} anchors with the highest objectness, before any correction"
        boxes = ops.decode_boxes(rpn["deltas"][top], self._anchors[top], ops.RPN_WEIGHTS)
        return ops.clip_boxes(boxes, self._image_size), f"the same {k} anchors moved and resized by the predicted corrections (dx, dy, dw, dh)"

    def frame(self, k: int) -> dict:
        at = self._at
        Hf, Wf = self._feature_size
        if self.source == "live" and self.view.value != "anchors":
            boxes, msg = self._proposals()
            return {"data": {2: dict(zip("xy", rect_path(boxes.tolist()))), 3: {"x": [], "y": []},
                             6: {"x": [], "y": []}}, "caption": msg}
        r, c = divmod(k, Wf)
        cell = at.cell_anchors(r, c)
        cx, cy = at.centres[r * Wf + c].tolist()
        obj = ""
        if self._rpn is not None:
            K = at.per_cell
            p = torch.sigmoid(self._rpn["objectness"][(r * Wf + c) * K:(r * Wf + c + 1) * K])
            obj = "; objectness of its anchors: " + ", ".join(f"{v:.2f}" for v in p.tolist())
        caption = (f"cell ({r}, {c}) centred at ({cx}, {cy}): {len(cell)} anchors = sizes {list(self._sizes)} "
                   f"x aspect ratios (h/w) {list(self._ratios)}{obj}")
        return {"data": {2: dict(zip("xy", rect_path(cell.tolist()))), 3: {"x": [cx], "y": [cy]},
                         6: {"x": [c], "y": [r]} if self._rpn is not None else {"x": [], "y": []}},
                "caption": caption}
