"""The README's first command, as a newcomer runs it: a fresh venv, ``pip install .`` (not
editable, no extras), ``explainers serve`` from a folder outside the checkout, the printed URL
in Chromium until a plot is drawn.

It fails when a run-time dependency is missing (e.g. ipykernel: every page is then "500: No
Jupyter kernel"), which a test run inside the dev environment (with the test extra) cannot see.
It builds a venv with torch (minutes), so it runs when ``EXPLAINERS_NEWCOMER=1`` (CI sets it).
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app.ports import free_port, port_free

pytestmark = [pytest.mark.newcomer, pytest.mark.slow, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]
DATA = ".explainers-plot .heatmaplayer .hm, .explainers-plot .imagelayer image, .explainers-plot .scatterlayer .trace"


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "JUPYTER_PATH", "PYTHONSTARTUP")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    env.update(extra)
    return env




@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    if os.environ.get("EXPLAINERS_NEWCOMER") != "1":
        pytest.skip("builds a fresh venv with torch (minutes): set EXPLAINERS_NEWCOMER=1 (CI does)")
    tmp = tmp_path_factory.mktemp("newcomer")
    # the checkout as a fresh clone holds it (no venv, no build/ left over from an earlier build)
    src = tmp / "cv-explainers"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "test-artifacts", "__pycache__", ".hypothesis",
        ".pytest_cache", "results.json"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    t0 = time.perf_counter()
    # exactly the README's first command (its `pip install .`), run in the project's folder
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-input", "."], cwd=src,
                       env=_clean_env(), capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"newcomer install: {time.perf_counter() - t0:.0f} s")
    where = subprocess.run([str(py), "-c", "import explainers; print(explainers.__file__)"], cwd="/",
                           env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(src) not in where.stdout, "not a non-editable install"
    return venv


def test_fresh_install_serves_the_tour(fresh_venv, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    outside = tmp_path / "somewhere-else"
    outside.mkdir()
    port = free_port()
    log = open(tmp_path / "serve.err", "w")
    proc = subprocess.Popen([str(fresh_venv / "bin" / "explainers"), "serve", "--port", str(port), "--no-preheat"],
                            cwd=outside, stdout=subprocess.PIPE, stderr=log, text=True,
                            env=_clean_env(EXPLAINERS_DEVICE="cpu", EXPLAINERS_OFFLINE="1",
                                           HOME=str(tmp_path), TORCH_HOME=str(tmp_path / "torch")))
    try:
        url, deadline = None, time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if "open http" in line:
                url = line.split("open ", 1)[1].split()[0]
        assert url, f"no URL printed; server log: {(tmp_path / 'serve.err').read_text()[-3000:]}"
        assert url == f"http://127.0.0.1:{port}/"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            response = page.goto(url, timeout=120_000)     # the URL answers as soon as it is printed
            assert response.status == 200, f"{response.status}: {page.inner_text('body')[:500]}"
            assert "/voila/render/00_tour.ipynb" in page.url   # `/` is the tour, not a file list
            try:
                page.wait_for_selector(DATA, timeout=240_000)
            except Exception:
                body = page.inner_text("body")[:1000]
                raise AssertionError(f"no plot drawn; page says: {body!r}; server log: "
                                     f"{(tmp_path / 'serve.err').read_text()[-3000:]}") from None
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)           # what `kill PID` sends
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("explainers serve did not stop on SIGTERM") from None
        log.close()
    assert code == 0
    assert port_free(port), "the port is still held after SIGTERM"
