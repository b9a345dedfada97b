"""The RoI Pool / Align page writes its numbers: every output cell holds the trace's output value
(both maps, lecture and live), the current bin is framed without covering its number, and the
RoI Align map shows the four values and weights the caption's "f = ..." is made of."""
import re

import pytest
import torch

from explainers import ops
from explainers.widgets.roi import RoIPoolAlignExplainer


@pytest.fixture(scope="module", params=["lecture", "live"])
def page(request):
    return RoIPoolAlignExplainer(source=request.param)


def numbers(text) -> torch.Tensor:
    return torch.tensor([[float(v) for v in row] for row in text])


def close(written: torch.Tensor, exact: torch.Tensor) -> bool:
    """Written with 2-3 significant digits: equal to the exact value to that precision."""
    return bool(torch.all((written - exact).abs() <= 0.051 * exact.abs().clamp(min=1e-3) + 1e-3))


@pytest.mark.parametrize("out", [2, 3, 7])
def test_every_output_cell_holds_the_traces_output(page, out):
    """Up to 3 x 3 the numbers are written in the cells; from 4 x 4 on (a third of the plot's height
    each: too small for numbers) the cells hold the value as their colour, with no text."""
    e = page
    e.out_size.value = out
    st = e.state()
    c = st["channel"]
    box = st["box"]
    if st["level"] is None:
        fmap, scale = e._features, 1.0
    else:
        fmap, scale = e._trace.features[st["level"]][0], st["spatial_scale"]
    p_out, _ = ops.roi_pool_trace(fmap, box, out, scale)
    a_out, _ = ops.roi_align_trace(fmap, box, out, scale, st["sampling_ratio"], st["aligned"])
    pool, align, diff = e.fig.data[2], e.fig.data[3], e.fig.data[4]
    for tr, exact in ((pool, p_out[c]), (align, a_out[c]), (diff, a_out[c] - p_out[c])):
        assert torch.equal(torch.tensor(tr.z, dtype=torch.float32), exact)
        if out > 3:
            assert tr.text is None
            continue
        written = numbers(tr.text)
        assert written.shape == (out, out) and close(written, exact), (tr.text, exact)
        assert torch.equal(torch.tensor(tr.z, dtype=torch.float32), exact)
        # 16 px numbers in the colour plotly picks to contrast with each cell (no fixed colour set)
        assert tr.textfont.size >= 16 and tr.textfont.color is None and tr.texttemplate == "%{text}"
    if out <= 3:
        assert close(numbers(pool.text), st["roi_pool"][c]) and close(numbers(align.text), st["roi_align"][c])


def test_a_large_live_map_is_drawn_around_the_box_a_small_one_whole(page):
    """A live map of 16 x 28 cells in a third of the width leaves cells too small to read: the
    maps show a square window around the box (every sample and its four neighbours inside it);
    the slide's 8 x 8 map is drawn whole."""
    e = page
    e.out_size.value = 2
    H, W = e._map_shape
    xr, yr = list(e.fig.layout.xaxis.range), sorted(e.fig.layout.yaxis.range)
    assert list(e.fig.layout.xaxis2.range) == xr and list(e.fig.layout.yaxis2.range) == list(e.fig.layout.yaxis.range)
    if max(H, W) <= 16:
        assert xr == [-0.5, W - 0.5] and yr == [-0.5, H - 0.5]
        return
    assert xr[1] - xr[0] < W or yr[1] - yr[0] < H
    assert -0.5 <= xr[0] and xr[1] <= W - 0.5 and -0.5 <= yr[0] and yr[1] <= H - 0.5
    pts = e._at.points.reshape(-1, 2)
    for x, y in pts.tolist():
        for nx, ny in ((int(x), int(y)), (int(x) + 1, int(y) + 1)):          # the four neighbours' cells
            nx, ny = min(nx, W - 1), min(ny, H - 1)
            assert xr[0] <= nx - 0.5 and nx + 0.5 <= xr[1] and yr[0] <= ny - 0.5 and ny + 0.5 <= yr[1]
    x1, y1, x2, y2 = e._pt.scaled_box.tolist()
    assert xr[0] <= x1 - 0.5 and x2 - 0.5 <= xr[1] and yr[0] <= y1 - 0.5 and y2 - 0.5 <= yr[1]


