"""The one list of explainers. Everything else reads it: the package's exports
(``from explainers import NMSExplainer``), ``explainers list``, the tour's buttons, the
notebooks test, the widget tests and the benchmarks.

Adding an explainer means: its op module(s) in ``explainers/ops/``, its widget module in
``explainers/widgets/``, its notebook in ``notebooks/``, one :class:`Entry` below, and its tests.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One explainer, the same name at every layer (ops/nms.py, widgets/nms.py, notebooks/06_nms)."""

    name: str                 #: the class, e.g. "NMSExplainer"
    module: str               #: its module in explainers.widgets, e.g. "nms"
    notebook: str             #: its notebook (stem) in notebooks/, e.g. "06_nms"
    label: str                #: the tour's button
    blurb: str                #: one line: what it shows
    tour_source: str = "lecture"   #: the source the tour opens it with ("lecture" or "live")
    control: str = ""         #: the attribute of the control a benchmark moves
    values: tuple = ()        #: the values the benchmark cycles that control through
    switch: bool = True       #: its page (explainers.app.Page) offers lecture / live and an image choice

    def load(self):
        """The explainer class (imports ipywidgets, plotly, torch: only when asked for)."""
        return getattr(importlib.import_module(f"explainers.widgets.{self.module}"), self.name)


#: in the order of the lecture
EXPLAINERS: tuple[Entry, ...] = (
    Entry("SlidingWindowExplainer", "sliding_window", "01_sliding_window", "1 sliding window",
          "a window slides, a CNN labels its centre pixel; then one fully convolutional pass",
          control="dense", values=(True, False)),
    Entry("UnpoolingExplainer", "unpooling", "02_unpooling", "2 unpooling",
          "nearest neighbour, bed of nails, max unpooling with switches, bilinear",
          control="mode", values=("nearest", "max", "bilinear", "bed_of_nails")),
    Entry("TransposedConvExplainer", "transposed_conv", "03_transposed_conv", "3 transposed conv",
          "convolution as a matrix X, transposed convolution as X^T (copies of the kernel), strided conv "
          "as learnable downsampling, 1D and 2D",
          control="view", values=("transposed", "conv")),
    Entry("AnchorsExplainer", "anchors", "04_anchors_rpn", "4 anchors & RPN",
          "K anchors per feature point with objectness and corrections; top-k, NMS, proposals, counted",
          tour_source="live", control="view", values=("cell", "proposals")),
    Entry("RoIPoolAlignExplainer", "roi", "05_roi_pool_align", "5 RoI Pool / Align",
          "RoI Pool's snapping against RoI Align's bilinear sampling",
          control="x1", values=(1.0, 1.1, 1.2, 1.3, 1.4)),
    Entry("NMSExplainer", "nms", "06_nms", "6 NMS",
          "non-maximum suppression, one kept box at a time",
          control="threshold", values=(0.3, 0.35, 0.4, 0.45, 0.5)),
    Entry("LiveModelExplainer", "live_model", "07_live_model", "7 live model",
          "semantic segmentation, detection and instance segmentation on any image",
          control="threshold", values=(0.3, 0.35, 0.4, 0.45, 0.5), switch=False),
    Entry("RCNNFamilyExplainer", "rcnn_family", "08_rcnn_family", "8 R-CNN family",
          "R-CNN, Fast R-CNN, Faster R-CNN on one image: seconds and multiply-accumulates per stage",
          control="pipeline", values=("R-CNN", "Fast R-CNN", "Faster R-CNN")),
    Entry("TrainingTargetsExplainer", "training_targets", "09_training_targets", "9 training targets",
          "anchors labelled and sampled, regression targets, and the four Faster R-CNN losses",
          control="weight", values=(0.5, 1.0, 2.0, 5.0, 10.0)),
    Entry("SingleStageExplainer", "single_stage", "10_single_stage", "10 YOLO / SSD",
          "YOLO's S x S grid and its S x S x (5B + C) tensor read cell by cell, SSD's default boxes, a one-stage "
          "model's dense predictions before NMS",
          control="view", values=("YOLO grid", "SSD default boxes")),
    Entry("MaskHeadExplainer", "mask_head", "11_mask_head", "11 mask head",
          "RoI Align 14x14, 28x28 mask logits per class, pasted into the box and thresholded",
          tour_source="live", control="threshold", values=(0.3, 0.4, 0.5, 0.6, 0.7)),
    Entry("FCNExplainer", "fcn", "12_fcn", "12 FCN inside",
          "SegNet stage by stage: shapes down and up, one pixel's features, its receptive field growing, "
          "pooling switches reused by unpooling",
          control="channel", values=(-1, 0, 5, 17)),
)

BY_NAME = {e.name: e for e in EXPLAINERS}
NAMES = tuple(BY_NAME)


def entry(name: str) -> Entry:
    try:
        return BY_NAME[name]
    except KeyError:
        raise LookupError(f"no explainer {name!r}; the explainers are {', '.join(NAMES)}") from None


def move_control(explainer, i: int) -> None:
    """Move the explainer's benchmark control to its ``i``-th value (cycling)."""
    e = entry(type(explainer).__name__)
    getattr(explainer, e.control).value = e.values[i % len(e.values)]


def lazy_exports(module: str):
    """``(__getattr__, __dir__)`` for a package that exports every explainer class lazily."""

    def __getattr__(name):
        if name in BY_NAME:
            return BY_NAME[name].load()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__():
        import sys

        return sorted(set(vars(sys.modules[module])) | set(BY_NAME))

    return __getattr__, __dir__
