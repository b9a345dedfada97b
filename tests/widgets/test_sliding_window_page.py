"""SlidingWindowExplainer's label map at the first steps: never a blank panel (issue #12)."""
import json

import pytest

from explainers.widgets.sliding_window import SlidingWindowExplainer, _grid_lines


@pytest.fixture(scope="module")
def lecture():
    return SlidingWindowExplainer(source="lecture")


def _segments(xs):
    return xs.count(None)


def test_step_0_shows_the_empty_map_as_a_grid_and_says_it_fills(lecture):
    e = lecture
    e.step.value = 0
    nH, nW = e.state()["labels"].shape
    grid = e.fig.data[8]
    assert grid.type == "scatter" and grid.mode == "lines" and (grid.xaxis, grid.yaxis) == ("x3", "y3")
    assert _segments(list(grid.x)) == (nW + 1) + (nH + 1)           # one line per cell border (42 x 42)
    assert min(v for v in grid.x if v is not None) == -0.5 and max(v for v in grid.x if v is not None) == nW - 0.5
    assert min(v for v in grid.y if v is not None) == -0.5 and max(v for v in grid.y if v is not None) == nH - 0.5
    fr = e.frame(0)
    # the first window's cell is filled, framed by the current-cell marker drawn whole at the corner
    z = fr["data"][4]["z"]
    assert z[0][0] == int(e.state()["labels"][0, 0]) and sum(v is not None for row in z for v in row) == 1
    assert fr["data"][5] == {"x": [0], "y": [0]} and e.fig.data[5].cliponaxis is False
    assert f"{nH * nW - 1:,} empty cells" in fr["caption"] and "fill the whole map" in fr["caption"]
    # later in the map the caption no longer repeats it
    assert "empty cells" not in e.frame(nW + 1)["caption"]


def test_the_grid_follows_the_stride_and_stays_readable(lecture):
    e = lecture
    e.stride_ctl.value = 8
    nH, nW = e.state()["labels"].shape
    assert _segments(list(e.fig.data[8].x)) == (nW + 1) + (nH + 1)
    e.stride_ctl.value = e._model.stride
    # a map too fine for a line per cell: a line every few cells, never more than about 50 a side
    xs, ys = _grid_lines(150, 200)
    segs = [(xs[i], xs[i + 1], ys[i], ys[i + 1]) for i in range(0, len(xs), 3)]
    vertical = [sg for sg in segs if sg[0] == sg[1]]
    horizontal = [sg for sg in segs if sg[2] == sg[3]]
    assert 30 <= len(vertical) <= 50 and 20 <= len(horizontal) <= 50
    assert max(v for v in xs if v is not None) == 199.5 and max(v for v in ys if v is not None) == 149.5


def test_dense_toggle_keeps_the_grid_and_fills_every_cell(lecture):
    e = lecture
    e.dense.value = True
    assert all(v is not None for row in e.fig.data[4].z for v in row)
    assert _segments(list(e.fig.data[8].x)) > 0
    e.dense.value = False


def test_the_dense_pass_is_a_frame_so_the_export_shows_it(tmp_path):
    """'Press run fully convolutionally': the page becomes one step, the whole map at once with the
    measured caption, drawn by frame() (a pure function of the parameters), so an export made then
    shows it (it showed the last window's caption); off again, the windows come back."""
    from explainers.widgets import SlidingWindowExplainer

    e = SlidingWindowExplainer()
    n = e.n_steps()
    e.dense.value = True
    assert e.n_steps() == 1 and e.anim.layout.display == "none"
    f = e.frame(0)
    assert "the whole image at once" in f["caption"] and "faster" in f["caption"] and "same map" in f["caption"]
    assert f["data"][4]["z"] == e._dense[0].tolist() and f["data"][5] == {"x": [], "y": []}
    assert [a["text"] for a in f["layout"]["annotations"]][1] == "the whole image, at once"
    # no window, no window's scores: that panel is hidden, not an empty grid
    assert f["layout"]["xaxis4"] == f["layout"]["yaxis4"] == {"visible": False} and f["data"][6]["y"] == []
    assert json.dumps(e.frame(0), sort_keys=True, default=str) == json.dumps(f, sort_keys=True, default=str)
    html_text = e.export_html(tmp_path / "dense.html").read_text()
    assert "the whole image at once" in html_text and "window 1 of" not in html_text
    e.dense.value = False
    assert e.n_steps() == n and "window 1 of" in e.frame(0)["caption"]
    assert [a.text for a in e.fig.layout.annotations][1::2][:2] == ["the window", "class scores"]
    assert "layout" not in e.frame(0)          # 1,764 window frames do not each carry the titles
    assert e.fig.layout.xaxis4.visible is not False and e.fig.layout.yaxis4.visible is not False
