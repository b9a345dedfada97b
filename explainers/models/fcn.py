"""SegNet as a fully convolutional network: every stage's tensor on one image, the pooling
switches and where unpooling uses them, and the receptive field of each stage's cells.

* :func:`segnet_layers` - the network's geometry as :class:`explainers.ops.receptive_field.Layer`
  rows, read off the module (kernel, stride, padding, dilation of each convolution and pooling).
* :func:`capture_stages` - one forward pass of the live SegNet with forward hooks on each stage
  module: :class:`FCNCapture` (tensors on the CPU, batch dimension dropped).
* :func:`pixel_path` - for an output pixel: the corresponding cell of every stage, its feature
  vector and its receptive field box on the image.
* :func:`autograd_field` - the input pixels whose gradient of one output score is non-zero, on the
  real network (the image and a few random images).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..ops._checks import MAX_PIXELS, check_size
from ..ops.receptive_field import FieldLayer, Layer, receptive_fields
from .images import load_image
from .nets import SegNet

#: the stages in the order the network runs them: (name, what it is, the SegNet module)
STAGES = (
    ("input", "input image (padded to a multiple of 8)", None),
    ("enc1", "encoder 1: two 3x3 convs", "enc1"),
    ("pool1", "max pool 1 (2x2, keeps switches)", "pool1"),
    ("enc2", "encoder 2: two 3x3 convs", "enc2"),
    ("pool2", "max pool 2 (2x2, keeps switches)", "pool2"),
    ("enc3", "encoder 3: two 3x3 convs", "enc3"),
    ("pool3", "max pool 3 (2x2, keeps switches)", "pool3"),
    ("bottleneck", "two dilated 3x3 convs (dilation 2, then 4)", "bottleneck"),
    ("unpool3", "max unpool 3 (pool 3's switches)", "unpool3"),
    ("dec3", "decoder 3: 3x3 conv", "dec3"),
    ("unpool2", "max unpool 2 (pool 2's switches)", "unpool2"),
    ("dec2", "decoder 2: 3x3 conv", "dec2"),
    ("up1", "learned upsampling: 3x3 transposed conv, stride 2", "up1"),
    ("dec1", "decoder 1: 3x3 conv on [up1, enc1] (skip)", "dec1"),
    ("scores", "1x1 classifier: class scores", "classifier"),
)
#: each unpooling stage and the pooling stage whose switches it uses
SWITCHES = {"unpool3": "pool3", "unpool2": "pool2"}


def _conv(name: str, m: nn.Conv2d, inputs=()) -> Layer:
    k, s, p, d = (int(v[0]) if isinstance(v, tuple) else int(v) for v in (m.kernel_size, m.stride, m.padding,
                                                                          m.dilation))
    return Layer(name, "conv", m.out_channels, k, s, p, d, inputs=tuple(inputs))


def _block_convs(prefix: str, seq: nn.Module) -> list[Layer]:
    convs = [(n, m) for n, m in seq.named_modules() if isinstance(m, nn.Conv2d)]
    rows = [_conv(f"{prefix}.{n}", m) for n, m in convs]
    last = rows[-1]
    rows[-1] = Layer(prefix, **{k: getattr(last, k) for k in last.__dataclass_fields__ if k != "name"})
    return rows


def segnet_layers(module: SegNet, height: int, width: int) -> list[Layer]:
    """SegNet's layers for an ``height x width`` image, in the order ``SegNet.forward`` runs them.

    Each stage of :data:`STAGES` is the layer of the same name (a block of two convolutions is
    ``enc1.0.0``, then ``enc1``). Batch norm and ReLU do not move anything and are left out.
    """
    ph, pw = (-height) % 8, (-width) % 8
    rows = [Layer("padded", "pad", pad=(ph, pw))]
    rows += _block_convs("enc1", module.enc1)
    pool = lambda name, m: Layer(name, "pool", 0, int(m.kernel_size), int(m.stride), int(m.padding))
    rows.append(pool("pool1", module.pool1))
    rows += _block_convs("enc2", module.enc2)
    rows.append(pool("pool2", module.pool2))
    rows += _block_convs("enc3", module.enc3)
    rows.append(pool("pool3", module.pool3))
    rows += _block_convs("bottleneck", module.bottleneck)
    for name, m, like, sw in (("unpool3", module.unpool3, "enc3", "dec3"), ("unpool2", module.unpool2, "enc2", "dec2")):
        rows.append(Layer(name, "unpool", 0, int(m.kernel_size[0]), int(m.stride[0]), int(m.padding[0]), size_of=like))
        rows += _block_convs(sw, getattr(module, sw))
    up = module.up1
    rows.append(Layer("up1", "conv_transpose", up.out_channels, up.kernel_size[0], up.stride[0], up.padding[0],
                      up.dilation[0], up.output_padding[0]))
    rows.append(Layer("skip", "concat", inputs=("up1", "enc1")))
    rows += _block_convs("dec1", module.dec1)
    rows.append(_conv("scores", module.classifier))
    rows.append(Layer("output", "crop", crop=(height, width)))
    return rows


def segnet_fields(module: SegNet, height: int, width: int) -> dict[str, FieldLayer]:
    """:func:`receptive_fields` of SegNet on an ``height x width`` image, by layer name."""
    return {f.name: f for f in receptive_fields(segnet_layers(module, height, width), (3, height, width))}


@dataclass
class FCNCapture:
    """One forward pass of SegNet, every stage's output as the network computed it.

    Attributes:
        image: ``(3, H, W)`` the image in [0, 1].
        stages: stage name -> ``(C, h, w)`` output of that stage (``"input"``: the padded image;
            ``"scores"``: the classifier's ``(K, Hp, Wp)`` output before the crop to ``H x W``).
        switches: pooling stage name -> ``(C, h, w)`` int64 flat indices into the pooled map
            (``h * W_in + w``), as ``nn.MaxPool2d(return_indices=True)`` returned them.
        unpool_inputs: unpooling stage name -> ``(values (C, h, w), switches (C, h, w),
            output_size (H, W))`` exactly as the unpooling module received them.
        logits: ``(K, H, W)`` the model's own output (what ``Segmenter`` returns).
        fields: layer name -> :class:`FieldLayer` (shapes and receptive fields).
        classes: the class names.
    """

    image: torch.Tensor
    stages: dict
    switches: dict
    unpool_inputs: dict
    logits: torch.Tensor
    fields: dict
    classes: list

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])


def _segnet(model, what: str):
    from . import get
    from .live import Segmenter

    model = model or get("segmentation", "shapes")
    if not isinstance(model, Segmenter) or not isinstance(model.module, SegNet):
        raise ValueError(f"{what} needs the shapes SegNet (an encoder-decoder with pooling switches); "
                         "this model is not one")
    return model


def capture_stages(model, image, what: str = "the FCN page") -> FCNCapture:
    """Run the live SegNet (``model`` None: the bundled one) once on ``image`` with forward hooks
    on every stage module; the model's own logits come from its ``Segmenter`` call."""
    model = _segnet(model, what)
    img = load_image(image)
    H, W = img.tensor.shape[-2:]
    check_size(H * W, MAX_PIXELS, f"a {W}x{H} image", "use a smaller image", unit="pixels")
    net = model.module
    got: dict = {}
    handles = []
    for name, _, mod in STAGES:
        if mod is None:
            continue
        handles.append(getattr(net, mod).register_forward_hook(
            lambda m, inp, out, name=name: got.__setitem__(name, out)))
    for name in SWITCHES:
        handles.append(getattr(net, name).register_forward_hook(
            lambda m, inp, out, name=name: got.__setitem__(name + ":in", (inp[0], inp[1], tuple(inp[2])))))
    handles.append(net.normalize.register_forward_hook(lambda m, inp, out: got.__setitem__("input", inp[0])))
    try:
        with torch.no_grad():                       # plain tensors (a student may edit them), no graph
            net(img.tensor.to(model.device)[None])
    finally:
        for h in handles:
            h.remove()
    cpu = lambda t: t.detach().cpu()[0]
    stages, switches = {}, {}
    for name, _, _ in STAGES:
        out = got[name]
        if isinstance(out, tuple):                 # a pooling: (values, switches)
            stages[name], switches[name] = cpu(out[0]), cpu(out[1])
        else:
            stages[name] = cpu(out)
    unpool_inputs = {n: (cpu(got[n + ":in"][0]), cpu(got[n + ":in"][1]), tuple(int(v) for v in got[n + ":in"][2]))
                     for n in SWITCHES}
    logits = model.trace(img.tensor).logits         # the model's own run, through Segmenter
    return FCNCapture(img.tensor, stages, switches, unpool_inputs, logits, segnet_fields(net, H, W),
                      list(model.classes))


@dataclass
class StagePoint:
    """One stage seen from an output pixel.

    ``name``; ``cell``: ``(row, col)`` of the stage's map under the pixel; ``vector``: ``(C,)``
    its feature vector there; ``box``: ``(x1, y1, x2, y2)`` the receptive field of that cell on
    the image (ends exclusive, cut at the border); ``shape``: ``(C, h, w)``."""

    name: str
    cell: tuple[int, int]
    vector: torch.Tensor
    box: tuple[int, int, int, int]
    shape: tuple[int, int, int]


def pixel_path(cap: FCNCapture, row: int, col: int) -> list[StagePoint]:
    """For image pixel ``(row, col)``: each stage's cell under it, its feature vector and field."""
    H, W = cap.size
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"pixel ({row}, {col}) is outside the {H}x{W} image; rows go 0..{H - 1}, "
                         f"columns 0..{W - 1}")
    out = []
    for name, _, _ in STAGES:
        f = cap.fields["padded" if name == "input" else name]
        r, c = f.cell_of(row, col)
        out.append(StagePoint(name, (r, c), cap.stages[name][:, r, c], f.box(r, c), tuple(cap.stages[name].shape)))
    return out


