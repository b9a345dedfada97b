"""Kernels forked from one warm process: torch and the models loaded once, shared copy-on-write.

A page's kernel spends most of its memory on what every page loads the same way: torch's
libraries and their start-up allocations, torchvision, ipykernel, plotly, ipywidgets and the
explainers themselves (about 450 MB of private memory per plain kernel). Here one *zygote*
process imports all of that once; each new kernel is a ``fork()`` of it, so those pages stay
shared between all kernels until a kernel writes to them (copy-on-write, Linux). A kernel then
only pays for what its page computes and draws.

* :class:`ForkingProvisioner` is a Jupyter kernel provisioner (``explainers-forking``, the
  entry point in ``pyproject.toml``). Select it with
  ``--KernelProvisionerFactory.default_provisioner_name=explainers-forking``; ``explainers
  serve`` does so on Linux. For a Python kernel of this very interpreter it asks the zygote for
  a kernel; for anything else (another interpreter, another language), or when the zygote
  cannot be reached, it starts the kernel the ordinary way (:class:`LocalProvisioner`), so a
  page always gets a kernel.
* The zygote (``python -m explainers.app.forking SOCKET``) is started by the first kernel
  request of the server and listens on a Unix socket in a folder only this user can open. It
  is one per server: kernels of the same server share it. It runs no thread (``fork`` after
  threads is unsafe) and stops when its server's socket folder goes away or after
  ``ZYGOTE_IDLE_S`` without any kernel.

The forked kernel gets the environment, working folder and connection file the server asked
for, a session of its own (``setsid``: interrupts and shutdowns reach it and its children
only), fresh random seeds, and torch's thread count from ``OMP_NUM_THREADS``.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

#: the provisioner's name (the entry point in pyproject.toml)
PROVISIONER = "explainers-forking"
#: what the zygote imports before it forks: everything a page's kernel loads the same way
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "comm", "ipywidgets", "anywidget", "plotly.graph_objects",
           "numpy", "PIL.Image", "torch", "torchvision", "torchvision.models.detection", "explainers",
           "explainers.widgets", "explainers.app.page", "explainers.models")
#: the zygote stops after this long with no kernel alive and no request (seconds)
ZYGOTE_IDLE_S = 600.0
#: how long a server waits for its zygote to start (imports take ~5-15 s on a busy machine)
ZYGOTE_START_S = 120.0


def supported() -> bool:
    """Forking kernels needs Linux (``fork`` with copy-on-write and ``/proc``)."""
    return sys.platform.startswith("linux")


# ---------------------------------------------------------------------------------------------
# the zygote


def _send(conn: socket.socket, obj: dict) -> None:
    """One message: a line of JSON (requests to the zygote, and its replies)."""
    conn.sendall(json.dumps(obj).encode() + b"\n")


def _receive(conn: socket.socket, limit: int = 4 * 2**20) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("request too large")
    return json.loads(data.decode())


def _child(listener: socket.socket, conn: socket.socket, request: dict) -> None:
    """In the forked child: become the kernel the server asked for. Never returns."""
    code = 1
    try:
        listener.close()
        conn.close()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        log = request.get("log")
        if log:
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
        import random

        random.seed()
        import numpy as np

        np.random.seed(int.from_bytes(os.urandom(4), "little"))
        import torch

        torch.seed()
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))
        from ipykernel.kernelapp import IPKernelApp

        sys.argv = [sys.executable] + list(request["args"])
        app = IPKernelApp.instance()
        app.initialize(list(request["args"]))
        app.start()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process took the pid
        return False
    return True


class _Stop(Exception):
    """SIGTERM reached the zygote."""


def _raise_stop(signum, frame):
    raise _Stop()


def _stop_children(children: set[int], grace_s: float = 10.0) -> None:
    """Stop the kernels still running and wait until they are gone: a kernel must not outlive
    the zygote (it would be orphaned, and where nobody reaps orphans it stays a zombie)."""
    children = {pid for pid in children if _alive(pid)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in children:
            try:
                os.killpg(pid, sig)
            except OSError:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + grace_s
        while children and time.monotonic() < deadline:
            time.sleep(0.05)
            children = {pid for pid in children if _alive(pid)}
        if not children:
            return


def preload() -> None:
    """Import :data:`PRELOAD` without starting CUDA, so that forked kernels can still use a GPU.

    A process that has initialised the CUDA driver cannot use it in its forked children.
    ``torch.cuda.is_available()``, which the explainers' device choice calls, initialises it
    unless ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (torch then asks NVML instead). Tested on a GPU
    in ``tests/models/test_gpu.py``.
    """
    import importlib

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing extra only means less is shared
            print(f"explainers zygote: could not preload {name}: {exc}", file=sys.stderr, flush=True)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        print("explainers zygote: CUDA was started while preloading; forked kernels cannot use the GPU",
              file=sys.stderr, flush=True)


def zygote_main(path: str, server_pid: int) -> int:
    """Import what kernels share, then fork a kernel per request on the socket ``path``.

    It stops when the socket is removed or on SIGTERM (the server stopped it), when the server
    process is gone, or after ``ZYGOTE_IDLE_S`` with no kernel alive; kernels still running
    then are stopped first (nobody can reach them any more).
    """
    preload()
    # children are reaped by the kernel itself (no zombies); their state is asked with kill(pid, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path + f".{os.getpid()}"
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(64)
    os.replace(tmp, path)          # the socket appears only once the zygote can fork
    listener.settimeout(5.0)
    gc.collect()
    gc.freeze()                    # objects imported so far are never touched by the collector
    children: set[int] = set()
    try:
        return _serve(listener, path, server_pid, children)
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        listener.close()
        _stop_children(children)
        try:
            os.unlink(path)
        except OSError:
            pass


def _serve(listener: socket.socket, path: str, server_pid: int, children: set[int]) -> int:
    """The zygote's loop: a fork per request, until it is told or sees that it should stop."""
    last = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            children.intersection_update({pid for pid in children if _alive(pid)})
            if children:
                last = time.monotonic()
            if (not os.path.exists(path) or not _alive(server_pid)
                    or (not children and time.monotonic() - last > ZYGOTE_IDLE_S)):
                return 0
            continue
        last = time.monotonic()
        with conn:
            conn.settimeout(10.0)
            try:
                request = _receive(conn)
                pid = os.fork()
                if pid == 0:
                    _child(listener, conn, request)
                children.add(pid)
                _send(conn, {"ok": True, "pid": pid})
            except _Stop:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the zygote
                try:
                    _send(conn, {"ok": False, "error": str(exc)})
                except OSError:
                    pass


