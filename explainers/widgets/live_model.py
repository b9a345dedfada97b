"""The live model on any image: semantic segmentation, detection, instance segmentation."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
from plotly.subplots import make_subplots

from ._base import VERMILLION, Explainer, jpeg_uri, png_uri
from ._upload import Upload

#: a segmentation class covering less than this fraction of the pixels is not named (title, legend)
MIN_SHARE = 0.001
#: uploads larger than this are refused before decoding
MAX_UPLOAD_BYTES = 20 * 2**20
TASKS = (("semantic segmentation", "segmentation"), ("detection", "detection"),
         ("instance segmentation", "instance"))


#: the bundled shapes scenes among the samples, by name (their ground truth is known)
SCENE_SEEDS = {f"shapes scene {i}": s for i, s in enumerate((10_000_005, 10_000_017, 10_000_029), 1)}


def sample_targets() -> dict:
    """Name -> loader of the ground truth (``boxes (G, 4)``, ``labels (G,)``, ``masks (G, H, W)``) of
    the samples that have one: the shapes scenes (the photos have none)."""
    from ..models import make_scene

    return {name: (lambda s=s: make_scene(s).target()) for name, s in SCENE_SEEDS.items()}


def sample_images() -> dict:
    """Name -> loader of the bundled sample images (shapes scenes, scikit-image's public-domain photos)."""
    from ..models import make_scene

    samples = {name: (lambda s=s: make_scene(s).image) for name, s in SCENE_SEEDS.items()}

    def skimage(name):
        def load():
            import skimage.data

            return getattr(skimage.data, name)()
        return load

    samples.update({"chelsea (cat)": skimage("chelsea"), "astronaut": skimage("astronaut"),
                    "coffee": skimage("coffee")})
    return samples


class LiveModelExplainer(Explainer):
    """Pick a sample or upload an image; the three models run once per image (cached)."""

    title = "The live model: segmentation, detection, instance segmentation"
    lecture_uses_model = True
    #: one picture, no steps: no room kept for step captions (the three panels take it)
    caption_lines = 0

    def _build(self):
        if self.model is not None and self.model.task not in {t for _, t in TASKS} | {"onestage"}:
            raise ValueError(f"this page shows segmentation, detection and instance segmentation; a "
                             f"{type(self.model).__name__} ({self.model.task}) does none of them"
                             + (": the patch classifier labels one window's centre pixel, which the sliding-"
                                "window page shows" if self.model.task == "patch" else ""))
        self._samples = sample_images()
        names = list(self._samples)
        self.sample = W.Dropdown(options=names, value=names[0], description="image")
        self.upload = Upload(accept="image/*", max_bytes=MAX_UPLOAD_BYTES, description="upload an image")
        self.threshold = W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="min score",
                                       layout=W.Layout(width="300px"))
        self.info = W.HTML()
        self.sample.observe(lambda _: self.guard(self._pick_sample), "value")
        self.upload.on_upload(self._on_upload)
        self.threshold.observe(lambda _: self.guard(self._draw), "value")
        self.controls = W.VBox([W.HBox([self.sample, self.upload, self.threshold]), self.info])
        fig = make_subplots(1, 3, subplot_titles=[t for t, _ in TASKS], horizontal_spacing=0.02)
        for c in (1, 2, 3):
            fig.add_image(source=png_uri(np.zeros((4, 4, 3), np.uint8)), row=1, col=c, hoverinfo="skip")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        for c in (1, 2, 3):      # images: y down, square pixels (boxes keep their shape)
            fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if c == 1 else c}", constrain="domain",
                             row=1, col=c)
            fig.update_xaxes(constrain="domain", row=1, col=c)
        self._use_figure(fig, 430)
        # the classes drawn, each in its colour (the same palette as every page), above the titles
        self.fig.add_annotation(text="", x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                                yshift=32, showarrow=False, font=dict(size=17))
        self._cache: dict = {}
        self._uploads: dict = {}
        self._quiet = False
        self._image_note = ""
        self._results: dict = {}
        self._current = None
        self._image = self.image if self.image is not None else self._samples[names[0]]()
        if self.source == "lecture" and self.image is None:
            self._image = self._samples[names[0]]()
        #: which image is shown: ("given",), ("sample", name) or ("upload", n) (the n-th upload)
        self._key: tuple = ("given",) if self.image is not None else ("sample", names[0])
        self._n_uploads = 0
        #: each image's models' seconds as first measured, so the titles read the same when a student
        #: comes back to an image (the models run again; what is drawn does not change with the path)
        self._seconds: dict = {}

    def _models(self):
        from ..models import get

        if self.model is not None:
            # a one-stage detector (RetinaNet, FCOS, SSD) draws in the detection panel
            return {"detection" if self.model.task == "onestage" else self.model.task: self.model}
        return {task: get(task) for _, task in TASKS}

    def _pick_sample(self):
        if self._quiet:
            return
        v = self.sample.value
        self._image = self._uploads[v] if v in self._uploads else self._samples[v]()
        self._key = ("upload", self._n_uploads) if v in self._uploads else ("sample", v)
        self.refresh()

    def _on_upload(self, name: str, content: bytes | None, size: int) -> None:
        """An upload that cannot be used is one line above the picture still shown (which stays:
        hiding it left the student to pick another image and come back to see it again)."""
        if self.failed:
            return
        shown = self.sample.value
        try:
            self._check_upload(name, content, size)
        except Exception as exc:
            if self.plot is not None and self.plot.layout.visibility == "hidden":
                self._show_error(self._error_line(exc))       # nothing shown to keep: the line alone
                return
            self.error.value = (f"<span style='color:{VERMILLION};font-size:17px'>⚠ "
                                f"{html.escape(self._error_line(exc))} (still showing {html.escape(shown)})</span>")
            return
        self.guard(self._accept, name, content)

    def _check_upload(self, name: str, content: bytes | None, size: int) -> None:
        """A one-line ValueError for an upload that cannot be shown (``content`` is None when the browser
        found it above the limit)."""
        if content is None or size > MAX_UPLOAD_BYTES:
            raise ValueError(f"{name} is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB. "
                             "Save it smaller (or as JPEG) and upload it again")
        if not content:
            raise ValueError(f"{name} is empty (0 bytes): choose the image file again")
        from ..models import load_image

        try:
            load_image(content)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def _accept(self, name: str, content: bytes) -> None:
        """Show a checked upload."""
        # the chooser names what is shown: "uploaded: NAME" (the latest upload only, kept for going back)
        label = f"uploaded: {name}"
        self._uploads = {label: content}
        self._quiet = True
        try:
            self.sample.options = list(self._samples) + [label]
            self.sample.value = label
        finally:
            self._quiet = False
        self._image = content
        # only the latest upload can be shown again: the one before it is forgotten with its times
        self._seconds.pop(("upload", self._n_uploads), None)
        self._n_uploads += 1
        self._key = ("upload", self._n_uploads)
        self.refresh()

    def refresh(self):
        from ..models import load_image

        img = load_image(self._image)                        # fails early, with a clear line
        self._image_note = img.note
        key = self._key
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = {task: m(img.tensor) for task, m in self._models().items()}
        self._results = self._cache[key]
        # (the samples and the latest upload: a few numbers each)
        self._seconds.setdefault(key, {task: r.seconds for task, r in self._results.items() if r is not None})
        self._shown = key
        self._seg_image = None
        self._draw()

    def _ms(self, task: str) -> str:
        """The model's time on the image shown, as first measured on it."""
        return f"{self._seconds[self._shown][task] * 1e3:.0f} ms"

    def _state(self) -> dict:
        """``image``: what the models ran on; ``threshold``: the score threshold drawn; one entry
        per task ("segmentation", "detection", "instance") with its result (a
        :class:`~explainers.models.results.Result`), or None when no model is loaded for it."""
        return {"image": self._image, "threshold": self.threshold.value,
                **{task: self._results.get(task) for _, task in TASKS}}

    def _draw(self):
        from ..models import render
        from ..models.render import legend_items

        models = self._models()
        titles = []
        legend: dict = {}
        with self.fig.batch_update():
            for i, (title, task) in enumerate(TASKS):
                r = self._results.get(task)
                if r is None:
                    self.fig.data[i].source = png_uri(np.zeros((4, 4, 3), np.uint8))
                    titles.append(f"{title}: " + ("(not what your model does)" if self.model is not None
                                                  else "(no model)"))
                    continue
                if task == "segmentation":
                    # the score threshold does not change a label map: draw it once per image
                    if getattr(self, "_seg_image", None) is None:
                        self._seg_image = png_uri(render(r, legend=False))   # the legend is above the panels
                    self.fig.data[i].source = self._seg_image
                else:
                    # redrawn while min score moves: JPEG (a PNG's encoding was most of the time)
                    self.fig.data[i].source = jpeg_uri(render(r, self.threshold.value, panel=True))
                if hasattr(r, "boxes"):
                    shown = r.labels[r.scores >= self.threshold.value]
                    present = sorted(set(int(v) for v in shown.tolist()))
                else:
                    # the classes a student can see: a few stray pixels of a class (6 of 38,000 on the
                    # first scene) put it in the title and the legend of a picture that shows none of it
                    seen = [i for i, f in r.shares().items() if i != 0 and f >= MIN_SHARE]
                    present = sorted(seen)
                for item in legend_items(r.classes, present):
                    legend.setdefault(item, None)
                if hasattr(r, "boxes"):
                    n = int((r.scores >= self.threshold.value).sum())
                    titles.append(f"{title}: {n} object(s), {self._ms(task)}")
                else:
                    names = ", ".join(r.classes[i] if i < len(r.classes) else str(i) for i in seen)
                    titles.append(f"{title}: {names or 'background'}, {self._ms(task)}")
            for ann, t in zip(self.fig.layout.annotations, titles):
                ann.text = t
            self.fig.layout.annotations[3].text = (" &nbsp; ".join(legend) if legend
                                                   else "no object class found")
        weights = {m.weights for m in models.values()}
        device = next(iter(models.values())).device
        notes = ({r.note for r in self._results.values() if r.note} | ({self._image_note} - {""})
                 | {m.notice for m in models.values() if m.notice and not m.is_shapes})
        line = f"device: <b>{device}</b> · weights: {', '.join(sorted(weights))}"
        if all(m.is_shapes for m in models.values()):
            # information, not an error: in the page's text colour
            line += ("<br>Only the bundled shapes models are available here: they know circles, squares and "
                     "triangles, nothing else (a cat will not be found). For the COCO models, run "
                     "<code>explainers download detection</code> (and instance, segmentation) once online.")
        if notes:
            line += "<br>" + html.escape("; ".join(sorted(notes)))
        self.info.value = f"<span style='font-size:16px'>{line}</span>"
        self.check.value = ""
        self.sync_figure()
