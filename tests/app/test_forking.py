"""Kernels forked from one warm zygote (``explainers.app.forking``): they run pages, share the
zygote's memory, behave like ordinary kernels (interrupt, restart, shutdown), fall back to an
ordinary start when forking is impossible, and never outlive their server."""
import asyncio
import json
import os
import subprocess
import sys
import time

import psutil
import pytest
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

from explainers.app import forking

pytestmark = pytest.mark.skipif(not forking.supported(), reason="forking kernels needs Linux")


@pytest.fixture
def forking_factory():
    factory = KernelProvisionerFactory.instance()
    before = factory.default_provisioner_name
    factory.default_provisioner_name = forking.PROVISIONER
    yield
    factory.default_provisioner_name = before


async def _run(km, code: str, timeout: float = 300) -> str:
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"ERROR {msg['content']['ename']}")

        await kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        return "".join(out)
    finally:
        kc.stop_channels()


async def _start(env=None) -> AsyncKernelManager:
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    return km


def test_forked_kernels_run_a_page_and_share_the_zygotes_memory(forking_factory):
    async def go():
        kms = [await _start(), await _start({"EXPLAINERS_PROBE": "second"})]
        try:
            zygote = psutil.Process(kms[0].provisioner.pid).parent()
            code = ("import os, random, torch; from explainers import NMSExplainer\n"
                    "e = NMSExplainer(source='lecture'); e.step.value = 3\n"
                    "print(os.getppid(), torch.get_num_threads(), os.environ.get('EXPLAINERS_PROBE'),"
                    " random.random(), e.check_text[:1])")
            outs = [(await _run(km, code)).split() for km in kms]
            memory = [psutil.Process(km.provisioner.pid).memory_full_info().uss for km in kms]
            return kms, zygote, outs, memory
        except BaseException:
            for km in kms:
                await km.shutdown_kernel(now=True)
            raise

    kms, zygote, outs, memory = asyncio.run(go())
    try:
        assert all(km.provisioner.forked for km in kms)
        assert "explainers.app.forking" in " ".join(zygote.cmdline()) and zygote.ppid() == os.getpid()
        for out in outs:
            assert out[0] == str(zygote.pid)          # a fork of the zygote, not of this process
            assert out[1] == "1" and out[-1] == "✔"   # OMP_NUM_THREADS obeyed; the page's check passes
        assert outs[0][2] == "None" and outs[1][2] == "second"   # each kernel has the env it was given
        assert outs[0][3] != outs[1][3]               # fresh random seeds in each fork
        # torch, the explainers and plotly stay shared: a page costs a kernel far less than the
        # ~250 MB of private memory torch alone takes in a process of its own
        assert max(memory) < 200 * 2**20, [m >> 20 for m in memory]
    finally:
        for km in kms:
            asyncio.run(km.shutdown_kernel())


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_a_forked_kernel_runs_the_live_model_on_the_gpu(forking_factory):
    """The zygote imports torch without starting CUDA, so its forked kernels can use the GPU."""
    async def go():
        env = {k: v for k, v in os.environ.items() if k != "EXPLAINERS_DEVICE"}   # default: the GPU
        km = AsyncKernelManager(kernel_name="python3")
        await km.start_kernel(env=env)
        try:
            code = ("from explainers.models import default_device, get, make_scene\n"
                    "r = get('instance', 'shapes')(make_scene(3).image)\n"
                    "print(default_device(), r.device, len(r.boxes) > 0)")
            return km.provisioner.forked, (await _run(km, code)).split()
        finally:
            await km.shutdown_kernel(now=True)

    forked, out = asyncio.run(go())
    assert forked and out == ["cuda", "cuda", "True"], out


def test_interrupt_restart_and_shutdown_reach_the_forked_kernel(forking_factory):
    async def go():
        km = await _start()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        msg_id = kc.execute("import time; time.sleep(60)")
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        await km.interrupt_kernel()
        while True:
            msg = await kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
                break
        interrupted_after = time.monotonic() - t0
        kc.stop_channels()
        first = km.provisioner.pid
        await km.restart_kernel()
        second = km.provisioner.pid
        out = await _run(km, "print(6 * 7)")
        await km.shutdown_kernel()
        return msg["content"]["ename"], interrupted_after, first, second, out

    ename, interrupted_after, first, second, out = asyncio.run(go())
    assert ename == "KeyboardInterrupt" and interrupted_after < 10
    assert first != second and out.strip() == "42"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                             for p in (first, second)):
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in (first, second))


