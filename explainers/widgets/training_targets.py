"""How a detector is taught: the single-object multitask loss, then Faster R-CNN's targets and four losses."""
from __future__ import annotations

import functools

import ipywidgets as W
import numpy as np
import torch
from plotly.subplots import make_subplots

from ..models.render import class_hex, legend_html, to_uint8
from ..ops.reference import reference_decode_boxes
from ..ops.targets import BOX_LOSSES, multitask_loss
from ..ops.targets_reference import (reference_box_iou, reference_encode, reference_fastrcnn_loss, reference_match,
                                     reference_multitask_loss, reference_rpn_compute_loss, reference_sample)
from ._base import GREEN, GREY, ORANGE, SKY, VERMILLION, YELLOW, Explainer, fmt, halo, png_uri, rect_path

VIEWS = ("single object", "Faster R-CNN")
#: the slide: one object, class scores for cat / dog / car and a box (x, y, w, h); the box numbers
#: are fractions of the image's width and height, so that the two losses are of comparable size
LECTURE_CLASSES = ("cat", "dog", "car")
LECTURE_SCORES = (3.0, 0.1, -1.5)
LECTURE_TRUE_CLASS = 0
LECTURE_BOX_PRED = (0.30, 0.25, 0.40, 0.50)
LECTURE_BOX_TRUE = (0.28, 0.22, 0.45, 0.55)
LECTURE_IMAGE = (480, 640)
#: the held-out shapes scene both sources use for the Faster R-CNN view (the slide has no numbers)
SCENE_SEED = 10_000_005
#: at most this many positives get their (dx, dy, dw, dh) written on the image
MAX_NUMBERS = 4
SINGLE_STEPS = ("the object, its true box and the predicted box", "class scores", "softmax and cross-entropy",
                "box loss, coordinate by coordinate", "total = class loss + weight × box loss")
FASTER_STEPS = ("ground truth", "anchor labels", "the sampled anchors", "regression targets", "RPN losses",
                "box head: sampled proposals", "the four losses")
#: the single-object view: the true box is solid in its class's colour, the predicted box dashed in
#: black (no class has black, so the two never share a colour, whatever the true class)
PRED_COLOUR = "#000000"
TRUE_DASH, PRED_DASH = "solid", "dash"
#: the single-object view: two labels stacked below the boxes are this fraction of the image's height apart
LABEL_LINE = 1 / 14
#: the Faster R-CNN view: ground-truth boxes (px) drawn thinner than the positive boxes under them
GT_WIDTH, POSITIVE_WIDTH = 2, 7
#: the image panel's title in the single-object view: which box is which, at every step
SINGLE_IMAGE_TITLE = "image: ━ true box (its class colour) · ┅ predicted box (black, dashed)"
#: the steps (0-based) that draw bars, per view; at the others the bar panel's title says, in grey,
#: at which step it fills (so no panel stands empty under a plain title)
BAR_STEPS = {VIEWS[0]: (1, 2, 3, 4), VIEWS[1]: (0, 1, 2, 3, 4, 5, 6)}
#: the Faster R-CNN view's bar titles where they are not scores or losses (counts, targets)
COUNT_TITLES = {0: "anchors and true boxes", 1: "anchors by label", 2: "the anchors sampled", 3: "positive #1's targets", 5: "the RoIs sampled"}
BARS_TITLE = "scores and losses"
LOSS_NAMES = {"loss_objectness": "RPN object?", "loss_rpn_box_reg": "RPN box", "loss_classifier": "final class",
              "loss_box_reg": "final box"}


