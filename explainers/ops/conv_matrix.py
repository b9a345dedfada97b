"""Convolution as a matrix, and transposed convolution as its transpose.

A (single-channel, cross-correlation) convolution is linear in its input, so
it is a matrix ``X``: ``y = X @ x.flatten()``.  Row ``o`` of ``X`` holds the
kernel placed where output ``o`` reads the input; entries that fall on the
zero padding are dropped.  The transposed convolution is ``X.T @ y``: every
input element scales a copy of the kernel placed in the output, and where
copies overlap they add up.

Size limits (``explainers/ops/_checks.py``): the matrix has
``prod(output_shape) * prod(input_shape)`` entries and the table of kernel
taps ``prod(output_shape) * prod(kernel_shape)``; each may not exceed
``MAX_ELEMENTS`` (a 64x64 input with a 3x3 kernel gives a 3844 x 4096 matrix,
fine; 300x300 would need 8 billion entries).  The symbolic matrix of
``conv_matrix_labels`` (Python strings) is limited to ``MAX_LABELS`` entries.
A larger call raises ``ValueError`` before allocating.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ._checks import (MAX_ELEMENTS, MAX_LABELS, as_tensor, check_size, non_negative, pair, positive, prod,
                      shape_tuple)


def _geometry(kernel: torch.Tensor, input_shape, stride, padding):
    if kernel.dim() not in (1, 2) or kernel.numel() == 0:
        raise ValueError(f"kernel must be 1D (k,) or 2D (kh, kw), got shape {tuple(kernel.shape)}")
    nd = kernel.dim()
    shape = shape_tuple(input_shape, "input_shape")
    if len(shape) != nd:
        raise ValueError(f"a {nd}D kernel needs a {nd}D input_shape, got {shape}")
    if nd == 1:
        s = (positive(pair(stride, "stride")[0], "stride"),)
        p = (non_negative(pair(padding, "padding")[0], "padding"),)
    else:
        s = tuple(positive(v, "stride") for v in pair(stride, "stride"))
        p = tuple(non_negative(v, "padding") for v in pair(padding, "padding"))
    ks = tuple(kernel.shape)
    out = []
    for n, k, st, pd in zip(shape, ks, s, p):
        if k > n + 2 * pd:
            raise ValueError(
                f"the kernel ({k}) is larger than the padded input ({n} + 2*{pd} = {n + 2 * pd}): "
                "the convolution has no output; use a smaller kernel or more padding")
        out.append((n + 2 * pd - k) // st + 1)
    return shape, ks, s, p, tuple(out)


def output_shape(kernel_shape: Sequence[int], input_shape, stride=1, padding=0) -> tuple[int, ...]:
    """Output size of the convolution: ``floor((n + 2p - k) / s) + 1`` per axis."""
    kernel = torch.zeros(()).expand(tuple(kernel_shape))   # a shape only: nothing is allocated
    return _geometry(kernel, input_shape, stride, padding)[4]


def _check_matrix(input_shape, kernel_shape, out_shape, limit=MAX_ELEMENTS, what="the convolution matrix") -> None:
    """``ValueError`` if the matrix or the table of kernel taps would be too big."""
    rows, cols = prod(out_shape), prod(input_shape)
    check_size(rows * cols, limit, f"{what} for input_shape {tuple(input_shape)} ({rows:,} x {cols:,})",
               "use a smaller input_shape (it is meant for small examples) or a larger stride")
    check_size(rows * prod(kernel_shape), MAX_ELEMENTS,
               f"the table of kernel taps ({rows:,} outputs x {prod(kernel_shape):,} taps)",
               "use a smaller kernel, input_shape or padding")


def _tap_positions(input_shape, kernel_shape, stride, padding, out_shape):
    """For every (output cell, kernel tap): flat output index, flat input index, tap index, valid."""
    axes_in, axes_tap = [], []
    for n, k, s, p, o in zip(input_shape, kernel_shape, stride, padding, out_shape):
        oo = torch.arange(o)[:, None]
        tt = torch.arange(k)[None, :]
        axes_in.append(oo * s - p + tt)           # (o, k) input coordinate
        axes_tap.append(tt.expand(o, k))
    if len(input_shape) == 1:
        pos, tap = axes_in[0], axes_tap[0]         # (o, k)
        valid = (pos >= 0) & (pos < input_shape[0])
        rows = torch.arange(out_shape[0])[:, None].expand_as(pos)
        return rows.reshape(-1), pos.reshape(-1), tap.reshape(-1), valid.reshape(-1)
    (H, W), (kh, kw), (Ho, Wo) = input_shape, kernel_shape, out_shape
    ih = axes_in[0][:, None, :, None]              # (Ho, 1, kh, 1)
    iw = axes_in[1][None, :, None, :]              # (1, Wo, 1, kw)
    valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    pos = ih * W + iw
    tap = axes_tap[0][:, None, :, None] * kw + axes_tap[1][None, :, None, :]
    rows = (torch.arange(Ho)[:, None] * Wo + torch.arange(Wo)[None, :])[:, :, None, None]
    shape = (Ho, Wo, kh, kw)
    return (rows.expand(shape).reshape(-1), pos.expand(shape).reshape(-1),
            tap.expand(shape).reshape(-1), valid.expand(shape).reshape(-1))


def conv_matrix(kernel, input_shape, stride=1, padding=0) -> torch.Tensor:
    """The dense matrix ``X`` of a convolution.

    Args:
        kernel: ``(k,)`` or ``(kh, kw)``.
        input_shape: ``(L,)`` or ``(H, W)``.
        stride, padding: ints (or pairs for 2D), as in ``F.conv1d`` / ``F.conv2d``.

    Returns:
        ``X`` of shape ``(prod(output_shape), prod(input_shape))`` with
        ``X @ x.flatten() == F.conv2d(x[None, None], kernel[None, None], stride=stride,
        padding=padding).flatten()`` (``conv1d`` for 1D).

    Raises:
        ValueError: for bad arguments, or if ``X`` (or the table of kernel taps)
            would have more than ``MAX_ELEMENTS`` entries.
    """
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    shape, ks, s, p, out = _geometry(k, input_shape, stride, padding)
    _check_matrix(shape, ks, out)
    rows, cols, taps, valid = _tap_positions(shape, ks, s, p, out)
    X = torch.zeros(int(torch.tensor(out).prod()), int(torch.tensor(shape).prod()), dtype=k.dtype)
    X[rows[valid], cols[valid]] = k.reshape(-1)[taps[valid]]
    return X


def conv_matrix_labels(kernel_labels, input_shape, stride=1, padding=0, padded: bool = False,
                       zero: str = "0") -> list[list[str]]:
    """The convolution matrix with symbolic entries, for display.

    ``kernel_labels`` is a list (1D) or list of lists (2D) of strings, e.g.
    ``["x", "y", "z"]``.  With ``padded=True`` the columns are those of the
    *padded* input, as on the lecture slide: kernel ``(x, y, z)``, input 4,
    stride 2, padding 1 gives ``[["x","y","z","0","0","0"], ["0","0","x","y","z","0"]]``
    (columns ``0, a, b, c, d, 0``).  Without it the padding columns are dropped,
    which is the matrix ``conv_matrix`` computes.  At most ``MAX_LABELS``
    entries (``ValueError`` beyond).
    """
    labels = kernel_labels
    nd = 2 if labels and isinstance(labels[0], (list, tuple)) else 1
    flat = [l for row in labels for l in row] if nd == 2 else list(labels)
    ids = torch.arange(1, len(flat) + 1, dtype=torch.float64)
    ids = ids.reshape(len(labels), len(labels[0])) if nd == 2 else ids
    if padded:
        pads = pair(padding, "padding") if nd == 2 else (pair(padding, "padding")[0],)
        shape = tuple(n + 2 * pd for n, pd in zip(shape_tuple(input_shape, "input_shape"), pads))
        padding = 0
    else:
        shape = input_shape
    geometry = _geometry(ids, shape, stride, padding)
    _check_matrix(geometry[0], geometry[1], geometry[4], MAX_LABELS, "the symbolic matrix")
    X = conv_matrix(ids, shape, stride, padding)
    return [[flat[int(v) - 1] if v > 0 else zero for v in row] for row in X.tolist()]


def symbolic_matvec(matrix_labels: list[list[str]], vector_labels: Sequence[str], zero: str = "0") -> list[str]:
    """``M @ v`` written out: ``[["x","y","z","0"]] @ ["0","a","b","c"] -> ["ay+bz"]``.

    Each term is written vector label first ("ay", "bz"), as on the slides;
    terms with a ``zero`` on either side are dropped, an empty sum is ``zero``.
    """
    if any(len(row) != len(vector_labels) for row in matrix_labels):
        raise ValueError("the matrix has as many columns as the vector has entries")
    out = []
    for row in matrix_labels:
        terms = [v + m for m, v in zip(row, vector_labels) if m != zero and v != zero]
        out.append("+".join(terms) if terms else zero)
    return out


def transpose_labels(matrix_labels: list[list[str]]) -> list[list[str]]:
    return [list(col) for col in zip(*matrix_labels)]


@dataclass
class ConvTransposeTrace:
    """The transposed convolution ``X.T @ y``, one input element at a time.

    Attributes:
        matrix: ``X``, ``(prod(y_shape), prod(out_shape))``.
        y: the input of the transposed convolution, shape ``y_shape``.
        contributions: ``(prod(y_shape),) + out_shape``; entry ``k`` is
            ``y[k] * X[k]``, a copy of the kernel scaled by ``y[k]`` placed in
            the output.  Their sum is the output.
        partial_sums: running sums of ``contributions`` (step ``k`` = after
            adding copies ``0..k``); the last one is the output.
        output: ``out_shape``, the transposed convolution's result (``X.T @ y`` reshaped).
        output_padding: what ``F.conv_transpose*d`` needs to give the same shape.
    """

    matrix: torch.Tensor
    y: torch.Tensor
    contributions: torch.Tensor
    partial_sums: torch.Tensor
    output: torch.Tensor
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]


def conv_transpose_via_matrix(y, kernel, input_shape, stride=1, padding=0) -> tuple[torch.Tensor, ConvTransposeTrace]:
    """Transposed convolution computed as ``X.T @ y``.

    ``X = conv_matrix(kernel, input_shape, stride, padding)`` maps an input of
    ``input_shape`` to an output of shape ``o``; ``y`` must have shape ``o``
    and the result has ``input_shape``.  It equals
    ``F.conv_transpose1d/2d(y, kernel, stride, padding, output_padding=op)`` with
    ``op = (n + 2 * padding - k) % stride`` per axis: the rows of the input
    that the strided convolution skipped at the end, which the transposed
    convolution cannot know about unless told.

    Returns:
        ``(output, trace)``; see :class:`ConvTransposeTrace`.

    Raises:
        ValueError: for bad arguments, or if the matrix (and so each of the
            trace's ``contributions`` and ``partial_sums``) would have more than
            ``MAX_ELEMENTS`` entries.
    """
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    shape, ks, s, p, out = _geometry(k, input_shape, stride, padding)
    yt = as_tensor(y, "y").to(k.dtype)
    if tuple(yt.shape) != out:
        raise ValueError(f"y must have the convolution's output shape {out}, got {tuple(yt.shape)}")
    _check_matrix(shape, ks, out, what="the matrix (and each of the contributions and partial sums)")
    X = conv_matrix(k, shape, s, p)
    yf = yt.reshape(-1)
    contributions = (yf[:, None] * X).reshape((yf.numel(),) + shape)
    partial = contributions.cumsum(0)
    output = (X.T @ yf).reshape(shape)
    op = tuple((n + 2 * pd - kk) % st for n, kk, st, pd in zip(shape, ks, s, p))
    return output, ConvTransposeTrace(X, yt, contributions, partial, output, s, p, op)


# ----------------------------------------------------------------------------- the slides' pictures
def _axes(kernel: torch.Tensor, shape, stride, padding, output_padding=0):
    """Per-axis tuples ``(shape, kernel_shape, stride, padding, output_padding)`` for a 1D or 2D kernel."""
    if kernel.dim() not in (1, 2) or kernel.numel() == 0:
        raise ValueError(f"kernel must be 1D (k,) or 2D (kh, kw), got shape {tuple(kernel.shape)}")
    nd = kernel.dim()
    shape = tuple(shape)
    if len(shape) != nd:
        raise ValueError(f"a {nd}D kernel needs a {nd}D input, got shape {shape}")

    def per_axis(v, name):
        return pair(v, name)[:nd] if nd == 2 else (pair(v, name)[0],)

    s = tuple(positive(v, "stride") for v in per_axis(stride, "stride"))
    p = tuple(non_negative(v, "padding") for v in per_axis(padding, "padding"))
    op = tuple(non_negative(v, "output_padding") for v in per_axis(output_padding, "output_padding"))
    return shape, tuple(kernel.shape), s, p, op


def flip_kernel(kernel) -> torch.Tensor:
    """The kernel rotated by 180 degrees (reversed along every axis)."""
    k = as_tensor(kernel, "kernel")
    return torch.flip(k, dims=tuple(range(k.dim())))


def flip_labels(labels):
    """:func:`flip_kernel` for a list (1D) or list of lists (2D) of names."""
    if labels and isinstance(labels[0], (list, tuple)):
        return [list(reversed(row)) for row in reversed(labels)]
    return list(reversed(labels))


def conv_transpose_output_shape(kernel_shape, input_shape, stride=1, padding=0, output_padding=0) -> tuple[int, ...]:
    """``(n - 1) * s - 2p + k + output_padding`` per axis, as in ``F.conv_transpose1d/2d``.

    Raises ``ValueError`` (a sentence) when ``output_padding >= stride`` (torch refuses it
    too: the extra rows would belong to the next copy) or when the padding crops everything."""
    k = torch.zeros(()).expand(tuple(kernel_shape))
    shape, ks, s, p, op = _axes(k, shape_tuple(input_shape, "input_shape"), stride, padding, output_padding)
    out = []
    for n, kk, st, pd, o in zip(shape, ks, s, p, op):
        if o >= st:
            raise ValueError(f"output_padding ({o}) must be smaller than the stride ({st}): it only adds the "
                             "rows a strided convolution could have skipped at the end")
        size = (n - 1) * st - 2 * pd + kk + o
        if size < 1:
            full = (n - 1) * st + kk + o
            raise ValueError(f"the padding ({pd}) crops the whole output ({full} {'cell' if full == 1 else 'cells'} "
                             "before cropping): use less padding or a larger input")
        out.append(size)
    return tuple(out)


@dataclass
class TransposedCanvasTrace:
    """The transposed convolution as the slide draws it: every input cell scales a copy of the
    kernel, the copies move ``stride`` cells per input cell on a *canvas* and add up where they
    overlap; the output is the canvas without ``padding`` cells on each side.

    Attributes (``n``: input shape, ``N``: output shape, ``L = N + 2 * padding`` per axis, the
    canvas, ``= (n - 1) * stride + k + output_padding``):
        y: the input ``n``.
        kernel: ``k`` (as used: flip it first with :func:`flip_kernel` to see the other convention).
        matrix: ``X``, ``(prod(n), prod(N))``: the convolution ``N -> n`` (stride, padding) whose
            transpose this is; ``output.flatten() == X.T @ y.flatten()``.
        canvas_matrix: ``X`` over the padded input, ``(prod(n), prod(L))`` (the slide's
            ``[[x,y,z,0,0,0],[0,0,x,y,z,0]]`` over ``(0,a,b,c,d,0)``).
        contributions: ``(prod(n),) + L``: entry ``j`` is ``y[j]`` times the kernel placed at
            ``stride * j`` on the canvas.
        partial_sums: running sums of ``contributions``; the last one is ``canvas``.
        canvas: ``L``; ``output = canvas[padding : padding + N]`` per axis.
        output: ``N``.
    """

    y: torch.Tensor
    kernel: torch.Tensor
    matrix: torch.Tensor
    canvas_matrix: torch.Tensor
    contributions: torch.Tensor
    partial_sums: torch.Tensor
    canvas: torch.Tensor
    output: torch.Tensor
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]


def conv_transpose_canvas(y, kernel, stride=1, padding=0, output_padding=0) -> tuple[torch.Tensor, TransposedCanvasTrace]:
    """``F.conv_transpose1d/2d(y, kernel, stride, padding, output_padding)`` (one channel) drawn as
    copies of the kernel on a canvas, computed as ``X.T @ y`` (:func:`conv_transpose_via_matrix`).

    Size limits as :func:`conv_matrix` (``MAX_ELEMENTS`` for the canvas matrix and each of the
    ``contributions``). Returns ``(output, trace)``; see :class:`TransposedCanvasTrace`."""
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    yt = as_tensor(y, "y").to(k.dtype)
    N = conv_transpose_output_shape(tuple(k.shape), tuple(yt.shape), stride, padding, output_padding)
    _, ks, s, p, op = _axes(k, tuple(yt.shape), stride, padding, output_padding)
    L = tuple(n + 2 * pd for n, pd in zip(N, p))
    _, tr = conv_transpose_via_matrix(yt, k, L, s, 0)
    crop = tuple(slice(pd, pd + n) for pd, n in zip(p, N))
    output = tr.output[crop]
    X = conv_matrix(k, N, s, p)
    return output, TransposedCanvasTrace(yt, k, X, tr.matrix, tr.contributions, tr.partial_sums, tr.output,
                                         output, s, p, op)


def zero_stuffed(y, kernel_shape, stride=1, padding=0, output_padding=0) -> torch.Tensor:
    """``y`` with ``stride - 1`` zeros between its cells and ``k - 1 - padding`` zeros around it
    (``+ output_padding`` at the end; a negative amount crops): a stride-1 convolution of this
    with the *flipped* kernel is the transposed convolution (the other way to compute it)."""
    yt = as_tensor(y, "y")
    N = conv_transpose_output_shape(kernel_shape, tuple(yt.shape), stride, padding, output_padding)
    _, ks, s, p, op = _axes(torch.zeros(()).expand(tuple(kernel_shape)), tuple(yt.shape), stride, padding,
                            output_padding)
    full = tuple((n - 1) * st + 1 + 2 * (kk - 1) + o for n, st, kk, o in zip(yt.shape, s, ks, op))
    check_size(prod(full), MAX_ELEMENTS, f"the zero-stuffed input ({'x'.join(map(str, full))})",
               "use a smaller input or stride")
    out = torch.zeros(full, dtype=yt.dtype if yt.is_floating_point() else torch.float32)
    idx = tuple(slice(kk - 1, kk - 1 + (n - 1) * st + 1, st) for n, st, kk in zip(yt.shape, s, ks))
    out[idx] = yt
    crop = tuple(slice(pd, pd + n + kk - 1) for pd, n, kk in zip(p, N, ks))
    return out[crop]


@dataclass
class StridedConvTrace:
    """A strided convolution ("learnable downsampling") one output pixel at a time: the filter
    moves ``stride`` pixels in the input for each pixel of the output.

    Attributes (``n``: input shape, ``o``: output shape, ``k``: kernel shape):
        x: the input ``n``; padded: ``n + 2 * padding``, ``x`` with ``padding`` zeros around it.
        kernel: ``k``.
        matrix: ``X``, ``(prod(o), prod(n))``; ``output.flatten() == X @ x.flatten()``.
        windows: ``(prod(o), ndim)`` top-left corner of each output pixel's window in ``padded``
            (``stride * output index``).
        products: ``(prod(o),) + k``: kernel times the window, whose sum is that output pixel.
        output: ``o``.
    """

    x: torch.Tensor
    padded: torch.Tensor
    kernel: torch.Tensor
    matrix: torch.Tensor
    windows: torch.Tensor
    products: torch.Tensor
    output: torch.Tensor
    stride: tuple[int, ...]
    padding: tuple[int, ...]


def strided_conv(x, kernel, stride=1, padding=0) -> tuple[torch.Tensor, StridedConvTrace]:
    """``F.conv1d/2d(x, kernel, stride, padding)`` (one channel) as ``X @ x`` with each output
    pixel's window; sizes as :func:`conv_matrix`. Returns ``(output, trace)``."""
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    xt = as_tensor(x, "x").to(k.dtype)
    shape, ks, s, p, out = _geometry(k, tuple(xt.shape), stride, padding)
    X = conv_matrix(k, shape, s, p)
    output = (X @ xt.reshape(-1)).reshape(out)
    padded = torch.zeros(tuple(n + 2 * pd for n, pd in zip(shape, p)), dtype=k.dtype)
    padded[tuple(slice(pd, pd + n) for pd, n in zip(p, shape))] = xt
    grids = torch.meshgrid(*[torch.arange(o) * st for o, st in zip(out, s)], indexing="ij")
    windows = torch.stack([g.reshape(-1) for g in grids], dim=1)
    products = torch.stack([k * padded[tuple(slice(int(c), int(c) + kk) for c, kk in zip(w, ks))]
                            for w in windows])
    return output, StridedConvTrace(xt, padded, k, X, windows, products, output, s, p)
