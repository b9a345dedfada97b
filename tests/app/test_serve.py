import subprocess

from explainers.app.serve import TEMPLATE_ROOT, serve, voila_command, voila_env
from explainers.cli import main


def test_voila_command_is_local_offline_and_hides_code():
    cmd = voila_command(8123)
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=8123" in cmd
    assert "--template=explainers" in cmd and "--strip_sources=True" in cmd and "--no-browser" in cmd
    assert any(a.startswith("--preheat_kernel=True") for a in cmd)
    assert str(TEMPLATE_ROOT) in voila_env()["JUPYTER_PATH"]
    tpl = (TEMPLATE_ROOT / "voila" / "templates" / "explainers" / "index.html.j2").read_text()
    assert "cdn.jsdelivr.net" in tpl  # only inside the replace() that removes the links


def test_serve_unknown_notebook_is_a_clear_error(capsys):
    assert serve(notebook="does_not_exist") == 2
    assert "choose from" in capsys.readouterr().err


def test_serve_runs_voila_and_warns_when_exposed(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env=None: calls.append(cmd) or 0)
    assert main(["serve", "--notebook", "nms", "--port", "0"]) == 0
    out = capsys.readouterr()
    assert "http://127.0.0.1:" in out.out and "06_nms.ipynb" in out.out and "WARNING" not in out.err
    assert main(["serve", "--ip", "0.0.0.0", "--port", "0", "--no-preheat"]) == 0
    out = capsys.readouterr()
    assert "WARNING: serving on 0.0.0.0" in out.err
    assert "--Voila.ip=0.0.0.0" in calls[-1] and not any("preheat" in a for a in calls[-1])
