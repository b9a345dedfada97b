import time

import pytest
import torch

from explainers import models
from explainers.models import ModelUnavailable, default_device, load
from explainers.models.live import LiveModel
from explainers.models.zoo import SHAPES_FILES, WEIGHTS_DIR, _online, coco_cache_file


def test_device_choice(monkeypatch):
    monkeypatch.setenv("EXPLAINERS_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.delenv("EXPLAINERS_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert default_device().type == expected
    monkeypatch.setenv("EXPLAINERS_DEVICE", "warp-drive")
    with pytest.raises(ValueError, match="not a device name"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("EXPLAINERS_DEVICE", "cuda")
        with pytest.raises(ValueError, match="no usable CUDA"):
            default_device()
    else:   # the override is checked as device= is: a GPU number this machine lacks is one line
        monkeypatch.setenv("EXPLAINERS_DEVICE", "cuda:99")
        with pytest.raises(ValueError, match=r"EXPLAINERS_DEVICE='cuda:99', but this machine has \d+ CUDA GPU"):
            default_device()


def test_bundled_weights_are_small_and_present():
    total = 0
    for name in set(SHAPES_FILES.values()):
        p = WEIGHTS_DIR / name
        assert p.exists(), f"missing bundled weights {p}"
        total += p.stat().st_size
    assert total < 20 * 2**20


@pytest.mark.parametrize("task", ["segmentation", "detection", "instance", "patch"])
def test_load_shapes(task):
    m = load(task, "shapes")
    assert isinstance(m, LiveModel) and m.weights == "shapes" and m.classes[1:] == ["circle", "square", "triangle"]
    assert m.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in m.module.parameters())
    assert not m.module.training


def test_coco_offline_is_a_clear_error_and_quick():
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        load("detection", "coco")
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "not in the torch cache" in msg and "explainers download detection" in msg
    assert "urllib" not in msg and "Traceback" not in msg
    assert not _online()


def test_auto_without_cache_falls_back_to_shapes_with_notice(capsys):
    models.zoo._notified.discard("segmentation")
    m = load("segmentation", "auto")
    assert m.weights == "shapes" and "explainers download segmentation" in m.notice
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "COCO weights are not cached" in err


def test_auto_uses_cached_coco_weights():
    # the real torchvision loading path, on weights this test makes itself
    from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

    categories = LRASPP_MobileNet_V3_Large_Weights.DEFAULT.meta["categories"]
    torch.manual_seed(0)
    ref = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=len(categories))
    path = coco_cache_file("segmentation")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ref.state_dict(), path)
    m = load("segmentation", "auto")
    assert m.weights == "coco" and m.classes == list(categories)
    for (k, a), b in zip(ref.state_dict().items(), m.module.state_dict().values()):
        assert torch.equal(a, b), k
    res = m(torch.rand(3, 64, 80))
    assert res.labels.shape == (64, 80) and res.probabilities.shape == (len(categories), 64, 80)
    assert load("segmentation", "voc").weights == "voc"


def test_local_checkpoint_paths(tmp_path, monkeypatch):
    shapes = load("instance", "shapes")
    p = tmp_path / "mine.pt"
    torch.save(shapes.module.state_dict(), p)
    m = load("instance", p)
    assert "shapes architecture" in m.weights
    img = models.make_scene(7).image
    assert torch.equal(m(img).boxes, shapes(img).boxes)
    # a wrapped checkpoint {"state_dict": ...} and the env var for "auto"
    torch.save({"state_dict": shapes.module.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    monkeypatch.setenv("EXPLAINERS_WEIGHTS_DETECTION", str(tmp_path / "wrapped.pt"))
    assert load("detection", "auto").weights.startswith("checkpoint:wrapped.pt")


@pytest.mark.parametrize("content, msg", [
    (b"garbage", "not a readable PyTorch checkpoint"),
    (None, "no checkpoint file"),
])
def test_bad_checkpoints(tmp_path, content, msg):
    p = tmp_path / "x.pt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ModelUnavailable, match=msg):
        load("detection", p)


def test_mismatched_checkpoint(tmp_path):
    p = tmp_path / "seg.pt"
    torch.save(load("segmentation", "shapes").module.state_dict(), p)
    with pytest.raises(ModelUnavailable, match="matches no known detection architecture"):
        load("detection", p)


def test_bad_task_and_weights():
    with pytest.raises(ValueError, match="task must be one of"):
        load("classification")
    with pytest.raises(ValueError, match="semantic segmentation only"):
        load("detection", "voc")


def test_cuda_oom_retries_once_on_cpu():
    m = load("segmentation", "shapes")
    calls = []

    def fn(module, dev, x):
        calls.append(module)
        if module is m.module:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x + 1

    out, note = m._run(fn, 1)
    assert out == 2 and "ran on the CPU" in note and len(calls) == 2
    assert calls[1] is not m.module


@pytest.mark.parametrize("weights, got", [(None, "got None"), (3, "got 3"), ("", "got ''"), (b"coco", "a bytes"),
                                          (["coco"], "a list")])
def test_weights_of_the_wrong_kind_are_a_clear_error(weights, got):
    with pytest.raises(ValueError) as err:
        load("detection", weights)
    msg = str(err.value)
    assert msg.startswith('weights must be "auto", "shapes", "coco" ("voc" for segmentation) or the path of a '
                          'checkpoint file') and msg.endswith(got) and "\n" not in msg, msg
    assert not isinstance(err.value, TypeError)


def test_a_model_on_a_gpu_turns_tf32_convolutions_off():
    """cuDNN's TF32 would make a live model's tensors differ from the float32 re-implementations
    by ~1e-3 (✘ on every check line of a GPU-hosted page); on the CPU nothing is changed."""
    from explainers.models.device import exact_float32

    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        exact_float32("cpu")
        assert torch.backends.cudnn.allow_tf32 is True
        exact_float32(torch.device("cuda", 0))       # only sets a flag: runs without a GPU too
        assert torch.backends.cudnn.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_a_device_or_weights_name_that_cannot_be_used_is_one_line():
    """device='cuda' on a machine without one was torch's RuntimeError at the first .to(); weights="imagenet"
    said only "no checkpoint file at imagenet"."""
    from explainers.models.device import resolve_device

    with pytest.raises(ValueError, match="'gpu' is not a device name"):
        load("detection", "shapes", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            load("detection", "shapes", device="cuda")
    else:   # a GPU number this machine lacks is said, not torch's "invalid device ordinal" at the first .to()
        with pytest.raises(ValueError, match=r"'cuda:99', but this machine has \d+ CUDA GPU\(s\), numbered from 0"):
            load("detection", "shapes", device="cuda:99")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelUnavailable, match='no checkpoint file at imagenet .*takes "auto", "shapes", "coco"'):
        load("detection", weights="imagenet")
