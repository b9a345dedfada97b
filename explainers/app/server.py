"""The Voila server behind ``explainers serve``: Voila, plus what a lecture and a class need.

* ``/`` opens the tour (or the one notebook asked for), not a file listing;
* the URL is printed only once the server answers it;
* at most ``max_kernels`` pages run at once (each page is a kernel holding torch and the
  models: about 0.45 GB of its own, or 0.1-0.2 GB when kernels are forked from one warm
  process, :mod:`explainers.app.forking`); beyond that a visitor gets a plain "the server is full" page that
  retries by itself, and nothing is started;
* the websocket accepts messages up to ``MAX_MESSAGE_BYTES``, so an upload up to the live
  page's limit (20 MB) arrives (tornado's default of 10 MiB silently closed the socket);
* closing a tab shuts its kernel down at once (the page's shutdown request carries the _xsrf
  cookie this server sets; plain Voila refused it, so kernels lived on until culled);
* SIGTERM and Ctrl-C stop the server and shut every kernel down (Voila's own handling, in
  this process: there is no child server left to hold the port).

Run as ``python -m explainers.app.server NOTEBOOKS_DIR --port=... [voila options]``; the extra
options are ``--ExplainersVoila.max_kernels=N`` and ``--ExplainersVoila.start_page=NAME``.
"""
from __future__ import annotations

import asyncio
import html
import logging
import os
import sys
import warnings

import tornado.ioloop
import tornado.web
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import url_path_join
from traitlets import Int, Unicode
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

#: the largest websocket message the server takes (uploads travel as one message)
MAX_MESSAGE_BYTES = 64 * 2**20
#: memory one page's kernel is planned with (RSS measured 1.0-1.07 GB, docs/hosting.md)
KERNEL_BYTES = int(1.2 * 2**30)
#: ... and a forked kernel (unique memory measured 88-120 MB a page, 207 MB a student with the
#: tour and the live page: tests/app/test_serve_memory.py), with room for an upload's activations
FORKED_KERNEL_BYTES = int(0.4 * 2**30)

