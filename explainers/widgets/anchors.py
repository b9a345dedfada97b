"""Anchors at every feature-map point, objectness, box corrections, top-k RPN proposals (slide 8)."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import torch
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from .. import ops
from ..models.live_inputs import (
    anchor_level,
    anchor_targets,
    detector_trace,
    rpn_recall,
    rpn_select,
    rpn_settings,
    ties_change_the_choice,
)
from ..models.render import to_uint8
from ._base import BLUE, CHECK_TOLERANCE, GREY, ORANGE, VERMILLION, Explainer, halo, png_uri, rect_path

#: the slide: a 3 x 640 x 480 image gives 512 x 20 x 15 features (stride 32); K = 3 sizes x 3 aspect
#: ratios (the Faster R-CNN paper's 128, 256, 512 px and h/w 0.5, 1, 2); keep the top ~300
LECTURE = dict(image_size=(480, 640), feature_size=(15, 20), sizes=(128, 256, 512), ratios=(0.5, 1.0, 2.0),
               top_k=300, nms_threshold=0.7, post_nms_top_n=300)
#: the lecture photo's objects, boxed by hand on scikit-image's public-domain ``coffee`` photo
#: (centre crop to 4:3, resized to 640 x 480): (name, x1, y1, x2, y2)
LECTURE_OBJECTS = (("cup", 166, 18, 452, 368), ("spoon", 348, 78, 470, 392), ("saucer", 50, 86, 540, 470))
VIEWS = [("one cell: its K anchors and their corrections", "cell"),
         ("the RPN: top-k anchors → corrected → NMS → proposals", "proposals")]
#: objectness colour scale, and the 5 colour bins the box outlines are drawn in
SCALE = "Viridis"
BINS = 5
BIN_COLOURS = sample_colorscale(SCALE, [(i + 0.5) / BINS for i in range(BINS)])
PIPELINE = ("top-k anchors", "corrected", "clipped and NMS", "proposals")
TEXT = dict(size=16)
#: the dark edge drawn under the white grid lines (visible on light and dark parts of a photo)
GRID_CASING = "rgba(0,0,0,0.4)"
#: the light casing under the cell view's anchors (trace 19)
ANCHOR_CASING = "rgba(255,255,255,0.75)"


def lecture_image() -> np.ndarray:
    """scikit-image's public-domain ``coffee`` photo (400 x 600), centre-cropped to 4:3 and resized to
    the slide's 640 wide x 480 tall: ``(480, 640, 3)`` uint8."""
    from PIL import Image
    from skimage import data

    im = data.coffee()
    h, w = im.shape[:2]
    cw = round(h * 4 / 3)
    x0 = (w - cw) // 2
    return np.asarray(Image.fromarray(im[:, x0:x0 + cw]).resize((640, 480), Image.LANCZOS))


def _signed(v: float) -> str:
    """``+21``, ``-31``, ``0`` (a move that rounds to nothing is 0, not -0 or +0)."""
    r = round(v)
    return f"{r:+d}" if r else "0"


def _slide_tensors(image_size, feature_size, n_anchors: int) -> str:
    """The slide's RPN tensors for this image, written as the slide writes them (width first)."""
    (H, W), (Hf, Wf) = image_size, feature_size
    K = n_anchors // (Hf * Wf)
    return (f"The slide's tensors for this {W} x {H} image (width first there): features 512 x {Wf} x {Hf}, "
            f"'is object?' 1 x {Wf} x {Hf} and corrections 4 x {Wf} x {Hf} for each of the K = {K} anchor "
            f"shapes, so K*{Wf}*{Hf} = {n_anchors} anchors; the page counts rows first ({K} x {Hf} x {Wf}).")


