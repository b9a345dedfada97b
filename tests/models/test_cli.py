import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import explainers
from explainers.cli import main
from explainers.models import make_scene


def test_detect_and_segment_good_image(tmp_path, capsys):
    img = tmp_path / "scene.png"
    Image.fromarray(make_scene(10_000_017).image).save(img)
    for cmd in (["detect", str(img), "-o", str(tmp_path / "d.png")],
                ["detect", str(img), "--instance", "-o", str(tmp_path / "i.png")],
                ["segment", str(img), "-o", str(tmp_path / "s.png")]):
        assert main(cmd) == 0
        out = Image.open(cmd[-1])
        assert out.size == Image.open(img).size
    text = capsys.readouterr().out
    assert "shapes" in text and "wrote" in text
    # segment says how much of the picture each class covers, largest first
    import re

    line = next(t for t in text.splitlines() if t.startswith("segmentation ("))
    pcts = [float(v) for v in re.findall(r"(?<![<\d.])(\d+\.\d)%", line)]
    assert line.endswith("of the pixels") and pcts and pcts == sorted(pcts, reverse=True), line


def test_bad_images_give_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    for path in (bad, tiny, tmp_path / "missing.png"):
        r = subprocess.run([sys.executable, "-m", "explainers.cli", "detect", str(path), "-o", str(tmp_path / "o.png")],
                           capture_output=True, text=True, timeout=300,
                           env={"EXPLAINERS_OFFLINE": "1", "EXPLAINERS_DEVICE": "cpu", "PATH": "/usr/bin:/bin",
                            "TORCH_HOME": str(tmp_path / "torch")})
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("explainers detect:")


# --- the output path is checked before any model loads; the input is never overwritten -----------------------------

# the subprocess imports the same explainers as this process (this checkout, whatever the venv points to)
ENV = {"EXPLAINERS_OFFLINE": "1", "EXPLAINERS_DEVICE": "cpu", "PATH": "/usr/bin:/bin",
       "PYTHONPATH": str(Path(explainers.__file__).resolve().parents[1])}
# runs the CLI and says on stdout whether torch was imported (a model load imports it)
RUN_AND_REPORT = ("import sys; from explainers.cli import main; rc = main(sys.argv[1:]); "
                  "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")


def _cli(args, tmp_path, code=RUN_AND_REPORT, timeout=300):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=tmp_path, env={**ENV, "TORCH_HOME": str(tmp_path / "torch")})
    return r, time.perf_counter() - t0


def _scene(path):
    Image.fromarray(make_scene(10_000_017).image).save(path)
    return path.read_bytes()


def _assert_refused_fast(r, seconds, command, match):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"explainers {command}:"), r.stderr
    assert re.search(match, r.stderr), r.stderr
    assert "NO-TORCH" in r.stdout, "torch was imported: the model was (about to be) loaded"
    assert seconds < 20, seconds


