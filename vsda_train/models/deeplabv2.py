"""DeepLabV2: dilated ResNet (output stride 8) with the ASPP classifier (Chen et al., TPAMI 2017).

DeepLabV2-ResNet-101 is the segmenter every published video-UDA number uses (DA-VSN, TPS, SFC,
CMOM, ...): layer3 and layer4 keep stride 1 with dilation 2 and 4, and the classifier sums four
3x3 convolutions with dilation 6, 12, 18 and 24. ``multi_level=True`` adds the second ASPP on
layer3 that AdaptSegNet/ADVENT train as an auxiliary output. Smaller depths (18, 34, 50) and a
``width`` multiplier give the tiny variants used by CPU tests.

Backbone names follow torchvision/timm (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ...), so
their ImageNet checkpoints load as they are. The block strides on its 3x3 conv as in those
checkpoints (ResNet v1.5); ``stride_in_1x1=True`` moves it to the 1x1 conv, as in the Caffe
DeepLab weights the peers initialise from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vsda_train.config import ConfigError
from vsda_train.models import SegmentationModel, SegmentationOutput, resize_like

ASPP_DILATIONS = (6, 12, 18, 24)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34), dilation-aware."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 -> dilated 3x3 -> 1x1 residual block with expansion 4 (ResNet-50/101)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, planes, 1, stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride_3x3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


DEPTHS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class DilatedResNet(nn.Module):
    """ResNet with stride-1, dilated layer3 (x2) and layer4 (x4); returns (layer3, layer4) at 1/8."""

    def __init__(self, depth: int, width: int = 64, stride_in_1x1: bool = False) -> None:
        super().__init__()
        block, blocks = DEPTHS[depth]
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin = width
        # (planes, stride, dilation): layer3 and layer4 trade their stride for dilation (output stride 8)
        specs = ((width, 1, 1), (2 * width, 2, 1), (4 * width, 1, 2), (8 * width, 1, 4))
        for i, ((planes, stride, dilation), n) in enumerate(zip(specs, blocks), start=1):
            setattr(self, f"layer{i}", self._stage(block, planes, n, stride, dilation, stride_in_1x1))
        self.channels = (4 * width * block.expansion, 8 * width * block.expansion)

    def _stage(self, block: type[BasicBlock | Bottleneck], planes: int, n: int, stride: int, dilation: int,
               stride_in_1x1: bool) -> nn.Sequential:
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or self._cin != cout:
            downsample = nn.Sequential(nn.Conv2d(self._cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
        layers = [block(self._cin, planes, stride, dilation, downsample, stride_in_1x1)]
        layers += [block(cout, planes, 1, dilation, None, stride_in_1x1) for _ in range(1, n)]
        self._cin = cout
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer3(self.layer2(self.layer1(x)))
        return c3, self.layer4(c3)


class ASPPClassifier(nn.Module):
    """DeepLabV2 classifier: the sum of four dilated 3x3 convolutions straight to class logits."""

    def __init__(self, cin: int, num_classes: int, dilations: tuple[int, ...] = ASPP_DILATIONS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(cin, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations)
        for conv in self.branches:  # DeepLab's init: small weights so the four branches start balanced
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for conv in self.branches[1:]:
            out = out + conv(x)
        return out


class DeepLabV2(SegmentationModel):
    """DeepLabV2: dilated ResNet, ASPP classifier on layer4, optional ASPP on layer3 (multi-level)."""

    def __init__(self, name: str, num_classes: int, depth: int, width: int = 64, multi_level: bool = False,
                 stride_in_1x1: bool = False) -> None:
        if depth not in DEPTHS:
            raise ConfigError(f"model {name!r}: depth must be one of {sorted(DEPTHS)}, got {depth}")
        if width < 1:
            raise ConfigError(f"model {name!r}: width must be >= 1, got {width}")
        super().__init__(name, num_classes, width=width, multi_level=multi_level, stride_in_1x1=stride_in_1x1)
        self.backbone = DilatedResNet(depth, width, stride_in_1x1)
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        c3, c4 = self.backbone.channels
        self.head = ASPPClassifier(c4, num_classes)
        self.aux_head = ASPPClassifier(c3, num_classes) if multi_level else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, C, H, W) at the input resolution."""
        _, c4 = self.backbone(x)
        return resize_like(self.head(c4), x)

    def forward_train(self, x: torch.Tensor) -> SegmentationOutput:
        """Return logits, layer3 auxiliary logits (``multi_level``, else None) and layer4 features."""
        c3, c4 = self.backbone(x)
        aux = None if self.aux_head is None else resize_like(self.aux_head(c3), x)
        return SegmentationOutput(resize_like(self.head(c4), x), aux, c4)


def _builder(depth: int) -> Callable[..., DeepLabV2]:
    def build(num_classes: int, width: int = 64, multi_level: bool = False,
              stride_in_1x1: bool = False) -> DeepLabV2:
        return DeepLabV2(f"deeplabv2_r{depth}", num_classes, depth, width, multi_level, stride_in_1x1)

    build.__doc__ = f"Return DeepLabV2 on a dilated ResNet-{depth}; ``width`` (standard: 64) scales it."
    return build


MODELS = {f"deeplabv2_r{depth}": _builder(depth) for depth in sorted(DEPTHS)}
