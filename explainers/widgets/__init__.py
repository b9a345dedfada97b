"""The explainer widgets (ipywidgets + plotly), in lecture order, as listed in
:mod:`explainers.registry` (each loads on first use)."""
from ..registry import BY_NAME as _BY_NAME

__all__ = list(_BY_NAME)


def __getattr__(name):
    if name in _BY_NAME:
        return _BY_NAME[name].load()
    raise AttributeError(f"module 'explainers.widgets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_BY_NAME))
