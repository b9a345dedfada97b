"""The pages that need no torchvision operator do not import torchvision (docs/hosting.md, "Where a
student's memory goes"): its import brings torch._dynamo, sympy and triton, memory every plain
kernel (a server per student) would hold for nothing."""
from __future__ import annotations

import os
import subprocess
import sys

from explainers.registry import entry

#: the tour's start page and the pages whose check lines compare with torch's own operators
LEAN = ("UnpoolingExplainer", "SlidingWindowExplainer", "TransposedConvExplainer",
        "TrainingTargetsExplainer", "FCNExplainer")
HEAVY = ("torchvision", "torch._dynamo")
# (sympy is not in the list: torch's own F.max_unpool2d with an output size imports it, which the
# FCN's model calls; torchvision's import brings it too)


def _build_and_list(code: str) -> str:
    env = {**os.environ, "EXPLAINERS_DEVICE": "cpu", "EXPLAINERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_tour_and_the_first_half_pages_load_no_torchvision():
    code = ("import sys\nfrom explainers.app.tour import Tour\nfrom explainers.registry import entry\n"
            "t = Tour()\nassert not t.error.value, t.error.value\n"
            f"for name in {LEAN!r}:\n"
            "    e = entry(name).load()(source='lecture')\n    assert not e.error_text, (name, e.error_text)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert _build_and_list(code) == "[]"


def test_a_page_with_a_torchvision_check_line_does_load_it():
    """The other side, so the test above cannot pass by measuring nothing: NMS checks against
    torchvision.ops.batched_nms, so building it imports torchvision."""
    assert entry("NMSExplainer").module == "nms"
    code = ("import sys\nfrom explainers.registry import entry\n"
            "e = entry('NMSExplainer').load()(source='lecture')\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert _build_and_list(code) == str(sorted(HEAVY))