def test_current_bin_is_framed_inside_its_output_cells(page):
    """The outline on both output maps marks the bin of the current sample, just inside its cell:
    the number at the cell's centre is never covered."""
    e = page
    e.out_size.value = 2
    ph, pw, gh, gw = e._at.points.shape[:4]
    for k in sorted({0, gh * gw, e.n_steps() - 1}):
        e.step.value = k
        i, j = divmod(k // (gh * gw), pw)
        for t in (15, 16):
            tr = e.fig.data[t]
            assert tr.mode == "lines"
            xs = {v for v in tr.x if v is not None}
            ys = {v for v in tr.y if v is not None}
            assert sorted(xs) == pytest.approx([j - 0.45, j + 0.45])
            assert sorted(ys) == pytest.approx([i - 0.45, i + 0.45])
        assert e.fig.data[15].xaxis == e.fig.data[2].xaxis and e.fig.data[16].xaxis == e.fig.data[3].xaxis


def test_align_map_shows_the_values_and_weights_of_f(page):
    """At every sample of the first bin, the RoI Align map writes the four neighbours' values (equal to
    the feature map there) and their weights (the trace's), and sum(weight x value) is the sample's f
    in the caption and in the trace."""
    e = page
    e.out_size.value = 2
    at = e._at
    c = e.channel.value
    fm = e._fmap
    ph, pw, gh, gw = at.points.shape[:4]
    small = max(fm.shape) <= 12
    for k in range(gh * gw):
        e.step.value = k
        a, b = divmod(k, gw)
        nb, w = at.neighbours[0, 0, a, b].tolist(), at.weights[0, 0, a, b].tolist()
        vals, weights = e.fig.data[11], e.fig.data[17]
        assert [list(p) for p in zip(vals.x, vals.y)] == nb
        if small:
            written_v = [float(t) for t in vals.text]
            written_w = [float(t.lstrip("×")) for t in weights.text]
        else:
            written_v = [float(t.split(" ×")[0]) for t in vals.text]
            written_w = [float(t.split(" ×")[1]) for t in vals.text]
        exact_v = [float(fm[y, x]) if 0 <= x < fm.shape[1] and 0 <= y < fm.shape[0] else 0.0 for x, y in nb]
        assert close(torch.tensor(written_v), torch.tensor(exact_v))
        assert written_w == pytest.approx(w, abs=0.005)
        f = float(at.samples[c, 0, 0, a, b])
        assert sum(wt * v for wt, v in zip(w, exact_v)) == pytest.approx(f, abs=1e-4)
        m = re.search(r"= ([-0-9.e+]+) \(weights", e.caption.value)
        assert m and float(m.group(1)) == pytest.approx(f, rel=0.01, abs=1e-3)
        assert vals.textfont.size >= 16 and weights.textfont.size >= 16 and vals.cliponaxis is False
    # the caption's output value is the bin's cell in the RoI Align output
    out = float(e.state()["roi_align"][c, 0, 0])
    m = re.search(r"mean of \d+ samples = (-?[0-9.]+(?:e[-+]?\d+)?)\. ", e.caption.value)
    assert m and float(m.group(1)) == pytest.approx(out, rel=0.01, abs=1e-3)


def test_the_outputs_are_drawn_in_the_maps_colours_and_say_max_and_mean():
    """A value has one colour on every panel (the outputs in the map's colour scale and range), and the
    output titles say how each pools (Pool: max of the cells; Align: mean of the samples)."""
    from explainers.widgets import RoIPoolAlignExplainer

    e = RoIPoolAlignExplainer()
    fmap, pool, align = e.fig.data[0], e.fig.data[2], e.fig.data[3]
    for t in (pool, align):
        assert t.colorscale == fmap.colorscale and (t.zmin, t.zmax) == (fmap.zmin, fmap.zmax)
    titles = [a.text for a in e.fig.layout.annotations]
    assert "RoI Pool output (max)" in titles and "RoI Align output (mean)" in titles


def test_weight_labels_stay_on_the_map_clear_of_the_tick_labels():
    """Each neighbour's weight ("×0.25", about 1.4 cells of 17 px text on a 1280 px screen, half a cell
    high) is written towards the inside of the map wherever outward would cross its edge."""
    from explainers.widgets import RoIPoolAlignExplainer

    e = RoIPoolAlignExplainer()
    H, W_ = e._map_shape
    checked = 0
    for x1, y1 in ((0.2, 0.1), (1.3, 0.6), (5.6, 5.9)):          # boxes at the edges and inside
        e.x1.value, e.y1.value = x1, y1
        e.x2.value, e.y2.value = min(x1 + 3.2, W_ - 0.1), min(y1 + 4.1, H - 0.1)
        for k in range(e.n_steps()):
            w = e.frame(k)["data"][17]
            for x, y, pos in zip(w["x"], w["y"], w["textposition"]):
                v, h = pos.split()
                assert (x - 1.4 >= -0.5) if h == "left" else (x + 1.4 <= W_ - 0.5), (x, pos)
                assert (y - 0.5 >= -0.5) if v == "top" else (y + 0.5 <= H - 0.5), (y, pos)
                checked += 1
    assert checked > 50


def test_the_difference_panel_says_it_compares_a_mean_with_a_max():
    """Review s12c: "Align − Pool" read as the effect of snapping; most of it is a mean against a max."""
    from explainers.widgets import RoIPoolAlignExplainer

    e = RoIPoolAlignExplainer(source="lecture")
    assert "Align (a mean) − Pool (a max)" in [a.text for a in e.fig.layout.annotations]
    assert "mostly a mean against a max, not the snapping" in e.note.value
