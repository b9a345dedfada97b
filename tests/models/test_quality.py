"""Held-out quality of the bundled models: the model cards meet the targets, and a fresh
evaluation on the same 200 held-out scenes agrees with the cards (within a margin)."""
import json

import pytest

from explainers.models import get
from explainers.models.evaluate import evaluate_detector, evaluate_patch, evaluate_segnet
from explainers.models.zoo import WEIGHTS_DIR

MARGIN = 0.01  # a fresh run may differ a little across machines / BLAS libraries

CASES = {
    "mask_rcnn": ("instance", evaluate_detector, {"box_AP50": 0.90, "mask_IoU_matched": 0.80}),
    "segnet": ("segmentation", evaluate_segnet, {"mIoU": 0.85}),
    "patch_classifier": ("patch", evaluate_patch, {"pixel_accuracy": 0.90}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_held_out_quality(name):
    task, evaluate, targets = CASES[name]
    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert card["held_out"]["scenes"] == 200
    fresh = evaluate(get(task, "shapes").module, 200)
    for metric, target in targets.items():
        assert card["held_out"][metric] >= target, f"{name} card: {metric} below the target {target}"
        assert fresh[metric] >= target - MARGIN, f"{name}: {metric} = {fresh[metric]:.3f} < {target}"
        assert abs(fresh[metric] - card["held_out"][metric]) <= MARGIN
