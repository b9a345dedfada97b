"""The three small networks bundled with the package (the "shapes" models).

* :class:`PatchClassifier` - labels the centre pixel of a window; built only of
  unpadded convolutions, max pooling and 1x1 "fully connected" convolutions, so
  running it over a whole image equals sliding it window by window.
* :class:`SegNet` - an encoder-decoder for semantic segmentation whose decoder
  upsamples with max unpooling (the encoder's own pooling switches) and with a
  learned 3x3, stride 2, padding 1 transposed convolution (the lecture's example).
* :func:`small_mask_rcnn` - torchvision's ``MaskRCNN`` on a 3-block CNN backbone
  with one feature level and lean heads.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import CLASSES

# torchvision loads only when a detector is built: it pulls in torch._dynamo (about 80 MB per
# kernel) that a lecture page without a detector never needs
if TYPE_CHECKING:
    from torchvision.models.detection import MaskRCNN

NUM_CLASSES = len(CLASSES)


class Normalize(nn.Module):
    """``(x - 0.5) / 0.25``: images in [0, 1] to roughly zero mean, unit spread (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25


class PatchClassifier(nn.Sequential):
    """Classify the centre pixel of a 38 x 38 window (receptive field 38, total stride 2).

    Input ``(B, 3, H, W)`` with ``H, W >= 38``; output ``(B, 4, (H - 38) // 2 + 1, (W - 38) // 2 + 1)``
    class logits.  On a 38 x 38 window the output is ``(B, 4, 1, 1)``: one label for
    the window's centre pixel.  Output cell ``(i, j)`` labels pixel ``(2 i + 19, 2 j + 19)``.
    Most of the work is in the early layers, which overlapping windows share: that is
    what running it fully convolutionally saves.
    """

    window = 38
    stride = 2

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 32):
        c = width
        super().__init__(OrderedDict([
            ("normalize", Normalize()),
            ("conv1", nn.Conv2d(3, 24, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(24, c, 5)), ("relu2", nn.ReLU()),
            ("conv3", nn.Conv2d(c, c, 5)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(c, c, 5)), ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(c, c, 5)), ("relu5", nn.ReLU()),
            ("fc1", nn.Conv2d(c, c, 1)), ("relu6", nn.ReLU()),   # "fully connected" as 1x1 conv
            ("fc2", nn.Conv2d(c, num_classes, 1)),
        ]))

    def centre_targets(self, semantic: torch.Tensor) -> torch.Tensor:
        """The label of each window's centre pixel: ``(.., H, W) -> (.., nH, nW)``."""
        h = self.window // 2
        return semantic[..., h::self.stride, h::self.stride][
            ..., : (semantic.shape[-2] - self.window) // self.stride + 1,
            : (semantic.shape[-1] - self.window) // self.stride + 1]


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """Encoder-decoder for semantic segmentation.

    Encoder: three stages of convolutions, each followed by 2x2 max pooling that
    remembers its switches; a dilated bottleneck.  Decoder: max unpooling with
    the switches of pools 3 and 2, then a learned transposed convolution
    (3x3, stride 2, padding 1, output_padding 1) in place of the last unpooling,
    then a skip from the first stage and a 1x1 classifier.

    Input ``(B, 3, H, W)`` with ``H, W`` multiples of 8 (``forward`` pads otherwise);
    output ``(B, 4, H, W)`` logits.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16):
        super().__init__()
        c = width
        self.normalize = Normalize()
        self.enc1 = nn.Sequential(_block(3, c), _block(c, c))
        self.enc2 = nn.Sequential(_block(c, 2 * c), _block(2 * c, 2 * c))
        self.enc3 = nn.Sequential(_block(2 * c, 4 * c), _block(4 * c, 4 * c))
        self.bottleneck = nn.Sequential(_block(4 * c, 4 * c, 2), _block(4 * c, 4 * c, 4))
        # pooling and unpooling as modules (no parameters), so forward hooks can watch them
        self.pool1, self.pool2, self.pool3 = (nn.MaxPool2d(2, return_indices=True) for _ in range(3))
        self.unpool3, self.unpool2 = nn.MaxUnpool2d(2), nn.MaxUnpool2d(2)
        self.dec3 = _block(4 * c, 2 * c)
        self.dec2 = _block(2 * c, c)
        self.up1 = nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1)
        self.dec1 = _block(2 * c, c)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        ph, pw = (-H) % 8, (-W) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(self.normalize(x))
        p1, i1 = self.pool1(e1)
        e2 = self.enc2(p1)
        p2, i2 = self.pool2(e2)
        e3 = self.enc3(p2)
        p3, i3 = self.pool3(e3)
        b = self.bottleneck(p3)
        d3 = self.dec3(self.unpool3(b, i3, e3.shape[-2:]))
        d2 = self.dec2(self.unpool2(d3, i2, e2.shape[-2:]))
        u1 = self.up1(d2)
        d1 = self.dec1(torch.cat([u1, e1], 1))
        return self.classifier(d1)[..., :H, :W]


class SmallBackbone(nn.Module):
    """A 3-block CNN: 3 -> 16 -> 32 -> 64 channels, total stride 8, one feature level ("0")."""

    def __init__(self, out_channels: int = 64):
        super().__init__()

        def conv(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *conv(3, 16), nn.MaxPool2d(2),
            *conv(16, 32), *conv(32, 32), nn.MaxPool2d(2),
            *conv(32, out_channels), *conv(out_channels, out_channels), nn.MaxPool2d(2))
        self.out_channels = out_channels

    def forward(self, x):
        return OrderedDict([("0", self.body(x))])


#: anchors of the bundled detector: sizes (square root of area) and ratios (h / w) on its one level
SHAPES_ANCHOR_SIZES = (16, 32, 64)
SHAPES_ANCHOR_RATIOS = (0.5, 1.0, 2.0)


def small_mask_rcnn(num_classes: int = NUM_CLASSES, min_size: int = 128, max_size: int = 256) -> MaskRCNN:
    """torchvision's ``MaskRCNN`` on :class:`SmallBackbone` (about 0.6 M parameters)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = SmallBackbone()
    c = backbone.out_channels
    anchors = AnchorGenerator((SHAPES_ANCHOR_SIZES,), (SHAPES_ANCHOR_RATIOS,))
    box_pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2)
    return _mask_rcnn(backbone, c, anchors, box_pool, mask_pool, num_classes, min_size, max_size)


