"""FCNExplainer: SegNet stage by stage, checked against the model's own tensors, F.max_unpool2d
and autograd; each "Things to try" line of notebooks/12_fcn.ipynb is done here."""
import itertools
import json
import re
from pathlib import Path

import pytest
import torch

from explainers.models.fcn import STAGES, SWITCHES, pixel_path
from explainers.widgets.fcn import FCNExplainer
from tests.widgets.checks import marks

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "12_fcn.ipynb"


@pytest.fixture(scope="module")
def lecture():
    return FCNExplainer(source="lecture")


def test_both_sources_construct_with_every_check_passing(lecture):
    live = FCNExplainer(source="live")
    for e in (lecture, live):
        assert not e.error_text and not e.failed
        assert marks(e) == ["✔"] * 5, e.check_text
        assert "model's own output logits" in e.check_text and "F.max_unpool2d" in e.check_text
        assert "autograd" in e.check_text
        assert e.n_steps() == len(STAGES) == 15
    assert "lecture's picture with real numbers" in lecture.note.value
    assert "live SegNet" in live.note.value


def test_state_holds_what_is_drawn(lecture):
    st = lecture.state()
    assert st["source"] == "lecture" and st["pixel"] == (lecture.row.value, lecture.col.value)
    doc = FCNExplainer._state.__doc__
    for key in st:
        assert key in ("source", "step", "n_steps") or key in doc
    cap = lecture._cap
    for s in st["stages"]:
        assert torch.equal(s["vector"], cap.stages[s["name"]][:, s["cell"][0], s["cell"][1]])
        assert s["shape"] == tuple(cap.stages[s["name"]].shape)
        most = s["vector"].argmax() if s["name"] == "scores" else s["vector"].abs().argmax()
        assert s["channel"] == int(most)       # "most active at the pixel"; at the scores its predicted class
    r0, c0 = st["pixel"]
    assert st["stages"][-1]["name"] == "scores" and st["stages"][-1]["channel"] == int(st["logits"][:, r0, c0].argmax())
    assert torch.equal(st["switches"]["pool3"], cap.switches["pool3"])
    # the last stage's vector is the model's own logits at the pixel
    r, c = st["pixel"]
    assert torch.allclose(st["stages"][-1]["vector"], st["logits"][:, r, c])


def test_frames_are_pure(lecture):
    before = lecture.fig.to_plotly_json()
    a = [lecture.frame(k) for k in range(lecture.n_steps())]
    b = [lecture.frame(k) for k in range(lecture.n_steps())]
    assert json.dumps(a, default=str) == json.dumps(b, default=str)
    assert lecture.fig.to_plotly_json() == before
    # stepping draws the stage's own map and its shape in the caption
    lecture.step.value = 7
    assert "bottleneck" in lecture.caption.value and "64×20×20" in lecture.caption.value
    ch = lecture._channels[7]
    assert torch.equal(torch.tensor(lecture.fig.data[10].z), lecture._cap.stages["bottleneck"][ch])


def test_try_step_through_shapes_down_and_up_field_grows(lecture):
    """Things to try 1: blocks shrink 160x160 -> 20x20 and grow back; the field grows 1 -> 148."""
    sides, fields = [], []
    for k in range(lecture.n_steps()):
        lecture.step.value = k
        sides.append(lecture._path[k].shape[1:])
        x1, y1, x2, y2 = lecture._path[k].box
        fields.append((x2 - x1, y2 - y1))
        drawn = lecture.fig.data[8]                     # the red box on the image is that field
        assert max(v for v in drawn.x if v is not None) - min(v for v in drawn.x if v is not None) == x2 - x1
    assert sides[0] == (160, 160) and min(sides) == (20, 20) and sides[-1] == (160, 160)
    assert fields[0] == (1, 1) and fields[-1] == (148, 148)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(fields))