def lecture_picture() -> np.ndarray:
    """The single-object view's picture, ``LECTURE_IMAGE`` (480, 640, 3) uint8: a light canvas with
    scikit-image's public-domain cat photo (``chelsea``) filling the true box, so that "true box: cat"
    frames a cat (the slide's picture). The photo is cropped to the box's shape, not stretched."""
    from PIL import Image
    from skimage import data

    H, W_ = LECTURE_IMAGE
    x, y, w, h = LECTURE_BOX_TRUE
    x0, y0, bw, bh = round(x * W_), round(y * H), round(w * W_), round(h * H)
    cat = data.chelsea()
    ch, cw = cat.shape[:2]
    if cw / ch > bw / bh:                       # the photo is wider than the box: keep its middle
        keep = round(ch * bw / bh)
        cat = cat[:, (cw - keep) // 2:(cw - keep) // 2 + keep]
    else:
        keep = round(cw * bh / bw)
        cat = cat[(ch - keep) // 2:(ch - keep) // 2 + keep]
    canvas = np.full((H, W_, 3), 245, np.uint8)
    canvas[y0:y0 + bh, x0:x0 + bw] = np.asarray(Image.fromarray(cat).resize((bw, bh), Image.BILINEAR))
    return canvas


@functools.lru_cache(maxsize=1)
def _lecture_picture_and_uri() -> tuple[np.ndarray, str]:
    """:func:`lecture_picture` and its PNG data URI, made once per process (20 ms of every frame
    and control change when encoded each time)."""
    img = lecture_picture()
    img.setflags(write=False)
    return img, png_uri(img)


def _xywh(b) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in b)
    return [x1, y1, x2 - x1, y2 - y1]


def _centres(boxes: torch.Tensor) -> tuple[list, list]:
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    return c[:, 0].tolist(), c[:, 1].tolist()


def _thousands(v: float) -> str:
    """A count as a bar label: 3,972."""
    return f"{v:,.0f}"


def short(v: float) -> str:
    """A bar label of at most 6 characters: 0.362, 0.0051, 2.7e-4 (a pair of bars is ~50 px wide each
    at 1280 px, a character of 16 px text ~8.5 px)."""
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0 or abs(v) >= 0.01:
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.2g}"
    if abs(v) >= 0.001:
        return f"{v:.2g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


