"""R-CNN, Fast R-CNN and Faster R-CNN on the same image: where the computation goes."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
from plotly.subplots import make_subplots

from ..models.render import class_hex, to_uint8
from ._base import (BLUE, GREEN, GREY, ORANGE, PURPLE, SKY, VERMILLION, YELLOW, Explainer, halo, png_uri, rect_path,
                    stack_label)

PIPELINES = ("R-CNN", "Fast R-CNN", "Faster R-CNN")
#: stage kinds in the order of the bars, with their colours
KINDS = (("proposals", "selective search", ORANGE), ("resize", "resize + normalise", GREY),
         ("warp", "warp crops", YELLOW), ("backbone", "backbone", BLUE), ("rpn", "RPN", SKY),
         ("roi", "RoI pooling", GREEN), ("head", "box head + classifier", VERMILLION),
         ("nms", "per-class NMS", PURPLE))
#: how many proposals the image can show (thin, best first; the control), the default, and how
#: many of them are numbered (thick): a few dozen boxes stay readable on a 600 x 400 photo
DRAWN_CHOICES, DRAWN, NUMBERED = (10, 30, 100, 300), 30, 10
#: the size (px) of the square before a detection's label, in its class's colour
CHIP = 11


def _secs(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def _macs(m: int) -> str:
    return f"{m / 1e9:.2f} G" if m >= 1e9 else f"{m / 1e6:.1f} M"


class RCNNFamilyExplainer(Explainer):
    """The same image through R-CNN (selective search, a CNN on every warped crop), Fast R-CNN (the
    backbone once, RoI pooling of the same proposals) and Faster R-CNN (the RPN instead of selective
    search), measured stage by stage: wall time and multiply-accumulates.

    All three use the live shapes detector's network (backbone, RoI pooler, box head). Lecture: a
    600 x 400 photo from scikit-image (``coffee``) with selective search's best 2,000 proposals (of 2,512: R-CNN's ~2k); live:
    a shapes scene. The check line compares Fast R-CNN's pooled features with torchvision's
    ``MultiScaleRoIAlign`` and with :func:`explainers.ops.roi_align_trace`, Fast R-CNN's detections
    with the model's own ``roi_heads`` on the same proposals, R-CNN's detections with crops warped by
    torchvision's ``resized_crop`` and run again, and the stage-by-stage Faster R-CNN with the
    model's own forward pass.
    """

    image_free = ('pipeline', 'drawn')
    lecture_uses_model = True

    title = "R-CNN, Fast R-CNN, Faster R-CNN: where the computation goes"
    caption_lines = 3
    play_interval = 1400

    def _build(self):
        self.pipeline = W.ToggleButtons(options=list(PIPELINES), value="R-CNN", description="pipeline",
                                        style={"button_width": "130px"})
        self.pipeline.observe(lambda _: self.guard(self._show_pipeline), "value")
        self.drawn = W.Dropdown(options=list(DRAWN_CHOICES), value=DRAWN, description="proposals drawn",
                                style={"description_width": "initial"}, layout=W.Layout(width="230px"))
        self.drawn.observe(lambda _: self.guard(self._reset_steps, keep=True), "value")
        self.controls = W.HBox([self.pipeline, self.drawn])
        fig = make_subplots(2, 2, specs=[[{"rowspan": 2}, {}], [None, {}]], column_widths=[0.55, 0.45],
                            horizontal_spacing=0.12, vertical_spacing=0.28,
                            subplot_titles=("proposals and detections", "seconds per image",
                                            "multiply-accumulates per image"))
        from ..models.rcnn_family import detector

        self._classes = list(detector(self.model)[0].classes)
        n = len(KINDS)
        for row in (1, 2):                   # one stacked bar per stage kind in each panel: 0.., then n..
            for _, label, colour in KINDS:
                fig.add_bar(x=[0, 0, 0], y=list(PIPELINES), orientation="h", name=label,
                            marker=dict(color=colour, line=dict(color="black", width=0)),
                            hovertemplate="%{y}: %{x:.3g}<extra>" + label + "</extra>", row=row, col=2)
        for row in (1, 2):                   # 2n, 2n + 1: the totals, written after each bar
            fig.add_scatter(x=[0, 0, 0], y=list(PIPELINES), text=["", "", ""], mode="text",
                            textposition="middle right", textfont=dict(size=16), hoverinfo="skip", row=row, col=2)
        self._img0 = 2 * n + 2               # then the image and what is drawn on it
        fig.add_image(source=png_uri(np.full((4, 4, 3), 245, np.uint8)), hoverinfo="skip", row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=SKY, width=1), opacity=0.6, hoverinfo="skip",
                        row=1, col=1)        # img0 + 1: the best proposals, thin and see-through
        fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=ORANGE, width=3), hoverinfo="skip",
                        row=1, col=1)        # img0 + 2: the best ten, numbered
        for k in range(1, len(self._classes)):   # img0 + 2 + k: detections of class k, in its colour
            fig.add_scatter(x=[], y=[], mode="lines", line=dict(color=class_hex(k), width=4), hoverinfo="skip",
                            row=1, col=1)
        # last: the labels, black on a light halo (coloured text was lost on the photo: orange on the
        # orange cup), a detection's after a square in its class's colour at its box's corner
        fig.add_scatter(x=[], y=[], text=[], mode="markers+text", textposition="bottom right", hoverinfo="skip",
                        marker=dict(symbol="square", size=[], color=[], line=dict(color="black", width=1)),
                        textfont=dict(size=16, color="black", **halo()), row=1, col=1)
        self._text = len(fig.data) - 1
        fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                         row=1, col=1)
        fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain", row=1, col=1)
        for row in (1, 2):
            fig.update_yaxes(autorange="reversed", row=row, col=2)
        self._use_figure(fig, 540)
        # the image takes the whole height (the largest it can be); the bars share the right column
        # with the stages' legend under them
        self.fig.update_layout(barmode="stack", margin=dict(l=40, r=20, t=40, b=30))
        self.fig.layout.xaxis.domain = [0, 0.55]
        self.fig.layout.xaxis2.domain = self.fig.layout.xaxis3.domain = [0.7, 1.0]
        for a in self.fig.layout.annotations[1:3]:
            a.x = 0.85
        # room between the panels for the seconds' tick labels and the next title (at 1280x720 the
        # plot is about 330 px high: they touched with 0.11 between)
        self.fig.layout.yaxis2.domain = [0.71, 1.0]
        self.fig.layout.yaxis3.domain = [0.27, 0.53]
        ann = self.fig.layout.annotations
        ann[1].y, ann[2].y = 1.0, 0.53
        # the stages' colours, three to a line, under the bars
        items = [f"<span style='color:{c}'>■</span> {label}" for _, label, c in KINDS]
        self.fig.add_annotation(text="<br>".join(" &nbsp; ".join(items[i:i + 3]) for i in range(0, len(items), 3)),
                                x=0.57, y=0, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                                showarrow=False, align="left", font=dict(size=16))
        self._load()

    def _load(self):
        from ..models.rcnn_family import measure

        if self.source == "lecture":
            from skimage import data

            image, what = data.coffee(), "the coffee photo from scikit-image (600x400)"
        else:
            image, what = self.live_image(), ("a shapes scene" if self.image is None else "your image")
        self._m = measure(image, self.model)
        self._what = what
        mm = self._m
        self._img_u8 = to_uint8(mm.image)
        H, W_ = mm.image.shape[-2:]
        self.fig.data[self._img0].source = png_uri(self._img_u8)
        self.fig.layout.xaxis.update(range=[-0.5, W_ - 0.5], autorange=False)
        self.fig.layout.yaxis.update(range=[H - 0.5, -0.5], autorange=False)
        # the bars: one value per pipeline for each stage kind
        n = len(KINDS)
        tmax = max(mm.pipeline(p).seconds for p in PIPELINES)
        cmax = max(mm.pipeline(p).macs for p in PIPELINES)
        with self.fig.batch_update():
            for i, (kind, _, _) in enumerate(KINDS):
                t = [sum(s.seconds for s in mm.pipeline(p).stages if s.kind == kind) for p in PIPELINES]
                c = [sum(s.macs for s in mm.pipeline(p).stages if s.kind == kind) / 1e9 for p in PIPELINES]
                self.fig.data[i].x = t
                self.fig.data[n + i].x = c
            tot_t = [mm.pipeline(p).seconds for p in PIPELINES]
            tot_c = [mm.pipeline(p).macs for p in PIPELINES]
            self.fig.data[2 * n].update(x=tot_t, text=[_secs(v) for v in tot_t])
            self.fig.data[2 * n + 1].update(x=[v / 1e9 for v in tot_c],
                                                             text=[_macs(v) for v in tot_c])
            self.fig.layout.xaxis2.update(range=[0, tmax * 1.5], ticksuffix=" s")
            self.fig.layout.xaxis3.update(range=[0, cmax / 1e9 * 1.5], ticksuffix=" G")
        ext = [s for s in mm.rcnn.stages if s.extrapolated]
        how = (f"R-CNN's warp and network measured on {ext[0].measured_on} crops, x {ext[0].count:,}/{ext[0].measured_on}"
               if ext else f"R-CNN's network ran on all {mm.timed_crops} crops")
        n = len(mm.ss_boxes)
        props = (f"{n:,} selective-search proposals" if mm.ss_found <= n else
                 f"the best {n:,} of {mm.ss_found:,} selective-search proposals (R-CNN's ~2k per image)")
        self.set_note(f"Drawn: {html.escape(what)}, {props}; all three "
                      f"pipelines use {self._whose('detector')} network (backbone, RoI pooler, box head; its input "
                      f"{mm.input_size[1]}x{mm.input_size[0]}), timed here on {html.escape(mm.device)} with "
                      f"torch.no_grad; {how}; selective search timed once per image.")

    def refresh(self):
        """Recompute the check line from the measured tensors, then show the chosen pipeline."""
        from ..models.rcnn_family import checks

        mm = self._m
        c = checks(mm)
        self._checks = c
        self.set_check(f"torchvision's MultiScaleRoIAlign (Fast R-CNN's pooled features, {len(mm.fast_boxes_in):,} "
                       "proposals)", c.reference_diff,
                       more=[(f"explainers.ops.roi_align_trace ({c.ops_boxes} proposals)", c.ops_diff),
                             ("the model's own roi_heads on the same proposals (Fast R-CNN's detections)",
                              c.fast_diff, c.fast_equal),
                             ("crops warped by torchvision's resized_crop, run again (R-CNN's detections)",
                              c.rcnn_diff, c.rcnn_equal),
                             ("the model's own detections (Faster R-CNN stage by stage)", c.detections_diff,
                              c.detections_equal)])
        self._show_pipeline()

    def _show_pipeline(self):
        """The chosen pipeline's steps (everything is measured and checked already: instant)."""
        self.fig.layout.annotations[0].text = f"{self.pipeline.value}: its proposals and detections"
        self._reset_steps()

    # ------------------------------------------------------------------ steps
    def _run(self):
        return self._m.pipeline(self.pipeline.value)

    def n_steps(self) -> int:
        return len(self._run().stages)

    def _boxes_caption(self, k: int):
        """What the image shows at step ``k``: ``(thin boxes, numbered boxes, detections or None)``:
        the method's proposals from the step that makes them on, its detections at the last steps."""
        run = self._run()
        kinds = [s.kind for s in run.stages]
        made = next(i for i, kd in enumerate(kinds) if kd in ("proposals", "rpn"))
        props = run.proposals
        if k == len(kinds) - 1 or kinds[k] == "nms":
            return props[:0], props[:0], run
        if k >= made:
            n = int(self.drawn.value)
            return props[:n], props[:min(n, NUMBERED)], None
        return props[:0], props[:0], None

    def frame(self, k: int) -> dict:
        mm, run = self._m, self._run()
        k = max(0, min(k, len(run.stages) - 1))
        st = run.stages[k]
        thin, numbered, dets = self._boxes_caption(k)
        i0 = self._img0
        data = {i0 + 1: dict(zip("xy", rect_path(thin.tolist()))),
                i0 + 2: dict(zip("xy", rect_path(numbered.tolist())))}
        tx, ty, tt, tc = [], [], [], []
        # a label hangs right of and below its box's top-left corner: kept a line and a few characters
        # inside the image, so none is cut at the image's edge (a 16 px line is ~1/18 of the drawn height)
        H, W_ = self._img_u8.shape[:2]
        line = H / 18
        char = line / 2                       # a 16 px character is about half a line wide
        placed: list = []

        def at(x, y, text):
            """Inside the image, moved down a line while it would cover a label already placed."""
            x, y = min(max(0.0, x), 0.9 * W_), min(max(0.0, y), H - line)
            return x, stack_label(placed, x, y, len(text) * char, line, H - line)

        for i, b in enumerate(numbered.tolist()):
            x, y = at(b[0], b[1], str(i + 1))
            tx.append(x)
            ty.append(y)
            tt.append(str(i + 1))
            tc.append("black")
        det_boxes: dict = {c: [] for c in range(1, len(self._classes))}
        # on the lecture's photo the bundled shapes model's class names mean nothing (a cup labelled
        # "circle"), and "score 1.00" read as a sure detector: "shape?" and the score
        nameless = self.source == "lecture" and self.model is None
        if dets is not None:
            for b, s, lb in list(zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist()))[:NUMBERED]:
                det_boxes.setdefault(lb, []).append(b)
                name = "shape?" if nameless else mm.classes[lb] if lb < len(mm.classes) else str(lb)
                x, y = at(b[0], b[1], f"{name} {s:.2f}")
                tx.append(x)
                ty.append(y)
                tt.append(f"{name} {s:.2f}")
                tc.append(class_hex(lb))
        for c in range(1, len(self._classes)):
            data[i0 + 2 + c] = dict(zip("xy", rect_path(det_boxes[c])))
        # the numbered proposals' labels have no square (size 0); a detection's is its class's colour
        data[self._text] = {"x": tx, "y": ty, "text": tt,
                            "marker": {"color": tc, "size": [0 if c == "black" else CHIP for c in tc]}}
        # the bars: the chosen pipeline bright, its current stage outlined, the others faded
        n = len(KINDS)
        pi = PIPELINES.index(run.name)
        for i, (kind, _, _) in enumerate(KINDS):
            op = [1.0 if p == pi else 0.3 for p in range(3)]
            lw = [3 if (p == pi and kind == st.kind) else 0 for p in range(3)]
            for base in (0, n):
                data[base + i] = {"marker": {"opacity": op, "line": {"width": lw}}}
        return {"data": data, "layout": {},
                "caption": self._caption(run, st, k) + self._drawn(thin, numbered, dets, len(run.proposals), run)}

    def _drawn(self, thin, numbered, dets, total: int, run) -> str:
        """What the image shows at this step, in words (one sentence: the caption has three lines)."""
        if dets is not None:
            shown = min(NUMBERED, len(dets.boxes))
            how = " (crops scoring ≥ 0.5; no box regression, no NMS)" if run.name == "R-CNN" else ""
            out = f" <i>Drawn: {shown} of its {len(dets.boxes)} detections{how}, best first"
            if self.source == "lecture" and self.model is None:
                # the bundled detector knows three shapes: on a photo its class names mean nothing
                out += ", 'shape?': how shape-like a region looks to a model that knows only shapes"
            return out + ".</i>"
        if len(numbered):
            return (f" <i>Showing the top {len(thin)} of {total:,} proposals (the best {len(numbered)} "
                    f"numbered; change it: 'proposals drawn').</i>")
        return ""

    def _caption(self, run, st, k: int) -> str:
        mm = self._m
        h, w = mm.input_size
        head = f"<b>{run.name}, step {k + 1}/{len(run.stages)}: {html.escape(st.name)}</b> - "
        cost = f"{_secs(st.seconds)}, {_macs(st.macs)} MACs"
        if st.extrapolated:
            cost += f" (measured on {st.measured_on} crops, x {st.count:,}/{st.measured_on})"
        total = f" {run.name} in all: {_secs(run.seconds)}, {_macs(run.macs)} MACs."
        kind = st.kind
        if kind == "proposals":
            found = mm.ss_found or st.count
            kept = (f"{st.count:,} boxes" if found <= st.count else
                    f"{found:,} boxes, of which R-CNN keeps the best {st.count:,},")
            text = (f"selective search groups Felzenszwalb regions by colour, texture, size and fill: "
                    f"{kept} in {_secs(st.seconds)} (no network: 0 MACs).")
        elif kind == "warp":
            text = (f"every one of the {st.count:,} boxes is cut out and stretched to {mm.crop}x{mm.crop} pixels, "
                    f"whatever its shape: {cost}.")
        elif kind == "resize":
            text = f"the image is resized to the model's {w}x{h} input and normalised: {_secs(st.seconds)}."
        elif kind == "backbone" and run.name == "R-CNN":
            text = f"the CNN's backbone runs <b>once per crop</b>, {st.count:,} times: {cost}."
        elif kind == "backbone":
            text = f"the backbone runs <b>once</b> on the whole {w}x{h} image: {cost}."
        elif kind == "rpn":
            text = (f"the RPN scores anchors on the shared feature map and keeps {st.count} proposals "
                    f"(instead of selective search): {cost}.")
        elif kind == "roi":
            text = (f"RoI Align cuts each of the {st.count:,} proposals out of the feature map as "
                    f"{mm.pool_output_size[0]}x{mm.pool_output_size[1]} cells: {cost}.")
        elif kind == "head":
            text = f"the box head and classifier score {st.count:,} regions: {cost}."

        else:
            text = f"box regression, then per-class NMS keeps {len(run.boxes)} detections: {cost}."
        mask = mm.mask_branch
        if run.name == "Faster R-CNN" and k == len(run.stages) - 1 and mask is not None:
            total += (f" Not counted: its mask branch ({_secs(mask.seconds)}, {_macs(mask.macs)} MACs; this "
                      "detector is a Mask R-CNN).")
        return head + text + total

    def _state(self) -> dict:
        """``image (3, H, W)``; ``pipeline``: the chosen one; ``proposals (P, 4)``: its region proposals
        (image coordinates, best first); ``drawn``: how many of them the image shows (the "proposals drawn"
        control; the best ``min(drawn, 10)`` numbered); ``detections``: its ``{"boxes" (D, 4), "scores" (D,), "labels" (D,)}``;
        ``stages``: for each pipeline a list of ``{"name", "kind", "seconds", "macs", "count", "measured_on",
        "extrapolated"}``; ``mask_branch``: the same for a Mask R-CNN's mask branch, measured but not one of
        Faster R-CNN's stages (None without one); ``seconds`` and ``macs``: each pipeline's totals; ``selective_search (N, 4)``:
        the selective-search boxes; ``fast_pooled (N, C, 7, 7)``: Fast R-CNN's pooled features (the model's
        own pooler); ``model_detections``: the model's own forward pass; ``checks``: the numbers of the check
        line (:class:`explainers.models.rcnn_family.FamilyChecks`)."""
        mm, run = self._m, self._run()
        return {"image": mm.image, "pipeline": run.name, "proposals": run.proposals, "drawn": int(self.drawn.value),
                "detections": {"boxes": run.boxes, "scores": run.scores, "labels": run.labels},
                "stages": {p: [dict(vars(s)) for s in mm.pipeline(p).stages] for p in PIPELINES},
                "mask_branch": dict(vars(mm.mask_branch)) if mm.mask_branch is not None else None,
                "seconds": {p: mm.pipeline(p).seconds for p in PIPELINES},
                "macs": {p: mm.pipeline(p).macs for p in PIPELINES},
                "selective_search": mm.ss_boxes, "fast_pooled": mm.fast_pooled,
                "model_detections": mm.model_output, "checks": self._checks}