FULL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="60">
<title>The server is full</title></head>
<body style="font-family:sans-serif;font-size:22px;max-width:40em;margin:3em auto;line-height:1.5">
<h1 style="font-size:30px">The server is full, try again in a minute</h1>
<p>{n} pages are open, the most this server runs at once. This page tries again by itself every
minute. Leaving or closing a tab of these pages you no longer use frees its place at once; a page
whose connection was lost without that (a laptop put to sleep) frees it after 15 idle minutes.</p></body></html>"""


def default_max_kernels(forked: bool = False) -> int:
    """Pages this machine holds at once: its memory, less 2 GB for the rest (the server, and the
    zygote that forked kernels share), over ~1.2 GB a page (0.4 GB a forked page)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4
    return max(2, int((total - 2 * 2**30) // (FORKED_KERNEL_BYTES if forked else KERNEL_BYTES)))


class ServerFull(tornado.web.HTTPError):
    """503. Under plain Jupyter Server (a class server behind JupyterHub), Voila's error page
    shows only the code and the reason, so the reason says what to do."""

    def __init__(self, n: int):
        super().__init__(503, "%d pages are open, the most this server runs at once", n,
                         reason="The server is full, try again in a minute")
        self.n = n


class CappedKernelManager(AsyncMappingKernelManager):
    """A kernel manager that refuses to start a page's kernel beyond ``max_kernels``.

    Kernels Voila preheats for its pool (``VOILA_PREHEAT=True``) are not refused: the pool is
    small and fixed (``--pool_size``), and refusing them would break the pool.
    """

    max_kernels = Int(0, config=True, help="most kernels at once (0: no limit)")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._starting: set[str] = set()

    def running(self) -> int:
        """Kernels running or starting, each once: a kernel joins the list before its start call
        returns (counting both would refuse a page while there is still room)."""
        return len(set(self.list_kernel_ids()) | self._starting)

    def is_full(self) -> bool:
        return bool(self.max_kernels) and self.running() >= self.max_kernels

    async def start_kernel(self, *args, **kwargs):
        preheat = (kwargs.get("env") or {}).get("VOILA_PREHEAT") == "True"
        if not preheat and self.is_full():
            raise ServerFull(self.running())
        kernel_id = kwargs.get("kernel_id") or self.new_kernel_id()
        kwargs["kernel_id"] = kernel_id
        self._starting.add(kernel_id)   # counted before the first await: simultaneous requests see it
        try:
            return await super().start_kernel(*args, **kwargs)
        finally:
            self._starting.discard(kernel_id)


class CappedVoilaHandler(TornadoVoilaHandler):
    """Voila's page handler, answering "the server is full" instead of starting a kernel."""

    async def get(self, path=None):
        # checked here too, not only in start_kernel: a preheated page (the tour) takes a pool
        # kernel without starting one, so only this check caps it
        if getattr(self.kernel_manager, "is_full", lambda: False)():
            raise ServerFull(self.kernel_manager.running())
        # Set the _xsrf cookie: when the tab closes, Voila's page posts it with the request that
        # shuts the page's kernel down; without it that request is refused (403) and the kernel
        # lives on until it is culled.
        self.xsrf_token  # noqa: B018 (the property sets the cookie)
        await super().get(path)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ServerFull):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Retry-After", "60")
            self.finish(FULL_PAGE.format(n=html.escape(str(exc.n))))
            return
        super().write_error(status_code, **kwargs)


# Voila's own way to give a kernel pool per notebook (a JSON dict on the command line) makes traitlets
# warn on every start; the setting works, and the warning would only alarm a lecturer
warnings.filterwarnings("ignore", message=r"--kernel_pools_config=.* for dict-traits is deprecated",
                        category=DeprecationWarning)


class _TrustedNotebooks(logging.Filter):
    """Drops "Notebook ... is not trusted": trust only decides whether a notebook's saved outputs may
    run, and the bundled notebooks are saved without outputs (a project check), so it says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Notebook %s is not trusted"


class ExplainersVoila(Voila):
    """Voila serving the notebooks folder, with the start page at ``/`` and a kernel cap."""

    name = "explainers-voila"
    max_kernels = Int(0, config=True, help="most pages (kernels) at once; 0 picks one for this machine's memory")
    start_page = Unicode("00_tour", config=True, help="the notebook ``/`` opens")

    def init_settings(self):
        from .forking import PROVISIONER

        self.log.addFilter(_TrustedNotebooks())

        forked = self.config.get("KernelProvisionerFactory", {}).get("default_provisioner_name") == PROVISIONER
        cap = self.max_kernels or default_max_kernels(forked)
        self.voila_configuration.multi_kernel_manager_class = CappedKernelManager
        settings = super().init_settings()
        self.kernel_manager.max_kernels = cap
        return settings

    def init_handlers(self):
        handlers = []
        for pattern, handler, *rest in super().init_handlers():
            if handler is TornadoVoilaHandler:
                handler = CappedVoilaHandler
            handlers.append((pattern, handler, *rest))
        start = url_path_join(self.server_url, "voila", "render", f"{self.start_page}.ipynb")
        return [(self.server_url.rstrip("/") + "/?", tornado.web.RedirectHandler, {"url": start, "permanent": False})] + handlers

    def start(self):
        self.tornado_settings = {"websocket_max_message_size": MAX_MESSAGE_BYTES, **self.tornado_settings}
        tornado.ioloop.IOLoop.current().add_callback(self._announce)
        super().start()

    async def _announce(self):
        """Print the URL once the server answers it (a redirect to the start page)."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        host = "127.0.0.1" if self.ip in ("", "0.0.0.0", "::") else self.ip
        url = f"http://{host}:{self.port}{self.base_url}"
        client = AsyncHTTPClient()
        for _ in range(300):
            try:
                await client.fetch(url, follow_redirects=False, request_timeout=5)
                break
            except HTTPClientError as exc:  # 302 arrives as an "error" without follow_redirects
                if exc.code < 500:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        print(f"cv-explainers: open {url}  (Ctrl-C to stop; at most {self.kernel_manager.max_kernels} "
              "pages at once)", flush=True)


main = ExplainersVoila.launch_instance

if __name__ == "__main__":
    sys.exit(main())