class TrainingTargetsExplainer(Explainer):
    """What a detector is taught. ``view="single object"``: class scores -> softmax ->
    cross-entropy, plus an L2 or smooth-L1 loss between the predicted and the true box, summed with
    a weight (the slide's two losses). ``view="Faster R-CNN"``: on a shapes scene with its ground
    truth, the anchors labelled positive (IoU >= 0.7) / negative (< 0.3) / ignored, the 256 sampled
    anchors, the regression targets ``(dx, dy, dw, dh)`` of the positives, the box head's sampled
    proposals and the four losses, recomputed with :mod:`explainers.ops` from what a training-mode
    copy of the model computed (:mod:`explainers.models.training_targets`) and checked against
    torchvision and the model's own loss dict.

    ``image`` and ``target`` (a dict with ``boxes (G, 4)``, ``labels (G,)`` and, for Mask R-CNN,
    ``masks (G, H, W)``) replace the held-out scene in live mode; ``model`` any two-stage detector.
    """

    image_free = ('view', 'weight', 'box_loss')
    lecture_uses_model = True

    title = "Training targets: how a detector is taught"
    play_interval = 1400
    #: live on an image of the user's, the page needs that image's ground truth (``target=``)
    needs_target = True

    def __init__(self, source: str = "lecture", image=None, model=None, target: dict | None = None):
        self.target = target
        super().__init__(source, image, model)

    # ------------------------------------------------------------------ build
    def _build(self):
        self.view = W.ToggleButtons(options=VIEWS, value=VIEWS[0], description="view",
                                    style={"button_width": "140px"})
        self.weight = W.FloatSlider(value=1.0, min=0.0, max=10.0, step=0.5, description="box weight",
                                    style={"description_width": "initial"}, layout=W.Layout(width="300px"))
        self.box_loss = W.Dropdown(options=BOX_LOSSES, value="L2", description="box loss",
                                   layout=W.Layout(width="200px"))
        self.view.observe(lambda _: self.guard(self.refresh), "value")
        # the weight and the box loss change the numbers, not the steps: the step shown stays (raising
        # the weight at the total's step shows the total change at once)
        for c in (self.weight, self.box_loss):
            c.observe(lambda _: self.guard(self.refresh, keep_step=True), "value")
        self.controls = W.HBox([self.view, self.weight, self.box_loss])
        if self.source == "live" and self.model is not None:   # a model this page cannot use: say so at once
            from ..models.training_targets import two_stage_module

            two_stage_module(self.model)
        fig = make_subplots(1, 2, column_widths=[0.5, 0.5], horizontal_spacing=0.1,
                            subplot_titles=("image", "scores and losses"))
        fig.add_image(source=png_uri(np.full((8, 8, 3), 245, np.uint8)), hoverinfo="skip", row=1, col=1)   # 0
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(size=4, color=GREY), row=1, col=1)           # 1 neg
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(size=7, color=YELLOW,                          # 2 ign
                        line=dict(color="black", width=0.5)), row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="markers", marker=dict(size=7, color=SKY), row=1, col=1)            # 3 drawn neg
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=SKY, width=1.5), row=1, col=1)             # 4 neg boxes
        # 5 positive boxes: wide, so they show around the thinner ground-truth box drawn on them (layout
        # shapes are drawn above traces, and a positive anchor often lies almost on its object's box)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=GREEN, width=POSITIVE_WIDTH), row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=PRED_COLOUR, width=4, dash=PRED_DASH),  # 6 pred
                        row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines+markers", line=dict(color=VERMILLION, width=3),              # 7 arrows
                        marker=dict(symbol="arrow", angleref="previous", size=14, color=VERMILLION), row=1, col=1)
        fig.add_scatter(x=[], y=[], text=[], mode="text", textposition="bottom right", cliponaxis=False,                     # 8 numbers
                        textfont=dict(size=16, color="black", **halo()), row=1, col=1)
        fig.add_bar(x=[], y=[], text=[], textposition="outside", textfont=dict(size=16), marker_color=SKY, cliponaxis=False,  # 9 ops
                    name="this page (ops)", row=1, col=2)
        fig.add_bar(x=[], y=[], text=[], textposition="outside", textfont=dict(size=16), marker_color=ORANGE, cliponaxis=False,  # 10
                    name="", row=1, col=2)
        # square pixels: the panel shrinks to the image (constrain="domain") instead of stretching the
        # axes past it (a tall live scene was drawn on an x axis running -100..250)
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                         row=1, col=1)
        fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain", row=1, col=1)
        fig.update_yaxes(showgrid=True, zeroline=True, row=1, col=2)
        fig.update_traces(showlegend=False, selector=dict(type="scatter"))
        self._use_figure(fig, 540)
        # the bars' legend at the top of the figure (its margin), above the panel's title whatever the
        # height the page gives the plot (at y=1.06 of the plot area it sat on the title)
        self.fig.update_layout(barmode="group", showlegend=True,
                               legend=dict(x=0.55, y=1, xanchor="left", yanchor="top", yref="container",
                                           orientation="h", font=dict(size=16)))
        self._run = self._rec = None

    # ------------------------------------------------------------------ data
    def _scene(self):
        """The image ``(3, H, W)`` and its target (live: the user's, else the held-out scene)."""
        if self.source == "live" and self.image is not None:
            from ..models.images import load_image
            from ..models.training_targets import target_for_image

            loaded = load_image(self.image)              # a missing or broken image says so first
            if self.target is None:
                raise ValueError("to show what a detector is taught on your image, give its ground truth: "
                                 "target={'boxes': ..., 'labels': ...}")
            return loaded.tensor, target_for_image(self.target, loaded)
        if self.source == "live" and self.model is not None and not self.model.is_shapes:
            # the held-out scene's labels are the shapes model's classes, not this model's
            raise ValueError("the shapes scene's ground truth is in the shapes models' classes (circle, square, "
                             "triangle), not this model's: give an image of yours and its ground truth, image=..., "
                             "target={'boxes': ..., 'labels': ...}")
        from ..models import make_scene

        scene = make_scene(SCENE_SEED)
        return scene.tensor(), scene.target()

    def _load_run(self):
        if self._run is not None:
            return
        from ..models import get
        from ..models.training_targets import training_run

        image, target = self._scene()
        model = self.model or get("detection", "shapes")
        self._classes = list(model.classes)
        self._run = training_run(model, image, target)
        img = to_uint8(self._run.image)
        self._run_picture = (img, png_uri(img))        # encoded once per run, not at every control change

    # ------------------------------------------------------------------ refresh
    def refresh(self, keep_step: bool = False):
        single = self.view.value == VIEWS[0]
        self.fig.layout.annotations[0].text = SINGLE_IMAGE_TITLE if single else "image"
        self.weight.layout.display = self.box_loss.layout.display = None if single else "none"
        if single and self.source == "lecture":
            self._refresh_lecture_single()
        else:
            self._load_run()
            self._refresh_model()
            if single:
                self._refresh_live_single()
            else:
                self._refresh_faster()
        self._reset_steps(keep=keep_step)

    def _single(self, scores, true_class, box_pred, box_true):
        tr = multitask_loss(scores, true_class, box_pred, box_true, self.weight.value, self.box_loss.value)
        ce, box, total = reference_multitask_loss(scores, true_class, box_pred, box_true, self.weight.value,
                                                  self.box_loss.value)
        diff = max(abs(float(tr.class_loss - ce)), abs(float(tr.box_loss - box)), abs(float(tr.total - total)))
        self._mt, self._mt_ref = tr, (float(ce), float(box), float(total))
        return diff

    def _refresh_lecture_single(self):
        H, W_ = LECTURE_IMAGE
        self._img, self._img_uri = _lecture_picture_and_uri()   # made once: no control changes the picture
        self._names = list(LECTURE_CLASSES)
        self._colour = [class_hex(k + 1) for k in range(len(LECTURE_CLASSES))]
        self._frac = (W_, H)
        diff = self._single(LECTURE_SCORES, LECTURE_TRUE_CLASS, LECTURE_BOX_PRED, LECTURE_BOX_TRUE)
        self.set_check("F.cross_entropy + weight × " + ("F.mse_loss" if self.box_loss.value == "L2" else
                                                          "F.smooth_l1_loss"), diff)
        self.set_note("The slide's numbers: scores for cat, dog and car and a box (x, y, w, h) as fractions of the "
                      "image's width and height. The cat: scikit-image's public-domain photo 'chelsea', placed in "
                      "its true box. One object is 4 box numbers; dog, dog and cat would be 12, and each image a "
                      "different count, which one fixed output cannot be: a detector predicts a box at every anchor "
                      "and is taught only where an anchor matches an object (the Faster R-CNN view).")

    def _refresh_model(self):
        from ..models.training_targets import recompute

        self._rec = recompute(self._run)
        self._img, self._img_uri = self._run_picture

    def _refresh_live_single(self):
        from ..models.training_targets import best_roi, roi_prediction

        run, rec = self._run, self._rec
        k = best_roi(rec, run)
        p = roi_prediction(rec, run, k)
        h, w = run.image.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        self._frac = (w, h)
        self._names = list(self._classes)
        self._colour = [class_hex(i) for i in range(len(self._names))]
        self._roi = p
        diff = self._single(p["scores"], p["label"], torch.tensor(_xywh(p["box_pred"])) / scale,
                            torch.tensor(_xywh(p["box_true"])) / scale)
        # the class term drawn is this RoI's term of the box head's loss, whose mean over the sampled
        # RoIs is the model's own loss_classifier; the predicted box drawn is torchvision's decoding
        model_ce = run.losses.get("loss_classifier", float("inf"))
        what = f"the model's loss_classifier (mean of this term over its {len(rec.box_loss.class_terms)} sampled RoIs)"
        more = [(what, max(abs(float(rec.box_loss.loss_classifier) - model_ce),
                           abs(float(self._mt.class_loss) - float(rec.box_loss.class_terms[k]))))]
        decoded = reference_decode_boxes(p["regression"][None], p["proposal"][None], run.roi_settings["weights"])[0]
        more.append(("torchvision's BoxCoder.decode (the predicted box drawn)", float((p["box_pred"] - decoded).abs().max())))
        self.set_check("F.cross_entropy + weight × " + ("F.mse_loss" if self.box_loss.value == "L2" else
                                                          "F.smooth_l1_loss"), diff, more=more)
        self.set_note(f"One object inside the live model: the RoI (proposal) of its box head that overlaps the "
                      f"first object most, its {len(self._names)} class scores and its predicted box for the true "
                      f"class, in the training-mode run (seed {run.seed}"
                      + ("; as while it learns, its BatchNorm layers use this one image's statistics instead "
                         "of those it learned, so it is much less sure than on the detection page: a low "
                         "probability for the true class here is that, not a wrong model" if run.batch_norms else "")
                      + f"); box numbers are fractions of the "
                      f"{w}x{h} input. The page's own box loss is a plain {self.box_loss.value} on (x, y, w, h); "
                      "Faster R-CNN's box head uses smooth L1 on (dx, dy, dw, dh) (see the Faster R-CNN view).")

    def _refresh_faster(self):
        run, rec = self._run, self._rec
        rs = run.rpn_settings
        # torchvision, on the same inputs and random states
        # torchvision's box_iou -> Matcher, from the ground truth and the anchors (not given the page's IoU),
        # and the boxes it matched -> BoxCoder.encode (not given the page's matches)
        ref_iou = reference_box_iou(run.gt_boxes, run.anchors)
        ref_match = reference_match(ref_iou, rs["high"], rs["low"], True)
        match_diff = float((ref_match != rec.rpn.match.matches).sum())
        iou_diff = float((ref_iou - rec.rpn.match.iou).abs().max())
        ref_pos, ref_neg = reference_sample(rec.rpn.labels, rs["batch"], rs["fraction"], run.rng_rpn)
        st = rec.rpn_sample
        sample_diff = float((ref_pos != st.pos_mask).sum() + (ref_neg != st.neg_mask).sum())
        enc = reference_encode(run.gt_boxes[ref_match.clamp(min=0)], run.anchors, rs["weights"])
        enc_diff = float((enc - rec.rpn.regression_targets).abs().max())
        r_obj, r_box = reference_rpn_compute_loss(run.objectness, run.deltas, rec.rpn.labels,
                                                  rec.rpn.regression_targets, run.rng_rpn, rs["batch"], rs["fraction"])
        r_cls, r_reg = reference_fastrcnn_loss(run.class_logits, run.box_regression, rec.box.sampled_labels,
                                               rec.box.regression_targets)
        loss_diff_tv = max(abs(rec.losses["loss_objectness"] - float(r_obj)),
                           abs(rec.losses["loss_rpn_box_reg"] - float(r_box)),
                           abs(rec.losses["loss_classifier"] - float(r_cls)),
                           abs(rec.losses["loss_box_reg"] - float(r_reg)))
        from ..models.training_targets import loss_diff, sampled_proposals_diff

        model_diff = max(loss_diff(rec, run), sampled_proposals_diff(rec, run))
        self.set_check("torchvision's box_iou", iou_diff, more=[
            ("torchvision's Matcher on it", match_diff, match_diff == 0),
            ("the sampler (same seed)", sample_diff, sample_diff == 0),
            ("BoxCoder.encode", enc_diff),
            ("torchvision's loss functions", loss_diff_tv),
            ("the model's own loss dict", model_diff)])
        where = (f"the held-out shapes scene {SCENE_SEED} with its ground truth"
                 if self.image is None else "your image with its ground truth")
        lecture = ("The slide gives no numbers for training: this view uses the same shapes scene as live. "
                   if self.source == "lecture" else "")
        self.set_note(f"{lecture}Drawn: {where}, resized by the model to {run.image.shape[-1]}x{run.image.shape[-2]}; "
                      f"a training-mode copy of the model ran once (seed {run.seed}, its BatchNorm on this image's "
                      "statistics, no weight changed). The model's own sampled RoIs and loss dict "
                      f"(incl. loss_mask = {run.losses.get('loss_mask', float('nan')):.3f}, not recomputed here) are "
                      "compared.")
        self._checks = dict(match=match_diff, sample=sample_diff, encode=enc_diff, torchvision=loss_diff_tv,
                            model=model_diff)

    # ------------------------------------------------------------------ steps
    def n_steps(self) -> int:
        return len(SINGLE_STEPS) if self.view.value == VIEWS[0] else len(FASTER_STEPS)

    def _empty(self) -> dict:
        e = {"x": [], "y": []}
        return {i: dict(e) for i in range(1, 9)} | {8: {"x": [], "y": [], "text": [], "textposition": "bottom right"},
                                                     # the bars as built (a step that draws none leaves
                                                     # nothing of another's: a frame is its step's alone)
                                                     9: {"x": [], "y": [], "text": [], "showlegend": False,
                                                         "name": "this page (ops)", "marker": {"color": SKY}},
                                                     10: {"x": [], "y": [], "text": [], "showlegend": False,
                                                          "name": ""}}

    def _bars(self, data, names, ours, theirs=None, their_name="", fmt_=None, colours=None):
        """Bars of this page's numbers (trace 9; ``colours``: one per bar, e.g. the classes' own, else
        one colour) and, beside them, the reference's (trace 10). A pair's labels are at most 6
        characters each (:func:`short`), so two side by side never run together."""
        fmt_ = fmt_ or (short if theirs is not None else fmt)
        data[9] = {"x": list(names), "y": [float(v) for v in ours], "text": [fmt_(float(v)) for v in ours],
                   "name": "this page (ops)", "showlegend": theirs is not None,
                   "marker": {"color": list(colours) if colours is not None else SKY}}
        if theirs is not None:
            data[10] = {"x": list(names), "y": [float(v) for v in theirs], "text": [fmt_(float(v)) for v in theirs],
                        "name": their_name, "showlegend": True}

    def _base_layout(self, shapes, data, k: int, title: str = BARS_TITLE) -> dict:
        """The image's extent; the loss axes only at the steps that draw bars (no empty chart),
        under ``title``."""
        h, w = self._img.shape[:2]
        bars = bool(len(data.get(9, {}).get("x") or []))
        titles = [a.to_plotly_json() for a in self.fig.layout.annotations]
        if bars:
            titles[1].update(text=title, font=dict(titles[1].get("font") or {}, color=None))
        else:
            later = [s for s in BAR_STEPS[self.view.value] if s > k]
            named = COUNT_TITLES if self.view.value == VIEWS[1] else {}
            text = (f"{named.get(later[0], BARS_TITLE)}: at step {later[0] + 1}" if later
                    else f"{BARS_TITLE}: none at this step")
            titles[1].update(text=text, font=dict(titles[1].get("font") or {}, color=GREY))
        # the image's extent exactly (autorange would pad it for the labels drawn past its edges)
        return {"shapes": shapes, "xaxis": {"range": [-0.5, w - 0.5], "autorange": False},
                "yaxis": {"range": [h - 0.5, -0.5], "autorange": False},
                "yaxis2": {"autorange": True, "visible": bars}, "xaxis2": {"visible": bars},
                "annotations": titles}

    def frame(self, k: int) -> dict:
        if self.view.value == VIEWS[0]:
            return self._frame_single(k)
        return self._frame_faster(k)

    def _box_shape(self, box, colour, width=4, dash="solid") -> dict:
        x1, y1, x2, y2 = (float(v) for v in box)
        return dict(type="rect", xref="x", yref="y", x0=x1, y0=y1, x1=x2, y1=y2,
                    line=dict(color=colour, width=width, dash=dash))

    def _frame_single(self, k: int) -> dict:
        tr, (w, h) = self._mt, self._frac
        corner = lambda b: [b[0] * w, b[1] * h, (b[0] + b[2]) * w, (b[1] + b[3]) * h]
        true_box, pred_box = corner(tr.box_true.tolist()), corner(tr.box_pred.tolist())
        c = tr.true_class
        name = self._names[c] if c < len(self._names) else str(c)
        data = self._empty()
        data[0] = {"source": self._img_uri}
        data[6] = dict(zip("xy", rect_path([pred_box])))
        # each box named beside it, outside both boxes so no label sits on a box line: "true box" above the
        # boxes' top edge, "predicted box" below their bottom edge; where the image has no room above,
        # both go below, LABEL_LINE apart (a line of 16 px text with its halo is about 1/20 of the
        # image's height: 1/20 apart, the two labels touched)
        h_img = self._img.shape[0]
        line = h_img * LABEL_LINE
        top, bottom = min(true_box[1], pred_box[1]), max(true_box[3], pred_box[3])
        left = min(true_box[0], pred_box[0])
        if top > 1.2 * line:
            ys, pos = [top, bottom], ["top right", "bottom right"]
        else:
            ys, pos = [bottom, bottom + line], ["bottom right", "bottom right"]
        data[8] = {"x": [left, left], "y": ys, "text": [f"true box: {name}", "predicted box"], "textposition": pos}
        shapes = [self._box_shape(true_box, self._colour[c], dash=TRUE_DASH)]
        coords = ["x", "y", "w", "h"]
        if k == 0:
            cap = (f"One object: the true box ({name}, solid) and the box the network predicts (black, dashed), "
                   "each four numbers (x, y, w, h). Training needs two losses: one for the class, one for the box.")
        elif k == 1:
            self._bars(data, self._names, tr.scores, colours=self._colour)      # each class in its colour
            cap = f"The network's class scores (one number per class, any size); the true class is {name}."
        elif k == 2:
            self._bars(data, self._names, tr.probabilities, colours=self._colour)
            cap = (f"softmax makes the scores probabilities; the class loss (cross-entropy) is "
                   f"−log p({name}) = −log {tr.probabilities[c]:.3f} = <b>{float(tr.class_loss):.3f}</b>")
            if self.source == "live" and float(tr.probabilities[c]) < 0.5 and self._run is not None:
                # a trained model that looks wrong here: say why, where the student reads
                cap += (". High for a trained model: one RoI in a training-mode run"
                        + (" (BatchNorm on this image's statistics)" if self._run.batch_norms else ""))
        elif k == 3:
            self._bars(data, coords, tr.box_terms, fmt_=lambda v: f"{v:.3g}")
            diffs = ", ".join(f"{n}: {float(a - b):+.3f}" for n, a, b in zip(coords, tr.box_pred, tr.box_true))
            rule = "(pred − true)²" if tr.box_kind == "L2" else "smooth L1 of (pred − true)"
            cap = (f"Box: predicted − true = {diffs}; each coordinate costs {rule}; "
                   f"the box loss is their sum = <b>{float(tr.box_loss):.4f}</b>")
        else:
            vals = [tr.class_loss, tr.weight * tr.box_loss, tr.total]
            ref = self._mt_ref
            self._bars(data, ["class loss", f"{tr.weight:g} × box loss", "total"], vals,
                       [ref[0], tr.weight * ref[1], ref[2]], "torch.nn.functional")
            cap = (f"{float(tr.class_loss):.3f} + {tr.weight:g} × "
                   f"{float(tr.box_loss):.4f} = <b>{float(tr.total):.3f}</b>: one number, minimised for both tasks "
                   "at once; the weight decides which matters more")
        return {"data": data, "layout": self._base_layout(shapes, data, k),
                "caption": f"<b>{k + 1}. {SINGLE_STEPS[k]}</b>: {cap}"}

    def _frame_faster(self, k: int) -> dict:
        run, rec = self._run, self._rec
        data = self._empty()
        data[0] = {"source": self._img_uri}
        shapes = [self._box_shape(b, class_hex(int(lab)), GT_WIDTH) for b, lab in zip(run.gt_boxes, run.gt_labels)]
        labels, st = rec.rpn.labels, rec.rpn_sample
        anchors = run.anchors
        n_pos, n_neg, n_ign = (int((labels == v).sum()) for v in (1.0, 0.0, -1.0))
        rs, bs = run.rpn_settings, run.roi_settings
        present = sorted({int(v) for v in run.gt_labels.tolist()})
        legend = legend_html(self._classes, present)
        if k == 0:
            # the two counts side by side: thousands of anchors to label for a handful of objects (the
            # anchors' bar is the one step 2 splits into positive, negative and ignored)
            self._bars(data, ["anchors", "true boxes"], [len(anchors), len(run.gt_boxes)], fmt_=_thousands,
                       colours=[GREY, class_hex(present[0]) if len(present) == 1 else SKY])
            cap = (f"The image as the model sees it, with its {len(run.gt_boxes)} ground-truth boxes ({legend}); "
                   f"the RPN has {len(anchors):,} anchors to label.")
        elif k == 1:
            data[1] = dict(zip("xy", _centres(anchors[labels == 0])))
            data[2] = dict(zip("xy", _centres(anchors[labels == -1])))
            data[5] = dict(zip("xy", rect_path(anchors[labels == 1].tolist())))
            n_prom = int((rec.rpn.match.promoted & (labels == 1)).sum())
            # the counts beside the picture: a handful of positives among thousands of negatives
            self._bars(data, ["positive", "negative", "ignored"], [n_pos, n_neg, n_ign], fmt_=_thousands,
                       colours=[GREEN, GREY, YELLOW])
            cap = (f"Each anchor takes the box it overlaps most: <b style='color:{GREEN}'>positive</b> IoU ≥ "
                   f"{rs['high']:g} or an object's best anchor ({n_pos} anchors: {n_pos - n_prom} by IoU, {n_prom} as a "
                   "best anchor only), "
                   f"<b style='color:#777'>negative</b> IoU &lt; {rs['low']:g} ({n_neg:,}), "
                   f"<b style='color:#b8a800'>ignored</b> in between ({n_ign}); dots are anchor centres.")
        elif k == 2:
            data[3] = dict(zip("xy", _centres(anchors[st.neg_drawn])))
            data[5] = dict(zip("xy", rect_path(anchors[st.pos_drawn].tolist())))
            self._bars(data, ["positive", "negative"], [st.num_pos, st.num_neg], fmt_=_thousands, colours=[GREEN, SKY])
            cap = (f"The loss looks at {rs['batch']} anchors per image, at most {rs['fraction']:.0%} positive: "
                   f"all {st.num_pos} positives (green) and {st.num_neg} random negatives (blue), drawn with "
                   "torch.randperm.")
        elif k == 3:
            pos = rec.rpn_loss.positives
            data[5] = dict(zip("xy", rect_path(anchors[pos].tolist())))
            ax, ay = _centres(anchors[pos])
            gx, gy = _centres(rec.rpn.matched_gt_boxes[pos])
            xs, ys = [], []
            for a, b, c, d in zip(ax, ay, gx, gy):
                xs += [a, c, None]
                ys += [b, d, None]
            data[7] = {"x": xs, "y": ys}
            t = rec.rpn.regression_targets[pos]
            if len(pos):
                self._bars(data, ["dx", "dy", "dw", "dh"], t[0].tolist(), fmt_=lambda v: f"{v:.2f}",
                           colours=[VERMILLION] * 4)
            shown = pos[:MAX_NUMBERS]
            # a number beside each positive on the image, its (dx, dy, dw, dh) in the caption (large)
            data[8] = {"x": [float(anchors[i, 0]) + 1 for i in shown], "y": [float(anchors[i, 1]) + 5 for i in shown],
                       "text": [f"#{j + 1}" for j in range(len(shown))], "textposition": "bottom right"}
            listed = "; ".join(f"#{j + 1}: (" + ", ".join(f"{v:.2f}" for v in t[j].tolist()) + ")"
                               for j in range(len(shown)))
            more = f" (first {len(shown)} of {len(pos)})" if len(pos) > len(shown) else ""
            cap = ("Each positive anchor is taught how to move onto its box (arrow: centre to centre), "
                   "dx = (x − x<sub>a</sub>)/w<sub>a</sub>, dy = (y − y<sub>a</sub>)/h<sub>a</sub>, "
                   f"dw = log(w/w<sub>a</sub>), dh = log(h/h<sub>a</sub>){more}: {listed}")
        elif k == 4:
            names = [LOSS_NAMES[n] for n in ("loss_objectness", "loss_rpn_box_reg")]
            ours = [rec.losses["loss_objectness"], rec.losses["loss_rpn_box_reg"]]
            theirs = [run.losses.get("loss_objectness", float("nan")), run.losses.get("loss_rpn_box_reg", float("nan"))]
            self._bars(data, names, ours, theirs, "the model's loss dict")
            cap = (f"binary cross-entropy of the {len(rec.rpn_loss.sampled)} sampled anchors' objectness "
                   f"(mean) = <b>{ours[0]:.4f}</b>; smooth L1 (β = 1/9) of the {len(rec.rpn_loss.positives)} "
                   f"positives' (dx, dy, dw, dh), summed and divided by {len(rec.rpn_loss.sampled)} = "
                   f"<b>{ours[1]:.5f}</b>")
        elif k == 5:
            b = rec.box
            sp, sl = b.sampled_proposals, b.sampled_labels
            data[4] = dict(zip("xy", rect_path(sp[sl == 0].tolist())))
            data[5] = dict(zip("xy", rect_path(sp[sl > 0].tolist())))
            self._bars(data, ["with a class", "background"], [b.sample.num_pos, b.sample.num_neg], fmt_=_thousands,
                       colours=[GREEN, SKY])
            cap = (f"the RPN's {len(run.proposals)} proposals plus the ground truth, matched at IoU "
                   f"{bs['high']:g}; {b.sample.num_pos} with an object's class (green) and {b.sample.num_neg} "
                   f"background (blue) drawn ({bs['batch']} at most, {bs['fraction']:.0%} positive), targets with "
                   f"weights {tuple(int(v) if v == int(v) else v for v in bs['weights'])}.")
        else:
            from ..models.training_targets import FOUR_LOSSES

            names = [LOSS_NAMES[n] for n in FOUR_LOSSES]
            ours = [rec.losses[n] for n in FOUR_LOSSES]
            theirs = [run.losses.get(n, float("nan")) for n in FOUR_LOSSES]
            self._bars(data, names, ours, theirs, "the model's loss dict")
            total = sum(ours)
            cap = (f"what Faster R-CNN trains (final class: cross-entropy of {len(rec.box.sampled)} "
                   f"RoIs; final box: smooth L1 of the true class's box): sum = <b>{total:.3f}</b>"
                   + (f" (+ mask {run.losses['loss_mask']:.3f})" if "loss_mask" in run.losses else ""))
        return {"data": data, "layout": self._base_layout(shapes, data, k, COUNT_TITLES.get(k, BARS_TITLE)),
                "caption": f"<b>{k + 1}. {FASTER_STEPS[k]}</b>: {cap}"}

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        """``view``. Single object: ``scores (C,)``, ``probabilities (C,)``, ``true_class``,
        ``class_loss``, ``box_pred (4,)`` and ``box_true (4,)`` as (x, y, w, h) fractions of the image,
        ``box_terms (4,)``, ``box_loss``, ``weight``, ``box_kind``, ``total``. Faster R-CNN (in the
        model's input frame): ``gt_boxes (G, 4)``, ``gt_labels (G,)``, ``anchors (A, 4)``,
        ``anchor_labels (A,)`` (1 / 0 / -1), ``sampled_positive`` and ``sampled_negative`` (anchor
        indices drawn), ``regression_targets (P, 4)`` of the drawn positives, ``roi_sampled (S, 4)``
        and ``roi_labels (S,)`` of the box head, ``losses`` (this page) and ``model_losses`` (the
        model's own loss dict)."""
        if self.view.value == VIEWS[0]:
            tr = self._mt
            return dict(view=self.view.value, scores=tr.scores, probabilities=tr.probabilities,
                        true_class=tr.true_class, class_loss=float(tr.class_loss), box_pred=tr.box_pred,
                        box_true=tr.box_true, box_terms=tr.box_terms, box_loss=float(tr.box_loss), weight=tr.weight,
                        box_kind=tr.box_kind, total=float(tr.total))
        run, rec = self._run, self._rec
        return dict(view=self.view.value, gt_boxes=run.gt_boxes, gt_labels=run.gt_labels, anchors=run.anchors,
                    anchor_labels=rec.rpn.labels, sampled_positive=rec.rpn_sample.pos_drawn,
                    sampled_negative=rec.rpn_sample.neg_drawn,
                    regression_targets=rec.rpn.regression_targets[rec.rpn_loss.positives],
                    roi_sampled=rec.box.sampled_proposals, roi_labels=rec.box.sampled_labels,
                    losses=dict(rec.losses), model_losses=dict(run.losses))


__all__ = ["TrainingTargetsExplainer", "VIEWS"]
