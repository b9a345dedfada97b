"""A real JupyterHub under load: N students log in, each opens the tour, steps through it and
uploads an image on the live page, in headless Chromium; student N+1 meets the class limit.

The hub runs ``docs/hosting/jupyterhub_config.py`` itself (the file a course uses). Only what a
test machine cannot have is replaced on the command line, which JupyterHub applies after the
file: a test-only log-in (``dummy`` with one password; the file's own PAM log-in lets nobody in),
``SimpleLocalProcessSpawner`` instead of SystemdSpawner (no systemd here; it starts the same
``jupyterhub-singleuser`` with the file's arguments, environment, notebooks and default URL),
no idle-culler service, local ports, and the class size (``active_server_limit`` = N).

Figures (pages served, errors, first-plot and click round-trip p50/p95, unique memory per
student as USS/PSS of each student's server process tree) go to ``hub_load.json`` in the test's
tmp dir and are printed. ``EXPLAINERS_HUB_STUDENTS`` sets N (default 8). Skipped when jupyterhub
or configurable-http-proxy is missing, unless ``EXPLAINERS_REQUIRE_HUB`` is set (CI sets it).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.app.ports import free_port, page_kernels, port_free


ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docs" / "hosting" / "jupyterhub_config.py"
#: a failed student's page, for a person to look at
SHOTS = ROOT / "test-artifacts" / "screenshots"
SHARED_CONFIG = ROOT / "docs" / "hosting" / "jupyterhub_shared_config.py"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]
PLOT = ".explainers-plot .main-svg"
DATA = ".explainers-plot .heatmaplayer .hm, .explainers-plot .imagelayer image, .explainers-plot .scatterlayer .trace"
PASSWORD = "class-test-only"
#: where .ci/run installs the proxy (npm install --prefix ...), used when it is not on PATH
CHP_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cv-explainers" / "chp"
LIMIT_S = 330            # the whole class, logging in to measuring, within this


def _proxy() -> str | None:
    found = shutil.which("configurable-http-proxy")
    cached = CHP_CACHE / "node_modules" / ".bin" / "configurable-http-proxy"
    return found or (str(cached) if cached.exists() else None)


def _requirements():
    missing = []
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        missing.append("jupyterhub (pip install jupyterhub)")
    if not _proxy():
        missing.append("configurable-http-proxy (npm install configurable-http-proxy@4)")
    if not os.path.exists(CHROMIUM):
        missing.append("Debian's chromium at /usr/bin/chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright")
    if missing:
        why = "the hub load test needs " + ", ".join(missing)
        if os.environ.get("EXPLAINERS_REQUIRE_HUB"):
            pytest.fail(why)
        pytest.skip(why)


def _percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 3)


def _wait_http(url, deadline, ok=lambda code: code < 500):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if ok(r.status):
                    return
        except urllib.error.HTTPError as exc:
            if ok(exc.code):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def _api(base: str, method: str, path: str):
    """The hub's REST API (or the class server's) with the test's class-starter token."""
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None,
                                 headers={"Authorization": f"token {STARTER_TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else {}


def _student_servers(hub_pid) -> dict:
    """{user name: psutil.Process} of the running jupyterhub-singleuser servers under the hub."""
    out = {}
    for p in psutil.Process(hub_pid).children(recursive=True):
        try:
            if "jupyterhub-singleuser" in " ".join(p.cmdline()):
                user = p.environ().get("JUPYTERHUB_USER")
                if user:
                    out[user] = p
        except psutil.Error:
            pass
    return out


def _tree_memory(proc) -> dict:
    """USS, PSS and RSS (MB) of a server and its kernels, and how many kernels it runs."""
    uss = pss = rss = 0
    kernels = []
    for p in [proc] + proc.children(recursive=True):
        try:
            m = p.memory_full_info()
            if "ipykernel" in " ".join(p.cmdline()):
                kernels.append(round(m.uss / 2**20))
        except psutil.Error:
            continue
        uss, pss, rss = uss + m.uss, pss + m.pss, rss + m.rss
    return {"uss_mb": round(uss / 2**20), "pss_mb": round(pss / 2**20), "rss_mb": round(rss / 2**20),
            "kernels": len(kernels), "kernel_uss_mb": kernels}


@contextlib.contextmanager
def _running_hub(tmp_path, n: int, config: Path, overrides: list[str], users: list[str]):
    """A real hub on ``config`` with the test's log-in, spawner and ports; stopped and checked after."""
    port, hub_port, api_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)          # jupyterhub-singleuser of this environment
    env["PATH"] = os.pathsep.join([bindir, str(Path(_proxy()).parent), env.get("PATH", "")])
    env["CONFIGPROXY_AUTH_TOKEN"] = os.urandom(16).hex()
    env.pop("JUPYTERHUB_API_TOKEN", None)
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(config),
           # what the test replaces (loaded after the file): log-in, spawner, ports
           "--JupyterHub.authenticator_class=dummy", f"--DummyAuthenticator.password={PASSWORD}",
           "--Authenticator.allow_all=True",
           "--JupyterHub.spawner_class=simple",
           f"--SimpleLocalProcessSpawner.home_dir_template={tmp_path}/home/{{username}}",
           f"--JupyterHub.bind_url=http://127.0.0.1:{port}",
           f"--JupyterHub.hub_bind_url=http://127.0.0.1:{hub_port}",
           f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{api_port}",
           f"--JupyterHub.db_url=sqlite:///{tmp_path}/hub.sqlite",
           f"--JupyterHub.cookie_secret_file={tmp_path}/cookie_secret",
           f"--ConfigurableHTTPProxy.pid_file={tmp_path}/proxy.pid"] + overrides
    if os.geteuid() == 0:
        # a container's root: jupyter_server refuses root without allow_root; each user's
        # own (test-only) home says so, the hub's configuration stays the course's
        for user in users:
            d = tmp_path / "home" / user / ".jupyter"
            d.mkdir(parents=True)
            (d / "jupyter_server_config.json").write_text('{"ServerApp": {"allow_root": true}}')
    log = open(tmp_path / "hub.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        try:
            _wait_http(f"http://127.0.0.1:{port}/hub/health", time.monotonic() + 90, ok=lambda c: c == 200)
        except TimeoutError:
            log.flush()
            pytest.fail("the hub did not answer within 90 s:\n" + (tmp_path / "hub.log").read_text()[-3000:])
        yield {"url": f"http://127.0.0.1:{port}", "proc": proc, "n": n, "tmp": tmp_path, "seen": seen,
               "ports": (port, hub_port, api_port)}
    finally:
        try:
            for p in psutil.Process(proc.pid).children(recursive=True):
                seen[p.pid] = p
        except psutil.Error:
            pass
        proc.send_signal(signal.SIGTERM)       # the hub stops the proxy and every student's server
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        gone, alive = psutil.wait_procs(list(seen.values()), timeout=30)
        # a zombie has exited (no memory, no port); only its parent, gone too, could reap it
        alive = [p for p in alive if _status(p) not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD, None)]
        for p in alive:                        # only what this hub started, by pid
            p.kill()
        log.close()
        hub_log = (tmp_path / "hub.log").read_text()
        assert not alive, f"left running after the hub stopped: {alive}"
        assert all(port_free(p) for p in (port, hub_port, api_port)), "a hub port is still taken"
        assert "Traceback" not in hub_log, hub_log[-4000:]


