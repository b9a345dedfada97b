"""The explainer widgets (ipywidgets + plotly), in lecture order, as listed in
:mod:`explainers.registry` (each loads on first use)."""
from ..registry import BY_NAME as _BY_NAME
from ..registry import lazy_exports

__all__ = list(_BY_NAME)
__getattr__, __dir__ = lazy_exports(__name__)
