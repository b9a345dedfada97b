"""Single-stage detectors: YOLO's S x S grid and output tensor, SSD's default boxes, and the live
one-stage detector's dense predictions before NMS."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import torch
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..models.render import class_hex, legend_html, to_uint8
from ..ops.single_stage import (SSD300_ASPECT_RATIOS, SSD300_FEATURE_SIZES, SSD300_SCALES, SSD300_STEPS,
                                YOLO_BASE_SHAPES, fcos_dense, match_detections, ssd_default_boxes, yolo_decode,
                                yolo_encode)
from ..ops.single_stage_reference import (reference_default_boxes, reference_yolo_base_boxes, reference_yolo_boxes,
                                          reference_yolo_deltas)
from ._base import BLUE, CHECK_TOLERANCE, GREY, YELLOW, Explainer, halo, png_uri, rect_path

VIEWS = ("YOLO grid", "SSD default boxes", "dense predictions")
#: the lecture's picture: a 300 x 300 shapes scene (5 objects of all three classes)
LECTURE_SEED = 17
LECTURE_SIZE = 300
#: live: detections at least this confident become the YOLO targets
YOLO_LIVE_SCORE = 0.5
#: dense view: how many locations the steps walk through (best first)
DENSE_STEPS = 12
SSD_SIZE = 300
#: the colour of boxes that belong to no class (SSD's default boxes): black, which no class has
NO_CLASS = "#000000"
#: trace 4: YOLO's base boxes (blue, dashed; SSD draws its second location's boxes there, in black);
#: trace 5: the boxes a step is about
BASE_LINE = {"color": BLUE, "width": 2.5, "dash": "dash"}
MAIN_WIDTH = 4


def _plural(n: int, one: str, many: str) -> str:
    """"1 base box", "3 base boxes"."""
    return f"{n} {one if n == 1 else many}"


def _cell_table(vec, B: int, classes) -> tuple[list, list, list]:
    """A YOLO cell's ``5B + C`` numbers as a table, every number under a label: one row per base
    box (columns dx, dy, dw, dh, conf), then one row per class score (in a column of its own, "score",
    so that no score sits under a box number's name).
    Returns ``(z, column names, row names)``; the table read row by row, blanks skipped, is ``vec``."""
    v = [round(float(x), 2) for x in vec.tolist()]
    rows = [v[5 * b: 5 * b + 5] + [None] for b in range(B)] + [[None] * 5 + [p] for p in v[5 * B:]]
    names = [f"box {b + 1}" for b in range(B)] + [f"p({n})" for n in classes]
    return rows, ["dx", "dy", "dw", "dh", "conf", "score"], names


#: colour scales as explicit lists in frames: plotly.py and plotly.js read the name "RdBu" the opposite
#: way round (plotly.py: red low, blue high), and a frame reaches the HTML export as it is
RDBU = [list(c) for c in go.Heatmap(colorscale="RdBu").colorscale]
VIRIDIS = [list(c) for c in go.Heatmap(colorscale="Viridis").colorscale]


def _in_class_colours(image: np.ndarray, masks: np.ndarray, labels) -> np.ndarray:
    """The lecture's picture with every shape painted in its class's colour (the legend's), its
    texture kept. A training scene paints shapes in random colours so that a network must learn their
    form; on a slide an orange triangle beside "orange = circle" would mislead."""
    from ..models.render import class_colour

    out = image.astype(np.float32)
    grey = out.mean(-1, keepdims=True)
    for m, lab in zip(masks, labels):           # in drawing order: a later shape covers an earlier one
        tint = np.asarray(class_colour(int(lab)), np.float32)
        out[m] = 0.8 * tint + 0.2 * grey[m]
    return out.round().clip(0, 255).astype(np.uint8)


def _model_name(model) -> str:
    """What a student would call the model: "a RetinaNet", "a Faster R-CNN (two-stage)", "a segmenter"."""
    module = getattr(model, "module", model)
    kind = {"Detector": " (two-stage)", "Segmenter": " (segmentation)", "PatchModel": " (patch classifier)"}
    return f"a {type(module).__name__}{kind.get(type(model).__name__, '')}"


def _row_ticks(rows) -> dict:
    """Every row of a short read-out labelled (no label skipped, whatever the plot's height); a long
    map (step 0) keeps plotly's automatic ticks."""
    if rows is None or len(rows) > 12:
        return {"yaxis2": {"tickmode": "auto", "tickvals": None, "ticktext": None}}   # a short one's, gone
    return {"yaxis2": {"tickmode": "array", "tickvals": list(rows), "ticktext": list(rows)}}


class SingleStageExplainer(Explainer):
    """YOLO: the image cut into an S x S grid, each cell with B base boxes (dx, dy, dw, dh,
    confidence each) and C class scores, read cell by cell from the S x S x (5B + C) tensor.
    SSD: default boxes on six feature maps, one map per step. Live: the one-stage model's
    prediction at every location before its score threshold and NMS."""

    image_free = ('view', 'S', 'B')

    title = "Single-stage detectors: YOLO's grid, SSD's default boxes"
    play_interval = 900

    def _build(self):
        views = VIEWS if self.source == "live" else VIEWS[:2]
        self.view = W.Dropdown(options=views, value=views[-1] if self.source == "live" else views[0],
                               description="view", layout=W.Layout(width="270px"))
        self.S = W.IntSlider(value=7, min=1, max=14, description="S (grid)", layout=W.Layout(width="260px"),
                             style={"description_width": "initial"})
        self.B = W.IntSlider(value=3, min=1, max=6, description="B (boxes/cell)", layout=W.Layout(width="280px"),
                             style={"description_width": "initial"})
        for c in (self.view, self.S, self.B):
            c.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.view, self.S, self.B])
        fig = make_subplots(1, 2, column_widths=[0.7, 0.3], horizontal_spacing=0.16)
        fig.add_image(source=png_uri(np.full((8, 8, 3), 245, np.uint8)), hoverinfo="skip", row=1, col=1)  # 0
        line = lambda colour, width, dash="solid": dict(color=colour, width=width, dash=dash)  # noqa: E731
        fig.add_scatter(x=[], y=[], mode="lines", line=line("white", 1.5), hoverinfo="skip", row=1, col=1)  # 1 grid
        fig.add_scatter(x=[], y=[], mode="lines", line=line(GREY, 2, "dot"), hoverinfo="skip", row=1, col=1)  # 2
        fig.add_scatter(x=[], y=[], mode="markers", hoverinfo="skip", row=1, col=1,        # 3 points / centres
                        marker=dict(size=6, color=[], colorscale="Viridis", cmin=0, cmax=1, showscale=False,
                                    colorbar=dict(title="score", x=0.56, len=0.8)))
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(BASE_LINE), hoverinfo="skip", row=1, col=1)  # 4
        # 5 main: a class's boxes in its colour; boxes of no class (SSD's default boxes) in NO_CLASS
        fig.add_scatter(x=[], y=[], mode="lines", line=line(NO_CLASS, MAIN_WIDTH), hoverinfo="skip", row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=line(YELLOW, 5), hoverinfo="skip", row=1, col=1)  # 6 cell
        fig.add_scatter(x=[], y=[], text=[], mode="text", textposition="top right", hoverinfo="skip",  # 7 labels
                        textfont=dict(size=16, color="black", **halo()), row=1, col=1)
        fig.add_heatmap(z=[[0]], x=["value"], y=[""], text=[[""]], texttemplate="%{text}", colorscale="RdBu",
                        zmid=0, showscale=False, textfont=dict(size=16), hoverinfo="skip", xgap=2, ygap=2,
                        row=1, col=2)                                                             # 8 read-out
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, constrain="domain", row=1, col=1)
        fig.update_xaxes(showgrid=False, zeroline=False, scaleanchor="y", constrain="domain", row=1, col=1)
        fig.update_yaxes(autorange="reversed", showgrid=False, row=1, col=2, tickfont=dict(size=16))
        fig.update_xaxes(side="top", showgrid=False, row=1, col=2, tickfont=dict(size=16))
        self._use_figure(fig, 540)
        self.fig.update_layout(margin=dict(l=40, r=20, t=80, b=30))
        self.fig.add_annotation(text="", x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                                yshift=30, showarrow=False, font=dict(size=17), align="left")
        self._keep_as_built()
        self._load()

    # ------------------------------------------------------------------ data
    def _load(self):
        self._uris: dict = {}
        if self.source == "lecture":
            from ..models.shapes import CLASSES, make_scene

            sc = make_scene(LECTURE_SEED, size=LECTURE_SIZE)
            self._img = _in_class_colours(sc.image, sc.masks, sc.labels)
            self._gt = (torch.from_numpy(sc.boxes), torch.from_numpy(sc.labels))
            self._classes = list(CLASSES)
            self._trace = None
            return
        from ..models import get
        from ..models.live import OneStageDetector

        model = self.model or get("onestage", "shapes")
        if not isinstance(model, OneStageDetector) or model.architecture != "FCOS":
            raise ValueError("the single-stage page draws the dense predictions of an FCOS detector "
                             f"(the bundled one-stage model); this is {_model_name(model)}")
        self._trace = tr = model.trace(self.live_image())
        self._classes = list(model.classes)
        self._img = to_uint8(tr.image)
        det = tr.detections
        keep = det.scores >= YOLO_LIVE_SCORE
        self._gt = (det.boxes[keep].clone(), det.labels[keep].clone())

    def refresh(self):
        v = self.view.value
        self._start_view(v)                    # each view restyles traces its own way: none keeps another's
        self.S.layout.display = self.B.layout.display = None if v == "YOLO grid" else "none"
        self.fig.data[3].marker.showscale = v == "dense predictions"
        if v == "YOLO grid":
            self._refresh_yolo()
        elif v == "SSD default boxes":
            self._refresh_ssd()
        else:
            self._refresh_dense()
        self._reset_steps()

    def _refresh_yolo(self):
        S, B, C = self.S.value, self.B.value, len(self._classes)
        H, W_ = self._img.shape[:2]
        boxes, labels = self._gt
        target, enc = yolo_encode(boxes, labels, S, B, C, (H, W_))
        dec, tr = yolo_decode(target, B, (H, W_))
        ref = reference_yolo_boxes(tr.deltas, tr.base_boxes).reshape(dec.shape)
        kept = enc.kept.nonzero().flatten().tolist()
        back = torch.stack([dec[int(enc.cells[i, 0]), int(enc.cells[i, 1]), int(enc.responsible[i])] for i in kept]) \
            if kept else torch.zeros(0, 4)
        rt = float((back - enc.boxes[kept]).abs().max()) if kept else 0.0
        # what the tensor drawn holds, each against torchvision: the base boxes (the grid's anchors)
        # and, in each responsible slot, the deltas that move its base box onto the object
        d_base = float((tr.base_boxes - reference_yolo_base_boxes(S, B, (H, W_), YOLO_BASE_SHAPES)).abs().max())
        slots = [(int(enc.cells[i, 0]), int(enc.cells[i, 1]), int(enc.responsible[i])) for i in kept]
        if slots:
            drawn = torch.stack([tr.deltas[r, c, b] for r, c, b in slots])
            bases = torch.stack([tr.base_boxes[r, c, b] for r, c, b in slots])
            d_enc = float((drawn - reference_yolo_deltas(enc.boxes[kept], bases)).abs().max())
        else:
            d_enc = 0.0
        self.set_check("torchvision's BoxCoder((1, 1, 1, 1)).decode_single on the base boxes",
                       float((dec - ref).abs().max()),
                       more=[("torchvision's box_convert grid (the base boxes drawn)", d_base,
                              d_base <= CHECK_TOLERANCE + 1e-6 * max(H, W_)),      # float32 pixel coordinates
                             (f"BoxCoder.encode_single of the {len(kept)} objects (the deltas drawn)", d_enc),
                             (f"the {len(kept)} object boxes (decoded from the target tensor)", rt, rt <= 1e-3)])
        dropped = len(enc.kept) - len(kept)
        src = ("the ground truth of this shapes scene (each shape painted in its class's colour)"
               if self.source == "lecture"
               else f"the live model's {len(boxes)} detections with score ≥ {YOLO_LIVE_SCORE}")
        self.set_note(f"The tensor drawn is the training target for {src}: what a perfect YOLO would output. "
                      "Box numbers: (dx, dy, dw, dh) move the base box (cx + dx·w, w·exp(dw)); the slide lists dh "
                      "before dw, the same five numbers. conf = 1 in the responsible box only." + (f" {dropped} object(s) share a cell slot with an earlier one and "
                                                 "are not in the tensor (one slot, one object)." if dropped else ""))
        self._yolo = (tr, enc)
        self._fig_common(f"{S} x {S} grid, B = {B}, C = {C}: tensor {S} x {S} x {5 * B + C}", self._gt[1])
        cw, ch = W_ / S, H / S
        gx, gy = [], []
        for i in range(S + 1):
            gx += [i * cw, i * cw, None, 0, W_, None]
            gy += [0, H, None, i * ch, i * ch, None]
        self.fig.data[1].update(x=gx, y=gy)
        self.fig.data[3].update(x=[], y=[])
        # one view for every cell: the image and every cell's base boxes (which stick out at the edges),
        # so the picture never moves or shrinks from one step to the next
        bb = tr.base_boxes.reshape(-1, 4)
        x0, y0 = min(-0.5, float(bb[:, 0].min())), min(-0.5, float(bb[:, 1].min()))
        x1, y1 = max(W_ - 0.5, float(bb[:, 2].max())), max(H - 0.5, float(bb[:, 3].max()))
        self.fig.update_xaxes(range=[x0, x1], autorange=False, row=1, col=1)
        self.fig.update_yaxes(range=[y1, y0], autorange=False, row=1, col=1)
        # the true boxes dotted in their class's colour (the legend's colours: a scene's shapes have random
        # colours of their own, so a box's colour, not its shape's, names the class)
        self.fig.layout.shapes = [dict(type="rect", xref="x", yref="y", x0=b[0], y0=b[1], x1=b[2], y1=b[3],
                                       line=dict(color=class_hex(int(lab)), width=3, dash="dot"))
                                  for b, lab in zip(enc.boxes.tolist(), enc.labels.tolist())]

    def _refresh_ssd(self):
        img = self._img
        if img.shape[:2] != (SSD_SIZE, SSD_SIZE):
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((SSD_SIZE, SSD_SIZE), Image.BILINEAR))
        self._ssd_img = img
        args = ((SSD_SIZE, SSD_SIZE), SSD300_FEATURE_SIZES, SSD300_ASPECT_RATIOS)
        boxes, tr = ssd_default_boxes(*args, scales=SSD300_SCALES, steps=SSD300_STEPS)
        ref = reference_default_boxes(*args, scales=SSD300_SCALES, steps=SSD300_STEPS)
        same = boxes.shape == ref.shape and torch.equal(boxes, ref)
        self.set_check(f"torchvision's DefaultBoxGenerator (SSD300: {len(ref)} boxes)",
                       float((boxes - ref).abs().max()) if boxes.shape == ref.shape else float("inf"), same)
        self.set_note("SSD300's settings (torchvision's ssd300_vgg16): six feature maps 38, 19, 10, 5, 3, 1 on a "
                      "300 x 300 input, scales 0.07 ... 1.05, aspect ratios 2 (and 3 on maps 2-4); the image is "
                      "resized to 300 x 300 as SSD's transform does. Drawn: every location's centre and all the "
                      "default boxes of the centre location (solid) and of the location a quarter in (dashed).")
        self._ssd = tr
        self._fig_common("", None)
        self.fig.data[1].update(x=[], y=[])
        # one view for all six maps: the image and every box a step draws (the big boxes of the small maps
        # stick out), so the image stays put while the boxes grow map after map
        drawn = torch.cat([tr.location(k, h // d, w // d) for k, (h, w) in enumerate(tr.feature_sizes)
                           for d in (2, 4)])
        x0, y0 = min(-0.5, float(drawn[:, 0].min())), min(-0.5, float(drawn[:, 1].min()))
        x1 = max(SSD_SIZE - 0.5, float(drawn[:, 2].max()))
        y1 = max(SSD_SIZE - 0.5, float(drawn[:, 3].max()))
        self.fig.update_xaxes(range=[x0, x1], autorange=False, row=1, col=1)
        self.fig.update_yaxes(range=[y1, y0], autorange=False, row=1, col=1)

    def _refresh_dense(self):
        tr = self._trace
        h, w = tr.input_image.shape[-2:]
        hp, wp = tr.input_tensor.shape[-2:]
        boxes, dense = fcos_dense(tr.class_logits, tr.box_regression, tr.centerness, tr.anchors, (h, w))
        cand = tr.anchor_index_pre_nms
        d_boxes = float((boxes[cand] - tr.boxes_pre_nms).abs().max()) if len(cand) else 0.0
        # the model's own postprocess_detections (NMS off) picks its candidates from the head outputs:
        # each must be a drawn prediction, its score and box (the score rule is checked there, not retyped)
        c_boxes, c_scores, c_labels = tr.candidates_by_the_model
        d_cand, found_c = match_detections(boxes, dense.scores, c_boxes, c_scores, c_labels, (1.0, 1.0))
        det = tr.detections
        diff, found = match_detections(boxes, dense.scores, det.boxes, det.scores, det.labels, tr.scale)
        self.set_check(f"the {len(c_scores)} candidates of the model's own postprocess_detections with its NMS off "
                       "(each one a drawn prediction: score and box)", d_cand, found_c and d_cand <= CHECK_TOLERANCE,
                       more=[(f"the model's box coder at its {len(cand)} candidates before NMS", d_boxes),
                             (f"the model's {len(det.scores)} detections (each one a drawn prediction)", diff,
                              found and diff <= 1e-3)])
        Hf, Wf = tr.feature_sizes[0]
        if len(tr.feature_sizes) == 1:
            where = f"every one of its {Hf} x {Wf} = {Hf * Wf} locations (stride {hp // Hf})"
        else:                        # an FPN: one map per level, finest first (torchvision's order)
            maps = ", ".join(f"{a} x {b}" for a, b in tr.feature_sizes)
            where = (f"every one of its {len(dense.best_score):,} locations on {len(tr.feature_sizes)} feature maps "
                     f"({maps}; strides {', '.join(str(hp // a) for a, _ in tr.feature_sizes)})")
        self.set_note(f"Drawn: the FCOS model's prediction at {where} in its {w} x {h} input frame "
                      f"(padded to {wp} x {hp}, a multiple of 32: "
                      "the blank strip), before its score threshold "
                      f"({tr.score_threshold:g}) and NMS (IoU {tr.nms_threshold:g}); dot colour = best class score "
                      "sqrt(sigmoid(class) · sigmoid(centre-ness)).")
        order = torch.argsort(dense.best_score, descending=True, stable=True)   # ties: the same order everywhere
        self._dense = (boxes, dense, order[:min(DENSE_STEPS, len(order))])
        self._fig_common("", dense.best_label[dense.best_score >= 0.3])
        self.fig.update_xaxes(range=[-0.5, wp - 0.5], row=1, col=1)
        self.fig.update_yaxes(range=[hp - 0.5, -0.5], row=1, col=1)
        self.fig.data[1].update(x=[], y=[])
        p = dense.points
        self.fig.data[3].update(x=p[:, 0].tolist(), y=p[:, 1].tolist(),
                                marker=dict(color=dense.best_score.tolist(), size=6))

    def _fig_common(self, extra: str, labels):
        v = self.view.value
        img = self._ssd_img if v == "SSD default boxes" else (
            to_uint8(self._trace.input_image) if v == "dense predictions" else self._img)
        # each view's picture encoded once (a PNG costs ~13 ms; the pictures change only with the image)
        if v not in self._uris:
            self._uris[v] = png_uri(img)
        self.fig.data[0].source = self._uris[v]
        self.fig.layout.shapes = ()
        H, W_ = img.shape[:2]
        self.fig.update_xaxes(range=[-0.5, W_ - 0.5], autorange=None, row=1, col=1)
        self.fig.update_yaxes(range=[H - 0.5, -0.5], autorange="reversed", row=1, col=1)
        present = sorted({int(v) for v in labels.tolist()}) if labels is not None else []
        text = legend_html(self._classes, present, "boxes") if present else ""
        self.fig.layout.annotations[0].text = " &nbsp;·&nbsp; ".join(t for t in (text, extra) if t)

    # ------------------------------------------------------------------ steps
    def n_steps(self) -> int:
        v = self.view.value
        if v == "YOLO grid":
            return self.S.value ** 2 + 1
        if v == "SSD default boxes":
            return len(SSD300_FEATURE_SIZES)
        return len(self._dense[2]) + 1

    def frame(self, k: int) -> dict:
        v = self.view.value
        if v == "YOLO grid":
            return self._frame_yolo(k)
        if v == "SSD default boxes":
            return self._frame_ssd(k)
        return self._frame_dense(k)

    def _frame_yolo(self, k: int) -> dict:
        tr, enc = self._yolo
        S, B = tr.S, tr.B
        gt_xy = {"x": [], "y": []}     # the true boxes are the layout's shapes (one colour per class)
        if k == 0:
            heat = tr.confidence.amax(-1)           # which cells hold an object
            return {"layout": _row_ticks(None),
                    "data": {2: gt_xy, 4: {"x": [], "y": []}, 5: {"x": [], "y": []}, 6: {"x": [], "y": []},
                             7: {"x": [], "y": [], "text": []},
                             8: self._heat([[round(float(x), 2) for x in row] for row in heat.tolist()],
                                           [str(c) for c in range(S)], [str(r) for r in range(S)],
                                           "max conf per cell")},
                    # two lines at 1280 px, as the cell captions after it (the plot does not jump on play)
                    "caption": f"{S} x {S} cells, each {_plural(B, 'base box', 'base boxes')} × 5 numbers "
                               "(dx, dy, dw, dh, confidence) + "
                               f"{tr.C} class scores = {5 * B + tr.C}: output {S} x {S} x {5 * B + tr.C}. Dotted: "
                               "the true boxes. Right: each cell's largest confidence. Play reads it cell by cell."}
        r, c = divmod(k - 1, S)
        vec = tr.tensor[r, c]
        base = tr.base_boxes[r, c].tolist()
        conf = tr.confidence[r, c]
        live = [b for b in range(B) if conf[b] > 0]
        cls = int(tr.class_scores[r, c].argmax())
        colour = class_hex(cls) if cls else NO_CLASS
        tx, ty, tt = [], [], []
        for b in range(B):
            x1, y1 = tr.boxes[r, c, b, 0].item(), tr.boxes[r, c, b, 1].item()
            if conf[b] > 0:
                tx.append(max(0.0, x1))
                ty.append(max(12.0, y1))
                tt.append(f"box {b + 1}: conf {float(conf[b]):.2f}, {self._classes[cls]}")
        cell = tr.cell_box(r, c)
        data = {2: gt_xy, 4: dict(zip("xy", rect_path(base))),
                5: dict(zip("xy", rect_path(tr.boxes[r, c, live].tolist()))) if live else {"x": [], "y": []},
                6: dict(zip("xy", rect_path([cell]))), 7: {"x": tx, "y": ty, "text": tt},
                8: self._heat(*_cell_table(vec, B, self._classes), f"cell ({r}, {c})", fixed=True)}
        data[4]["line"] = dict(BASE_LINE)
        data[5]["line"] = {"color": colour, "width": MAIN_WIDTH}
        objs = [i for i in range(len(enc.boxes)) if enc.kept[i] and tuple(enc.cells[i].tolist()) == (r, c)]
        if objs:
            what = "; ".join(f"the {self._classes[int(enc.labels[i])]} centred here: box {int(enc.responsible[i]) + 1} "
                             f"(IoU {float(enc.ious[i, enc.responsible[i]]):.2f} with its base box) predicts it"
                             for i in objs)
            msg = f"cell ({r}, {c}): {what}; class scores one-hot for {self._classes[cls]}."
        else:
            conf_words = "its confidence is 0" if B == 1 else f"all {B} confidences are 0"
            msg = (f"cell ({r}, {c}): no object centre falls here, so {conf_words} and the class "
                   f"scores say {self._classes[0]}.")
        msg += (f" Its {5 * B + tr.C} numbers on the right: a row per base box (dx, dy, dw, dh, conf), then the "
                f"{tr.C} class scores; dashed: its {_plural(B, 'base box', 'base boxes')}.")
        return {"data": data, "layout": _row_ticks(data[8]["y"]), "caption": msg}

    def _frame_ssd(self, k: int) -> dict:
        tr = self._ssd
        Hf, Wf = tr.feature_sizes[k]
        cen = tr.centres[k] * torch.tensor([SSD_SIZE, SSD_SIZE])
        centre_loc = tr.location(k, Hf // 2, Wf // 2).tolist()
        corner = tr.location(k, Hf // 4, Wf // 4).tolist()
        K = tr.wh[k].shape[0]
        rows = ["s_k square", "√(s_k·s_k+1) square"] + [f"{name} {a:g}" for a in tr.aspect_ratios[k]
                                                         for name in ("wide", "tall")]
        wh = (tr.wh[k] * SSD_SIZE).tolist()
        stride = SSD_SIZE / Hf if tr.steps is None else tr.steps[k]
        data = {2: {"x": [], "y": []}, 3: {"x": cen[:, 0].tolist(), "y": cen[:, 1].tolist(),
                                         "marker": {"color": "white", "size": 5 if Hf > 12 else 9}},
                4: dict(zip("xy", rect_path(corner))), 5: dict(zip("xy", rect_path(centre_loc))),
                6: {"x": [], "y": []}, 7: {"x": [], "y": [], "text": []},
                8: self._heat([[round(a, 1), round(b, 1)] for a, b in wh], ["width px", "height px"], rows[:K],
                              f"map {k + 1}")}
        # default boxes have no class: black, not a class's colour; thin on the fine maps, where four boxes
        # of 20-30 px drawn 4 px wide merged into one black square
        width = 1.5 if Hf >= 19 else 3
        data[4]["line"] = {"color": NO_CLASS, "width": width, "dash": "dash"}
        data[5]["line"] = {"color": NO_CLASS, "width": width}
        msg = (f"feature map {k + 1} of {len(tr.feature_sizes)}: {Hf} x {Wf} locations (one every {stride:g} px), "
               f"{K} default boxes each = {tr.per_level[k]:,} boxes, scale s_k = {tr.scales[k]:g} of the image "
               f"({tr.scales[k] * SSD_SIZE:.0f} px). Small maps, big boxes. Total over the six maps: "
               f"{sum(tr.per_level):,}.")
        return {"data": data, "layout": _row_ticks(data[8]["y"]), "caption": msg}

    def _frame_dense(self, k: int) -> dict:
        boxes, dense, order = self._dense
        tr = self._trace
        strong = (dense.best_score >= 0.3).nonzero().flatten()
        data = {2: dict(zip("xy", rect_path(boxes[strong].tolist()))) if len(strong) else {"x": [], "y": []},
                4: {"x": [], "y": []}, 6: {"x": [], "y": []}}
        if k == 0:
            Hf, Wf = tr.feature_sizes[0]
            grid = dense.best_score[:Hf * Wf].reshape(Hf, Wf)        # the finest map (the first level)
            which = "" if len(tr.feature_sizes) == 1 else f"the finest of its {len(tr.feature_sizes)} maps, "
            # traces 5 and 6 as built (the later steps colour the box and draw the point as a marker)
            data.update({5: {"x": [], "y": [], "line": {"color": NO_CLASS, "width": MAIN_WIDTH}},
                         6: {"x": [], "y": [], "mode": "lines", "marker": None}, 7: {"x": [], "y": [], "text": []},
                         8: self._heat([[round(float(x), 2) for x in row] for row in grid.tolist()],
                                       [str(c) for c in range(grid.shape[1])], [str(r) for r in range(grid.shape[0])],
                                       "best score", scores=True)})
            return {"data": data, "layout": _row_ticks(None), "caption": f"Every location predicts a box and class scores: {len(boxes)} "
                                             f"predictions, dots coloured by their best score (right: the same as "
                                             f"{which}a {grid.shape[0]} x {grid.shape[1]} map). Dotted: the "
                                             f"{len(strong)} boxes scoring ≥ 0.3. Press play for the best locations."}
        i = int(order[k - 1])
        lab = int(dense.best_label[i])
        Wf = tr.feature_sizes[0][1]
        r, c = divmod(i, Wf)
        reg = tr.box_regression[i].tolist()
        rows = [f"p({n})" for n in self._classes[1:]] + ["centre-ness", "l", "t", "r", "b"]
        vals = [round(float(x), 2) for x in dense.scores[i, 1:].tolist()] + [round(float(dense.centerness[i]), 2)] \
            + [round(v, 2) for v in reg]
        b = boxes[i].tolist()
        data.update({5: {**dict(zip("xy", rect_path([b]))), "line": {"color": class_hex(lab), "width": MAIN_WIDTH}},
                     6: {"x": [dense.points[i, 0].item()], "y": [dense.points[i, 1].item()]},
                     7: {"x": [max(0.0, b[0])], "y": [max(10.0, b[1])],
                         "text": [f"{self._classes[lab]} {float(dense.best_score[i]):.2f}"]},
                     8: self._heat([[v] for v in vals], [f"loc ({r}, {c})"], rows, f"location ({r}, {c})")})
        data[6]["mode"] = "markers"
        data[6]["marker"] = {"size": 14, "color": YELLOW, "line": {"color": "black", "width": 1}}
        return {"data": data, "layout": _row_ticks(data[8]["y"]), "caption": f"#{k} best location ({r}, {c}): {self._classes[lab]} with score "
                                         f"{float(dense.best_score[i]):.2f}; its box is the point pushed out by "
                                         "(l, t, r, b) × 8 px. Neighbours predict near-copies: NMS keeps one."}

    @staticmethod
    def _heat(z, x, y, title, scores: bool = False, fixed: bool = False) -> dict:
        # numbers in the cells while they fit at 16 px (a big map is read by colour)
        fits = len(z) <= 24 and max(len(row) for row in z) <= 8
        text = [["" if v is None or not fits else html.escape(f"{v:g}") for v in row] for row in z]
        # scores 0..1 in the colours of the dots; any other numbers blue/red around 0
        # (``fixed``: a YOLO cell's numbers on one scale -1..1 at every cell, so a 1 is always the same blue)
        colours = dict(colorscale=VIRIDIS, zauto=False, zmin=0, zmax=1) if scores else \
            dict(colorscale=RDBU, zauto=False, zmin=-1, zmax=1, zmid=None) if fixed else \
            dict(colorscale=RDBU, zauto=True, zmin=None, zmax=None, zmid=0)
        return {"z": z, "x": x, "y": y, "text": text, "name": title, **colours}

    def _state(self) -> dict:
        """Depends on ``view``. YOLO grid: ``tensor (S, S, 5B + C)`` (the target of the objects),
        ``boxes (S, S, B, 4)`` decoded, ``base_boxes (S, S, B, 4)``, ``confidence (S, S, B)``,
        ``class_scores (S, S, C)``, ``cell`` ``(row, col)`` of the step (None at step 0), ``S``, ``B``,
        ``C``, ``objects (N, 4)`` and ``labels (N,)`` encoded. SSD default boxes: ``default_boxes (A, 4)``,
        ``per_level`` counts, ``feature_sizes``, ``level`` (the step's map). Dense predictions:
        ``dense_boxes (A, 4)``, ``dense_scores (A, C)``, ``best_score (A,)``, ``best_label (A,)`` per
        location (input frame), ``location`` of the step (None at step 0). Always ``view``."""
        v, k = self.view.value, self.step.value
        out = {"view": v}
        if v == "YOLO grid":
            tr, enc = self._yolo
            out.update(tensor=tr.tensor, boxes=tr.boxes, base_boxes=tr.base_boxes, confidence=tr.confidence,
                       class_scores=tr.class_scores, S=tr.S, B=tr.B, C=tr.C, objects=enc.boxes, labels=enc.labels,
                       cell=None if k == 0 else divmod(k - 1, tr.S))
        elif v == "SSD default boxes":
            tr = self._ssd
            out.update(default_boxes=tr.boxes, per_level=list(tr.per_level), feature_sizes=list(tr.feature_sizes),
                       level=k)
        else:
            boxes, dense, order = self._dense
            out.update(dense_boxes=boxes, dense_scores=dense.scores, best_score=dense.best_score,
                       best_label=dense.best_label, location=None if k == 0 else int(order[k - 1]))
        return out
