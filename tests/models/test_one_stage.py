"""The bundled one-stage detector (FCOS on the small backbone): loads, traces, its model card, its training code."""
import json

import pytest
import torch

from explainers.models import get, load, make_scene
from explainers.models.live import OneStageDetector
from explainers.models.nets import small_fcos
from explainers.models.train import WEIGHTS_DIR, train

CARD = WEIGHTS_DIR / "fcos.json"


def test_loads_as_a_one_stage_detector_and_traces():
    m = get("onestage", "shapes")
    assert isinstance(m, OneStageDetector) and m.architecture == "FCOS" and m.weights == "shapes"
    assert not m.has_rpn and not m.has_roi_pooling
    tr = m.trace(make_scene(10_000_003).image)
    (hf, wf), = tr.feature_sizes
    assert tr.anchors.shape == (hf * wf, 4) and tr.class_logits.shape == (hf * wf, 4)
    assert tr.box_regression.shape == (hf * wf, 4) and tr.centerness.shape == (hf * wf,)
    assert tr.input_tensor.shape[-2] == 8 * hf and tr.input_tensor.shape[-1] == 8 * wf   # stride 8
    res = m(make_scene(10_000_003).image)
    assert torch.equal(res.boxes, tr.detections.boxes)


def test_model_card_meets_the_bar():
    card = json.loads(CARD.read_text())
    assert card["model"] == "fcos" and card["task"] == "onestage"
    assert card["held_out"]["box_AP50"] >= 0.90, card["held_out"]
    assert card["held_out"]["scenes"] >= 200
    t = card["training"]
    assert t["seconds"] <= 1200 and t["threads"] <= 2 and t["device"] == "cpu", t
    assert (WEIGHTS_DIR / "fcos.pt").stat().st_size < 5 * 2**20
    assert card["parameters"] == sum(p.numel() for p in small_fcos().parameters())


def test_finds_the_objects_of_a_held_out_scene():
    sc = make_scene(10_000_001)
    res = get("onestage", "shapes")(sc.image)
    from torchvision.ops import box_iou

    keep = res.scores >= 0.5
    ious = box_iou(torch.from_numpy(sc.boxes), res.boxes[keep])
    assert len(sc.boxes) and bool((ious.max(1).values >= 0.5).all())


def test_only_bundled_weights():
    with pytest.raises(ValueError, match="only exists as bundled shapes weights"):
        load("onestage", "coco", device="cpu")


def test_training_code_runs_two_steps(tmp_path):
    card = train("onestage", steps=2, out=tmp_path, pool=3, eval_scenes=2, progress=False)
    assert card["training"]["steps"] == 2 and card["model"] == "fcos"
    assert set(card["held_out"]) == {"box_AP50", "per_class_AP50", "scenes"}
    sd = torch.load(tmp_path / "fcos.pt", weights_only=True)
    small_fcos().load_state_dict(sd)            # the file is the bundled architecture
    assert json.loads((tmp_path / "fcos.json").read_text())["training"]["planned_steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcos.json", "fcos.pt"]        # no temporary file left


def test_training_keeps_a_file_that_appeared_meanwhile_and_saves_whole(tmp_path, monkeypatch, capsys):
    """`explainers train` checks the folder before minutes of training; a file that appeared meanwhile was
    overwritten, and Ctrl-C in torch.save left a truncated .pt: now kept (one line, exit 2) and whole."""
    import explainers.models.train as mt

    (tmp_path / "fcos.json").write_text("my card")
    args = ["onestage", "--out", str(tmp_path), "--steps", "1", "--pool", "2", "--eval-scenes", "1", "--keep"]
    assert mt.main(args) == 2
    err = capsys.readouterr().err
    # the user's file named (not a hidden temporary one), and no new .pt beside the user's .json
    assert f"explainers train: {tmp_path / 'fcos.json'} appeared in the folder" in err and ".tmp" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcos.json"]
    assert (tmp_path / "fcos.json").read_text() == "my card"

    def interrupted(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt
    monkeypatch.setattr(mt.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("onestage", steps=1, out=tmp_path / "new", pool=2, eval_scenes=1, progress=False)
    assert list((tmp_path / "new").iterdir()) == []