def _status(p: psutil.Process) -> str | None:
    """A process's state, None once it is gone."""
    try:
        return p.status()
    except psutil.Error:
        return None


def _hub_log_tail(hub, chars: int = 6000) -> str:
    """The end of the hub's log: the hub, the proxy and every student's server write there."""
    return (hub["tmp"] / "hub.log").read_text(errors="replace")[-chars:]


def _students() -> int:
    return int(os.environ.get("EXPLAINERS_HUB_STUDENTS", "8"))


@pytest.fixture
def hub(tmp_path):
    """The course's ``jupyterhub_config.py``: a server per student, ``active_server_limit`` = N."""
    _requirements()
    n = _students()
    with _running_hub(tmp_path, n, CONFIG, [f"--JupyterHub.active_server_limit={n}", "--JupyterHub.services=[]",
                                            "--JupyterHub.load_roles=[]"],
                      [f"student{i}" for i in range(n + 1)]) as h:
        yield h


#: a token only the test's hub knows, allowed to start the class server (what the lecturer does)
STARTER_TOKEN = os.urandom(16).hex()


@pytest.fixture
def shared_hub(tmp_path):
    """The course's ``jupyterhub_shared_config.py``: one class server, at most N pages on it.

    It has roles of its own (the students' scopes), so the test's changes go in a small file
    that loads the course's file first: no idle-culler service, a service token that starts the
    class server, and the class size as the server's page cap."""
    _requirements()
    n = _students()
    overlay = tmp_path / "test_shared_config.py"
    overlay.write_text(f"""c = get_config()
load_subconfig({str(SHARED_CONFIG)!r})
c.JupyterHub.services = [{{"name": "class-starter", "api_token": {STARTER_TOKEN!r}}}]
c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if r["name"] != "idle-culler"] + [
    {{"name": "class-starter", "scopes": ["servers!user=class", "read:users!user=class", "access:servers!user=class"],
      "services": ["class-starter"]}}]
c.Spawner.args = [a for a in c.Spawner.args if not a.startswith("--CappedKernelManager.max_kernels=")] + [
    "--CappedKernelManager.max_kernels={n}"]
""")
    with _running_hub(tmp_path, n, overlay, [], ["class"]) as h:
        yield h


