"""``explainers serve``: the notebooks as Voila pages on 127.0.0.1."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
TEMPLATE_ROOT = Path(__file__).resolve().parent / "share" / "jupyter"
TOUR = "00_tour"


def notebook_names() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))


class ServeError(OSError):
    """The server cannot listen where asked (one line)."""


def _free_port(ip: str, preferred: int) -> int:
    """``preferred`` if it is free on ``ip``, else any free port (ServeError: ``ip`` cannot be listened
    on at all, in words: an IPv6 address such as ::1 is bound as IPv6, not as IPv4)."""
    import errno

    host = "" if ip == "0.0.0.0" else ip
    try:
        family = socket.getaddrinfo(host or None, preferred, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror:
        raise ServeError(f"cannot listen on {ip}: not an address or a name this machine knows "
                         "(try 127.0.0.1, or 0.0.0.0 for every network)") from None
    for port in (preferred, 0):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
                return s.getsockname()[1]
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ServeError(f"cannot listen on {ip}: not an address of this machine (try 127.0.0.1, "
                                     "or 0.0.0.0 for every network)") from None
                if exc.errno == errno.EACCES and port:
                    raise ServeError(f"port {port} needs administrator rights here; give one from 1024 to "
                                     "65535, e.g. 8866") from None
                continue
    raise ServeError(f"cannot listen on {ip}: no free port")  # pragma: no cover


def voila_args(port: int, ip: str = "127.0.0.1", preheat: bool = True, start_page: str = TOUR,
               max_kernels: int = 0, fork: bool = True) -> list[str]:
    """The server's options: the notebooks folder, code hidden, offline template, kernel cap,
    and (``fork``, Linux) kernels forked from one warm process (:mod:`explainers.app.forking`)."""
    args = [str(NOTEBOOKS_DIR), f"--port={port}", f"--Voila.ip={ip}", "--Voila.port_retries=0",
            "--no-browser", "--template=explainers", "--theme=light", "--strip_sources=True",
            "--VoilaConfiguration.show_tracebacks=False",
            f"--ExplainersVoila.start_page={start_page}", f"--ExplainersVoila.max_kernels={max_kernels}",
            "--MappingKernelManager.cull_interval=60", "--MappingKernelManager.cull_idle_timeout=900"]
    if preheat:
        # one warm kernel for the start page only, the page `/` opens first (the tour, or --notebook's
        # page; each kernel holds torch and the models in memory)
        args += ["--preheat_kernel=True", "--pool_size=0",
                 '--VoilaKernelManager.kernel_pools_config='
                 '{"default": {"pool_size": 0}, "%s.ipynb": {"pool_size": 1}}' % start_page]
    from .forking import PROVISIONER, supported

    if fork and supported():
        args.append(f"--KernelProvisionerFactory.default_provisioner_name={PROVISIONER}")
    return args


def voila_command(port: int, ip: str = "127.0.0.1", preheat: bool = True, start_page: str = TOUR,
                  max_kernels: int = 0, fork: bool = True) -> list[str]:
    """The command line of the server (:mod:`explainers.app.server`) in a process of its own."""
    return [sys.executable, "-m", "explainers.app.server"] + voila_args(port, ip, preheat, start_page, max_kernels,
                                                                         fork)


def voila_env() -> dict:
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join([str(TEMPLATE_ROOT)] + ([env["JUPYTER_PATH"]] if env.get("JUPYTER_PATH") else []))
    return env


def serve(port: int = 8866, notebook: str | None = None, ip: str = "127.0.0.1", preheat: bool = True,
          max_kernels: int = 0, fork: bool = True) -> int:
    """Run the server in this process until Ctrl-C or SIGTERM (both shut every kernel down)."""
    names = notebook_names()
    name = notebook or TOUR
    name = name[:-6] if name.endswith(".ipynb") else name
    if name not in names:
        matches = [n for n in names if name in n]
        if len(matches) > 1:
            print(f"explainers serve: {name!r} matches {len(matches)} notebooks ({', '.join(matches)}); "
                  "give more of the name", file=sys.stderr)
            return 2
        if not matches:
            print(f"explainers serve: no notebook {name!r}; choose from {', '.join(names)}", file=sys.stderr)
            return 2
        name = matches[0]
    if max_kernels < 0:
        print("explainers serve: --max-kernels must be 1 or more (0 picks one for this machine)", file=sys.stderr)
        return 2
    if ip not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: serving on {ip}: anyone who can reach this machine can run the notebooks' code "
              "in a kernel here. Use it for a class network you trust, behind a proxy with log-in "
              "(see docs/hosting.md).", file=sys.stderr)
    if not 0 <= port <= 65535:
        print(f"explainers serve: --port {port} is not a port; give one from 1024 to 65535, e.g. 8866 "
              "(0: any free one)", file=sys.stderr)
        return 2
    wanted = port
    try:
        port = _free_port(ip, port)
    except ServeError as exc:
        print(f"explainers serve: {exc}", file=sys.stderr)
        return 2
    if wanted and port != wanted:
        print(f"cv-explainers: port {wanted} is busy (another program, or another explainers serve); "
              f"using {port}", flush=True)
    os.environ.update(voila_env())
    print(f"cv-explainers: starting on port {port} ...", flush=True)
    from .server import ExplainersVoila

    try:
        ExplainersVoila.launch_instance(voila_args(port, ip, preheat, name, max_kernels, fork))
    except KeyboardInterrupt:  # pragma: no cover - Voila handles Ctrl-C itself
        pass
    return 0
