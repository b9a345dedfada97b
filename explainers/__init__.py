"""cv-explainers: interactive explainers of segmentation and detection, backed by live PyTorch models.

Subpackages:
    explainers.widgets the explainers listed in explainers.registry (also importable from here: `from explainers import NMSExplainer`)
    explainers.models  the live model zoo (bundled shapes models, torchvision COCO models)
    explainers.ops     faithful, traceable operators (unpooling, conv as a matrix, anchors,
                       RoI Pool / Align, NMS, sliding window vs fully convolutional, selective
                       search, training targets and losses, YOLO / SSD, mask pasting, receptive fields)
"""
__version__ = "0.1.0"

from .registry import BY_NAME as _BY_NAME
from .registry import EXPLAINERS, lazy_exports

__all__ = ["EXPLAINERS", *_BY_NAME]
# the widgets (ipywidgets, plotly) load only when an explainer is asked for
__getattr__, __dir__ = lazy_exports(__name__)
