"""On a CUDA GPU (skipped without one): the live models give the CPU's answers, ``trace()`` the
plain call's, the operators take GPU tensors and agree with torchvision's CUDA kernels, and a
kernel forked from the zygote (``explainers.app.forking``) can still use the GPU.

Run on a GPU machine with ``EXPLAINERS_TEST_DEVICE=cuda pytest tests/models tests/widgets``
(the whole models and widgets suites on the GPU) or just ``pytest tests/models/test_gpu.py``.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision

from explainers.models import get, make_scene
from explainers.ops import nms_trace
from explainers.ops.roi_align import roi_align_trace
from explainers.ops.roi_pool import roi_pool_trace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def scene():
    return make_scene(10_000_011)


def test_segmenter_on_the_gpu_gives_the_cpus_answer(scene):
    cpu = get("segmentation", "shapes", "cpu")(scene.image)
    gpu = get("segmentation", "shapes", "cuda")(scene.image)
    assert gpu.device.startswith("cuda") and cpu.device == "cpu"
    assert torch.backends.cudnn.allow_tf32 is False       # float32 convolutions: like with like
    assert gpu.probabilities.device.type == "cpu"         # results always come back to the CPU
    torch.testing.assert_close(gpu.probabilities, cpu.probabilities, atol=2e-4, rtol=1e-3)
    agree = (gpu.labels == cpu.labels).float().mean().item()
    assert agree > 0.999, agree


@pytest.mark.parametrize("task", ["detection", "instance"])
def test_detector_on_the_gpu_gives_the_cpus_answer(scene, task):
    cpu = get(task, "shapes", "cpu")(scene.image)
    gpu = get(task, "shapes", "cuda")(scene.image)
    confident = cpu.scores > 0.5
    assert confident.sum() >= 2, "the scene should hold confident detections"
    keep = gpu.scores > 0.5
    assert keep.sum() == confident.sum()
    torch.testing.assert_close(gpu.boxes[keep], cpu.boxes[confident], atol=0.05, rtol=1e-4)
    torch.testing.assert_close(gpu.scores[keep], cpu.scores[confident], atol=1e-4, rtol=1e-4)
    assert torch.equal(gpu.labels[keep], cpu.labels[confident])
    if task == "instance":
        same = ((gpu.masks[keep] > 0.5) == (cpu.masks[confident] > 0.5)).float().mean().item()
        assert same > 0.999, same


@pytest.mark.parametrize("task", ["segmentation", "instance"])
def test_trace_on_the_gpu_equals_the_plain_call(scene, task):
    m = get(task, "shapes", "cuda")
    plain, tr = m(scene.image), m.trace(scene.image)
    if task == "segmentation":
        torch.testing.assert_close(tr.result.probabilities, plain.probabilities, atol=1e-5, rtol=1e-5)
        assert tr.result.probabilities.device.type == "cpu"
    else:
        torch.testing.assert_close(tr.detections.boxes, plain.boxes, atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(tr.detections.scores, plain.scores, atol=1e-5, rtol=1e-5)
        # the hooks' tensors are copied off the GPU: a page never holds device memory
        assert tr.objectness.device.type == "cpu" and tr.box_features.device.type == "cpu"


def test_nms_trace_takes_gpu_boxes_and_agrees_with_torchvisions_cuda_kernel():
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(400, 2, generator=g) * 200
    wh = torch.rand(400, 2, generator=g) * 60 + 4
    boxes = torch.cat([xy, xy + wh], 1).cuda()
    scores = torch.rand(400, generator=g).cuda()
    keep, tr = nms_trace(boxes, scores, 0.5)
    assert torch.equal(keep.cpu(), torchvision.ops.nms(boxes, scores, 0.5).cpu())
    assert len(tr.keep) == len(keep)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_ops_take_gpu_features_and_agree_with_torchvisions_cuda_kernels(aligned):
    g = torch.Generator().manual_seed(7)
    feats = torch.randn(8, 20, 24, generator=g).cuda()
    box = torch.tensor([3.3, 2.1, 70.8, 55.4])
    rois = torch.cat([torch.zeros(1), box]).view(1, 5).cuda()
    ours, _ = roi_align_trace(feats, box, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=aligned)
    ref = torchvision.ops.roi_align(feats[None], rois, (7, 7), spatial_scale=0.25, sampling_ratio=2,
                                    aligned=aligned)[0]
    torch.testing.assert_close(ours.to(ref.device), ref, atol=1e-5, rtol=1e-5)
    pooled, _ = roi_pool_trace(feats, box, (7, 7), spatial_scale=0.25)
    ref = torchvision.ops.roi_pool(feats[None], rois, (7, 7), spatial_scale=0.25)[0]
    torch.testing.assert_close(pooled.to(ref.device), ref, atol=0, rtol=0)


def test_a_kernel_forked_from_the_zygote_can_use_the_gpu():
    """The zygote imports torch and the explainers but must not start CUDA: a process that did
    cannot use the GPU in its forked children ("Cannot re-initialize CUDA in forked subprocess")."""
    code = textwrap.dedent("""
        import os, sys
        from explainers.app import forking
        forking.preload()
        import torch
        assert not torch.cuda.is_initialized(), "the zygote started CUDA"
        pid = os.fork()
        if pid == 0:
            try:
                from explainers.models import default_device, get, make_scene
                assert default_device().type == "cuda"
                r = get("detection", "shapes", "cuda")(make_scene(3).image)
                os._exit(0 if r.device.startswith("cuda") else 3)
            except BaseException as exc:
                print("child:", type(exc).__name__, exc, flush=True)
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    env = {k: v for k, v in os.environ.items() if k != "EXPLAINERS_DEVICE"}   # the default device: the GPU
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