def test_a_kernel_starts_the_ordinary_way_when_forking_fails(forking_factory, monkeypatch):
    async def broken(self, args, env, cwd):
        raise RuntimeError("no zygote here")

    monkeypatch.setattr(forking.Zygote, "fork", broken)

    async def go():
        km = await _start()
        try:
            return km.provisioner.forked, psutil.Process(km.provisioner.pid).ppid(), await _run(km, "print(6 * 7)")
        finally:
            await km.shutdown_kernel()

    forked, parent, out = asyncio.run(go())
    assert not forked and parent == os.getpid() and out.strip() == "42"


def test_only_this_interpreters_ipykernel_is_forked(tmp_path):
    assert forking._forkable([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"]) == ["-f", "c.json"]
    other = tmp_path / "python"
    other.write_text("#!/bin/sh\n")
    assert forking._forkable([str(other), "-m", "ipykernel_launcher", "-f", "c.json"]) is None
    assert forking._forkable([sys.executable, "-m", "some_other_kernel", "-f", "c.json"]) is None
    assert forking._forkable(["R", "--slave"]) is None
    base = os.path.realpath(sys.executable)
    if os.path.dirname(base) != os.path.dirname(os.path.abspath(sys.executable)):   # a virtual environment
        # its base interpreter is the same file, but not this environment: not forked
        assert forking._forkable([base, "-m", "ipykernel_launcher", "-f", "c.json"]) is None


@pytest.mark.parametrize("how", ["the server is gone", "SIGTERM"])
def test_the_zygote_stops_its_kernels_before_it_stops(tmp_path, how):
    """Whether its server vanished or the server stopped it: no kernel is left behind (an
    orphaned kernel, where nobody reaps orphans, would stay a zombie)."""
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    folder = tmp_path / "z"
    folder.mkdir(mode=0o700)
    sock = str(folder / "sock")
    zygote = subprocess.Popen([sys.executable, "-m", "explainers.app.forking", sock, str(server.pid)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + forking.ZYGOTE_START_S
        while not os.path.exists(sock):
            assert zygote.poll() is None and time.monotonic() < deadline, "the zygote did not start"
            time.sleep(0.1)
        connection, _ = write_connection_file(str(tmp_path / "kernel.json"))
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(sock)
            s.sendall(json.dumps({"args": ["-f", connection], "env": dict(os.environ), "cwd": str(tmp_path)}).encode()
                      + b"\n")
            reply = forking._receive(s)
        kernel = psutil.Process(reply["pid"])
        assert kernel.ppid() == zygote.pid
        if how == "SIGTERM":
            zygote.terminate()
        else:
            server.kill()
            server.wait()
        assert zygote.wait(30) == 0                    # at once, or within its 5 s poll
        gone, alive = psutil.wait_procs([kernel], timeout=30)
        assert not alive, "a forked kernel outlived its server"
    finally:
        for p in (server, zygote):
            if p.poll() is None:
                p.kill()


def test_a_killed_servers_socket_folder_is_removed_by_the_next_one(tmp_path, monkeypatch):
    """kill -9 leaves a server no chance to remove its zygote folder: the next server removes the
    folders whose owner is gone, and leaves a running owner's folder and any folder it cannot judge."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, alive, unknown = (tmp_path / f"{forking.FOLDER_PREFIX}{n}" for n in ("stale", "alive", "unknown"))
    for d, owner in ((stale, dead.pid), (alive, os.getpid()), (unknown, None)):
        d.mkdir()
        (d / "kernels.log").write_text("x")
        if owner is not None:
            (d / "owner").write_text(str(owner))
    z = forking.Zygote()
    try:
        assert not stale.exists() and alive.exists() and unknown.exists()
        assert (z.folder / "owner").read_text() == str(os.getpid()) and z.folder.parent == tmp_path
    finally:
        z.stop()
    assert not z.folder.exists()
