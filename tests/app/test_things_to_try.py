"""Every "Things to try" line of every notebook names the test that does what it says.

The lines are the notebooks' own (read here), in order; each is listed below by its opening words
with the test that checks its promise. A new, removed or reworded line fails
:func:`test_each_things_to_try_line_is_listed_with_its_test` until this table says which test covers
it, and a renamed test fails :func:`test_each_listed_test_exists`.
"""
from __future__ import annotations

import ast
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

from explainers.app import NOTEBOOKS_DIR, notebook_names

ROOT = Path(__file__).resolve().parents[2]
W = "tests/widgets/"

#: notebook -> [(the line's opening words, the test that checks what the line promises)], in order
TRIES: dict[str, list[tuple[str, str]]] = {
    "00_tour": [
        ("On any page, click the live model and choose another image; in a notebook, open a single explainer's "
         "notebook, change one line",
         "tests/app/test_things_to_try.py::test_each_notebook_with_source_live_and_another_image_runs"),
    ],
    "01_sliding_window": [
        ("Press fill the whole map", W + "test_widgets.py::test_sliding_window_things_to_try_are_true"),
        ("Change the stride to 8", W + "test_widgets.py::test_sliding_window_things_to_try_are_true"),
        ("Set the window below 38 pixels", W + "test_widgets.py::test_sliding_window_things_to_try_are_true"),
        ("Click the live model and choose another image", W + "test_widgets.py::test_sliding_window_things_to_try_are_true"),
    ],
    "02_unpooling": [
        ("Choose max unpooling and step through", W + "test_widgets.py::test_unpooling_things_to_try_are_true"),
        ("The live model (the switch at the top", W + "test_widgets.py::test_unpooling_things_to_try_are_true"),
    ],
    "03_transposed_conv": [
        ("In 1D choose strided conv", W + "test_transposed_conv_page.py::test_try_1d_strided_conv_shows_the_slides_forward_product"),
        ("Back in transposed conv, set padding 0", W + "test_transposed_conv_page.py::test_try_padding_0_gives_the_slides_transpose"),
        ("Set padding back to 1 and switch to 2D", W + "test_transposed_conv_page.py::test_try_2d_four_copies_on_the_4x4_output"),
        ("Set output_padding 0", W + "test_transposed_conv_page.py::test_try_output_padding_0_gives_3x3_and_the_same_conv_output_size"),
        ("Tick flip kernel", W + "test_transposed_conv_page.py::test_try_flip_kernel"),
        ("Untick flip kernel and, still in 2D", W + "test_transposed_conv_page.py::test_try_2d_downsampling"),
        ("The live model (the switch at the top", W + "test_transposed_conv_page.py::test_try_live_kernel_checked_against_the_decoder"),
    ],
    "04_anchors_rpn": [
        ("Step through the chosen cell", W + "test_anchors_page.py::test_try_stepping_the_cell_lands_each_anchor_on_an_object_in_lecture"),
        ("Set row and col to 0", W + "test_anchors_page.py::test_try_the_corner_cell_has_low_objectness_and_anchors_outside_the_image"),
        ("Choose the RPN view and step", W + "test_anchors_page.py::test_try_the_rpn_view_keeps_300_then_one_box_per_object_in_lecture"),
        ("In live mode the grey band is padding", W + "test_anchors_page.py::test_try_live_boxes_are_clipped_before_the_padding"),
        ("In live mode, choose the RPN view and lower top k", W + "test_anchors_page.py::test_try_lowering_top_k_in_live_mode_drops_the_model_check"),
    ],
    "05_roi_pool_align": [
        ("Move x1 from 1.30 to 1.60", W + "test_roi_live.py::test_roi_things_to_try_are_true"),
        ("Tick aligned", W + "test_roi_live.py::test_roi_things_to_try_are_true"),
        ("The live model (the switch at the top", W + "test_roi_live.py::test_roi_things_to_try_are_true"),
    ],
    "06_nms": [
        ("Lower the IoU threshold to 0.2", W + "test_widgets.py::test_nms_things_to_try_are_true"),
        ("Untick class-aware", W + "test_widgets.py::test_nms_things_to_try_are_true"),
        ("The live model (the switch at the top", W + "test_live_truth.py::test_nms_live_checks_the_models_detections"),
    ],
    "07_live_model": [
        ("Pick the shapes scenes, then the cat", W + "test_widgets.py::test_live_model_things_to_try_are_true"),
        ("Upload a photo of your own", W + "test_widgets.py::test_live_model_samples_and_bad_uploads"),
        ("On shapes scene 2 or the cat, lower min score", W + "test_widgets.py::test_live_model_things_to_try_are_true"),
        ("What the Mask R-CNN adds", W + "test_widgets.py::test_live_model_things_to_try_are_true"),
    ],
    "08_rcnn_family": [
        ("Choose Fast R-CNN", W + "test_rcnn_family.py::test_try_fast_rcnn_backbone_once_selective_search_slowest"),
        ("Choose Faster R-CNN", W + "test_rcnn_family.py::test_try_faster_rcnn_rpn_replaces_selective_search"),
        ("Step R-CNN to backbone x 2,000 crops", W + "test_rcnn_family.py::test_try_rcnn_backbone_hundreds_of_times_the_macs"),
        ("Set proposals drawn to 100, then 300", W + "test_rcnn_family.py::test_try_proposals_drawn_100_then_300_and_10"),
        ("The live model (the switch at the top", W + "test_rcnn_family.py::test_try_live_shapes_scene"),
    ],
    "09_training_targets": [
        ("Raise the box weight to 10", W + "test_training_targets.py::test_try_box_weight_10_makes_the_box_term_tenfold"),
        ("Choose smooth L1 as the box loss", W + "test_training_targets.py::test_try_smooth_l1_halves_the_box_loss"),
        ("Switch the view to Faster R-CNN", W + "test_training_targets.py::test_try_faster_view_counts"),
        ("The live model (the switch at the top", W + "test_training_targets.py::test_try_live_single_object_is_one_roi_of_the_model"),
    ],
    "10_single_stage": [
        ("Set S to 13", W + "test_single_stage.py::test_things_to_try_S_13"),
        ("Set B to 1", W + "test_single_stage.py::test_things_to_try_B_1"),
        ("Choose the view SSD default boxes", W + "test_single_stage.py::test_things_to_try_ssd_boxes_grow_as_maps_shrink"),
        ("The live model (the switch at the top", W + "test_single_stage.py::test_live_dense_predictions_are_the_models"),
    ],
    "11_mask_head": [
        ("Pick another detection", W + "test_mask_head.py::test_try_pick_another_detection"),
        ("Raise the threshold to 0.9", W + "test_mask_head.py::test_try_raise_the_threshold_to_0_9"),
        ("Step to 5", W + "test_mask_head.py::test_try_step_5_the_dashed_box_is_larger_by_30_over_28"),
        ("The live model (the switch at the top", W + "test_mask_head.py::test_try_live_equals_the_models_output_mask_pixel_for_pixel"),
    ],
    "12_fcn": [
        ("Step through all 15 stages", W + "test_fcn.py::test_try_step_through_shapes_down_and_up_field_grows"),
        ("Stop at unpool3", W + "test_fcn.py::test_try_unpool3_values_sit_on_the_switches"),
        ("Move the pixel to a corner", W + "test_fcn.py::test_try_corner_pixel_field_is_cut_and_autograd_agrees"),
        ("The live model (the switch at the top", W + "test_fcn.py::test_try_live_checks_the_models_own_output"),
    ],
}


