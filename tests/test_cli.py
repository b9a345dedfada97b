import re
import subprocess
import sys
from pathlib import Path

from explainers import EXPLAINERS
from explainers.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_exactly_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1]
    blocks = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert len(blocks) == 2
    install, tests = (b.strip() for b in blocks)
    assert install.endswith("explainers serve")
    assert "pytest" in tests
    # .ci/run runs exactly the command that follows the marker
    after = text.split("<!-- test-command -->", 1)[1]
    assert re.search(r"```bash\n(.*?)\n```", after, re.S).group(1).strip() == tests


def test_list_names_every_explainer(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for e in EXPLAINERS:
        assert e.name in out and e.blurb in out


def test_console_script_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "explainers.cli", "list"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "NMSExplainer" in r.stdout