#: the autograd check runs on a window around the pixel's field, this many pixels wider on each side
AUTOGRAD_MARGIN = 64
#: SegNet's total stride (three 2x2 poolings): a window's corner on a multiple of it pools the same
SEGNET_STRIDE = 8


def autograd_window(box, size: tuple[int, int], margin: int = AUTOGRAD_MARGIN) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` (ends exclusive) of the window the autograd check runs on: the field
    ``box`` and ``margin`` pixels more on each side, inside the image of ``size`` (H, W), its top-left
    corner on a multiple of :data:`SEGNET_STRIDE`; ``box=None``: the whole image."""
    H, W = size
    if box is None:
        return 0, 0, W, H
    bx1, by1, bx2, by2 = box
    x1 = max(0, bx1 - margin) // SEGNET_STRIDE * SEGNET_STRIDE
    y1 = max(0, by1 - margin) // SEGNET_STRIDE * SEGNET_STRIDE
    return x1, y1, min(W, bx2 + margin), min(H, by2 + margin)


def autograd_field(model, image, row: int, col: int, n_random: int = 4, seed: int = 0, box=None,
                   margin: int = AUTOGRAD_MARGIN) -> torch.Tensor:
    """``(H, W)`` bool: the input pixels where the gradient of the output scores at pixel
    ``(row, col)`` (summed over classes) is non-zero, on the real network for ``image`` and for
    ``n_random`` random images (the union: one image's switches and ReLUs open only some paths).

    ``box``: the pixel's receptive field ``(x1, y1, x2, y2)`` as computed; the network then runs on
    :func:`autograd_window` (the box and ``margin`` pixels more on each side), so a gradient up to
    ``margin`` pixels outside the box is still found while the memory no longer grows with the
    image (5 full 1024-px images with gradients took 6 GB). The images run one at a time."""
    model = _segnet(model, "the receptive-field check")
    img = load_image(image).tensor
    H, W = img.shape[-2:]
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"pixel ({row}, {col}) is outside the {H}x{W} image")
    x1, y1, x2, y2 = autograd_window(box, (H, W), margin)
    if not (x1 <= col < x2 and y1 <= row < y2):
        raise ValueError(f"pixel ({row}, {col}) is outside its field {tuple(box)}")
    crop = img[:, y1:y2, x1:x2]
    g = torch.Generator().manual_seed(seed)
    found = torch.zeros(H, W, dtype=torch.bool)
    net = model.module
    for i in range(1 + n_random):
        x = (crop if i == 0 else torch.rand(crop.shape, generator=g))[None].to(model.device).requires_grad_(True)
        with torch.enable_grad():
            net(x)[0, :, row - y1, col - x1].sum().backward()
        found[y1:y2, x1:x2] |= (x.grad[0] != 0).any(0).cpu()
    return found


def mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(x1, y1, x2, y2)`` bounding box of a bool mask (ends exclusive), None if empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def unpool_check(cap: FCNCapture, name: str) -> tuple[float, float]:
    """``(|explainers.ops.unpool - the decoder's own unpooling|, |F.max_unpool2d - the decoder's
    own|)`` max differences for unpooling stage ``name``, both from the pooling stage's switches
    as captured at the pooling (not at the unpooling)."""
    from .. import ops

    pool = SWITCHES[name]
    values, _, size = cap.unpool_inputs[name]
    sw = cap.switches[pool]
    mine, _ = ops.unpool(values, "max", 2, indices=sw, output_size=size)
    ref = ops.reference_unpool(values, "max", 2, indices=sw, output_size=size)
    real = cap.stages[name]
    return float((mine - real).abs().max()), float((ref - real).abs().max())


def own_output_check(cap: FCNCapture) -> float:
    """max |the drawn final stage (cropped to the image) - the model's own logits|."""
    H, W = cap.size
    return float((cap.stages["scores"][:, :H, :W] - cap.logits).abs().max())


def shapes_check(cap: FCNCapture) -> int:
    """How many stages' drawn shapes (from the receptive-field arithmetic) differ from the real tensors."""
    return sum(tuple(cap.fields["padded" if n == "input" else n].shape) != tuple(cap.stages[n].shape)
               for n, _, _ in STAGES)

