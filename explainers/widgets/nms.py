"""Non-maximum suppression, one kept box at a time."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from .. import ops
from ..models.live_inputs import detector_trace, final_nms_matches_model, top_candidates
from ..models.render import class_hex, legend_items, to_uint8
from ._base import GREEN, GREY, SKY, VERMILLION, Explainer, png_uri, rect_path, stack_label

#: the lecture's candidate boxes on scikit-image's public-domain ``astronaut`` photo (512 x 512, image
#: pixels, x right, y down): a person, her spacesuit, a helmet and a flag. They keep the slide's
#: teaching points: near-duplicates (IoU 0.88-0.90) of the person, the spacesuit and the helmet;
#: pairs that overlap with IoU 0.2-0.5 so that the threshold matters (a head-and-shoulders person box,
#: IoU 0.48 with the best person box, goes at 0.3; the flag's top part, IoU 0.27 with the whole flag,
#: goes at 0.2: kept 6 at 0.5, 5 at 0.3, 4 at 0.2), and a spacesuit box under the best person box
#: (IoU 0.73) that only class-aware NMS keeps
LECTURE_BOXES = [[18, 14, 365, 512], [30, 0, 352, 500], [22, 8, 362, 262], [18, 148, 365, 512],
                 [8, 160, 356, 505], [276, 342, 512, 512], [286, 334, 506, 512], [0, 0, 97, 512], [0, 0, 97, 140]]
LECTURE_SCORES = [0.92, 0.86, 0.62, 0.80, 0.66, 0.88, 0.75, 0.70, 0.57]
LECTURE_LABELS = [2, 2, 2, 3, 3, 4, 4, 1, 1]
LECTURE_CLASSES = ["background", "flag", "person", "spacesuit", "helmet"]
#: how much of the photo shows under the boxes (the rest is white): the box outlines stay the
#: strongest colours on the page
PHOTO_OPACITY = 0.7


def lecture_image() -> np.ndarray:
    """The lecture's photo: scikit-image's ``astronaut`` (bundled with the package, public domain),
    ``(512, 512, 3)`` uint8, lightened towards white (:data:`PHOTO_OPACITY`) so the boxes stand out."""
    from skimage import data

    im = data.astronaut().astype(np.float32)
    return np.round(PHOTO_OPACITY * im + (1 - PHOTO_OPACITY) * 255).astype(np.uint8)


#: at most this many boxes are labelled at a step (the box kept and the suppressed with the largest IoU)
STEP_LABELS = 6
#: the share of the figure's width the legend takes, left of the image
LEGEND_WIDTH = 0.22
#: the width (characters, with the chip and the gap) of the label column right of a tall image
COLUMN_CHARS = 27
#: at most this many boxes are labelled before the first step (the best-scoring ones)
FIRST_LABELS = 9
#: a box label's text size (px) and the light background that keeps box lines from crossing its text
LABEL_SIZE = 17
LABEL_BACKGROUND = "rgba(255, 255, 255, 0.8)"
#: the box kept at a step: black (no class has it) on a white outline, drawn above every other box
KEPT_NOW, KEPT_NOW_OUTLINE = "#000000", "#ffffff"


class NMSExplainer(Explainer):
    """Boxes with scores; each step keeps the best remaining box and suppresses the boxes
    that overlap it by more than the IoU threshold."""

    image_free = ('threshold', 'class_aware', 'top_n')

    title = "Non-maximum suppression"

    def _build(self):
        self.threshold = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="IoU threshold",
                                       style={"description_width": "initial"}, layout=W.Layout(width="340px"))
        self.class_aware = W.Checkbox(value=True, description="class-aware (per class)")
        self.top_n = W.IntSlider(value=25, min=2, max=100, description="boxes", layout=W.Layout(width="300px"))
        for c in (self.threshold, self.class_aware, self.top_n):
            c.observe(lambda _: self.guard(self.refresh), "value")
        self.controls = W.HBox([self.threshold, self.class_aware] + ([self.top_n] if self.source == "live" else []))
        fig = go.Figure()
        fig.add_image(source=png_uri(np.full((480, 640, 3), 245, np.uint8)), hoverinfo="skip")
        # 1 undecided and 3 kept are drawn as layout shapes in their class colour (frame()), and so is the
        # box kept now (black: no class has it), last, on a white outline: shapes are drawn above every
        # trace, and the box this step is about must not vanish under a crowd of others; 2 suppressed
        # (dotted grey), 4 suppressed now (dashed red)
        for colour, width, dash in ((SKY, 2, "solid"), (GREY, 1.5, "dot"), (GREEN, 4, "solid"),
                                    (VERMILLION, 3, "dash")):
            fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=colour, width=width, dash=dash), hoverinfo="skip")
        # the labels of the boxes this step is about are annotations (frame()), each after a square in its
        # class colour on a light background: annotations are drawn above the box outlines (layout shapes),
        # so no box line crosses a label's text
        # 5: on an image taller than wide (the live shapes scenes), the labels stand in a column right
        # of it, each with a thin line to its box (inside the boxes they would cover one another)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color="#555555", width=1), hoverinfo="skip",
                        cliponaxis=False)
        # the photo as large as the figure's height allows, hugging the legend on its left (the axes
        # shrink to the image, so the ticks sit at its edges)
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain")
        fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain", constraintoward="left",
                         domain=[LEGEND_WIDTH, 1.0])
        self._use_figure(fig, 560)
        self.fig.update_layout(margin=dict(l=40, r=20, t=20, b=40))
        # the class legend (one colour per class, as on every page) and the box styles, left of the image
        fig = self.fig
        fig.add_annotation(text="", x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="top",
                           showarrow=False, font=dict(size=17), align="left")
        self._load()

    def _load(self):
        if self.source == "lecture":
            self._all = (torch.tensor(LECTURE_BOXES, dtype=torch.float32), torch.tensor(LECTURE_SCORES),
                         torch.tensor(LECTURE_LABELS))
            self._classes = LECTURE_CLASSES
            self._img = lecture_image()
            self.fig.data[0].source = png_uri(self._img)      # once: no control changes the photo
            return
        from ..models import get

        model = self.model or get("detection", "shapes")
        tr = detector_trace(model, self.live_image(), "the NMS page")
        self._trace = tr
        self._all = (tr.boxes_pre_nms, tr.scores_pre_nms, tr.labels_pre_nms)
        self._classes = model.classes
        self._img = to_uint8(tr.input_image)
        self.fig.data[0].source = png_uri(self._img)
        self.threshold.value = tr.nms_threshold
        if len(tr.scores_pre_nms) == 0:
            raise ValueError("the detector found no candidate boxes on this image (nothing to suppress)")

    def refresh(self):
        boxes, scores, labels = self._all
        if self.source == "live":
            boxes, scores, labels = top_candidates(self._trace, self.top_n.value)
        thr = self.threshold.value
        if self.class_aware.value:
            keep, tr = ops.batched_nms_trace(boxes, scores, labels, thr)
            ref, name = ops.reference_nms(boxes, scores, thr, labels)
        else:
            keep, tr = ops.nms_trace(boxes, scores, thr)
            ref, name = ops.reference_nms(boxes, scores, thr)
        same = torch.equal(keep, ref)
        extra = ""
        if not same and self.class_aware.value:
            # for at most 1,000 boxes batched_nms shifts each class in float32, which can move an IoU
            # across the threshold; class-aware NMS itself is NMS class by class
            per_class, per_name = ops.reference_nms_per_class(boxes, scores, thr, labels)
            if torch.equal(keep, per_class):
                extra = (f" torchvision.ops.batched_nms keeps {ref.tolist()} here: it runs one NMS on boxes "
                         "shifted by label × (largest coordinate + 1) in float32, and the rounding moves an IoU "
                         "across the threshold; run class by class, torchvision agrees with the page.")
                ref, name, same = per_class, per_name, True
        more, note = self._model_check(thr) if self.source == "live" else ([], "")
        self.set_note((note + extra).strip())
        self.set_check(f"{name} on the {len(boxes)} boxes drawn (kept {keep.tolist()})", 0.0 if same else 1.0, same,
                       more=more)
        self._keep = keep
        self._boxes, self._scores, self._labels, self._tr = boxes.numpy(), scores.numpy(), labels.numpy(), tr
        H, W_ = self._img.shape[:2]
        if H > W_:
            # taller than wide: room right of the image for the column of labels (ticks on the image only)
            step = 50 if W_ > 100 else 20
            self.fig.update_xaxes(range=[-0.5, W_ - 0.5 + COLUMN_CHARS * H / 30], autorange=False,
                                  tickmode="array", tickvals=list(range(0, W_, step)))
        else:
            self.fig.update_xaxes(range=[-0.5, W_ - 0.5], autorange=False)  # the image's extent, no padding
        self.fig.update_yaxes(range=[H - 0.5, -0.5], autorange=False)
        present = sorted({int(v) for v in self._labels.tolist()})
        self.fig.layout.annotations[0].text = (
            "<b>class colours</b><br>" + "<br>".join(legend_items(self._classes, present))
            + "<br><br><b>boxes</b><br>thin: undecided<br>thick: kept<br>black: kept now<br>"
            "dashed: suppressed now<br>dotted: suppressed")
        self._reset_steps()

    def _model_check(self, thr: float) -> tuple[list, str]:
        """Live: the model's own final NMS, re-run by the same op on *all* its candidates, must give
        the model's detections; the page draws the best ``top_n`` of those candidates.
        Returns ``(checks, note)``."""
        tr = self._trace
        n = len(tr.scores_pre_nms)
        what = (f"Drawn: the {min(self.top_n.value, n)} best-scoring of the model's {n} candidate boxes before its "
                f"final NMS (after its score threshold), in the model's input frame.")
        if not self.class_aware.value or abs(thr - tr.nms_threshold) > 1e-9:
            return [], what + (f" The model runs class-aware NMS at IoU {tr.nms_threshold:.2f}: the check against "
                               "its own detections applies with those settings only.")
        same, diff = final_nms_matches_model(tr)
        return [(f"the model's own {len(tr.detections.scores)} detections (NMS on all {n} candidates)", diff, same)], what

    def _state(self) -> dict:
        """``boxes (N, 4)``, ``scores (N,)``, ``labels (N,)`` drawn (input frame in live mode);
        ``iou_threshold``; ``class_aware``; ``keep``: indices kept, in order; ``kept_after_step``:
        how many are kept at the current step."""
        k = self.step.value
        return {"boxes": torch.from_numpy(self._boxes), "scores": torch.from_numpy(self._scores),
                "labels": torch.from_numpy(self._labels), "iou_threshold": self.threshold.value,
                "class_aware": self.class_aware.value, "keep": self._keep,
                "kept_after_step": int((self._tr.state_after(k) == 1).sum())}

    def n_steps(self) -> int:
        return len(self._tr.steps) + 1

    def _place_labels(self, labelled, ious) -> tuple[list, list, list, list, list, list]:
        """Label positions inside each box's top-left corner, moved down a line while they would
        cover a label already placed (so none sits on another). Sizes are in image pixels, for the
        image drawn about 330 px high (a 1280x720 projector) with 17 px text. On an image taller
        than wide the labels are longer than the image is wide: they stand in a column right of it,
        in the order of their boxes, each with a line to its box (:meth:`_column_labels`).
        Returns ``(x, y, text, colour, line_x, line_y)``."""
        H, W_ = self._img.shape[:2]
        line, char = H / 14, H / 30
        texts = []
        for i, prefix in labelled:
            lab = int(self._labels[i])
            name = self._classes[lab] if lab < len(self._classes) else "?"
            text = f"{prefix}{name} {self._scores[i]:.2f}"
            if i in ious and prefix == "":
                text += f" | IoU {ious[i]:.2f}"
            texts.append(text)
        if H > W_:
            return self._column_labels(labelled, texts, line, char)
        placed, tx, ty, tt, tc = [], [], [], [], []
        for (i, prefix), text in zip(labelled, texts):
            lab = int(self._labels[i])
            w = (len(text) + 3) * char
            x1, y1 = float(self._boxes[i, 0]), float(self._boxes[i, 1])
            x = min(max(0.0, x1 + char), max(0.0, W_ - w))
            y = min(max(line / 2, y1 + line / 2 + 2), H - line / 2)
            y = stack_label(placed, x, y, w, line, H)
            tx.append(x)
            ty.append(y)
            tt.append(text)
            tc.append(class_hex(lab))
        return tx, ty, tt, tc, [], []

    def _column_labels(self, labelled, texts, line, char):
        """Labels in a column right of the image, top to bottom: the box kept now, then the others
        in the order of their boxes' tops, a line apart (moved up together if the last would fall
        off the image's bottom), each with a line from its chip to the middle of its box's right edge."""
        H, W_ = self._img.shape[:2]
        # the box kept now first, the others in the order of their boxes' tops
        order = sorted(range(len(labelled)),
                       key=lambda j: (labelled[j][1] != "keep ", float(self._boxes[labelled[j][0], 1]), j))
        ys, y = {}, -1e9
        for j in order:
            y = max(float(self._boxes[labelled[j][0], 1]) + line / 2, y + line, line / 2)
            ys[j] = y
        over = max(ys.values(), default=0.0) - (H - line / 2)
        if over > 0:
            ys = {j: max(line / 2, v - over) for j, v in ys.items()}
        x = W_ + 2 * char
        tx, ty, tt, tc, lx, ly = [], [], [], [], [], []
        for j, ((i, _), text) in enumerate(zip(labelled, texts)):
            x1, y1, x2, y2 = (float(v) for v in self._boxes[i])
            tx.append(x)
            ty.append(ys[j])
            tt.append(text)
            tc.append(class_hex(int(self._labels[i])))
            lx += [x2, x - char * 0.6, None]
            ly += [(y1 + y2) / 2, ys[j], None]
        return tx, ty, tt, tc, lx, ly

    def frame(self, k: int) -> dict:
        tr, b = self._tr, self._boxes
        state = tr.state_after(k)            # 0 undecided, 1 kept, 2 suppressed
        current = tr.steps[k - 1] if k >= 1 else None
        just = set(current.suppressed.tolist()) if current is not None else set()
        undecided = [i for i in range(len(b)) if state[i] == 0]
        suppressed = [i for i in range(len(b)) if state[i] == 2 and i not in just]
        kept = [i for i in range(len(b)) if state[i] == 1 and (current is None or i != current.kept)]
        ious = dict(zip(current.candidates.tolist(), current.ious.tolist())) if current is not None else {}
        # label only what this step is about: before the first step the best boxes (their scores),
        # then the box kept now and the boxes it suppresses (with their IoU)
        if current is None:
            order = sorted(range(len(b)), key=lambda i: -float(self._scores[i]))[:FIRST_LABELS]
            labelled = [(i, "") for i in order]
        elif k == self.n_steps() - 1:
            # done: the boxes that survived, named (best first), so a student reads what NMS kept
            survivors = sorted((i for i in range(len(b)) if state[i] == 1), key=lambda i: -float(self._scores[i]))
            labelled = [(i, "kept ") for i in survivors[:FIRST_LABELS]]
        else:
            # the suppressed ones with the largest IoUs (all of them would pile up on a crowded image)
            labelled = [(current.kept, "keep ")] + [(i, "") for i in sorted(just, key=lambda i: -ious.get(i, 0.0))
                                                   [:STEP_LABELS - 1]]
        tx, ty, tt, tc, lx, ly = self._place_labels(labelled, ious)
        def shape(i, width):
            x1, y1, x2, y2 = (float(v) for v in b[i])
            return dict(type="rect", xref="x", yref="y", x0=x1, y0=y1, x1=x2, y1=y2,
                        line=dict(color=class_hex(int(self._labels[i])), width=width), layer="above")

        shapes = [shape(i, 2) for i in undecided] + [shape(i, 5) for i in kept]
        if current is not None:
            # the box kept now, on top of everything: black on a white outline
            shapes += [dict(shape(current.kept, width), line=dict(color=colour, width=width))
                       for colour, width in ((KEPT_NOW_OUTLINE, 10), (KEPT_NOW, 5))]
        data = {
            1: {"x": [], "y": []},
            2: dict(zip("xy", rect_path(b[suppressed]))) if suppressed else {"x": [], "y": []},
            3: {"x": [], "y": []},
            4: dict(zip("xy", rect_path(b[sorted(just)]))) if just else {"x": [], "y": []},
            5: {"x": lx, "y": ly},
        }
        labels = [dict(x=x, y=y, xref="x", yref="y", text=f"<span style='color:{c}'>■</span> {html.escape(t)}",
                       showarrow=False, xanchor="left", yanchor="middle", align="left", bgcolor=LABEL_BACKGROUND,
                       borderpad=1, font=dict(size=LABEL_SIZE, color="black"))
                  for x, y, t, c in zip(tx, ty, tt, tc)]
        layout = {"shapes": shapes, "annotations": [self.fig.layout.annotations[0].to_plotly_json()] + labels}
        if current is None:
            msg = f"{len(b)} candidate boxes, sorted by score; press play"
        else:
            lab = int(self._labels[current.kept])
            name = self._classes[lab] if lab < len(self._classes) else "?"
            # no second counter beside the step readout: the box kept names the round
            n, t = len(current.suppressed), self._tr.iou_threshold
            gone = ("no other box overlaps it with IoU > {t:.2f}" if n == 0 else
                    "1 box overlaps it with IoU > {t:.2f} and is suppressed (dashed)" if n == 1 else
                    "{n} boxes overlap it with IoU > {t:.2f} and are suppressed (dashed)").format(n=n, t=t)
            msg = f"keep the best box left, {name} {self._scores[current.kept]:.2f} (black); {gone}"
            if len(just) > STEP_LABELS - 1 and k < self.n_steps() - 1:
                msg += f" (the {STEP_LABELS - 1} with the largest IoU labelled)"
            if k == self.n_steps() - 1:
                msg += f"; done: {int((state == 1).sum())} kept (labelled)"
        return {"data": data, "layout": layout, "caption": msg}
