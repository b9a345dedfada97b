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
