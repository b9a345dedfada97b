import subprocess
import sys

import numpy as np
from PIL import Image

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