class AnchorsExplainer(Explainer):
    """The feature-map grid laid over the image; the K anchors of a chosen cell with their objectness
    and corrections; the RPN's selection: top-k by objectness, corrected, NMS, the proposals."""

    image_free = ('view', 'top_k')

    title = "Anchors and Region Proposal Network proposals"
    #: the pipeline view's captions (a sentence and the bold count line) and the cell view's (the
    #: anchor, its corrections and its training label) take three lines at 1280 px
    caption_lines = 3
    play_interval = 1400

    def __init__(self, source: str = "lecture", image=None, model=None, gt_boxes=None, iou_threshold: float = 0.5):
        """``gt_boxes (G, 4)`` on ``image`` (live): the objects drawn, and whose recall per stage the
        note gives; by default the bundled scene's own boxes (none for an image of yours unless given)."""
        self.gt_boxes, self.iou_threshold = gt_boxes, iou_threshold
        super().__init__(source, image, model)

    # ------------------------------------------------------------------ building
    def _build(self):
        live = self.source == "live"
        self.view = W.Dropdown(options=VIEWS, value="cell", description="show", layout=W.Layout(width="560px"))
        self.row = W.IntSlider(value=0, min=0, max=0, description="row", layout=W.Layout(width="230px"))
        self.col = W.IntSlider(value=0, min=0, max=0, description="col", layout=W.Layout(width="230px"))
        self.top_k = W.IntSlider(value=300, min=1, max=300, description="top k", layout=W.Layout(width="280px"))
        self._load()
        for w in (self.view, self.row, self.col, self.top_k):
            w.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.view, self.row, self.col, self.top_k])
        widths = [0.32, 0.3, 0.38] if live else [0.56, 0.2, 0.24]
        fig = make_subplots(1, 3, column_widths=widths, horizontal_spacing=0.06, subplot_titles=("image", "objectness", "scores"))
        fig.add_image(source=png_uri(self._img), x0=0.5, y0=0.5, row=1, col=1, hoverinfo="skip")     # 0
        # 1: the padding (filled) and, under the grid, its dark casing (2-point pieces fill nothing):
        # a white line on a dark edge reads on the white cup and on the dark table alike
        fig.add_scatter(x=[], y=[], mode="lines", fill="toself", fillcolor="rgba(120,120,120,0.55)",
                        line=dict(color=GRID_CASING, width=2.5), row=1, col=1, hoverinfo="skip")
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color="white", width=1, dash="solid"),     # 2 grid
                        row=1, col=1, hoverinfo="skip")
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(size=3, color="white"), row=1, col=1,  # 3 points
                        hoverinfo="skip")
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=3), row=1, col=1)  # 4 cell
        for colour in BIN_COLOURS:                                                                    # 5-9 boxes
            fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=colour, width=2.5), row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color="white", width=2), row=1, col=1)     # 10 moves
        # the corrected box wide, the objects' boxes (drawn over it) thin: in lecture mode the corrected
        # box lies exactly on its object's box and must still be seen there
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=5, dash="dash"),       # 11 corrected
                        row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="text", textfont=dict(TEXT, color="white", **halo()), row=1, col=1,  # 12
                        textposition="bottom right", hoverinfo="skip")
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color="white", width=1.5, dash="dot"),    # 13 objects
                        row=1, col=1)
        fig.add_heatmap(z=[[0]], colorscale=SCALE, zmin=0, zmax=1, row=1, col=2,                      # 14 map
                        colorbar=dict(thickness=12, len=0.6, y=0.5, tickfont=dict(size=16)))
        fig.add_scatter(x=[], y=[], mode="markers", row=1, col=2,                                     # 15 cell
                        marker=dict(symbol="square-open", size=14, color=VERMILLION, line=dict(width=3)))
        fig.add_bar(x=[], y=[], orientation="h", text=[], textposition="outside", textfont=TEXT,     # 16 K scores
                    marker=dict(color=[], colorscale=SCALE, cmin=0, cmax=1), row=1, col=3, cliponaxis=False)
        fig.add_bar(x=[], y=[], orientation="h", text=[], textposition="outside", textfont=TEXT,     # 17 counts
                    marker=dict(color=[]), row=1, col=3, cliponaxis=False)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=VERMILLION, width=4), row=1, col=1)  # 18 current
        # 19: under the cell's anchors a light casing, so a low score's dark line reads on a dark photo
        # as its high score's light one does on a light photo (zorder: drawn above the image, below
        # every other trace of the panel)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=ANCHOR_CASING, width=5.5), row=1, col=1,
                        hoverinfo="skip", zorder=-1)
        fig.data[0].zorder = -2
        fig.update_xaxes(showgrid=False, zeroline=False)
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False)
        fig.update_yaxes(scaleanchor="x", constrain="domain", row=1, col=1)
        fig.update_xaxes(constrain="domain", row=1, col=1)
        # the objectness map: one unit as long on both axes, so its Hf x Wf shape is drawn true
        fig.update_yaxes(scaleanchor="x2", constrain="domain", row=1, col=2)
        fig.update_xaxes(constrain="domain", row=1, col=2)
        fig.update_yaxes(autorange=False, showticklabels=False, row=1, col=3)
        self._use_figure(fig, 540)
        self.fig.layout.margin.r = 10
        self.fig.layout.margin.t = 40     # the panel titles need one line: the photo takes the rest
        dom = self.fig.layout.xaxis2.domain
        self.fig.data[14].colorbar.x = dom[1] + 0.005
        self.fig.data[0].source = png_uri(self._img)
        self._keep_as_built()

    def _load(self):
        """Everything that depends on the image and the model (not on the controls)."""
        self._gt, self._gt_names, self._note = None, [], ""
        if self.source == "lecture":
            self._img = lecture_image()
            self._image_size = self._padded = LECTURE["image_size"]
            self._feature_size, self._sizes, self._ratios = (LECTURE["feature_size"], LECTURE["sizes"],
                                                             LECTURE["ratios"])
            self._weights = ops.RPN_WEIGHTS
            self._gt = torch.tensor([o[1:] for o in LECTURE_OBJECTS], dtype=torch.float32)
            self._gt_names = [o[0] for o in LECTURE_OBJECTS]
            self._settings = dict(top_k=LECTURE["top_k"], nms=LECTURE["nms_threshold"],
                                  post=LECTURE["post_nms_top_n"], min_size=1e-3, score=0.0, divisible=None, levels=1)
            anchors, _ = ops.anchor_grid(self._padded, self._feature_size, self._sizes, self._ratios)
            iou, deltas = anchor_targets(anchors, self._gt, self._weights)
            self._rpn = dict(scores=iou, deltas=deltas, proposals=None)
            self._model_anchors = None
            self._note = ("No network in lecture mode: objectness = the RPN's training target, each anchor's IoU "
                          "with the best of 3 hand-boxed objects; corrections = the targets onto that object. "
                          "Photo: scikit-image's public-domain 'coffee'. " + _slide_tensors(
                              self._image_size, self._feature_size, anchors.shape[0]))
        else:
            tr = detector_trace(self.model, self.live_image(), "the anchors page")
            self._trace = tr
            self._img = to_uint8(tr.input_image)
            self._image_size = tuple(tr.input_image.shape[-2:])     # resized, before padding
            self._padded = tuple(tr.input_tensor.shape[-2:])        # what the backbone saw
            lv = anchor_level(tr, 0)                                # with an FPN: the finest level
            self._feature_size, self._sizes, self._ratios = lv.feature_size, lv.sizes, lv.ratios
            self._model_anchors = lv.anchors
            sy, sx = tr.scale
            gt = self.gt_boxes
            if gt is None and self.image is None:                   # the bundled scene knows its objects
                from ..models import make_scene

                gt = make_scene(10_000_005).boxes
            self._gt_original = gt
            if gt is not None:
                self._gt = torch.as_tensor(np.asarray(gt), dtype=torch.float32).reshape(-1, 4) * torch.tensor(
                    [sx, sy, sx, sy])
                self._gt_names = [""] * len(self._gt)
            if lv.objectness is None:                               # a one-stage detector: anchors, no RPN
                self._rpn = None
                self.view.options, self.view.disabled, self.top_k.disabled = VIEWS[:1], True, True
                self._note = (f"This model has no region proposal network (a one-stage detector): it classifies "
                              f"and corrects every anchor directly. Drawn: its anchors on the finest level, "
                              f"{lv.feature_size[1]}x{lv.feature_size[0]} cells.")
                self._settings = None
            else:
                st = rpn_settings(self.model, tr)
                self._weights = st.weights
                self._settings = dict(top_k=st.pre_nms_top_n, nms=st.nms_threshold, post=st.post_nms_top_n,
                                      min_size=st.min_size, score=st.score_threshold, divisible=st.size_divisible,
                                      levels=st.levels)
                self._rpn = dict(scores=lv.objectness_prob, deltas=lv.deltas, proposals=tr.proposals)
        Hf, Wf = self._feature_size
        K = len(self._sizes) * len(self._ratios)
        self.row.max, self.col.max = Hf - 1, Wf - 1
        if self._rpn is not None:                  # start at the cell whose best anchor scores highest
            best = int(torch.argmax(self._rpn["scores"])) // K
            self.row.value, self.col.value = divmod(best, Wf)
            self.top_k.max = min(300, Hf * Wf * K)
            self.top_k.value = min(self._settings["top_k"], self.top_k.max)
        else:
            self.row.value, self.col.value = Hf // 2, Wf // 2

    # ------------------------------------------------------------------ recomputing
    def refresh(self):
        self._start_view(self.view.value)   # the proposals view fills traces the cell view leaves hidden
        # only the controls the chosen view uses: row and col pick the cell, top k the proposals
        cell = self.view.value == "cell"
        for w, shown in ((self.row, cell), (self.col, cell), (self.top_k, not cell)):
            w.layout.display = None if shown else "none"
        anchors, at = ops.anchor_grid(self._padded, self._feature_size, self._sizes, self._ratios)
        ref = ops.reference_anchors(self._padded, self._feature_size, self._sizes, self._ratios)
        more = []
        if self.source == "live":
            more.append(("the model's own anchors", float((anchors - self._model_anchors).abs().max())))
        self._anchors, self._at = anchors, at
        self._sel = None
        note = self._note
        ties = ""
        if self._rpn is not None:
            d = self._rpn["deltas"]
            ours = ops.decode_boxes(d, anchors, self._weights)
            theirs = ops.reference_decode_boxes(d, anchors, self._weights)
            more.append(("BoxCoder.decode (box corrections)", float((ours - theirs).abs().max())))
            s = self._settings
            self._sel = rpn_select(anchors, self._rpn["scores"], d, self._weights, self._image_size,
                                   self.top_k.value, s["nms"], s["post"], s["min_size"], s["score"])
            # the proposals drawn against torchvision's own selection: the top k scores against
            # torch.topk (values: which of equal scores is taken is arbitrary), then those k anchors
            # through RegionProposalNetwork.filter_proposals (decode, clip, small boxes, NMS)
            sel = self._sel
            d_top = float((sel.scores - ops.reference_top_k(self._rpn["scores"], len(sel.order))).abs().max()) \
                if len(sel.order) else 0.0
            ref_props, _ = ops.reference_rpn_proposals(sel.anchors, sel.scores, d[sel.order], self._weights,
                                                       self._image_size, len(sel.order), s["nms"], s["post"],
                                                       s["min_size"], s["score"])
            mine = sel.proposals
            same = mine.shape == ref_props.shape
            diff = float((mine - ref_props).abs().max()) if same and len(mine) else (0.0 if same else float("inf"))
            ok = same and diff <= CHECK_TOLERANCE
            if not ok and ties_change_the_choice(sel, s["nms"]):
                # equal scores that overlap: torchvision may have broken the tie the other way; the
                # proposals drawn must then still be a valid choice by torchvision's definitions
                ties = ("Some overlapping candidates have equal objectness scores, so which suppresses which is "
                        "arbitrary: the proposals drawn are checked to be one valid choice, not torchvision's.")
                ok = ops.reference_rpn_choice_is_valid(sel.anchors, sel.scores, d[sel.order], self._weights,
                                                       self._image_size, s["nms"], s["post"], s["min_size"],
                                                       s["score"], mine)
                diff = 0.0 if ok else float("inf")
            what = (f"torch.topk and a valid NMS by torchvision's box_iou (the {len(mine)} proposals drawn, ties)" if ties
                    else f"torch.topk and RegionProposalNetwork.filter_proposals (the {len(mine)} proposals drawn)")
            more.append((what, max(diff, d_top), d_top <= CHECK_TOLERANCE and ok))
            if self.source == "live":
                if s["levels"] == 1 and self.top_k.value == s["top_k"]:
                    mine, theirs = self._sel.proposals, self._rpn["proposals"]
                    same = mine.shape == theirs.shape
                    diff = float((mine - theirs).abs().max()) if same and len(mine) else (0.0 if same else float("inf"))
                    more.append((f"the model's own {len(theirs)} proposals", diff, same and diff <= 1e-4))
                elif s["levels"] > 1:
                    note = (f"This model has {s['levels']} feature levels; the page draws the finest one, so its "
                            f"selection is not the model's (which takes the top {s['top_k']} of each level).")
                else:
                    note = (f"The model keeps the top {s['top_k']} before its NMS; with top k = {self.top_k.value} "
                            f"the proposals drawn are not the model's, so they are not compared with them.")
        self.set_check("torchvision's AnchorGenerator", float((anchors - ref).abs().max()), more=more)
        note = " ".join(t for t in (note, ties) if t)
        if self.source == "live" and self._rpn is not None and self._gt is not None:
            self._recall = rpn_recall(self._trace, self._gt_original, self.iou_threshold, self.top_k.value)
            found = "; ".join(f"{r.stage} {r.covered}/{r.total}" for r in self._recall)
            note = (note + " " if note else "") + f"Objects found (IoU ≥ {self.iou_threshold:g}): {found}."
        self.set_note(html.escape(note))
        self._draw_static()
        self._reset_steps()

    def _draw_static(self) -> None:
        """What does not change from step to step: grid, padding, objectness map, titles, col-3 axes."""
        H, W_ = self._image_size
        Hp, Wp = self._padded
        Hf, Wf = self._feature_size
        sy, sx = self._at.stride
        K = self._at.per_cell
        gx, gy = [], []
        for c in range(Wf + 1):
            gx += [c * sx, c * sx, None]
            gy += [0, Hf * sy, None]
        for r in range(Hf + 1):
            gx += [0, Wf * sx, None]
            gy += [r * sy, r * sy, None]
        cx, cy = self._at.centres[:, 0].tolist(), self._at.centres[:, 1].tolist()
        pad = ([0, Wp, Wp, 0, 0, None, W_, Wp, Wp, W_, W_], [H, H, Hp, Hp, H, None, 0, 0, H, H, 0])
        if (Hp, Wp) == (H, W_):
            pad = ([], [])
        labels_x, labels_y, labels = [], [], []
        if Hp > H:
            labels_x.append(4)
            labels_y.append(H + 2)
            labels.append(f"padding {H}-{Hp}")      # short: a tall live image is narrow
        if self._gt is not None:
            for name, (x1, y1, *_rest) in zip(self._gt_names, self._gt.tolist()):
                if name:
                    labels_x.append(x1 + 2)
                    labels_y.append(y1 + 2)
                    labels.append(name)
        d = self.fig.data
        with self.fig.batch_update():
            # the grid's dark casing: full on cells of 16+ screen px, lighter on a fine grid (it would
            # hide a small image); about 420 px of plot height show the padded image and its margin
            cell_px = min(sy, sx) * 420 / (Hp + 2 * max(sy, sx))
            d[1].update(x=list(pad[0]) + ([None] if pad[0] else []) + gx,
                        y=list(pad[1]) + ([None] if pad[1] else []) + gy,
                        line=dict(color=GRID_CASING if cell_px >= 16 else "rgba(0,0,0,0.2)",
                                  width=2.5 if cell_px >= 16 else 2))
            d[2].update(x=gx, y=gy)
            d[3].update(x=cx, y=cy)
            d[12].update(x=labels_x, y=labels_y, text=labels)
            d[13].update(dict(zip("xy", rect_path(self._gt.tolist() if self._gt is not None else []))))
            x1, y1, x2, y2 = self._extent()
            self.fig.layout.xaxis.update(range=[x1 - 2, x2 + 2], autorange=False)
            self.fig.layout.yaxis.update(range=[y2 + 2, y1 - 2], autorange=False)
            ann = self.fig.layout.annotations
            sized = f"image {W_}x{H}" if (H, W_) == (Hp, Wp) else f"input {W_}x{H}, padded to {Wp}x{Hp}"
            ann[0].text = f"{sized}: {Wf}x{Hf} cells of {sx} px"
            if self._rpn is not None:
                what = "objectness" if self.source == "live" else "IoU target"
                z = self._rpn["scores"].reshape(Hf, Wf, K).max(-1).values
                d[14].update(z=z.tolist(), visible=True)
                ann[1].text = f"{what}: {Hf} rows x {Wf} cols (best of K={K})"
                for ax, n in (("xaxis2", Wf), ("yaxis2", Hf)):       # cell indices: integer ticks
                    step = next(v for v in (1, 2, 5, 10, 20, 50, 100, 10**9) if v >= n / 5)
                    self.fig.layout[ax].update(tickmode="linear", tick0=0, dtick=step, autorange=False,
                                               range=[n - 0.5, -0.5] if ax == "yaxis2" else [-0.5, n - 0.5])
                cell = self.view.value == "cell"
                d[15].update(x=[self.col.value] if cell else [], y=[self.row.value] if cell else [])
            else:
                d[14].update(visible=False)
                d[15].update(x=[], y=[])
                ann[1].text = "no objectness (no RPN)"
            cell = self.view.value == "cell"
            d[16].visible, d[17].visible = cell, not cell
            if cell:
                # lecture mode has no network: its "objectness" is the RPN's training target (IoU)
                what = "objectness" if self.source == "live" else "IoU target"
                ann[2].text = f"{what} of the {K} anchors" if self._rpn is not None else f"the {K} anchors"
                self.fig.layout.xaxis3.update(type="linear", range=[0, 2.3], tickvals=[0, 0.5, 1], autorange=False)
                self.fig.layout.yaxis3.update(range=[K - 0.5, -0.5])
            else:
                counts = self._sel.counts
                ann[2].text = "boxes at each stage"
                top = max(c for _, c in counts)
                self.fig.layout.xaxis3.update(type="log", range=[-0.1, np.log10(top) * 2.1], tickvals=None,
                                              autorange=False)
                self.fig.layout.yaxis3.update(range=[len(counts) - 0.5, -0.5])

    def _extent(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)``: the padded image, as large as the panel allows; in the cell view with
        a margin of one cell where the boxes that reach beyond the image show that they do (they are
        cut at the panel's edge; the caption says so). The RPN view shows the image only (its step 1
        says that large anchors are cut at the image's edge there)."""
        Hp, Wp = self._padded
        if self.view.value != "cell":
            return 0, 0, Wp, Hp
        m = max(self._at.stride)
        boxes, _, moved, *_ = self._cell()
        boxes = boxes if moved is None else torch.cat([boxes, moved])
        lo, hi = boxes[:, :2].min(0).values.tolist(), boxes[:, 2:].max(0).values.tolist()
        return max(-m, min(0, lo[0])), max(-m, min(0, lo[1])), min(Wp + m, max(Wp, hi[0])), min(Hp + m, max(Hp, hi[1]))

    def _cut(self) -> tuple[int, int]:
        """How many of the cell's anchors, and of their corrected boxes, the cell view cuts at the
        panel's edge (they reach past the margin): ``(anchors, corrected)``."""
        if self.view.value != "cell":
            return 0, 0
        x1, y1, x2, y2 = self._extent()
        boxes, _, moved, *_ = self._cell()

        def cut(b):
            return int(((b[:, 0] < x1) | (b[:, 1] < y1) | (b[:, 2] > x2) | (b[:, 3] > y2)).sum()) if b is not None else 0

        return cut(boxes), cut(moved)

    def _cut_words(self, K: int) -> str:
        """The caption's words for :meth:`_cut`: what runs past the panel's edge, counted."""
        anchors, corrected = self._cut()
        if anchors:
            return (" (all of them run past the panel's edge)" if anchors == K else
                    f" ({anchors} of them run past the panel's edge)")
        return f" ({corrected} corrected box(es) run past the panel's edge)" if corrected else ""

    # ------------------------------------------------------------------ steps
    def n_steps(self) -> int:
        if self.view.value == "proposals":
            return len(PIPELINE)
        return 1 + self._at.per_cell

    def _cell(self):
        """The chosen cell's anchors ``(K, 4)``, scores ``(K,)`` (or None), corrected boxes ``(K, 4)``
        (or None), and the order in which the steps visit them (best score first)."""
        r, c = self.row.value, self.col.value
        K = self._at.per_cell
        start = (r * self._feature_size[1] + c) * K
        boxes = self._at.cell_anchors(r, c)
        if self._rpn is None:
            return boxes, None, None, None, list(range(K))
        scores = self._rpn["scores"][start:start + K]
        deltas = self._rpn["deltas"][start:start + K]
        moved = ops.decode_boxes(deltas, boxes, self._weights)
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        return boxes, scores, moved, deltas, order

    def _binned(self, boxes: torch.Tensor, scores: torch.Tensor | None) -> dict:
        """Trace updates drawing ``boxes`` in the colour of their score's bin (traces 5-9)."""
        out = {}
        b = (torch.zeros(len(boxes), dtype=torch.long) + BINS // 2 if scores is None
             else (scores * BINS).long().clamp(0, BINS - 1))
        for i in range(BINS):
            out[5 + i] = dict(zip("xy", rect_path(boxes[b == i].tolist())))
        return out

    @staticmethod
    def _moves(a: torch.Tensor, m: torch.Tensor) -> dict:
        """Lines from each anchor's centre to its corrected box's centre."""
        xs, ys = [], []
        for (ax1, ay1, ax2, ay2), (mx1, my1, mx2, my2) in zip(a.tolist(), m.tolist()):
            xs += [(ax1 + ax2) / 2, (mx1 + mx2) / 2, None]
            ys += [(ay1 + ay2) / 2, (my1 + my2) / 2, None]
        return {"x": xs, "y": ys}

    def _counts_text(self) -> str:
        Hf, Wf = self._feature_size
        K = self._at.per_cell
        parts = [f"K x H x W = {K} x {Hf} x {Wf} = {K * Hf * Wf} anchors"] + [
            f"{n} {name}" for name, n in self._sel.counts[1:]]
        return "<b>" + " → ".join(parts) + "</b>"

    def frame(self, k: int) -> dict:
        sy, sx = self._at.stride
        r, c = self.row.value, self.col.value
        empty = {"x": [], "y": []}
        data = {4: dict(zip("xy", rect_path([[c * sx, r * sy, (c + 1) * sx, (r + 1) * sy]]))),
                10: empty, 11: empty, 18: empty, 19: empty}
        if self.view.value == "proposals":
            data[4] = empty
            return self._pipeline_frame(k, data)
        boxes, scores, moved, deltas, order = self._cell()
        K = len(boxes)
        data.update(self._binned(boxes, scores))
        data[19] = dict(zip("xy", rect_path(boxes.tolist())))
        names = [f"{s:g} px, h/w {q:g}" for q in self._ratios for s in self._sizes]     # ratio-major
        cx, cy = self._at.centres[r * self._feature_size[1] + c].tolist()
        lead = (f"Cell ({r}, {c}): {K} anchors ({len(self._sizes)} sizes x {len(self._ratios)} ratios h/w) centred "
                f"on its top-left corner ({cx:g}, {cy:g}), as torchvision places them"
                + self._cut_words(K))
        if scores is None:
            data[16] = {"x": [], "y": [], "text": []}
            if k == 0:
                return {"data": data, "caption": lead + "."}
            j = order[k - 1]
            data[18] = dict(zip("xy", rect_path([boxes[j].tolist()])))
            return {"data": data, "caption": f"{lead}. Anchor {k} of {K}: {names[j]}."}
        shown = order[:k]
        data[16] = {"x": scores.tolist(), "y": list(range(K)),
                    "text": [f"{v:.2f}  {names[i]}" for i, v in enumerate(scores.tolist())],
                    "marker": {"color": scores.tolist()}}
        word = "objectness" if self.source == "live" else "IoU target"
        if k == 0:
            best = order[0]
            return {"data": data, "caption": (f"{lead}; colour = {word}, best {names[best]}: "
                                              f"{float(scores[best]):.2f}. Step on: each anchor's correction.")}
        j = order[k - 1]
        data[10] = self._moves(boxes[shown], moved[shown])
        data[11] = dict(zip("xy", rect_path(moved[shown].tolist())))
        data[18] = dict(zip("xy", rect_path([boxes[j].tolist()])))
        dx, dy, dw, dh = deltas[j].tolist()
        (a1, b1, a2, b2), (m1, n1, m2, n2) = boxes[j].tolist(), moved[j].tolist()
        caption = (f"Cell ({r}, {c}), anchor {k} of {K} by {word}: {names[j]}, {word} {float(scores[j]):.2f}. "
                   f"(dx, dy, dw, dh) = ({dx:.2f}, {dy:.2f}, {dw:.2f}, {dh:.2f}): centre moves "
                   f"({_signed((m1 + m2 - a1 - a2) / 2)}, {_signed((n1 + n2 - b1 - b2) / 2)}) px, size x {np.exp(dw):.2f} "
                   f"wide, x {np.exp(dh):.2f} high (dashed box).")
        if self.source == "lecture":
            # Faster R-CNN's RPN trains a box target only for positive anchors (torchvision: IoU >= 0.7
            # or an object's best anchor); the page decodes every anchor's correction to show it
            iou = float(scores[j])
            if iou < 0.3:
                caption += " In training this anchor is negative (IoU < 0.3): it gets no box target."
            elif iou < 0.7:
                caption += " In training this anchor is ignored (IoU 0.3-0.7) unless it is an object's best."
        return {"data": data, "caption": caption}

    def _pipeline_frame(self, k: int, data: dict) -> dict:
        sel, s = self._sel, self._settings
        counts = sel.counts
        stage_of_step = [1, 1, 3, 4]                 # which count each step ends at
        data[17] = {"x": [n for _, n in counts], "y": list(range(len(counts))),
                    "text": [f"{n} {name}" for name, n in counts],
                    "marker": {"color": [ORANGE if i == stage_of_step[k] else (BLUE if i < stage_of_step[k] else GREY)
                                                for i in range(len(counts))]}}
        kk = len(sel.order)
        if k == 0:
            data.update(self._binned(sel.anchors, sel.scores))
            word = "objectness" if self.source == "live" else "IoU target"
            msg = (f"all {counts[0][1]} anchors sorted by {word}, the best {kk} kept (colour = {word}; "
                   "large ones are cut at the image's edge here).")
        elif k == 1:
            data.update(self._binned(sel.corrected, sel.scores))
            data[10] = self._moves(sel.anchors, sel.corrected)
            msg = (f"each moved by its corrections (dx, dy, dw, dh) (white: centre to centre), clipped to the "
                   f"{self._image_size[1]}x{self._image_size[0]} image.")
        else:
            idx = sel.keep if k == 2 else sel.keep[:s["post"]]
            data.update(self._binned(sel.corrected[idx], sel.scores[idx]))
            if k == 2:
                gone = kk - int(sel.big.sum())
                dropped = ("no box is clipped to nothing" if gone == 0 else
                           "1 box clipped to nothing is dropped" if gone == 1 else
                           f"{gone} boxes clipped to nothing are dropped")
                msg = f"{dropped}; NMS (IoU {s['nms']:g}) removes duplicates: {len(sel.keep)} remain."
            else:
                msg = f"the first {s['post']} after NMS: {len(idx)} boxes go on to RoI pooling."
        if self.source == "lecture" and k >= 1:
            msg += " (Targets: each box lands exactly on an object.)"
        return {"data": data, "caption": f"{k + 1}/4, {PIPELINE[k]}: {msg}<br>{self._counts_text()}"}

    def _state(self) -> dict:
        """``image_size`` (H, W) of the image the model saw (live: resized, before padding) and
        ``padded`` (Hp, Wp), the batch the backbone saw (a multiple of the size divisibility);
        ``feature_size`` (Hf, Wf); ``sizes``, ``aspect_ratios``; ``stride`` (sy, sx); ``cell`` (row, col);
        ``anchors (Hf * Wf * K, 4)``; ``boxes (n, 4)``: the boxes the current step draws coloured by
        score (the chosen cell's K anchors, or the top-k anchors, corrected boxes, NMS survivors or
        proposals); ``objectness (Hf * Wf * K,)``: the score each anchor is sorted by (live: the
        model's RPN as a probability; lecture: the IoU target); ``counts``: (stage, boxes) from all
        anchors to the proposals; live with objects, ``recall``: per stage, (objects covered, objects)."""
        Hf, Wf = self._feature_size
        out = {"image_size": tuple(self._image_size), "padded": tuple(self._padded),
               "feature_size": (Hf, Wf), "sizes": tuple(self._sizes), "aspect_ratios": tuple(self._ratios),
               "stride": tuple(self._at.stride), "cell": (self.row.value, self.col.value), "anchors": self._anchors}
        k = self.step.value
        if self.view.value == "proposals":
            sel = self._sel
            out["boxes"] = (sel.anchors, sel.corrected, sel.corrected[sel.keep],
                            sel.corrected[sel.keep[:self._settings["post"]]])[k]
        else:
            out["boxes"] = self._cell()[0]
        if self._rpn is not None:
            out["objectness"] = self._rpn["scores"]
            out["counts"] = list(self._sel.counts)
        if self.source == "live" and self._rpn is not None and self._gt is not None:
            out["recall"] = {r.stage: (r.covered, r.total) for r in self._recall}
        return out
