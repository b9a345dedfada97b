"""``explainers serve`` as a process: the URL answers when printed, ``/`` is the start page,
the kernel cap shows "the server is full", and SIGTERM / Ctrl-C stop everything."""
import http.client
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.app.ports import free_port, page_kernels, port_free

from explainers.app import server as server_module
from explainers.app.serve import TEMPLATE_ROOT, serve, voila_command, voila_env
from explainers.app.server import FULL_PAGE, default_max_kernels
from explainers.cli import main


def test_voila_command_is_local_offline_and_hides_code():
    cmd = voila_command(8123)
    assert cmd[1:3] == ["-m", "explainers.app.server"]
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=8123" in cmd
    assert "--template=explainers" in cmd and "--strip_sources=True" in cmd and "--no-browser" in cmd
    assert any(a.startswith("--preheat_kernel=True") for a in cmd)
    assert str(TEMPLATE_ROOT) in voila_env()["JUPYTER_PATH"]
    tpl = (TEMPLATE_ROOT / "voila" / "templates" / "explainers" / "index.html.j2").read_text()
    assert "cdn.jsdelivr.net" in tpl  # only inside the replace() that removes the links


def test_serve_unknown_notebook_is_a_clear_error(capsys):
    assert serve(notebook="does_not_exist") == 2
    assert "choose from" in capsys.readouterr().err