@pytest.mark.parametrize("cmd", [["detect"], ["detect", "--instance"], ["segment"]])
@pytest.mark.parametrize("how", ["same", "dot", "absolute", "symlink", "hardlink", "symlinked-folder"])
def test_output_that_is_the_input_is_refused(tmp_path, cmd, how):
    src = tmp_path / "photo.jpg"
    before = _scene(src)
    out = {"same": "photo.jpg", "dot": "./sub/../photo.jpg", "absolute": str(src)}.get(how)
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        out = "link.jpg"
        (tmp_path / out).symlink_to(src)
    elif how == "hardlink":
        out = "hard.jpg"
        os.link(src, tmp_path / out)
    elif how == "symlinked-folder":
        (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
        out = "alias/photo.jpg"
    r, seconds = _cli([*cmd, "photo.jpg", "-o", out], tmp_path)
    _assert_refused_fast(r, seconds, cmd[0], r"is the input image; it would be overwritten")
    assert src.read_bytes() == before


@pytest.mark.parametrize("out, match", [
    ("folder", r"the output folder is a folder; give a file in it, e\.g\. -o folder/result\.png"),
    ("folder/", r"is a folder"),
    ("result.txt", r"cannot write result\.txt: the output must end in one of \.png \.jpg \.jpeg \.bmp \.tif "
                   r"\.tiff \.webp \.gif \(got \.txt\)"),
    ("result", r"\(got no extension\)"),
    ("missing/result.png", r"cannot write missing/result\.png: the folder missing does not exist"),
])
def test_bad_output_paths_are_refused_before_the_model(tmp_path, out, match):
    (tmp_path / "folder").mkdir()
    before = _scene(tmp_path / "scene.png")
    r, seconds = _cli(["segment", "scene.png", "-o", out], tmp_path)
    _assert_refused_fast(r, seconds, "segment", match)
    assert (tmp_path / "scene.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "scene.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_unwritable_output_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    _scene(tmp_path / "scene.png")
    ro.chmod(0o555)
    try:
        r, seconds = _cli(["detect", "scene.png", "-o", "ro/out.png"], tmp_path)
    finally:
        ro.chmod(0o755)
    _assert_refused_fast(r, seconds, "detect", "the folder ro is not writable")


def test_output_is_replaced_whole_and_keeps_its_permissions(tmp_path, capsys):
    img = tmp_path / "scene.png"
    _scene(img)
    out = tmp_path / "out.jpg"
    out.write_bytes(b"old picture")
    out.chmod(0o640)
    assert main(["detect", str(img), "-o", str(out)]) == 2          # kept: not asked to replace it
    assert out.read_bytes() == b"old picture"
    assert "already exists and is kept" in capsys.readouterr().err
    assert main(["detect", str(img), "-o", str(out), "--force"]) == 0
    assert Image.open(out).format == "JPEG" and out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "scene.png"]  # no temporary file left
    fresh = tmp_path / "fresh.webp"
    assert main(["segment", str(img), "-o", str(fresh)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert Image.open(fresh).format == "WEBP" and fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", ["detect", "segment"])
def test_an_existing_file_is_never_replaced_without_force(tmp_path, capsys, cmd):
    """A user's file at the output path (or the default name from an earlier run) is kept, byte for
    byte, with one line saying how to go on; checked before any model loads."""
    img = tmp_path / "scene.png"
    _scene(img)
    essay = tmp_path / "essay.jpg"
    essay.write_bytes(b"my essay")
    assert main([cmd, str(img), "-o", str(essay)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"explainers {cmd}: {essay} already exists and is kept; give another name with -o, "
                   "or add --force to replace it")
    assert essay.read_bytes() == b"my essay"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main([cmd, str(img)]) == 0                     # the default name, the first time
        first = (tmp_path / f"{cmd}.png").read_bytes()
        assert main([cmd, str(img)]) == 2                     # and not replaced the second time
        assert (tmp_path / f"{cmd}.png").read_bytes() == first
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{cmd}.png", "essay.jpg", "scene.png"])


def test_a_file_that_appears_while_the_model_runs_is_kept(tmp_path, monkeypatch, capsys):
    from explainers import cli

    img = tmp_path / "scene.png"
    _scene(img)
    out = tmp_path / "out.png"
    real = cli._save_whole

    def someone_else_writes_first(picture, output, force=False):
        out.write_bytes(b"theirs")
        return real(picture, output, force)

    monkeypatch.setattr(cli, "_save_whole", someone_else_writes_first)
    assert main(["detect", str(img), "-o", str(out)]) == 2
    assert out.read_bytes() == b"theirs" and "appeared while the model ran and is kept" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "scene.png"]     # no temporary file left


def test_a_failed_write_leaves_the_old_output_and_no_half_file(tmp_path, monkeypatch, capsys):
    img = tmp_path / "scene.png"
    _scene(img)
    out = tmp_path / "out.png"
    out.write_bytes(b"old picture")

    def disk_full(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half of it")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    assert main(["detect", str(img), "-o", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"explainers detect: cannot write {out}: No space left on device"
    assert out.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "scene.png"]


def test_output_checks_come_before_loading_anything(tmp_path, monkeypatch, capsys):
    import explainers.models as models

    def boom(*a, **k):
        raise AssertionError("loaded")

    monkeypatch.setattr(models, "load", boom)
    monkeypatch.setattr(models, "load_image", boom)
    _scene(tmp_path / "a.png")
    assert main(["detect", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.png")]) == 2
    assert main(["detect", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.pdf")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


# --- images the CLI reads: bombs, animations, bounded memory --------------------------------------------------------

def test_bomb_and_animated_gif_through_the_cli(tmp_path):
    from .test_images import png_header_only

    (tmp_path / "bomb.png").write_bytes(png_header_only(12_000, 12_000))
    r, _ = _cli(["detect", "bomb.png", "-o", "out.png"], tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("explainers detect: bomb.png is too large to decode safely") and "Warning" not in r.stderr
    scene = Image.fromarray(make_scene(10_000_017).image)
    scene.save(tmp_path / "anim.gif", save_all=True, append_images=[scene.rotate(a) for a in (90, 180, 270, 45)])
    r, _ = _cli(["detect", "anim.gif", "-o", "out.png"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: anim.gif has 5 frames; only the first one is used" in r.stdout


MEASURE = r"""
import os, resource, sys
import numpy, PIL.Image, torch, torchvision
import explainers.cli, explainers.models

def status(key):  # kB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

try:  # Linux: reset this process's peak RSS to its current RSS (ru_maxrss alone also counts the parent's
    with open("/proc/self/clear_refs", "w") as f:  # peak, inherited across fork and exec: the pytest process)
        f.write("5")
    base, peak = status("VmRSS"), lambda: status("VmHWM")
except OSError:
    scale = 1 / 1024 if sys.platform == "darwin" else 1  # ru_maxrss: bytes on macOS, KiB on Linux
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    base = peak()
rc = explainers.cli.main(sys.argv[1:])
print(f"ABOVE_BASELINE {int((peak() - base) * 1024)}")
sys.exit(rc)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name, make, rc, says", [
    # refused from the header: PNG is decoded whole (100 MB gray, 1.2 GB as floats: 3.2 GB peak before)
    ("big.png", lambda p: Image.new("L", (10_000, 10_000), 90).save(p, compress_level=1), 2, "decoded whole"),
    # refused from the header: a 375000:1 strip (3.2 GB peak before)
    ("thin.png", lambda p: Image.new("L", (16, 6_000_000), 90).save(p, compress_level=1), 2, "times longer"),
    # the largest PNG accepted, in the costliest mode (RGBA): 1.2 GB above the baseline before
    ("cap.png", lambda p: Image.new("RGBA", (6900, 6900), (10, 200, 30, 128)).save(p, compress_level=1), 0,
     "downscaled from 6900x6900 to 1024x1024"),
    # JPEG is decoded at 1/8 of its size
    ("big.jpg", lambda p: Image.new("RGB", (10_000, 10_000), (10, 200, 30)).save(p, quality=80), 0,
     "downscaled from 10000x10000 to 1024x1024"),
])
def test_cli_memory_stays_bounded_on_huge_images(tmp_path, name, make, rc, says):
    make(tmp_path / name)
    r, seconds = _cli(["detect", name, "-o", "out.png"], tmp_path, code=MEASURE)
    assert r.returncode == rc, r.stderr
    assert says in r.stdout + r.stderr
    above = int(re.search(r"ABOVE_BASELINE (\d+)", r.stdout).group(1))
    print(f"{name}: peak {above / 2**20:.0f} MiB above the post-import baseline, {seconds:.1f} s")
    assert above < 2**30, f"{name}: peak {above / 2**20:.0f} MiB above the post-import baseline"
    assert seconds < 30, seconds
