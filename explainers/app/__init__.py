"""The app: the notebooks served as Voila pages (``explainers serve``)."""
from .serve import NOTEBOOKS_DIR, TEMPLATE_ROOT, notebook_names, serve, voila_command

__all__ = ["NOTEBOOKS_DIR", "TEMPLATE_ROOT", "notebook_names", "serve", "voila_command"]
