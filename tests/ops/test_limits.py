"""Size limits: an oversized call raises a readable ValueError at once, before allocating;
NMS on 10**5 boxes stays exact and well under 1 GB."""
import json
import resource
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from explainers import ops
from explainers.ops import _checks
from explainers.ops import nms as nms_module

K3 = torch.ones(3, 3)
X4 = torch.rand(4, 4)


def box_rows(n):
    xy = torch.rand(n, 2) * 100
    return torch.cat([xy, xy + 10], 1)


OVERSIZED = {
    # what the issue measured: 24 GB, 6.9 GB + 39 s, 320 GB, 32 GB
    "roi_align 10000x10000 bins": (lambda: ops.roi_align_trace(torch.randn(3, 8, 8), [0, 0, 4, 4], 10000),
                                   "MAX_ELEMENTS"),
    "nms_trace too many boxes": (lambda: ops.nms_trace(box_rows(_checks.MAX_NMS_BOXES + 1),
                                                       torch.rand(_checks.MAX_NMS_BOXES + 1)), "MAX_NMS_BOXES"),
    "batched_nms_trace too many boxes": (lambda: ops.batched_nms_trace(
        box_rows(_checks.MAX_NMS_BOXES + 1), torch.rand(_checks.MAX_NMS_BOXES + 1),
        torch.zeros(_checks.MAX_NMS_BOXES + 1, dtype=torch.long)), "MAX_NMS_BOXES"),
    "unpool nearest scale 100000": (lambda: ops.unpool(X4, "nearest", 100000), "MAX_ELEMENTS"),
    "unpool bilinear scale 100000": (lambda: ops.unpool(X4, "bilinear", 100000), "MAX_ELEMENTS"),
    "unpool bed_of_nails scale 100000": (lambda: ops.unpool(X4, "bed_of_nails", 100000), "MAX_ELEMENTS"),
    "unpool max output_size": (lambda: ops.unpool(X4, "max", 2, indices=torch.zeros(4, 4, dtype=torch.long),
                                                  output_size=(100000, 100000)), "MAX_ELEMENTS"),
    "reference_unpool scale 100000": (lambda: ops.reference_unpool(X4, "nearest", 100000), "MAX_ELEMENTS"),
    "max_pool_with_switches": (lambda: ops.max_pool_with_switches(torch.empty(4100, 4100)), "MAX_ELEMENTS"),
    "conv_matrix 300x300": (lambda: ops.conv_matrix(K3, (300, 300)), "MAX_ELEMENTS"),
    "conv_matrix kernel taps": (lambda: ops.conv_matrix(torch.ones(1000), (1,), 1, 20000), "MAX_ELEMENTS"),
    "conv_transpose_via_matrix 300x300": (lambda: ops.conv_transpose_via_matrix(torch.empty(298, 298), K3,
                                                                                (300, 300)), "MAX_ELEMENTS"),
    "conv_matrix_labels": (lambda: ops.conv_matrix_labels(["x", "y", "z"], 1000), "MAX_LABELS"),
    "reference_conv_transpose": (lambda: ops.reference_conv_transpose(torch.empty(4998, 4998), K3, (5000, 5000)),
                                 "MAX_ELEMENTS"),
    "reference_conv padding": (lambda: ops.reference_conv(torch.zeros(2, 2), K3, 1, 5000), "MAX_ELEMENTS"),
    "anchor_grid": (lambda: ops.anchor_grid((100000, 100000), (5000, 5000)), "MAX_ELEMENTS"),
    "base_anchors": (lambda: ops.base_anchors(range(1, 3001), [0.5 + i / 3000 for i in range(3000)]),
                     "MAX_ELEMENTS"),
    "box_iou": (lambda: ops.box_iou(box_rows(5000), box_rows(5000)), "MAX_ELEMENTS"),
    "roi_pool 10000x10000 bins": (lambda: ops.roi_pool_trace(torch.randn(3, 8, 8), [0, 0, 4, 4], 10000),
                                  "MAX_LOOP_STEPS"),
    "roi_pool output": (lambda: ops.roi_pool_trace(torch.empty(100000, 8, 8), [0, 0, 4, 4], 16), "MAX_ELEMENTS"),
    "sliding windows": (lambda: ops.sliding_window_predict(nn.Conv2d(3, 2, 3), torch.empty(3, 1000, 1000), 3, 1),
                        "MAX_WINDOWS"),
    "sliding batch": (lambda: ops.sliding_window_predict(nn.Conv2d(3, 2, 3), torch.empty(3, 250, 250), 100, 1,
                                                         batch_size=10**6), "MAX_ELEMENTS"),
    "dense_predict": (lambda: ops.dense_predict(nn.Conv2d(3, 2, 3), torch.empty(3, 2000, 2000)), "MAX_PIXELS"),
}


