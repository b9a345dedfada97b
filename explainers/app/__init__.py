"""The app: the notebooks served as Voila pages (``explainers serve``), each explainer on a
:class:`Page` (lecture / live in one click), and the tour."""
from .serve import NOTEBOOKS_DIR, TEMPLATE_ROOT, notebook_names, serve, voila_command

__all__ = ["NOTEBOOKS_DIR", "TEMPLATE_ROOT", "Page", "notebook_names", "serve", "voila_command"]


def __getattr__(name):
    if name == "Page":                     # ipywidgets loads only when a page is asked for
        from .page import Page

        return Page
    raise AttributeError(f"module 'explainers.app' has no attribute {name!r}")
