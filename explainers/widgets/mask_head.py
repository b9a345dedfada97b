"""What Mask R-CNN adds: for one detection, the 14x14 RoI Align features, the 28x28 mask
logits of every class, and the predicted class' mask resized and pasted into the box."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
from plotly.subplots import make_subplots

from ..models.render import class_colour, class_hex, legend_html
from ._base import GREY, Explainer, fmt, png_uri, rect_path

STEPS = ("the box", "RoI Align 14×14", "logits 28×28", "sigmoid", "pasted", "threshold")
# trace indices
IMG, BOX, FEAT, PROB, PROB_EDGE, PASTED, PASTED_BOX, PASTED_EXP, BIN, BIN_BOX = range(10)
LOGIT0 = 10                      # 4 heatmaps, then 4 outlines
MODEL, MODEL_BOX = 18, 19
#: the traces each step adds (a step shows its own and every earlier step's); panel 5 shows the
#: zoomed box (the place the mask will go) from step 1 on, so no shown panel is ever empty
STEP_TRACES = ((IMG, BOX, PASTED, PASTED_BOX), (FEAT,), tuple(range(LOGIT0, LOGIT0 + 8)), (PROB, PROB_EDGE),
               (PASTED_EXP,), (BIN, BIN_BOX, MODEL, MODEL_BOX))
#: the panels in reading order: the top row 1 the box, 2 RoI Align, 3 the four logit maps; the
#: bottom row (larger) 4 sigmoid, 5 pasted, 6 thresholded, the model's own mask. Subplot axes
#: (plotly numbering) -> the step (0-based) that first draws in them; panels not yet reached are
#: hidden (no axes) and their titles say which step fills them
PANEL_STEP = {1: 0, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 0, 9: 5, 10: 5}
LOGIT_AXES, SIGMOID_AX, ZOOM_AXES = (3, 4, 5, 6), 7, (8, 9, 10)
#: annotation index of the pasted panel's and the model mask's titles (subplot N's is annotation N - 1)
T_PASTED, T_MODEL = 7, 9
#: the title of a panel before its step (by annotation index; the logits say it once)
LATER_TITLE = {1: "2 RoI Align: at step 2", 2: "3 logits: at step 3", 6: "4 sigmoid: at step 4",
               8: "6 threshold: at step 6", 9: "model's mask: at step 6"}


def _ticks(n: int) -> dict:
    return dict(tickmode="linear", tick0=0, dtick=max(1, -(-n // 4)))


def _blend(img: np.ndarray, alpha: np.ndarray, rgb) -> np.ndarray:
    """``img`` (h, w, 3) uint8 dimmed, with ``rgb`` laid over it at opacity ``alpha`` (h, w)."""
    base = img.astype(np.float32) * 0.55
    a = np.clip(alpha, 0, 1)[..., None] * 0.85
    return (base * (1 - a) + np.asarray(rgb, np.float32) * a).round().astype(np.uint8)


class MaskHeadExplainer(Explainer):
    """Mask R-CNN's mask branch for one detection, in six steps: (1) the box; (2) the 14x14 RoI
    Align features of the box (one channel: the one with the most signal); (3) the 28x28 mask
    logits of every class (the predicted class framed in its colour); (4) the sigmoid of the
    predicted class, padded by one pixel of zeros; (5) resized bilinearly and pasted into the
    (slightly expanded) box on the image; (6) thresholded, next to the model's own output mask.

    Lecture: a shapes scene, its objects' true boxes, the image's RGB channels as features and
    hand-made logits (a disc, a square, a triangle). Live: the bundled shapes Mask R-CNN's own
    detections, features and logits, captured with forward hooks. The pasting is computed by
    :mod:`explainers.ops.masks`; the check line compares it with torchvision's
    ``paste_masks_in_image`` and, live, with the model's own output mask.
    """

    image_free = ('threshold',)

    title = "Mask R-CNN's mask head: 28×28 logits pasted into the box"
    play_interval = 1400

    def _build(self):
        self.detection = W.Dropdown(options=[("#0", 0)], value=0, description="detection",
                                    layout=W.Layout(width="330px"))
        self.threshold = W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="threshold",
                                       continuous_update=False, readout_format=".2f", layout=W.Layout(width="330px"))
        self.controls = W.HBox([self.detection, self.threshold])
        from ..models import mask_head as mh

        if self.source == "lecture":
            self._example, self._trace = mh.lecture_trace(), None
            labels, scores = self._example["labels"].tolist(), [None] * len(self._example["labels"])
            classes = self._example["classes"]
        else:
            self._trace = mh.mask_head_trace(self.model, self.live_image())
            if len(self._trace) == 0:
                raise ValueError("the model found no object in this image, so there is no mask to show; "
                                 "try another image")
            labels, scores, classes = self._trace.labels.tolist(), self._trace.scores.tolist(), self._trace.classes
        self._classes = classes
        self.detection.options = [(f"#{i} {classes[k]}" + ("" if s is None else f" {s:.2f}"), i)
                                  for i, (k, s) in enumerate(zip(labels, scores))]
        # 12 columns: six panels of two in the top row, four of three (larger) in the bottom row
        top, bottom = [dict(colspan=2)] + [None], [dict(colspan=3)] + [None] * 2
        fig = make_subplots(2, 12, specs=[top * 6, bottom * 4], horizontal_spacing=0.012,
                            vertical_spacing=0.13, row_heights=[0.42, 0.58],
                            subplot_titles=("1 the box", "2 RoI Align 14×14", "3 logits", " ", " ", " ",
                                            "4 sigmoid, padded", "5 pasted", "6 > 0.5", "model's mask"))
        blank = png_uri(np.zeros((2, 2, 3), np.uint8))
        fig.add_image(source=blank, x0=0.5, y0=0.5, row=1, col=1, hoverinfo="skip")                           # IMG
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(width=3), row=1, col=1)                      # BOX
        fig.add_heatmap(z=[[0]], colorscale="Viridis", showscale=False, row=1, col=3)                    # FEAT
        fig.add_heatmap(z=[[0]], colorscale="Greys", reversescale=True, zmin=0, zmax=1, showscale=False,
                        row=2, col=1)                                                                     # PROB
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=GREY, width=2, dash="dot"), row=2, col=1)
        fig.add_image(source=blank, x0=0.5, y0=0.5, row=2, col=4, hoverinfo="skip")                     # PASTED
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(width=2), row=2, col=4)                      # its box
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color="white", width=2, dash="dash"), row=2, col=4)
        fig.add_image(source=blank, x0=0.5, y0=0.5, row=2, col=7, hoverinfo="skip")                     # BIN
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(width=2), row=2, col=7)
        for c in range(4):
            fig.add_heatmap(z=[[0]], colorscale="RdBu", zmid=0, showscale=False,
                            row=1, col=5 + 2 * c)                                                         # logits
        for c in range(4):
            fig.add_scatter(x=[], y=[], mode="lines", line=dict(width=2), row=1, col=5 + 2 * c)         # frames
        fig.add_image(source=blank, x0=0.5, y0=0.5, row=2, col=10, hoverinfo="skip")                    # MODEL
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(width=2), row=2, col=10)
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False)
        fig.update_xaxes(showgrid=False, zeroline=False)
        for k in range(1, 11):                              # equal axes in every panel
            fig.layout[f"yaxis{k if k > 1 else ''}"].update(scaleanchor=f"x{k if k > 1 else ''}", constrain="domain")
            fig.layout[f"xaxis{k if k > 1 else ''}"].update(constrain="domain")
        self._use_figure(fig, 540)
        self.fig.update_layout(margin=dict(l=30, r=10, t=60, b=30))
        for c in (self.detection, self.threshold):
            c.observe(lambda _: self.guard(self.refresh), "value")

    # ------------------------------------------------------------------ compute + draw
    def refresh(self):
        from ..models import mask_head as mh

        i, t = self.detection.value, float(self.threshold.value)
        v = (mh.lecture_view(self._example, i, t) if self.source == "lecture"
             else mh.detection_view(self._trace, i, t))
        self._v = v
        # the sigmoid drawn (and, lecture, the RoI Align features drawn) against torchvision, then the
        # pasting; live, the pasted mask against the model's own output
        first = ("torchvision's maskrcnn_inference (the sigmoid drawn)", v.probability_diff)
        more = [("torchvision's paste_masks_in_image", v.reference_diff)]
        if v.features_diff is not None:
            more.insert(0, ("torchvision.ops.roi_align (the 14×14 features drawn)", v.features_diff))
        if v.model_mask is not None:
            more += [(f"the model's own output mask (masks[{i}])", v.model_diff),
                    (f"the model's mask > {t:.2f}, pixel for pixel", float(v.model_binary_diff > 0),
                     v.model_binary_diff == 0)]
        self.set_check(*first, more=more)
        note = (f"Live: {self._whose('Mask R-CNN')} detection #{i} ({html.escape(v.name)}, score {v.score:.2f}); "
                f"features and logits captured with forward hooks on roi_heads.mask_roi_pool and mask_predictor; "
                f"the pasting is recomputed by explainers.ops.masks."
                if self.source == "live" else
                "Lecture: the scene's true boxes; the features are the image's RGB channels (RoI Align by "
                "explainers.ops); the 28×28 logits are hand-made shapes. No model here: "
                "<code>source='live'</code> uses the shapes Mask R-CNN.")
        self.set_note(note)
        self._draw(v, t)
        self._reset_steps(keep=True)

    def _draw(self, v, t):
        img = (self._image_tensor().permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        H, W_ = img.shape[:2]
        colour, chex = class_colour(v.label), class_hex(v.label)
        ex = v.paste.expanded_box.tolist()
        # the zoomed panels: the expanded box with a margin, cut out of the image
        m = max(4, round(0.25 * max(ex[2] - ex[0], ex[3] - ex[1])))
        x0, y0 = max(0, min(ex[0] - m, W_ - 1)), max(0, min(ex[1] - m, H - 1))
        x1, y1 = min(W_, max(ex[2] + 1 + m, x0 + 1)), min(H, max(ex[3] + 1 + m, y0 + 1))
        crop = (slice(y0, y1), slice(x0, x1))
        binary = v.paste.binary.numpy()[crop].astype(np.float32)
        fig = self.fig
        # what depends only on the detection is drawn once per detection: a threshold change
        # redraws the two thresholded panels and the titles (its slider stays quick)
        base = self._example if self.source == "lecture" else self._trace    # what v was computed from
        drawn = getattr(self, "_drawn_for", None)
        with fig.batch_update():
            if drawn is None or drawn[0] is not base or drawn[1] != v.index:
                self._draw_detection(v, img, crop, (x0, y0, x1, y1), colour, chex)
                self._drawn_for = (base, v.index)
            fig.data[BIN].update(source=png_uri(_blend(img[crop], binary, colour)), x0=x0 + 0.5, y0=y0 + 0.5)
            mm = None if v.model_mask is None else (v.model_mask.numpy()[crop] > t).astype(np.float32)
            fig.data[MODEL].update(source=png_uri(_blend(img[crop], mm if mm is not None else 0 * binary, colour)),
                                   x0=x0 + 0.5, y0=y0 + 0.5)
            # every title and its font as drawn once its step is reached (frame(k) greys the others)
            titles = [("1 the box", {}), (f"2 RoI Align 14×14, ch {v.channel}", {})]
            for c in range(4):
                name = self._classes[v.shown[c]] if c < len(v.shown) else ""
                font = ({} if c >= len(v.shown) else
                        dict(color=class_hex(v.shown[c]) if v.shown[c] == v.label else "#444"))
                titles.append(("3 logits: " + name if c == 0 else name, font))
            titles += [("4 sigmoid, padded", {}), (f"5 pasted {v.paste.size[1]}×{v.paste.size[0]}", {}),
                       (f"6 > {t:.2f}", {})]
            titles.append(("model's mask" if v.model_mask is not None else "(lecture: no model to compare)", {}))
            self._titles = titles        # frame(k) sets the annotations from these

    def _draw_detection(self, v, img, crop, window, colour, chex):
        """The panels that depend on the detection and not on the threshold."""
        H, W_ = img.shape[:2]
        x0, y0, x1, y1 = window
        ex = v.paste.expanded_box.tolist()
        bx, by = rect_path([v.box.tolist()])
        px, py = rect_path([(ex[0], ex[1], ex[2] + 1, ex[3] + 1)])       # the pixels the padded mask covers
        pasted = v.paste.pasted.numpy()[crop]
        ph, pw = v.probability.shape
        f, fig = v.feature, self.fig
        if getattr(self, "_img_uri", None) is None:      # the image never changes: encode it once
            self._img_uri = png_uri(img)
        fig.data[IMG].update(source=self._img_uri, x0=0.5, y0=0.5)
        fig.data[BOX].update(x=bx, y=by, line_color=chex)
        fig.data[FEAT].update(z=f.tolist())
        fig.data[PROB].update(z=v.paste.padded.tolist())
        fig.data[PROB_EDGE].update(dict(zip("xy", rect_path([(0.5, 0.5, pw + 0.5, ph + 0.5)]))))
        self._pasted_uri = png_uri(_blend(img[crop], pasted, colour))
        fig.data[PASTED].update(source=self._pasted_uri, x0=x0 + 0.5, y0=y0 + 0.5)
        for box_trace in (PASTED_BOX, BIN_BOX, MODEL_BOX):
            fig.data[box_trace].update(x=bx, y=by, line_color=chex)
        fig.data[BIN].update(x0=x0 + 0.5, y0=y0 + 0.5)
        fig.data[PASTED_EXP].update(x=px, y=py)
        self._crop_uri = png_uri(np.ascontiguousarray(img[crop]))      # panel 5 before step 5: the box, zoomed
        lim = float(v.logits[v.shown].abs().max()) or 1.0
        for c in range(4):
            hm, fr = fig.data[LOGIT0 + c], fig.data[LOGIT0 + 4 + c]
            if c < len(v.shown):
                k = v.shown[c]
                hm.update(z=v.logits[k].tolist(), zmin=-lim, zmax=lim)
                fx, fy = rect_path([(-0.5, -0.5, pw - 0.5, ph - 0.5)])
                fr.update(x=fx, y=fy, line=dict(color=class_hex(k), width=7 if k == v.label else 2))
            else:
                hm.update(z=[[0]])
                fr.update(x=[], y=[])
        fs = v.features.shape
        # the whole image in a small panel: a few level ticks (rotated ones ran into the title below)
        fig.layout.xaxis.update(range=[0, W_], autorange=False, nticks=3, tickangle=0)
        fig.layout.yaxis.update(range=[H, 0], autorange=False, nticks=4)
        fig.layout.xaxis2.update(_ticks(fs[-1]), range=[-0.5, fs[-1] - 0.5], autorange=False)
        fig.layout.yaxis2.update(_ticks(fs[-2]), range=[fs[-2] - 0.5, -0.5], autorange=False)
        n = v.paste.padded.shape[0]
        fig.layout[f"xaxis{SIGMOID_AX}"].update(_ticks(n), range=[-0.5, n - 0.5], autorange=False)
        fig.layout[f"yaxis{SIGMOID_AX}"].update(_ticks(n), range=[n - 0.5, -0.5], autorange=False)
        for ax in ZOOM_AXES:
            fig.layout[f"xaxis{ax}"].update(range=[x0, x1], autorange=False)
            fig.layout[f"yaxis{ax}"].update(range=[y1, y0], autorange=False)
        for ax in LOGIT_AXES:
            fig.layout[f"xaxis{ax}"].update(_ticks(pw), range=[-0.5, pw - 0.5], autorange=False)
            fig.layout[f"yaxis{ax}"].update(_ticks(ph), range=[ph - 0.5, -0.5], autorange=False)

    def _image_tensor(self):
        return self._example["image"] if self.source == "lecture" else self._trace.image

    # ------------------------------------------------------------------ steps
    def n_steps(self) -> int:
        return len(STEPS)

    def frame(self, k: int) -> dict:
        v = self._v
        k = max(0, min(int(k), len(STEPS) - 1))
        on = {j for s in STEP_TRACES[: k + 1] for j in s}
        data = {j: {"visible": j in on} for s in STEP_TRACES for j in s}
        # panel 5 before step 5: the box, zoomed, without a mask yet (the place the mask goes)
        data[PASTED]["source"] = self._pasted_uri if k >= 4 else self._crop_uri
        layout, items = {}, []
        for ax, first in PANEL_STEP.items():
            suffix = ax if ax > 1 else ""
            layout[f"xaxis{suffix}"] = {"visible": k >= first}
            layout[f"yaxis{suffix}"] = {"visible": k >= first}
        # subplot N's title is annotation N - 1
        later = {ax - 1: first for ax, first in PANEL_STEP.items() if k < first}
        for i, a in enumerate(self.fig.layout.annotations):
            d = a.to_plotly_json()
            text, font = self._titles[i]
            d["font"] = dict(font, size=16)
            if i in later:
                # a panel not drawn yet: its title says which step fills it (the logits row: once)
                text = LATER_TITLE.get(i, "") if (i != T_MODEL or v.model_mask is not None) else text
                d["font"] = dict(size=16, color=GREY)
            elif i == T_PASTED and k < 4:
                text = "5 the box, zoomed"
            d["text"] = text
            items.append(d)
        layout["annotations"] = items
        name = html.escape(v.name)
        sw = f"<span style='color:{class_hex(v.label)}'>■</span>"
        b = ", ".join(f"{x:.1f}" for x in v.box.tolist())
        ex = v.paste.expanded_box.tolist()
        h, w = v.paste.size
        f = v.feature
        others = [self._classes[c] for c in v.shown if c != v.label]
        captions = [
            f"Step 1: detection #{v.index}, {sw} {name}" + ("" if v.score is None else f" (score {v.score:.2f})")
            + f", box ({b}), zoomed in panel 5. Mask R-CNN adds one branch to Faster R-CNN: a mask for this box.",
            f"Step 2: RoI Align cuts the box's features into a {f.shape[-2]}×{f.shape[-1]} grid "
            f"({v.features.shape[0]} channels; drawn: channel {v.channel}, the one with the most signal, "
            f"values {fmt(float(f.min()))} to {fmt(float(f.max()))}).",
            f"Step 3: the mask head turns them into one {v.logits.shape[-2]}×{v.logits.shape[-1]} logit map per "
            f"class (blue > 0 inside, red < 0 outside). Only the predicted class, {sw} {name} (thick frame), is used"
            + (f"; {', '.join(html.escape(o) for o in others)} are ignored." if others else "."),
            f"Step 4: sigmoid of the {name} map: probabilities 0..1, then one pixel of zeros around it "
            f"({v.paste.padded.shape[0]}×{v.paste.padded.shape[1]}), so the resized mask fades out at the box edge.",
            f"Step 5: the box grows by {v.paste.scale:.4f} to fit the padding, cut to whole pixels: columns "
            f"{ex[0]} to {ex[2]}, rows {ex[1]} to {ex[3]}, both ends included, so {w}×{h} pixels (dashed); "
            f"the mask is resized bilinearly to {w}×{h} and pasted there: everything else is 0.",
            f"Step 6: pixels above {self.threshold.value:.2f} form the mask ({int(v.paste.binary.sum())} pixels)"
            + (", the same as the model's own output mask (bottom right)." if v.model_mask is not None
               else "; live, the model's own output mask is drawn next to it."),
        ]
        return {"data": data, "layout": layout, "caption": captions[k]}

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        """The numbers drawn for the chosen detection:

        ``detection`` (index), ``threshold``, ``label`` and ``name`` (predicted class), ``score``
        (None in lecture), ``box`` ``(4,)`` on the image, ``input_box`` ``(4,)`` in the frame the
        features were pooled from, ``channel`` (the drawn feature channel), ``roi_features``
        ``(C, 14, 14)``, ``logits`` ``(K, 28, 28)``, ``shown_classes`` (the classes drawn),
        ``probability`` ``(28, 28)`` sigmoid of the predicted class, ``padded`` ``(30, 30)``,
        ``expanded_box`` ``(4,)`` int64, ``resized`` ``(h, w)``, ``pasted`` ``(H, W)``
        probabilities, ``binary`` ``(H, W)`` bool (``pasted > threshold``), ``reference``
        ``(H, W)`` torchvision's ``paste_masks_in_image``, ``model_mask`` ``(H, W)`` the model's
        own output mask (None in lecture), ``checks`` (``reference_diff``, ``model_diff``,
        ``model_binary_diff``).
        """
        v = self._v
        return dict(detection=v.index, threshold=float(self.threshold.value), label=v.label, name=v.name,
                    score=v.score, box=v.box.clone(), input_box=v.input_box.clone(), channel=v.channel,
                    roi_features=v.features.clone(), logits=v.logits.clone(), shown_classes=list(v.shown),
                    probability=v.probability.clone(), padded=v.paste.padded.clone(),
                    expanded_box=v.paste.expanded_box.clone(), resized=v.paste.resized.clone(),
                    pasted=v.paste.pasted.clone(), binary=v.paste.binary.clone(), reference=v.reference.clone(),
                    model_mask=None if v.model_mask is None else v.model_mask.clone(),
                    checks=dict(reference_diff=v.reference_diff, model_diff=v.model_diff,
                                model_binary_diff=v.model_binary_diff))

    def legend(self) -> str:
        return legend_html(self._classes, range(1, len(self._classes)))
