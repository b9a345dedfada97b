"""Receptive fields and shapes from the layer arithmetic equal what the real network does:
the shapes of its tensors, and the input pixels where the gradient of one output is non-zero."""
import pytest
import torch
from torch import nn

from explainers.models.fcn import STAGES, segnet_fields, segnet_layers
from explainers.models.nets import PatchClassifier, SegNet
from explainers.ops.receptive_field import Layer, field_mask, receptive_fields
from explainers.ops.sliding_window import network_geometry


def _net(seed=0):
    torch.manual_seed(seed)
    return SegNet().eval()


def _hooked_shapes(net, x):
    got = {}
    hs = [getattr(net, m).register_forward_hook(
        lambda mod, i, o, n=n: got.__setitem__(n, tuple((o[0] if isinstance(o, tuple) else o).shape[1:])))
        for n, _, m in STAGES if m]
    hs.append(net.normalize.register_forward_hook(lambda mod, i, o: got.__setitem__("input", tuple(i[0].shape[1:]))))
    with torch.no_grad():
        out = net(x)
    for h in hs:
        h.remove()
    return got, tuple(out.shape[1:])


@pytest.mark.parametrize("size", [(64, 64), (60, 44), (37, 90)])
def test_shapes_equal_the_real_forward(size):
    net = _net()
    got, out = _hooked_shapes(net, torch.rand(1, 3, *size))
    fields = segnet_fields(net, *size)
    for name, shape in got.items():
        assert fields["padded" if name == "input" else name].shape == shape, name
    assert fields["output"].shape == out


def _grad_mask(net, size, row, col, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, *size, generator=g).requires_grad_(True)
    net(x)[:, :, row, col].sum().backward()
    return (x.grad != 0).any(1)                    # (n, H, W): per input


@pytest.mark.parametrize("size,pixel", [((160, 160), (80, 77)), ((160, 160), (0, 0)), ((160, 160), (159, 100)),
                                        ((150, 100), (149, 99)), ((150, 100), (70, 3))])
def test_field_is_where_the_gradient_of_the_real_network_is_non_zero(size, pixel):
    net = _net()
    out = segnet_fields(net, *size)["output"]
    box = field_mask(out, *pixel, size)
    masks = _grad_mask(net, size, *pixel)
    for m in masks:                                 # every input's gradient lies inside the field
        assert not (m & ~box).any()
    union = masks.any(0)                            # and a few random inputs fill the whole box
    ys, xs = torch.nonzero(union, as_tuple=True)
    assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == out.box(*pixel)


