"""``explainers export-site``: a static site of every lecture animation, offline, nothing overwritten."""
import re
import subprocess
import sys

import pytest

from explainers.app.site import PLOTLY_FILE, SiteError, export_site
from explainers.registry import EXPLAINERS


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "course"
    export_site(out)
    return out


def test_one_page_per_explainer_an_index_and_one_plotly(site):
    index = (site / "index.html").read_text()
    for e in EXPLAINERS:
        page = site / f"{e.notebook}.html"
        text = page.read_text()
        assert f"href='{page.name}'" in index
        assert f"<script src='{PLOTLY_FILE}'></script>" in text and text.count("Plotly.newPlot") == 0
        assert "<h1 class='explainer-title'>" in text
        assert not re.search(r"(src|href)=['\"]https?://", text), "a page fetches from the internet"
    total = sum(f.stat().st_size for f in site.iterdir())
    assert (site / PLOTLY_FILE).stat().st_size > 1_000_000 and total < 12 * 2**20


def test_nothing_is_overwritten(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SiteError, match="not empty"):
        export_site(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(SiteError, match="is a file"):
        export_site(tmp_path / "mine.txt")


def test_cli_one_line_and_exit_2(tmp_path):
    (tmp_path / "x").write_text("")
    r = subprocess.run([sys.executable, "-m", "explainers.cli", "export-site", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("explainers export-site:") and len(r.stderr.splitlines()) == 1


def test_an_interrupted_or_failed_site_leaves_nothing_behind(tmp_path, monkeypatch):
    """Ctrl-C or a failure part-way left plotly.min.js and some pages, and the rerun refused the folder
    as "not empty" (its own leftovers). The site is built beside the folder and renamed into place."""
    import explainers.app.site as site_mod
    from explainers.registry import entry

    class Stop:
        notebook = "99_stop"

        @staticmethod
        def load():
            raise KeyboardInterrupt

    monkeypatch.setattr(site_mod, "EXPLAINERS", (entry("NMSExplainer"), Stop))
    with pytest.raises(KeyboardInterrupt):
        export_site(tmp_path / "course")
    assert list(tmp_path.iterdir()) == []                     # no folder, no hidden partial one
    (tmp_path / "empty").mkdir()
    Stop.load = staticmethod(lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(SiteError, match="cannot write the site to .*empty: No space left on device"):
        export_site(tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any((tmp_path / "empty").iterdir())
    monkeypatch.setattr(site_mod, "EXPLAINERS", (entry("NMSExplainer"),))
    files = export_site(tmp_path / "empty")                    # an empty folder is filled
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == sorted(f.name for f in files)
    from explainers._files import default_mode

    assert (tmp_path / "empty").stat().st_mode & 0o777 == default_mode(folder=True)   # a web folder, not 0700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_an_empty_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == os.fspath(locked) else real(p, m))
    with pytest.raises(SiteError, match="cannot write in .*locked: the folder is not writable"):
        export_site(locked)



def test_an_existing_empty_folder_reached_through_a_link_is_filled(tmp_path, monkeypatch):
    """An empty folder that cannot be replaced (a mount point, a link to a folder: an empty Docker volume
    or web root) failed after the whole build ("Device or resource busy", "Not a directory"): the site
    is built in a hidden folder inside it and its files moved up."""
    import explainers.app.site as site_mod
    from explainers.registry import entry

    monkeypatch.setattr(site_mod, "EXPLAINERS", (entry("NMSExplainer"),))
    target = tmp_path / "webroot"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    files = export_site(link)
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == sorted(f.name for f in files)
    assert not [p for p in target.iterdir() if p.name.startswith(".")]
