import re
import subprocess
import sys
from pathlib import Path

import pytest

from explainers import EXPLAINERS
from explainers.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_readmes_table_lists_the_registry():
    """README's table of explainers is the registry's list, in its order (the registry is the one
    list: a new explainer added there and not here, or one renamed, fails here)."""
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+Explainer)` \|", text, re.M)
    assert rows == [e.name for e in EXPLAINERS]


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
    assert exit_.value.code == 2 and "explainers segment: unrecognized arguments: --threshold" in capsys.readouterr().err


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


# ----------------------------------------------------------------------------- train
def test_train_never_replaces_the_bundled_weights_or_a_users_files(tmp_path, monkeypatch, capsys):
    """`explainers train` writes into a folder of the user's own (default ./shapes-weights), refuses
    the package's weights folder and files already there (unless --force), before any training."""
    import explainers.models.train as mt
    from explainers.models.train import WEIGHTS_DIR

    calls = []

    def fake_train_main(argv):            # the training itself is tested in tests/models
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "mask_rcnn.pt").write_bytes(b"new")
        (out / "mask_rcnn.json").write_text("{}")
        return 0

    monkeypatch.setattr(mt, "main", fake_train_main)
    monkeypatch.chdir(tmp_path)
    bundled = {p.name: p.read_bytes() for p in WEIGHTS_DIR.iterdir() if p.is_file()}
    assert main(["train", "detection", "--out", str(WEIGHTS_DIR)]) == 2
    assert "bundled weights folder" in capsys.readouterr().err and not calls
    assert main(["train", "detection"]) == 0                                  # ./shapes-weights
    assert calls[-1] == ["detection", "--out", "shapes-weights", "--keep"]     # a file appearing meanwhile: kept
    out = capsys.readouterr().out
    assert "shapes-weights/mask_rcnn.pt" in out and "explainers detect IMAGE --weights" in out
    (tmp_path / "shapes-weights" / "mask_rcnn.pt").write_bytes(b"mine")
    assert main(["train", "instance", "--steps", "5"]) == 2                  # the same Mask R-CNN files
    err = capsys.readouterr().err
    assert "already exist(s) and are kept" in err and "--force" in err and len(calls) == 1
    assert (tmp_path / "shapes-weights" / "mask_rcnn.pt").read_bytes() == b"mine"
    assert main(["train", "instance", "--steps", "5", "--force"]) == 0
    assert calls[-1] == ["instance", "--out", "shapes-weights", "--steps", "5"]
    (tmp_path / "afile").write_text("x")
    assert main(["train", "patch", "--out", "afile"]) == 2 and "is a file" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in WEIGHTS_DIR.iterdir() if p.is_file()} == bundled


@pytest.mark.parametrize("steps, says", [("0", "0 steps would train nothing"), ("-1", "-1 steps would train"),
                                         ("ten", "'ten' is not a whole number")])
def test_train_steps_must_be_at_least_one(capsys, steps, says):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "patch", "--steps", steps])
    assert exit_.value.code == 2 and says in capsys.readouterr().err
    from explainers.models.train import train

    with pytest.raises(ValueError, match="at least 1"):
        train("patch", steps=-1, out=Path("never-written"))
    assert not Path("never-written").exists()


def test_version_names_the_package_torch_and_torchvision(capsys):
    from importlib.metadata import version

    import explainers

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    out = capsys.readouterr().out.strip()
    assert exit_.value.code == 0
    assert out.startswith(f"cv-explainers {explainers.__version__} (torch {version('torch')}, "
                          f"torchvision {version('torchvision')}, Python ")
    assert explainers.__version__ == version("cv-explainers")      # the module says what pip installed
