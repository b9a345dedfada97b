import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_segment_has_no_threshold_it_would_ignore(capsys):
    """A label map has no scores: segment offers no --threshold (it would change nothing)."""
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "scene.png", "--threshold", "0.9"])
    assert exit_.value.code == 2 and "unrecognized arguments: --threshold" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["detect"])
@pytest.mark.parametrize("value, says", [("nan", "nan is not a score from 0 to 1"), ("-5", "-5 is not a score"),
                                         ("1.5", "1.5 is not a score"), ("inf", "inf is not a score"),
                                         ("abc", "'abc' is not a number")])
def test_threshold_outside_0_to_1_is_one_line_and_exit_2(capsys, command, value, says):
    with pytest.raises(SystemExit) as exit_:
        main([command, "scene.png", "--threshold", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"explainers {command}: argument --threshold: {says}"), err


def test_threshold_range_ends_are_accepted():
    from explainers.cli import _threshold

    assert [_threshold(v) for v in ("0", "1", "0.25", "1e-3")] == [0, 1, 0.25, 0.001]


def test_argument_errors_are_one_line_through_the_console():
    for args in (["detect", "a.png", "--threshold", "nan"], ["detect"], ["download", "everything"]):
        r = subprocess.run([sys.executable, "-m", "explainers.cli", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"explainers {args[0]}: ") and "--help" in r.stderr, r.stderr