@pytest.mark.parametrize("name", list(OVERSIZED))
def test_oversized_call_fails_fast_with_a_readable_error(name):
    call, limit = OVERSIZED[name]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        call()
    seconds = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    msg = str(info.value)
    # what is too big, how big, the limit (by name) and what to do, in one line
    assert "would have" in msg and "allowed" in msg and limit in msg and "; " in msg and "\n" not in msg, msg
    assert seconds < 0.5, f"{name}: {seconds:.2f} s before the error"
    assert grown_mb < 100, f"{name}: the peak memory grew by {grown_mb:.0f} MB before the error"


def test_check_size_boundary_and_message():
    assert _checks.check_size(_checks.MAX_ELEMENTS, _checks.MAX_ELEMENTS, "x", "y") == _checks.MAX_ELEMENTS
    with pytest.raises(ValueError, match=r"^the matrix would have 16,777,217 elements, more than the 16,777,216 "
                                         r"allowed \(MAX_ELEMENTS in explainers/ops/_checks.py\); shrink it$"):
        _checks.check_size(2**24 + 1, _checks.MAX_ELEMENTS, "the matrix", "shrink it")


def test_the_largest_allowed_sizes_still_work():
    X = ops.conv_matrix(torch.tensor([1.0, 2.0, 3.0]), (4096,))          # 4094 x 4096: just under MAX_ELEMENTS
    assert X.shape == (4094, 4096)
    out, _ = ops.unpool(torch.rand(1, 1, 64, 64), "bilinear", 16)        # 1024x1024 cells x 4 sources
    assert out.shape == (1, 1, 1024, 1024)


def test_brief_steps_after_the_trace_budget(monkeypatch):
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(300, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 60 + 1], 1)
    scores = torch.rand(300, generator=g)
    _, full = ops.nms_trace(boxes, scores, 0.4)
    assert full.detailed_steps == len(full.steps)
    monkeypatch.setattr(nms_module, "MAX_TRACE_ENTRIES", 1000)
    keep, tr = ops.nms_trace(boxes, scores, 0.4)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, 0.4))
    assert 0 < tr.detailed_steps < len(tr.steps)
    assert sum(s.candidates.size for s in tr.steps[:tr.detailed_steps]) <= 1000
    for a, b in zip(full.steps, tr.steps):
        assert a.kept == b.kept and np.array_equal(a.suppressed, b.suppressed)
    for k, (a, b) in enumerate(zip(full.steps, tr.steps)):
        if k < tr.detailed_steps:       # the same full row
            assert np.array_equal(a.candidates, b.candidates) and np.array_equal(a.ious, b.ious)
        else:                           # only the suppressed boxes, with their IoUs
            assert np.array_equal(b.candidates, b.suppressed)
            assert np.array_equal(b.ious, a.ious[np.isin(a.candidates, a.suppressed)])
    for k in (0, 7, len(tr.steps)):
        assert np.array_equal(full.state_after(k), tr.state_after(k))


# the child measures its own peak resident size around one call, after its imports
_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch, torchvision
    from explainers import ops

    def status_kib(key):
        with open("/proc/self/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith(key + ":")))

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")          # peak RSS := current RSS (Linux)
            return status_kib("VmRSS"), lambda: status_kib("VmHWM")
        except OSError:
            ru = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return ru(), ru

    torch.set_num_threads(2)
    n, classes = int(sys.argv[1]), int(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * 800
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 100 + 4], 1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    base, peak = reset_peak()
    t0 = time.perf_counter()
    if classes > 1:
        keep, tr = ops.batched_nms_trace(boxes, scores, labels, 0.5)
    else:
        keep, tr = ops.nms_trace(boxes, scores, 0.5)
    seconds = time.perf_counter() - t0
    grown = (peak() - base) / 1024
    ref = torchvision.ops.batched_nms(boxes, scores, labels, 0.5) if classes > 1 else \\
        torchvision.ops.nms(boxes, scores, 0.5)
    print(json.dumps({"peak_mb": grown, "seconds": seconds, "equal": bool(torch.equal(keep, ref)),
                      "kept": len(keep), "steps": len(tr.steps), "detailed": tr.detailed_steps}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("classes", [1, 5])
def test_nms_on_100k_boxes_is_exact_and_small(classes):
    r = subprocess.run([sys.executable, "-c", _CHILD, "100000", str(classes)], capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["equal"], res
    assert res["steps"] == res["kept"] and res["detailed"] < res["steps"]
    assert res["peak_mb"] < 1024, res