def test_try_unpool3_values_sit_on_the_switches(lecture):
    """Things to try 2: at unpool3, every non-zero cell shown sits on a switch; the rest is 0."""
    k = [n for n, _, _ in STAGES].index("unpool3")
    lecture.step.value = k
    z = torch.tensor([[float("nan") if v is None else v for v in row] for row in lecture.fig.data[13].z])
    sw = set(zip(lecture.fig.data[14].y, lecture.fig.data[14].x))
    assert len(sw) == (z.shape[0] // 2) * (z.shape[1] // 2)      # one switch per 2x2 block
    r0, c0 = lecture.fig.data[13].y0, lecture.fig.data[13].x0
    nonzero = {(r + r0, c + c0) for r, c in torch.nonzero(z != 0).tolist()}
    assert nonzero and nonzero <= sw
    # the window is drawn at the map's own rows and columns: the cell the caption names is inside it
    # and the axes show it there (they counted 0-7 in the window)
    r, c = (int(v) for v in re.search(r"falls in cell \((\d+), (\d+)\)", lecture.caption.value).groups())
    lay = lecture.fig.layout
    assert r0 <= r < r0 + z.shape[0] and c0 <= c < c0 + z.shape[1]
    assert list(lay.xaxis4.range) == [c0 - 0.5, c0 + z.shape[1] - 0.5]
    assert list(lay.yaxis4.range) == [r0 + z.shape[0] - 0.5, r0 - 0.5]
    bx = [v for v in lecture.fig.data[15].x if v is not None]
    by = [v for v in lecture.fig.data[15].y if v is not None]
    assert min(bx) < c < max(bx) and min(by) < r < max(by)          # the 2x2 block outline holds it
    assert "switches" in lecture.fig.layout.annotations[2].text and "remembered" in lecture.caption.value
    # on one channel, the pooling stage shows the same switches on its input as the unpooling uses
    lecture.channel.value = 5
    lecture.step.value = k
    sw5 = set(zip(lecture.fig.data[14].y, lecture.fig.data[14].x))
    lecture.step.value = [n for n, _, _ in STAGES].index(SWITCHES["unpool3"])
    assert set(zip(lecture.fig.data[14].y, lecture.fig.data[14].x)) == sw5
    lecture.channel.value = -1


def test_try_corner_pixel_field_is_cut_and_autograd_agrees():
    """Things to try 3: at (0, 0) the field starts at the border, is smaller, and autograd agrees."""
    e = FCNExplainer(source="lecture")
    e.row.value, e.col.value = 0, 0
    assert not e.error_text
    x1, y1, x2, y2 = e._path[-1].box
    assert (x1, y1) == (0, 0) and x2 - x1 < 148 and y2 - y1 < 148
    assert marks(e) == ["✔"] * 5 and e.state()["checks"]["autograd_outside"] == 0
    g = e.state()["autograd"]
    assert g.any() and not g[y2:, :].any() and not g[:, x2:].any()


def test_try_live_checks_the_models_own_output():
    """Things to try 4: live runs on a held-out scene and on your image, checked against the model."""
    from explainers.models import make_scene

    e = FCNExplainer(source="live", image=make_scene(123, size=(96, 120)).image)
    assert marks(e) == ["✔"] * 5 and e._cap.size == (96, 120)
    assert e._path[0].shape == (3, 96, 120)


def test_tampering_a_captured_tensor_flips_the_checks():
    e = FCNExplainer(source="live")
    e._cap.stages["unpool3"][0, 0, 0] += 1.0        # the unpooling stage is no longer F.max_unpool2d of its switches
    e.refresh()
    assert marks(e) == ["✔", "✘", "✔", "✔", "✔"]
    e._cap.stages["scores"] += 0.5                  # the drawn last stage is no longer the model's output
    e.refresh()
    assert marks(e)[0] == "✘"
    e._cap.stages["dec2"] = e._cap.stages["dec2"][:, :-1]   # a drawn shape no longer the arithmetic's
    e.refresh()
    assert marks(e)[3] == "✘"


def test_channel_choice_and_errors(lecture):
    lecture.channel.value = 40
    assert [min(40, p.shape[0] - 1) for p in lecture._path] == lecture._channels
    lecture.channel.value = -1
    with pytest.raises(ValueError, match="outside"):
        pixel_path(lecture._cap, 500, 0)
    from explainers.models import get

    other = FCNExplainer(source="live", model=get("detection", "shapes"))
    assert "SegNet" in other.failed


def test_notebook_is_four_lines_and_lists_the_tested_things_to_try():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1 and not code[0]["outputs"] and 'FCNExplainer(source="lecture")' in "".join(code[0]["source"])
    tries = [line for line in "".join(nb["cells"][-1]["source"]).splitlines() if line.startswith("- ")]
    assert len(tries) == 4


def test_the_feature_vector_axis_counts_channels_in_whole_numbers(lecture):
    """A feature vector's x axis names channels 0, 1, 2 ... (no 0.5 ticks), at most 16 of them;
    the last stage names the classes."""
    for k, (name, _, _) in enumerate(STAGES):
        f = lecture.frame(k)
        ax = f["layout"]["xaxis4"]
        if not f["data"][12]["x"]:            # the stages that draw the switches instead
            assert ax["tickmode"] == "auto"
            continue
        C = len(f["data"][12]["x"])
        if name == "scores":
            assert ax["tickmode"] == "auto" and f["data"][12]["x"] == list(lecture._cap.classes[:C])
        else:
            vals = ax["tickvals"]
            assert ax["tickmode"] == "array" and vals[0] == 0 and all(isinstance(v, int) for v in vals)
            assert len(vals) <= 16 and set(vals) <= set(range(C)) and (C <= 16) == (vals == list(range(C)))


def test_the_strip_says_what_its_colours_and_arcs_mean_and_its_labels_sit_under_the_blocks(lecture):
    fig = lecture.fig
    labels = fig.data[3]
    lowest = min(b[1] for b in lecture._blocks)                   # the tallest block's bottom edge
    assert labels.textposition == "bottom center" and all(y <= lowest for y in labels.y)
    assert min(labels.y) - 0.9 >= fig.layout.yaxis.range[0]        # two 16 px lines fit above the strip's bottom
    key = [a.text for a in fig.layout.annotations if "down (encoder)" in (a.text or "")]
    assert key and "up (decoder)" in key[0] and "pooling switches" in key[0]
    # the key survives every step (frames send the annotations list whole)
    for k in (0, 7, 14):
        anns = lecture.frame(k)["layout"].get("annotations")
        assert anns is None or any("down (encoder)" in (a.get("text") or "") for a in anns)


def test_the_switch_window_says_whose_rows_it_shows_and_which_cell_the_outline_is(lecture):
    """At a pooling stage the window is the pool's input, twice as fine as the stage's map: its title
    names that map and the pooled cell the 2x2 outline stands for (the caption names cell (19, 21) while
    the axes read 34-41; nothing on the page tied the two)."""
    names = [n for n, _, _ in STAGES]
    for pool in ("pool2", "pool3"):
        k = names.index(pool)
        lecture.step.value = k
        r, c = (int(v) for v in re.search(r"falls in cell \((\d+), (\d+)\)", lecture.caption.value).groups())
        title = lecture.fig.layout.annotations[2].text
        assert f"switches on {names[k - 1]}" in title and f"{pool} cell ({r}, {c})" in title, title
        bx = sorted({v for v in lecture.fig.data[15].x if v is not None})
        by = sorted({v for v in lecture.fig.data[15].y if v is not None})
        assert (bx, by) == ([2 * c - 0.5, 2 * c + 1.5], [2 * r - 0.5, 2 * r + 1.5])
        k = names.index(next(u for u, p in SWITCHES.items() if p == pool))        # its unpooling: the same cell
        lecture.step.value = k
        assert f"{pool} cell ({r}, {c})" in lecture.fig.layout.annotations[2].text


def test_the_autograd_check_runs_on_a_bounded_window_and_still_catches_a_field_too_small():
    """The receptive-field check ran SegNet with gradients on five whole images (6 GB at 1024 px, again
    at every pixel move). It runs one image at a time on the field's box and AUTOGRAD_MARGIN pixels
    more: on a 512-px image it finds the same field as on the whole image, its window does not grow
    with the image, and a field computed too small is still caught (gradients outside it)."""
    from explainers.models import get, make_scene
    from explainers.models.fcn import AUTOGRAD_MARGIN, autograd_field, autograd_window, capture_stages, mask_box

    model = get("segmentation", "shapes")
    image = make_scene(77, size=(512, 512)).image
    cap = capture_stages(model, image)
    row, col = 300, 200
    box = pixel_path(cap, row, col)[-1].box
    windowed = autograd_field(model, image, row, col, n_random=3, box=box)
    whole = autograd_field(model, image, row, col, n_random=3)
    assert mask_box(windowed) == mask_box(whole) == tuple(box)
    x1, y1, x2, y2 = autograd_window(box, (512, 512))
    assert not windowed[:, :x1].any() and not windowed[:y1].any()
    side = max(box[2] - box[0], box[3] - box[1]) + 2 * AUTOGRAD_MARGIN + 8
    assert x2 - x1 <= side and y2 - y1 <= side and autograd_window(box, (4096, 4096)) == (x1, y1, x2, y2)
    small = (box[0] + 10, box[1] + 10, box[2] - 10, box[3] - 10)       # a field computed 10 px too small
    found = autograd_field(model, image, row, col, n_random=3, box=small)
    inside = torch.zeros_like(found)
    inside[small[1]:small[3], small[0]:small[2]] = True
    assert (found & ~inside).any()
    # the page says what autograd ran on
    e = FCNExplainer(source="live", image=image)
    e.row.value, e.col.value = row, col
    assert marks(e) == ["✔"] * 5 and f"{AUTOGRAD_MARGIN} px more on each side" in e.note.value