def _class_memory(server) -> dict:
    """USS (MB) of the class server, its zygote (both paid once) and each page kernel, and the
    PSS of everything it holds (shared pages split between its processes)."""
    def mb(p, field):
        try:
            return getattr(p.memory_full_info(), field) / 2**20
        except psutil.Error:
            return 0
    zygotes = [p for p in server.children() if "explainers.app.forking" in " ".join(p.cmdline())]
    return {"server_uss_mb": round(mb(server, "uss")), "zygote_uss_mb": round(sum(mb(z, "uss") for z in zygotes)),
            "kernel_uss_mb": [round(mb(k, "uss")) for k in page_kernels(server.pid)],
            "tree_pss_mb": round(sum(mb(p, "pss") for p in [server] + server.children(recursive=True)))}


async def _class(hub, image, shared: bool = False) -> dict:
    """N students in Chromium: log in, the tour (4 steps), the live page with an upload; then
    student N+1. ``shared``: every page runs on the one class server (jupyterhub_shared_config.py);
    the class moves from the tour to the live page together, as in a lecture (the page cap is
    the class size, so the tours' kernels are let go before the live pages open)."""
    from playwright.async_api import async_playwright

    base, n = hub["url"], hub["n"]
    tours_left = asyncio.Event()
    left = [0]
    class_server = None
    errors: list[str] = []
    figures = {"first_plot_after_login_s": [], "first_plot_page_s": [], "step_s": [], "upload_s": [],
               "pages_served": 0}
    loop_t0 = time.monotonic()

    def watch(page, who, into):
        page.on("console", lambda m: into.append(f"{who} console: {m.text[:200]}") if m.type == "error" else None)
        page.on("pageerror", lambda e: into.append(f"{who} page error on {page.url[-40:]}: {e}"))
        page.on("request", lambda r: into.append(f"{who} request leaves 127.0.0.1: {r.url[:120]}")
                if not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")) else None)

    async def log_in(browser, name, into=errors):
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        watch(page, name, into)
        await page.goto(f"{base}/hub/login", timeout=60_000)
        await page.fill("#username_input", name)
        await page.fill("#password_input", PASSWORD)
        t0 = time.perf_counter()
        await page.click("#login_submit")
        return ctx, page, t0

    async def plot_html(page):
        return await page.inner_html(".explainers-plot")

    async def click_and_wait(page, text):
        before = await plot_html(page)
        t = time.perf_counter()
        await page.get_by_text(text).first.click()
        await page.wait_for_function("(b) => { const el = document.querySelector('.explainers-plot');"
                                     " return el && el.innerHTML !== b; }", arg=before, timeout=60_000)
        return time.perf_counter() - t

    async def leave_tour(page):
        """Shared: leave the tour (its kernel stops), then wait for the whole class to have left."""
        try:
            if page is not None:
                await page.goto("about:blank")
        finally:
            left[0] += 1
            if left[0] == n:
                # the tours' kernels stop: gone from the class server's kernel list (what its page
                # cap counts) and their processes gone
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    listed = await asyncio.to_thread(_api, base, "GET", "/user/class/api/kernels")
                    if not listed and not page_kernels(class_server.pid):
                        break
                    await asyncio.sleep(0.2)
                figures["tour_kernels_left_running"] = len(listed) + len(page_kernels(class_server.pid))
                tours_left.set()
        await tours_left.wait()

    async def student(browser, i):
        name = f"student{i}"
        server = "class" if shared else name
        page = None
        tour_left = not shared
        try:
            ctx, page, t0 = await log_in(browser, name)
            await page.wait_for_url(re.compile(rf".*/user/{server}/voila/render/00_tour\.ipynb.*"), timeout=240_000)
            await page.wait_for_selector(PLOT, timeout=240_000)
            await page.wait_for_selector(DATA, timeout=60_000)
            figures["first_plot_after_login_s"].append(time.perf_counter() - t0)
            figures["pages_served"] += 1
            for text in ("step ▶", "step ▶", "◀ step", "step ▶"):
                figures["step_s"].append(await click_and_wait(page, text))
            if shared:
                tour_left = True
                await leave_tour(page)
            # the live page: a page of its own on the running server, then an upload
            t = time.perf_counter()
            await page.goto(f"{base}/user/{server}/voila/render/07_live_model.ipynb", timeout=240_000)
            await page.wait_for_selector(PLOT, timeout=240_000)
            await page.wait_for_selector(DATA, timeout=60_000)
            figures["first_plot_page_s"].append(time.perf_counter() - t)
            figures["pages_served"] += 1
            async with page.expect_file_chooser(timeout=60_000) as chooser:
                await page.get_by_text("upload an image").first.click()
            before = await plot_html(page)
            t = time.perf_counter()
            await (await chooser.value).set_files(str(image))
            await page.wait_for_function("(b) => { const el = document.querySelector('.explainers-plot');"
                                         " return el && el.innerHTML !== b && "
                                         "/detection: [1-9][0-9]* object/.test((document.body ? document.body.innerText : '')); }",
                                         arg=before, timeout=120_000)
            figures["upload_s"].append(time.perf_counter() - t)
            body = await page.inner_text("body")
            if "⚠" in body:
                errors.append(f"{name}: the live page shows a warning: {body[:300]}")
            return ctx, page
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            if page is not None:               # what the student saw, for a person to look at
                with contextlib.suppress(Exception):
                    SHOTS.mkdir(parents=True, exist_ok=True)
                    await page.screenshot(path=str(SHOTS / f"hub-{'shared' if shared else 'own'}-{name}-failed.png"),
                                          timeout=10_000)
            if not tour_left:                  # the others must not wait for a student who failed
                await leave_tour(None)
            return None, None

    if shared:
        # the lecturer starts the class server before the class (here with the test's token)
        t = time.monotonic()
        await asyncio.to_thread(_api, base, "POST", "/hub/api/users/class/server")
        deadline = time.monotonic() + 180
        while not (await asyncio.to_thread(_api, base, "GET", "/hub/api/users/class"))["servers"].get("", {}).get("ready"):
            assert time.monotonic() < deadline, "the class server did not start in 180 s"
            await asyncio.sleep(0.5)
        figures["class_server_start_s"] = round(time.monotonic() - t, 1)
        class_server = _student_servers(hub["proc"].pid)["class"]
        loop_t0 = time.monotonic()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            sessions = await asyncio.wait_for(asyncio.gather(*(student(browser, i) for i in range(n))),
                                              timeout=LIMIT_S)
            figures["class_s"] = time.monotonic() - loop_t0
            # everybody's page is open: what each student's server and kernels hold now
            servers = _student_servers(hub["proc"].pid)
            figures["servers_running"] = len(servers)
            if shared:
                figures["memory"] = _class_memory(class_server)
            else:
                figures["memory"] = {u: _tree_memory(s) for u, s in sorted(servers.items())}
            # student N+1: the class is full (no server left to start / no page left on the class server)
            late: list[str] = []
            ctx, page, _ = await log_in(browser, f"student{n}", into=late)
            full = "The server is full, try again in a minute" if shared else "Active user limit exceeded"
            await page.wait_for_function("(t) => (document.body ? document.body.innerText : '').includes(t)",
                                         arg=full, timeout=60_000)
            # the 429 / 503 itself is the one console line expected; anything else is an error
            errors.extend(e for e in late if f"status of {503 if shared else 429}" not in e)
            figures["n_plus_1_page"] = " ".join((await page.inner_text("body")).split())[:300]
            figures["servers_after_n_plus_1"] = len(_student_servers(hub["proc"].pid))
            await ctx.close()
            # ... and nobody else is affected: the first student's live page still answers
            ctx0, page0 = sessions[0]
            if page0 is not None:
                await page0.locator("select").filter(has_text="shapes scene 1").first.select_option("shapes scene 2")
                await page0.wait_for_function("() => /detection: [0-9]+ object/.test((document.body ? document.body.innerText : ''))",
                                              timeout=60_000)
            for ctx, _ in sessions:
                if ctx is not None:
                    await ctx.close()
        finally:
            await browser.close()
    # anywidget's front end logs "Failed to initialize model" when a widget's JavaScript takes
    # over 2 s to start (a hard-coded timeout), which happens on a saturated 2-core machine while
    # 8 kernels start; the page still draws and reacts (checked above), so these are counted
    # apart as a sign of CPU saturation, not as errors
    figures["anywidget_slow_init"] = [e for e in errors if "[anywidget] Failed to initialize model" in e]
    figures["errors"] = [e for e in errors if e not in figures["anywidget_slow_init"]]
    return figures


def _class_report(figures: dict, n: int) -> dict:
    """The machine, pages, errors and times (p50 / p95 across students) of a class's run."""
    def p(key):
        return {"p50": _percentile(figures[key], .5), "p95": _percentile(figures[key], .95)}

    return {
        "machine": f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / 2**30:.1f} GiB memory, "
                   f"torch {__import__('torch').__version__}",
        "students": n, "pages_served": figures["pages_served"], "errors": len(figures["errors"]),
        "error_list": figures["errors"][:20], "anywidget_init_over_2s": len(figures["anywidget_slow_init"]),
        "whole_class_s": round(figures["class_s"], 1),
        "first_plot_after_login_s": p("first_plot_after_login_s"), "first_plot_live_page_s": p("first_plot_page_s"),
        "step_round_trip_s": p("step_s"), "upload_round_trip_s": p("upload_s"),
    }