def test_serve_runs_voila_in_process_and_warns_when_exposed(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(server_module.ExplainersVoila, "launch_instance", classmethod(lambda cls, argv: calls.append(argv)))
    monkeypatch.setattr("os.environ", dict(os.environ))
    assert main(["serve", "--notebook", "nms", "--port", "0"]) == 0
    out = capsys.readouterr()
    assert "--ExplainersVoila.start_page=06_nms" in calls[-1] and "WARNING" not in out.err
    assert main(["serve", "--ip", "0.0.0.0", "--port", "0", "--no-preheat", "--max-kernels", "5"]) == 0
    out = capsys.readouterr()
    assert "WARNING: serving on 0.0.0.0" in out.err
    assert "--Voila.ip=0.0.0.0" in calls[-1] and not any("preheat" in a for a in calls[-1])
    assert "--ExplainersVoila.max_kernels=5" in calls[-1]
    # a port outside 0-65535: one line, nothing started; a busy port: the one taken instead is named
    n = len(calls)
    assert main(["serve", "--port", "99999"]) == 2 and len(calls) == n
    assert capsys.readouterr().err.strip() == ("explainers serve: --port 99999 is not a port; give one from 1024 "
                                               "to 65535, e.g. 8866 (0: any free one)")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert main(["serve", "--port", str(taken)]) == 0
    out = capsys.readouterr().out
    used = int(out.split("using ", 1)[1].split()[0])
    assert f"port {taken} is busy" in out and used != taken and f"--port={used}" in calls[-1]





def _start(tmp_path, *args):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "explainers.cli", "serve", "--port", str(port), *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "EXPLAINERS_DEVICE": "cpu", "EXPLAINERS_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    proc.seen = []                              # everything printed up to the URL (stdout and stderr)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        proc.seen.append(line)
        if "open http" in line:
            return proc, port, line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("explainers serve printed no URL")


def _get(port: int, path: str, timeout: float = 300):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read().decode("utf-8", "replace")
    conn.close()
    return r, body


def _stop(proc, sig) -> list:
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    gone, alive = psutil.wait_procs(kids, timeout=30)
    return alive


@pytest.mark.slow
def test_url_answers_when_printed_and_the_cap_says_full_and_sigterm_stops_all(tmp_path):
    proc, port, line = _start(tmp_path, "--no-preheat", "--max-kernels", "1")
    try:
        assert f"http://127.0.0.1:{port}/" in line and "at most 1 pages" in line
        r, _ = _get(port, "/", timeout=5)           # no retry: it answers as soon as it is printed
        assert r.status == 302 and r.getheader("Location").endswith("/voila/render/00_tour.ipynb")
        r, body = _get(port, "/voila/render/02_unpooling.ipynb")
        assert r.status == 200 and "Unpooling" in body
        assert len(page_kernels(proc.pid)) == 1
        r, body = _get(port, "/voila/render/06_nms.ipynb", timeout=10)   # a second page: over the cap
        assert r.status == 503 and r.getheader("Retry-After") == "60"
        assert "The server is full, try again in a minute" in body
        assert len(page_kernels(proc.pid)) == 1, "a kernel was started beyond the cap"
    finally:
        alive = _stop(proc, signal.SIGTERM)         # what `kill PID` sends
    assert not alive, f"left running after SIGTERM: {alive}"
    assert port_free(port)


@pytest.mark.slow
def test_ctrl_c_stops_and_notebook_option_sets_the_start_page(tmp_path):
    proc, port, _ = _start(tmp_path, "--notebook", "nms")          # preheated: a kernel pool for the page
    try:
        r, _ = _get(port, "/", timeout=5)
        assert r.status == 302 and r.getheader("Location").endswith("/voila/render/06_nms.ipynb")
        r, body = _get(port, "/voila/render/06_nms.ipynb")
        assert r.status == 200 and "Non-maximum suppression" in body
    finally:
        alive = _stop(proc, signal.SIGINT)          # what Ctrl-C sends
    assert not alive and port_free(port)
    # nothing that would alarm a lecturer: no Python warning, no "not trusted" for our own notebooks
    printed = "".join(proc.seen) + proc.stdout.read()
    assert "Kernel pool of 06_nms.ipynb" in printed, printed[-2000:]       # the preheat warned before
    assert "Warning" not in printed and "not trusted" not in printed, printed[-2000:]


def test_bad_serve_arguments_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "explainers.cli", "serve", "--notebook", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no notebook 'nope'" in r.stderr
    assert serve(0, notebook="1") == 2                       # 01, 10, 11 and 12 all contain "1"
    r = subprocess.run([sys.executable, "-m", "explainers.cli", "serve", "--max-kernels", "-3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--max-kernels" in r.stderr


@pytest.mark.parametrize("ip, words", [("10.255.255.254", "not an address of this machine"),
                                       ("no-such-host.invalid", "not an address or a name")])
def test_an_address_this_machine_cannot_listen_on_is_one_line(ip, words, capsys):
    """A wrong --ip ended in a traceback "OSError: no free port" (it is not a port problem)."""
    assert serve(0, ip=ip) == 2
    err = capsys.readouterr().err
    assert f"explainers serve: cannot listen on {ip}: {words}" in err and "Traceback" not in err


def test_an_ipv6_address_is_bound_as_ipv6():
    """--ip ::1 (which serve itself counts as local) was bound as IPv4 and failed as "no free port"."""
    import socket

    from explainers.app.serve import _free_port

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    assert 0 < _free_port("::1", 0) <= 65535


def test_default_cap_follows_memory():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    n = default_max_kernels()
    assert n >= 2 and n * 1.2 * 2**30 <= max(total, 4.4 * 2**30)
    forked = default_max_kernels(forked=True)
    assert forked >= n and forked * 0.4 * 2**30 <= max(total, 2.8 * 2**30)
    assert "{n}" in FULL_PAGE


def test_the_cap_counts_a_starting_kernel_once(tmp_path, monkeypatch):
    """jupyter_client lists a kernel before its start call returns (jupyter_server then waits for
    it to be ready): counted both as listed and as starting, 3 pages starting at once looked like
    6 and a class server with room refused a student ("the server is full")."""
    import asyncio

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    from explainers.app.server import CappedKernelManager, ServerFull

    async def go():
        gate = asyncio.Event()

        async def slow_start(self, *args, kernel_id=None, **kwargs):
            self._kernels[kernel_id] = object()     # listed at once, ready only later
            await gate.wait()
            return kernel_id

        monkeypatch.setattr(AsyncMappingKernelManager, "start_kernel", slow_start)
        km = CappedKernelManager(root_dir=str(tmp_path), max_kernels=4)
        starts = [asyncio.create_task(km.start_kernel(kernel_name="python3")) for _ in range(3)]
        await asyncio.sleep(0.05)
        during = km.running(), km.is_full()
        fourth = asyncio.create_task(km.start_kernel(kernel_name="python3"))   # room for one more
        await asyncio.sleep(0.05)
        with pytest.raises(ServerFull):
            await km.start_kernel(kernel_name="python3")                      # the fifth is refused
        gate.set()
        ids = await asyncio.gather(*starts, fourth)
        return during, ids, km.running()

    during, ids, after = asyncio.run(go())
    assert during == (3, False)
    assert len(set(ids)) == 4 and after == 4
