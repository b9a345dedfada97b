import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from explainers.ops import (conv_matrix, conv_matrix_labels, conv_transpose_via_matrix, output_shape,
                            symbolic_matvec, transpose_labels)


def test_lecture_1d_symbolic_padded():
    X = conv_matrix_labels(["x", "y", "z"], 4, stride=2, padding=1, padded=True)
    assert X == [["x", "y", "z", "0", "0", "0"], ["0", "0", "x", "y", "z", "0"]]
    assert symbolic_matvec(X, ["0", "a", "b", "c", "d", "0"]) == ["ay+bz", "bx+cy+dz"]


def test_lecture_1d_symbolic_unpadded_matches_numeric():
    X = conv_matrix_labels(["x", "y", "z"], 4, stride=2, padding=1)
    assert X == [["y", "z", "0", "0"], ["0", "x", "y", "z"]]
    num = conv_matrix(torch.tensor([10.0, 20.0, 30.0]), (4,), 2, 1)
    assert num.tolist() == [[20, 30, 0, 0], [0, 10, 20, 30]]


def test_lecture_transpose_example():
    X = conv_matrix_labels(["x", "y", "z"], 6, stride=2, padding=0)
    assert symbolic_matvec(transpose_labels(X), ["a", "b"]) == ["ax", "ay", "az+bx", "by", "bz", "0"]
    out, tr = conv_transpose_via_matrix(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 10.0, 100.0]), (6,), 2, 0)
    # a=2, b=3, x=1, y=10, z=100: [ax, ay, az+bx, by, bz, 0]
    assert out.tolist() == [2, 20, 203, 30, 300, 0]
    assert tr.contributions.tolist() == [[2, 20, 200, 0, 0, 0], [0, 0, 3, 30, 300, 0]]
    assert tr.partial_sums[-1].tolist() == out.tolist()
    assert tr.output_padding == (1,)


def test_lecture_2d_shapes():
    k = torch.randn(3, 3)
    assert output_shape((3, 3), (4, 4), 1, 1) == (4, 4)
    assert output_shape((3, 3), (4, 4), 2, 1) == (2, 2)
    y = torch.randn(2, 2)
    out, _ = conv_transpose_via_matrix(y, k, (4, 4), 2, 1)
    assert out.shape == (4, 4)
    ref = F.conv_transpose2d(y[None, None], k[None, None], stride=2, padding=1, output_padding=1)[0, 0]
    torch.testing.assert_close(out, ref)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 9), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_1d_equals_conv1d_and_transpose(n, k, s, p, seed):
    g = torch.Generator().manual_seed(seed)
    kern = torch.randn(k, generator=g)
    if k > n + 2 * p:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv_matrix(kern, (n,), s, p)
        return
    x = torch.randn(n, generator=g)
    X = conv_matrix(kern, (n,), s, p)
    ref = F.conv1d(x[None, None], kern[None, None], stride=s, padding=p)[0, 0]
    torch.testing.assert_close(X @ x, ref, atol=1e-5, rtol=1e-5)
    y = torch.randn(ref.shape, generator=g)
    out, tr = conv_transpose_via_matrix(y, kern, (n,), s, p)
    ref_t = F.conv_transpose1d(y[None, None], kern[None, None], stride=s, padding=p,
                               output_padding=tr.output_padding)[0, 0]
    assert out.shape == (n,)
    torch.testing.assert_close(out, ref_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tr.contributions.sum(0), out, atol=1e-5, rtol=1e-5)


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 8), w=st.integers(1, 8), kh=st.integers(1, 4), kw=st.integers(1, 4),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)), p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       seed=st.integers(0, 2**16))
def test_2d_equals_conv2d_and_transpose(h, w, kh, kw, s, p, seed):
    g = torch.Generator().manual_seed(seed)
    kern = torch.randn(kh, kw, generator=g)
    if kh > h + 2 * p[0] or kw > w + 2 * p[1]:
        with pytest.raises(ValueError):
            conv_matrix(kern, (h, w), s, p)
        return
    x = torch.randn(h, w, generator=g)
    X = conv_matrix(kern, (h, w), s, p)
    ref = F.conv2d(x[None, None], kern[None, None], stride=s, padding=p)[0, 0]
    torch.testing.assert_close(X @ x.flatten(), ref.flatten(), atol=1e-5, rtol=1e-5)
    y = torch.randn(ref.shape, generator=g)
    out, tr = conv_transpose_via_matrix(y, kern, (h, w), s, p)
    ref_t = F.conv_transpose2d(y[None, None], kern[None, None], stride=s, padding=p,
                               output_padding=tr.output_padding)[0, 0]
    torch.testing.assert_close(out, ref_t, atol=1e-5, rtol=1e-5)
    assert tr.contributions.shape == (y.numel(), h, w)


def test_symbolic_2d_matches_numeric():
    labels = [["a", "b"], ["c", "d"]]
    L = conv_matrix_labels(labels, (3, 3), 1, 0)
    X = conv_matrix(torch.tensor([[1.0, 2], [3, 4]]), (3, 3))
    names = {1: "a", 2: "b", 3: "c", 4: "d", 0: "0"}
    assert L == [[names[int(v)] for v in row] for row in X.tolist()]


@pytest.mark.parametrize("kwargs, msg", [
    ({"stride": 0}, "stride must be at least 1"),
    ({"padding": -1}, "padding must be 0 or more"),
    ({"input_shape": (2,)}, "larger than the padded input"),
    ({"input_shape": (4, 4)}, "needs a 1D input_shape"),
    ({"stride": 1.5}, "integer"),
])
def test_bad_arguments(kwargs, msg):
    args = {"kernel": torch.ones(3), "input_shape": (4,), "stride": 1, "padding": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        conv_matrix(**args)


def test_transpose_wrong_y_shape():
    with pytest.raises(ValueError, match="output shape"):
        conv_transpose_via_matrix(torch.ones(3), torch.ones(3), (4,), 2, 1)
