"""The seven explainer widgets (ipywidgets + plotly), in lecture order."""
from .anchors import AnchorsExplainer
from .live_model import LiveModelExplainer
from .nms import NMSExplainer
from .roi import RoIPoolAlignExplainer
from .sliding_window import SlidingWindowExplainer
from .transposed_conv import TransposedConvExplainer
from .unpooling import UnpoolingExplainer

__all__ = ["SlidingWindowExplainer", "UnpoolingExplainer", "TransposedConvExplainer", "AnchorsExplainer",
           "RoIPoolAlignExplainer", "NMSExplainer", "LiveModelExplainer"]