@pytest.mark.hub
@pytest.mark.slow
def test_a_class_on_the_real_hub(hub, tmp_path):
    from PIL import Image

    from explainers.models.shapes import make_scene

    image = tmp_path / "scene.png"
    Image.fromarray(make_scene(10_000_017).image).save(image)
    t0 = time.monotonic()
    before = psutil.virtual_memory()
    figures = asyncio.run(_class(hub, image))
    n = hub["n"]
    mem = figures.pop("memory")
    uss = [m["uss_mb"] for m in mem.values()]
    pss = [m["pss_mb"] for m in mem.values()]
    kernel_uss = [k for m in mem.values() for k in m["kernel_uss_mb"]]
    report = {
        **_class_report(figures, n),
        "per_student_uss_mb": {"mean": round(statistics.mean(uss)) if uss else None, "max": max(uss, default=None)},
        "per_student_pss_mb": {"mean": round(statistics.mean(pss)) if pss else None, "max": max(pss, default=None)},
        "kernel_uss_mb": {"mean": round(statistics.mean(kernel_uss)) if kernel_uss else None,
                          "max": max(kernel_uss, default=None)},
        "kernels_per_student": sorted({m["kernels"] for m in mem.values()}),
        "machine_memory_used_delta_mb": round((psutil.virtual_memory().used - before.used) / 2**20),
        "servers_running": figures["servers_running"],
        "n_plus_1": {"page": figures.get("n_plus_1_page"), "servers_after": figures.get("servers_after_n_plus_1")},
        "per_student": mem,
    }
    (hub["tmp"] / "hub_load.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "per_student"}, indent=1))
    print("figures written to", hub["tmp"] / "hub_load.json")
    assert report["errors"] == 0, f"{figures['errors']}\nthe hub's log ends:\n{_hub_log_tail(hub)}"
    assert report["pages_served"] == 2 * n
    assert figures["servers_running"] == n and figures["servers_after_n_plus_1"] == n
    assert "Try again in a few minutes" in report["n_plus_1"]["page"]
    assert all(m["kernels"] >= 1 for m in mem.values())
    assert time.monotonic() - t0 < 360, "the class took longer than 6 minutes"


@pytest.mark.hub
@pytest.mark.slow
def test_a_class_on_one_shared_class_server(shared_hub, tmp_path):
    """jupyterhub_shared_config.py: the hub logs students in, one class server runs their pages
    as forked kernels; an additional student costs one kernel's unique memory."""
    from PIL import Image

    from explainers.models.shapes import make_scene

    image = tmp_path / "scene.png"
    Image.fromarray(make_scene(10_000_017).image).save(image)
    t0 = time.monotonic()
    figures = asyncio.run(_class(shared_hub, image, shared=True))
    n = shared_hub["n"]
    mem = figures.pop("memory")
    report = {
        **_class_report(figures, n),
        "class_server_start_s": figures["class_server_start_s"],
        "tour_kernels_left_running": figures.get("tour_kernels_left_running"),
        "per_student_uss_mb": {"mean": round(statistics.mean(mem["kernel_uss_mb"])) if mem["kernel_uss_mb"] else None,
                               "max": max(mem["kernel_uss_mb"], default=None)},
        "paid_once_uss_mb": {"class_server": mem["server_uss_mb"], "zygote": mem["zygote_uss_mb"]},
        "class_server_tree_pss_mb": mem["tree_pss_mb"],
        "page_kernels": len(mem["kernel_uss_mb"]), "servers_running": figures["servers_running"],
        "n_plus_1": {"page": figures.get("n_plus_1_page"), "servers_after": figures.get("servers_after_n_plus_1")},
    }
    (shared_hub["tmp"] / "hub_shared.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    assert report["errors"] == 0, f"{figures['errors']}\nthe hub's log ends:\n{_hub_log_tail(shared_hub)}"
    assert report["pages_served"] == 2 * n and report["tour_kernels_left_running"] == 0
    assert figures["servers_running"] == 1 and figures["servers_after_n_plus_1"] == 1   # the class server only
    assert report["page_kernels"] == n and mem["zygote_uss_mb"] > 0                      # forked kernels
    assert "The server is full, try again in a minute" in report["n_plus_1"]["page"]
    assert report["per_student_uss_mb"]["max"] < 400, report                              # the lean-kernel target
    assert time.monotonic() - t0 < 360, "the class took longer than 6 minutes"


def test_release_returns_memory_on_linux():
    from explainers.app._memory import release

    assert release() is sys.platform.startswith("linux")
