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
