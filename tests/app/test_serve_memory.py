"""What each additional student costs on one shared ``explainers serve`` (a page = a kernel),
with kernels forked from the zygote and, in the same run, started the ordinary way.

Each "student" opens the tour and the live model page (Voila runs the notebook in the page's
kernel: the live page builds the bundled Mask R-CNN and draws its detections). Unique memory
(USS) of every page kernel is measured once all pages are open; the zygote is paid once per
server, not per student. Figures go to ``serve_memory.json`` in the test's tmp dir and are
printed. ``EXPLAINERS_SERVE_STUDENTS`` sets the number of students (default 3).
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import psutil
import pytest

from tests.app.ports import free_port, page_kernels
from tests.app.test_serve import _get

from explainers.app import forking

PAGES = ("00_tour", "07_live_model")
#: the lean-kernel target of the class-scale issue, per additional student
TARGET_MB = 400


def _server(tmp_path, fork: bool, n: int):
    port = free_port()
    args = ["--no-preheat", "--max-kernels", str(n * len(PAGES) + 1)] + ([] if fork else ["--no-fork"])
    proc = subprocess.Popen([sys.executable, "-m", "explainers.cli", "serve", "--port", str(port), *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "EXPLAINERS_DEVICE": "cpu", "EXPLAINERS_OFFLINE": "1",
                                 "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "open http" in line:
            return proc, port
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("explainers serve printed no URL")


def _measure(tmp_path, fork: bool, n: int) -> dict:
    proc, port = _server(tmp_path, fork, n)
    try:
        t0 = time.monotonic()
        for _ in range(n):
            for page in PAGES:
                r, body = _get(port, f"/voila/render/{page}.ipynb", timeout=300)
                assert r.status == 200, (page, r.status, body[:300])
                assert "⚠" not in body or page != "07_live_model", body[:300]
        kernels = page_kernels(proc.pid)
        assert len(kernels) == n * len(PAGES)
        uss = [k.memory_full_info().uss / 2**20 for k in kernels]
        zygotes = [z for z in psutil.Process(proc.pid).children() if "explainers.app.forking" in " ".join(z.cmdline())]
        server = psutil.Process(proc.pid).memory_full_info().uss / 2**20
        return {"pages_s": round(time.monotonic() - t0, 1), "kernels": len(kernels),
                "kernel_uss_mb": [round(u) for u in uss],
                "per_student_mb": round(sum(uss) / n),
                "zygote_uss_mb": round(zygotes[0].memory_full_info().uss / 2**20) if zygotes else 0,
                "server_uss_mb": round(server),
                "forked": all(k.ppid() != proc.pid for k in kernels)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


@pytest.mark.slow
@pytest.mark.skipif(not forking.supported(), reason="forking kernels needs Linux")
def test_an_additional_student_costs_under_400_mb_with_forked_kernels(tmp_path):
    n = int(os.environ.get("EXPLAINERS_SERVE_STUDENTS", "3"))
    forked = _measure(tmp_path, True, n)
    plain = _measure(tmp_path, False, n)
    figures = {"students": n, "pages_each": list(PAGES), "forked": forked, "plain": plain,
               "saving_per_student_mb": plain["per_student_mb"] - forked["per_student_mb"]}
    (tmp_path / "serve_memory.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    assert forked["forked"] and not plain["forked"]
    # a student's two pages (tour + live model) in forked kernels, unique memory
    assert forked["per_student_mb"] < TARGET_MB, figures
    assert forked["per_student_mb"] < 0.6 * plain["per_student_mb"], figures
    assert statistics.mean(forked["kernel_uss_mb"]) < statistics.mean(plain["kernel_uss_mb"])
