import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from explainers.ops import UNPOOL_MODES, max_pool_with_switches, reference_unpool, unpool

LECTURE_IN = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
LECTURE_POOL_IN = torch.tensor([[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]])


def test_lecture_nearest():
    out, _ = unpool(LECTURE_IN, "nearest")
    assert out.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_lecture_bed_of_nails():
    out, _ = unpool(LECTURE_IN, "bed_of_nails")
    assert out.tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]


def test_lecture_max_unpooling():
    pooled, switches = max_pool_with_switches(LECTURE_POOL_IN)
    assert pooled.tolist() == [[5, 6], [7, 8]]
    out, trace = unpool(LECTURE_IN, "max", indices=switches)
    assert out.tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    # the trace says where each input value went
    assert trace.targets(0, 0) == [(1, 1)]
    assert trace.targets(1, 1) == [(3, 3)]
    assert trace.sources(0, 2) == [((0, 1), 1.0)]
    assert trace.sources(0, 0) == []


def test_trace_sources_nearest_and_bilinear():
    _, tr = unpool(LECTURE_IN, "nearest")
    assert tr.targets(0, 1) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    out, tr = unpool(LECTURE_IN, "bilinear")
    src = tr.sources(1, 1)
    assert abs(sum(w for _, w in src) - 1) < 1e-6
    assert abs(sum(LECTURE_IN[h, w].item() * wt for (h, w), wt in src) - out[1, 1].item()) < 1e-6


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       scale=st.integers(1, 4), mode=st.sampled_from(["nearest", "bed_of_nails", "bilinear"]),
       seed=st.integers(0, 2**16))
def test_equals_torch_random(n, c, h, w, scale, mode, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    out, tr = unpool(x, mode, scale)
    ref = reference_unpool(x, mode, scale)
    assert out.shape == ref.shape == (n, c, h * scale, w * scale)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


def test_nearest_bilinear_equal_interpolate_directly():
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(unpool(x, "nearest", 3)[0], F.interpolate(x, scale_factor=3, mode="nearest"),
                               atol=0, rtol=0)
    torch.testing.assert_close(unpool(x, "bilinear", 2)[0],
                               F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                               atol=1e-6, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), ho=st.integers(1, 20), wo=st.integers(1, 20),
       mode=st.sampled_from(["nearest", "bilinear"]), seed=st.integers(0, 2**16))
def test_output_size_equals_interpolate(h, w, ho, wo, mode, seed):
    x = torch.randn(1, 2, h, w, generator=torch.Generator().manual_seed(seed))
    ref = F.interpolate(x, size=(ho, wo), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    torch.testing.assert_close(unpool(x, mode, output_size=(ho, wo))[0], ref, atol=1e-6, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_max_pool_and_unpool_equal_torch(h, w, k, seed):
    if h < k or w < k:
        with pytest.raises(ValueError):
            max_pool_with_switches(torch.zeros(h, w), k)
        return
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    p, i = max_pool_with_switches(x, k)
    p_ref, i_ref = F.max_pool2d(x, k, return_indices=True)
    assert torch.equal(p, p_ref) and torch.equal(i, i_ref)
    out, tr = unpool(p, "max", k, indices=i, output_size=(h, w))
    assert torch.equal(out, F.max_unpool2d(p_ref, i_ref, k, output_size=(h, w)))
    # every non-zero output is at a switch position
    assert tr.indices is not None and torch.equal(tr.indices, i)


def test_ties_go_to_first_like_torch():
    x = torch.ones(1, 1, 4, 4)
    assert torch.equal(max_pool_with_switches(x)[1], F.max_pool2d(x, 2, return_indices=True)[1])


def test_keeps_rank_and_accepts_numpy():
    import numpy as np
    out, _ = unpool(np.array([[1, 2], [3, 4]]), "nearest")
    assert out.shape == (4, 4) and out.dtype == torch.float32
    out, _ = unpool(torch.zeros(3, 2, 2), "bilinear", 3)
    assert out.shape == (3, 6, 6)


@pytest.mark.parametrize("kwargs, msg", [
    ({"mode": "cubic"}, "mode must be one of"),
    ({"mode": "max"}, "needs the indices"),
    ({"mode": "nearest", "scale": 0}, "scale must be at least 1"),
    ({"mode": "max", "indices": torch.tensor([[0, 1], [2, 99]])}, "outside"),
    ({"mode": "max", "indices": torch.tensor([[0, 1, 2]])}, "shape"),
])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        unpool(LECTURE_IN, **kwargs)


def test_bad_rank():
    with pytest.raises(ValueError, match="must be"):
        unpool(torch.zeros(5), "nearest")


def test_modes_listed():
    assert set(UNPOOL_MODES) == {"nearest", "bed_of_nails", "max", "bilinear"}
