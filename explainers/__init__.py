"""cv-explainers: interactive explainers of segmentation and detection, backed by live PyTorch models.

Subpackages:
    explainers.widgets the seven explainers (also importable from here: `from explainers import NMSExplainer`)
    explainers.models  the live model zoo (bundled shapes models, torchvision COCO models)
    explainers.ops     faithful, traceable operators (unpooling, conv as a matrix, anchors,
                       RoI Pool / Align, NMS, sliding window vs fully convolutional)
"""
__version__ = "0.1.0"

from .registry import BY_NAME as _BY_NAME
from .registry import EXPLAINERS

__all__ = ["EXPLAINERS", *_BY_NAME]


def __getattr__(name):
    # the widgets (ipywidgets, plotly) load only when an explainer is asked for
    if name in _BY_NAME:
        return _BY_NAME[name].load()
    raise AttributeError(f"module 'explainers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_BY_NAME))
