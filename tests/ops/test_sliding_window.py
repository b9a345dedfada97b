import numpy as np
import pytest
import torch
from torch import nn

from explainers.ops import dense_predict, network_geometry, sliding_window_predict


def patch_net(seed=0, classes=4):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3), nn.ReLU(),
        nn.Conv2d(16, classes, 1),  # the "fully connected" layer as a 1x1 conv
    ).eval()


def test_geometry():
    assert network_geometry(patch_net()) == (20, 4)
    with pytest.raises(ValueError, match="padding"):
        network_geometry(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)))


@pytest.mark.parametrize("size", [(20, 20), (37, 53), (64, 64)])
def test_sliding_equals_dense(size):
    net = patch_net()
    img = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
    window, stride = network_geometry(net)
    labels, tr = sliding_window_predict(net, img, window, stride, batch_size=16)
    dense_labels, dense_scores, cost = dense_predict(net, img)
    assert torch.equal(labels, dense_labels)
    torch.testing.assert_close(tr.scores, dense_scores, atol=1e-5, rtol=1e-4)
    # and the window really is the receptive field: each score depends only on its window
    nH, nW = labels.shape
    assert tr.windows.shape == (nH * nW, 4)
    x1, y1, x2, y2 = tr.windows[-1].tolist()
    assert (x2 - x1, y2 - y1) == (20, 20) and x2 <= size[1] and y2 <= size[0]
    # cost: the sliding window repeats shared work
    assert cost.macs > 0
    if nH * nW > 1:
        assert tr.cost.macs > cost.macs
    else:
        assert tr.cost.macs == cost.macs
    assert tr.cost.forward_calls == -(-nH * nW // 16)


def test_macs_are_counted_from_layers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3))  # 3x3x1 MACs per output, 2 channels
    _, _, cost = dense_predict(net, torch.zeros(1, 5, 5))
    assert cost.macs == 2 * 3 * 3 * 9


def test_a_padded_network_is_not_identical_at_the_border():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3)).eval()
    img = torch.rand(3, 12, 12)
    _, tr = sliding_window_predict(net, img, 3, 1)
    _, dense, _ = dense_predict(net, img)
    assert tr.scores.shape != dense.shape or not torch.allclose(tr.scores, dense)


def test_stride_and_numpy_images():
    net = patch_net()
    img = (np.random.default_rng(0).random((40, 44, 3)) * 255).astype(np.uint8)
    labels, tr = sliding_window_predict(net, img, 20, 3)
    assert labels.shape == ((40 - 20) // 3 + 1, (44 - 20) // 3 + 1)
    assert tr.scores.shape[0] == 4


@pytest.mark.parametrize("kwargs, msg", [
    ({"stride": 0}, "stride must be at least 1"),
    ({"window": 100}, "larger than the image"),
    ({"window": 0}, "window must be at least 1"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments(kwargs, msg):
    args = {"window": 20, "stride": 4}
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        sliding_window_predict(patch_net(), torch.zeros(3, 30, 30), **args)


def test_dense_too_small_image():
    with pytest.raises(ValueError, match="too small"):
        dense_predict(patch_net(), torch.zeros(3, 5, 5))


def test_window_larger_than_receptive_field_uses_the_centre_cell():
    net = patch_net()
    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(2))
    labels, tr = sliding_window_predict(net, img, 28, 4)   # receptive field 20: a 3x3 map per window
    _, dense, _ = dense_predict(net, img)
    # window at (0, 0) of size 28 is centred on the dense cell (1, 1)
    torch.testing.assert_close(tr.scores[:, 0, 0], dense[:, 1, 1], atol=1e-5, rtol=1e-4)


def test_window_smaller_than_receptive_field_is_a_clear_error():
    with pytest.raises(ValueError, match="a window of 12x12 pixels is too small for this network"):
        sliding_window_predict(patch_net(), torch.zeros(3, 30, 30), 12, 4)


def test_a_window_below_the_receptive_field_is_one_plain_sentence():
    from explainers.models import get

    net = get("patch", "shapes").module
    rf = network_geometry(net)[0]
    img = torch.rand(3, 64, 64)
    with pytest.raises(ValueError) as info:
        sliding_window_predict(net, img, 24, 2)
    msg = str(info.value)
    assert f"at least {rf}" in msg and "receptive field" in msg and "Kernel size" not in msg
    sliding_window_predict(net, img[:, :rf + 2, :rf + 2], rf, 2)      # the network's own window works