def test_every_stage_field_matches_autograd_on_that_stage():
    """The field of a cell of an inner stage (here the bottleneck and dec2) is also autograd's."""
    net = _net()
    size = (160, 160)
    fields = segnet_fields(net, *size)
    for name, cell in (("bottleneck", (9, 10)), ("dec2", (38, 41)), ("enc2", (0, 5))):
        got = {}
        h = getattr(net, name).register_forward_hook(lambda m, i, o, got=got: got.__setitem__("t", o))
        x = torch.rand(4, 3, *size, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        net(x)
        h.remove()
        got["t"][:, :, cell[0], cell[1]].sum().backward()
        union = (x.grad != 0).any(1).any(0)
        ys, xs = torch.nonzero(union, as_tuple=True)
        assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == fields[name].box(*cell), name


def test_field_sizes_grow_down_and_alternate_going_up():
    fields = segnet_fields(_net(), 320, 320)        # big enough for interior cells everywhere
    sizes = {n: fields[n].size for n in ("enc1", "pool1", "enc2", "pool2", "enc3", "pool3", "bottleneck", "scores")}
    assert sizes == {"enc1": 5, "pool1": 6, "enc2": 14, "pool2": 16, "enc3": 32, "pool3": 36, "bottleneck": 132,
                     "scores": 148}
    for n in ("enc1", "pool1", "enc2", "pool2", "enc3", "pool3", "bottleneck", "scores"):
        assert fields[n].max_field == fields[n].size, n
    assert [int(fields[n].jump) for n in ("pool1", "pool2", "pool3", "unpool3", "unpool2", "up1")] == [2, 4, 8, 4, 2, 1]
    # after max unpooling the fields of neighbouring cells differ: dec2's are 140 and 148 wide,
    # the formula's 144 is their average
    f = fields["dec2"]
    widths = set((f.hi_x[40:-40] - f.lo_x[40:-40] + 1).tolist())
    assert widths == {140, 148} and f.size == 144


def test_plain_chain_agrees_with_network_geometry():
    net = PatchClassifier()
    layers = [Layer(n, "pool" if isinstance(m, nn.MaxPool2d) else "conv",
                    getattr(m, "out_channels", 0), m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0],
                    m.stride if isinstance(m.stride, int) else m.stride[0])
              for n, m in net.named_children() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    last = receptive_fields(layers, (3, 60, 60))[-1]
    assert (last.size, last.jump) == network_geometry(net)
    with torch.no_grad():
        assert last.shape == tuple(net(torch.rand(1, 3, 60, 60)).shape[1:])


@pytest.mark.parametrize("mod,kind", [
    (nn.Conv2d(1, 1, 3, stride=2, padding=1, dilation=2), "conv"),
    (nn.Conv2d(1, 1, 5, stride=3, padding=0), "conv"),
    (nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1), "conv_transpose"),
    (nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1), "conv_transpose"),
    (nn.ConvTranspose2d(1, 1, 3, stride=3, padding=0, dilation=2), "conv_transpose"),
])
def test_one_linear_layer_field_is_exactly_the_gradient(mod, kind):
    """A linear layer with non-zero weights: the field of each cell is exactly the gradient's support."""
    with torch.no_grad():
        mod.weight.uniform_(0.5, 1.0)
    k, s, p, d = mod.kernel_size[0], mod.stride[0], mod.padding[0], mod.dilation[0]
    lay = Layer("l", kind, 1, k, s, p, d, output_padding=getattr(mod, "output_padding", (0,))[0])
    x = torch.rand(1, 1, 11, 9, requires_grad=True)
    y = mod(x)
    f = receptive_fields([lay], (1, 11, 9))[-1]
    assert f.shape == tuple(y.shape[1:])
    for r in range(y.shape[2]):
        for c in range(y.shape[3]):
            x.grad = None
            y[0, 0, r, c].backward(retain_graph=True)
            support = x.grad[0, 0] != 0
            if not support.any():
                continue
            ys, xs = torch.nonzero(support, as_tuple=True)
            assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == f.box(r, c)


def test_max_unpool_field_is_the_pooled_cell():
    f = receptive_fields([Layer("p", "pool", 0, 2, 2), Layer("u", "unpool", 0, 2, 2, size_of="input")], (1, 7, 6))
    assert f[-1].shape == (1, 7, 6)
    assert f[-1].box(3, 5) == (4, 2, 6, 4)          # cell (3, 5) comes from pooled cell (1, 2): pixels 2-3 x 4-5
    assert f[-1].box(6, 0) == (0, 7, 0, 7) or f[-1].lo_y[6] > f[-1].hi_y[6]   # the odd last row is never pooled


def test_bad_layers_are_explained():
    with pytest.raises(ValueError, match="concatenates"):
        receptive_fields([Layer("a", "pool", 0, 2, 2), Layer("c", "concat", inputs=("a", "input"))], (1, 8, 8))
    with pytest.raises(ValueError, match="kind"):
        receptive_fields([Layer("a", "warp")], (1, 8, 8))
    with pytest.raises(ValueError, match="earlier layer"):
        receptive_fields([Layer("a", "conv", 1, 3, inputs=("nope",))], (1, 8, 8))
    with pytest.raises(ValueError, match="larger image"):
        receptive_fields([Layer("a", "conv", 1, 5)], (1, 3, 3))
    with pytest.raises(ValueError, match="outside"):
        receptive_fields([], (1, 3, 3))[0].box(3, 0)
    assert segnet_layers(_net(), 16, 16)[0].kind == "pad"
