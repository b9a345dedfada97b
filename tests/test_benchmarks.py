"""A smoke run of the benchmark command (tiny sizes, nothing timed is asserted)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_quick_run_writes_json(tmp_path):
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "ops,sliding,models,scale,widgets,serve",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={"EXPLAINERS_OFFLINE": "1", "EXPLAINERS_DEVICE": "cpu", "PATH": "/usr/bin:/bin",
                            "TORCH_HOME": str(tmp_path / "torch")})
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data["sections"]) == {"ops", "sliding", "models", "scale", "widgets", "serve"}
    assert all(row["identical_maps"] for row in data["sections"]["sliding"])
    serve = data["sections"]["serve"]      # two students' processes each answered requests
    assert [row["students asking"] for row in serve] == [1, 2] and all(row["requests/s"] > 0 for row in serve)
    assert "## ops" in r.stdout and "nms_trace" in r.stdout


def test_the_voila_section_finds_the_page_kernels_and_measures_them():
    """``--only voila`` opens the tour in Chromium against ``explainers serve``'s command and reports the
    page kernel's memory: it must find the kernel (forked from the zygote by default, where a kernel's
    command line says ``explainers.app.forking``, not ``ipykernel``) and measure a non-zero size."""
    import pytest
    import torch

    from tests.chromium import require_chromium

    require_chromium()
    pytest.importorskip("psutil")
    from benchmarks.run import bench_voila
    from explainers.app.forking import supported

    rows = bench_voila(quick=True, device=torch.device("cpu"))
    assert [(r["kernels"], r["page"]) for r in rows] == [("forked" if supported() else "plain", "00_tour")], rows
    row = rows[0]
    assert row["kernels_running"] >= 1 and row["first_plot_s"] > 0
    assert 0 < row["largest_kernel_unique_MB"] < row["largest_kernel_resident_MB"], row