# ---------------------------------------------------------------------------------------------
# the server's side


def page_kernels(server_pid: int) -> list:
    """The page kernels under a server (a benchmark's or an admin's view; needs psutil): plain
    ipykernel processes, or forks of its zygote (``explainers.app.forking``; a fork keeps the
    zygote's command line, so the zygote's children are the kernels). Zombies (exiting) are not
    counted."""
    import psutil

    out = []
    for p in psutil.Process(server_pid).children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            line = " ".join(p.cmdline())
            if "ipykernel" in line or ("explainers.app.forking" in line and p.ppid() != server_pid):
                out.append(p)
        except psutil.Error:      # it is exiting
            pass
    return out


FOLDER_PREFIX = "explainers-zygote-"


def _remove_stale_folders() -> list[Path]:
    """Remove the socket folders of servers that are gone (a server killed with ``kill -9`` cannot
    remove its own): this user's folders whose owner process no longer runs. A folder without an
    owner file, or whose owner runs, is left alone. Returns the folders removed."""
    removed = []
    for d in Path(tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            if d.stat().st_uid != os.getuid():
                continue
            pid = int((d / "owner").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue                            # still running (or another process now has its pid)
        except ProcessLookupError:
            pass
        except PermissionError:                 # another user's process has the pid: not ours to judge
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class Zygote:
    """The server's handle on its zygote: started on first use, one per server process."""

    _instance: Zygote | None = None

    def __init__(self):
        _remove_stale_folders()
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))   # mode 0700: this user only
        (self.folder / "owner").write_text(str(os.getpid()))        # the server: see _remove_stale_folders
        self.path = str(self.folder / "sock")
        self.log = str(self.folder / "kernels.log")
        self.process: subprocess.Popen | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def instance(cls) -> Zygote:
        if cls._instance is None:
            import atexit

            cls._instance = cls()
            atexit.register(cls._instance.stop)
        return cls._instance

    def _request(self, obj: dict, timeout: float = 30.0) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.path)
            _send(s, obj)
            return _receive(s)

    async def ensure(self) -> None:
        async with self._lock:
            if self.process is not None and self.process.poll() is None and os.path.exists(self.path):
                return
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", "1")
            self.process = subprocess.Popen([sys.executable, "-m", "explainers.app.forking", self.path, str(os.getpid())],
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            deadline = time.monotonic() + ZYGOTE_START_S
            while not os.path.exists(self.path):
                if self.process.poll() is not None:
                    raise RuntimeError(f"the zygote stopped at start (exit {self.process.returncode})")
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError("the zygote did not start in time")
                await asyncio.sleep(0.1)

    async def fork(self, args: list[str], env: dict, cwd: str) -> int:
        await self.ensure()
        reply = await asyncio.to_thread(self._request, {"args": args, "env": env, "cwd": cwd, "log": self.log})
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "the zygote refused"))
        return int(reply["pid"])

    def stop(self) -> None:
        """Remove the socket folder (the zygote sees it and stops) and stop the zygote."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()           # it stops the kernels left, then itself
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def _stat(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time from ``/proc/PID/stat``; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


class ForkedKernel:
    """What :class:`LocalProvisioner` needs of a ``Popen``, for a kernel the zygote forked.

    The zygote is its parent (and reaps it), so its state is read from ``/proc``; the start
    time guards against a reused pid.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        stat = _stat(pid)
        self._start = stat[1] if stat else None
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            stat = _stat(self.pid)
            if stat is None or stat[1] != self._start or stat[0] in ("Z", "X"):
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _forkable(cmd: list[str]) -> list[str] | None:
    """The kernel's arguments when ``cmd`` starts ipykernel with this interpreter, else None.

    "This interpreter" is the same file *in the same folder*: a virtual environment's python is a
    link to its base interpreter, so the resolved files alone would take the base (or another
    environment) for this one, and fork a kernel with the wrong packages."""
    if len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    found = shutil.which(cmd[0])
    if not found:
        return None
    here, there = os.path.abspath(sys.executable), os.path.abspath(found)
    same = os.path.dirname(here) == os.path.dirname(there) and os.path.realpath(here) == os.path.realpath(there)
    return list(cmd[3:]) if same else None


class ForkingProvisioner(LocalProvisioner):
    """Start Python kernels as forks of a warm zygote (see the module's docstring)."""

    forked = False

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        args = _forkable(cmd) if supported() else None
        if args is not None:
            env = dict(kwargs.get("env") or os.environ)
            cwd = str(kwargs.get("cwd") or os.getcwd())
            try:
                pid = await Zygote.instance().fork(args, env, cwd)
            except (OSError, RuntimeError, ValueError) as exc:
                self.log.warning("explainers: forking a kernel failed (%s); starting it the ordinary way", exc)
            else:
                self.process = ForkedKernel(pid)
                self.pid = self.pgid = pid            # the child called setsid(): its own group
                self.cwd = cwd
                self.forked = True
                return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)


if __name__ == "__main__":
    sys.exit(zygote_main(sys.argv[1], int(sys.argv[2])))
