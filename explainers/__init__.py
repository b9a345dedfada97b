"""cv-explainers: interactive explainers of segmentation and detection, backed by live PyTorch models.

Subpackages:
    explainers.widgets the seven explainers (also importable from here: `from explainers import NMSExplainer`)
    explainers.models  the live model zoo (bundled shapes models, torchvision COCO models)
    explainers.ops     faithful, traceable operators (unpooling, conv as a matrix, anchors,
                       RoI Pool / Align, NMS, sliding window vs fully convolutional)
"""
__version__ = "0.1.0"

#: the explainers, in the order of the lecture (name, one line)
EXPLAINERS = [
    ("SlidingWindowExplainer", "a window slides, a CNN labels its centre pixel; then one fully convolutional pass"),
    ("UnpoolingExplainer", "nearest neighbour, bed of nails, max unpooling with switches, bilinear"),
    ("TransposedConvExplainer", "convolution as a matrix X, transposed convolution as X^T, 1D and 2D"),
    ("AnchorsExplainer", "anchors per feature cell, objectness, box corrections, top-k RPN proposals"),
    ("RoIPoolAlignExplainer", "RoI Pool's snapping against RoI Align's bilinear sampling"),
    ("NMSExplainer", "non-maximum suppression, one kept box at a time"),
    ("LiveModelExplainer", "semantic segmentation, detection and instance segmentation on any image"),
]


def __getattr__(name):
    # the widgets (ipywidgets, plotly) load only when an explainer is asked for
    if name in {n for n, _ in EXPLAINERS}:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'explainers' has no attribute {name!r}")