def _plain(text: str) -> str:
    """A line as a student reads it: no Markdown emphasis or code marks, single spaces."""
    return " ".join(re.sub(r"[*`]", "", text).split())


def things_to_try(name: str) -> list[str]:
    """The notebook's "Things to try" lines, in order: its bullets, or the paragraph under the heading."""
    nb = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    text = next("".join(c["source"]) for c in nb["cells"]
                if c["cell_type"] == "markdown" and "Things to try" in "".join(c["source"]))
    after = text.split("Things to try", 1)[1].strip().splitlines()
    bullets = [line[2:] for line in after if line.startswith("- ")]
    return [_plain(line) for line in (bullets or [" ".join(after)])]


@lru_cache(maxsize=None)
def _tests_in(path: str) -> frozenset:
    tree = ast.parse((ROOT / path).read_text())
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))


def test_every_notebook_is_in_the_table():
    assert sorted(TRIES) == notebook_names()


@pytest.mark.parametrize("name", notebook_names())
def test_each_things_to_try_line_is_listed_with_its_test(name):
    lines, listed = things_to_try(name), [opening for opening, _ in TRIES[name]]
    assert len(lines) == len(listed), f"{name} has {len(lines)} lines, the table lists {len(listed)}: {lines}"
    for line, opening in zip(lines, listed):
        assert line.startswith(opening), f"{name}: {line!r} is not the line listed as {opening!r}"


def test_each_listed_test_exists():
    for name, rows in TRIES.items():
        for opening, test in rows:
            path, func = test.split("::")
            assert func in _tests_in(path), f"{name} / {opening!r}: no test {test}"


@pytest.mark.parametrize("name", [n for n in notebook_names() if n != "00_tour"])
def test_each_notebook_with_source_live_and_another_image_runs(name):
    """00_tour's line: "On any page, click the live model and choose another image; in a notebook, open a
    single explainer's notebook, change one line (source="live", another image) and run it again." The
    notebook's own code cell, with that one line changed, runs and its page checks what it draws (✔, no
    ✘, no error); the click is tests/browser/test_pages.py::test_lecture_and_live_are_one_click_on_a_page."""
    from explainers.models import held_out

    nb = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    code = "".join(next(c["source"] for c in nb["cells"] if c["cell_type"] == "code"))
    live_page = 'source="lecture"' not in code          # 07: always live; another image is chosen on it
    # the training-targets page asks for the image's ground truth in words (its own test); given it, it runs
    extra = ", target=TARGET" if name == "09_training_targets" else ""
    code = code.replace('source="lecture"', f'source="live", image=IMAGE{extra}')
    ns = dict(zip(("IMAGE", "TARGET"), held_out(1)[0]))
    exec(compile(code, f"{name}.ipynb", "exec"), ns)
    e = ns["explainer"]
    if live_page:                           # no check line: its three models run on the new image
        first = e.state()["image"]
        e.sample.value = e.sample.options[1]
        st = e.state()
        assert e.error_text == "" and st["image"].shape != first.shape, e.error_text
        assert len(st["detection"].boxes) and len(st["instance"].boxes) and st["segmentation"] is not None
        return
    assert e.source == "live" and e.error_text == "", e.error_text
    assert "✔" in e.check_text and "✘" not in e.check_text, e.check_text
