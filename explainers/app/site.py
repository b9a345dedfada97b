"""``explainers export-site DIR``: every explainer's lecture animation as a static web site.

For a class with no server at all: the folder goes on any static host (GitHub Pages, a
university web space) or is opened from disk. Each page is :meth:`Explainer.export_html`
(title, controls, a caption per step, the check line); the pages share one copy of plotly.js;
``index.html`` lists them. Nothing is fetched from the internet. No live model runs here:
for that, ``explainers serve`` or JupyterHub (docs/hosting.md).
"""
from __future__ import annotations

import html
from pathlib import Path

from .._files import default_mode
from ..registry import EXPLAINERS

PLOTLY_FILE = "plotly.min.js"

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>From classification to segmentation and detection</title>
<style>
body {{ font-family: system-ui, sans-serif; font-size: 19px; max-width: 52em; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }}
h1 {{ font-size: 30px; }} li {{ margin: 0.5em 0; }} a {{ color: #0072B2; font-weight: 600; }}
.small {{ font-size: 16px; color: #555; }}
</style></head>
<body>
<h1>From classification to segmentation and detection</h1>
<p>Animated explainers, in the order of the lecture. Each page steps through the slide's example;
every number drawn is checked against PyTorch / torchvision (the line under the plot).</p>
<ol>
{items}
</ol>
<p class="small">A static copy made by <code>explainers export-site</code> (cv-explainers {version}): the
slides' examples only. The live model (your own image, the model's own tensors) needs a server:
<code>explainers serve</code>.</p>
</body></html>
"""


class SiteError(ValueError):
    """The site cannot be written there (one line)."""


def export_site(directory) -> list[Path]:
    """Write ``index.html``, one page per explainer and ``plotly.min.js`` into ``directory``,
    which must be new or empty (nothing of the user's is overwritten). Returns the files.

    Whole or not at all: the site is built in a hidden folder (beside a new ``directory``, inside an
    existing empty one) and moved into place when complete, so an interrupted or failed run leaves
    nothing behind (a half-written folder was refused by the next run as "not empty")."""
    import os
    import shutil
    import tempfile

    from plotly.offline import get_plotlyjs

    from .. import __version__

    out = Path(directory).expanduser()
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out} is a file, not a folder: give a new folder for the site")
    if out.is_dir() and any(out.iterdir()):
        raise SiteError(f"{out} is not empty: give a new (or empty) folder, nothing in it is overwritten")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise SiteError(f"cannot write in {out}: the folder is not writable")
    # a new folder is built beside it and renamed into place; an existing empty one (perhaps a mount
    # point or a link, which cannot be replaced) gets a hidden folder inside, whose files move up
    existing = out.is_dir()
    parent = out if existing else out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise SiteError(f"cannot create {out}: {exc.strerror or exc}") from None
    try:
        (tmp / PLOTLY_FILE).write_text(get_plotlyjs(), encoding="utf-8")
        items, names = [], [PLOTLY_FILE]
        for e in EXPLAINERS:
            explainer = e.load()(source="lecture")
            page = explainer.export_html(tmp / f"{e.notebook}.html", plotly_src=PLOTLY_FILE)
            explainer.close()
            names.append(page.name)
            items.append(f"<li><a href='{page.name}'>{html.escape(explainer.title)}</a><br>"
                         f"<span class='small'>{html.escape(e.blurb)}</span></li>")
        (tmp / "index.html").write_text(_INDEX.format(items="\n".join(items), version=__version__),
                                        encoding="utf-8")
        if existing:
            for name in names + ["index.html"]:
                os.replace(tmp / name, out / name)
        else:
            os.chmod(tmp, default_mode(folder=True))  # mkdtemp's folder is private: a web folder is not
            os.replace(tmp, out)
    except OSError as exc:
        raise SiteError(f"cannot write the site to {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return [out / "index.html"] + [out / n for n in names]