def _mask_rcnn(backbone, c, anchors, box_pool, mask_pool, num_classes, min_size, max_size) -> MaskRCNN:
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    return MaskRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_roi_pool=box_pool, box_head=TwoMLPHead(c * 7 * 7, 128),
        box_predictor=FastRCNNPredictor(128, num_classes),
        box_batch_size_per_image=64, box_detections_per_img=50,
        mask_roi_pool=mask_pool, mask_head=MaskRCNNHeads(c, (64, 64), 1),
        mask_predictor=MaskRCNNPredictor(64, 64, num_classes),
    )


#: the bundled one-stage detector's points: one per location of its one stride-8 level, of size 8
SHAPES_FCOS_SIZES = ((8,),)


def small_fcos(num_classes: int = NUM_CLASSES, min_size: int = 128, max_size: int = 256, num_convs: int = 2):
    """torchvision's one-stage ``FCOS`` on :class:`SmallBackbone` (about 0.2 M parameters).

    One feature level (stride 8), so one point per location (``AnchorGenerator(((8,),), ((1.0,),))``):
    for each location the head predicts ``num_classes`` class logits (index 0 unused), four
    distances ``(l, t, r, b)`` in units of 8 px and a centre-ness logit; the score of a class is
    ``sqrt(sigmoid(class) * sigmoid(centre-ness))``.  Two convolutions per head branch (torchvision's
    default is four) keep it fast on a CPU.
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOS, FCOSHead

    backbone = SmallBackbone()
    anchors = AnchorGenerator(SHAPES_FCOS_SIZES, ((1.0,),))
    head = FCOSHead(backbone.out_channels, 1, num_classes, num_convs=num_convs)
    return FCOS(backbone, num_classes, min_size=min_size, max_size=max_size,
                image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25], anchor_generator=anchors, head=head,
                score_thresh=0.05, nms_thresh=0.6, detections_per_img=50, topk_candidates=300)
