"""DDRNet-23 and DDRNet-23-slim: deep dual-resolution networks for real-time segmentation.

Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic Segmentation
of Road Scenes", 2021. A low-resolution branch (1/8 -> 1/64) gathers context, a high-resolution
branch stays at 1/8, and the two exchange features twice (bilateral fusion); DAPPM enlarges the
context of the low branch; the segmentation head sees their sum, an auxiliary head the high
branch after stage 3.

Backbone attribute names (``conv1``, ``layer3_``, ``compression3``, ``down3``, ...) follow the
official code so its ImageNet checkpoints load without a key table. Two changes keep every op
exportable with dynamic H x W: the DAPPM global branch is a mean over H, W instead of
``AdaptiveAvgPool2d``, and every upsampling takes its size from the tensor it is fused with, so
inputs that are not multiples of 64 work and the logits match the input size exactly.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vsda_train.config import ConfigError
from vsda_train.models import SegmentationModel, SegmentationOutput, resize_like

BN_MOMENTUM = 0.1


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)]


def _bn_relu_conv(cin: int, cout: int, kernel: int = 1) -> list[nn.Module]:
    return [nn.BatchNorm2d(cin, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; the last block of a stage leaves the ReLU to the fusion."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 relu_out: bool = True) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out) if self.relu_out else out


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block with expansion 2 (DDRNet's stage 5)."""

    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 relu_out: bool = True) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + (x if self.downsample is None else self.downsample(x))
        return self.relu(out) if self.relu_out else out


def _stage(block: type[BasicBlock | Bottleneck], cin: int, planes: int, blocks: int,
           stride: int = 1) -> nn.Sequential:
    """Return ``blocks`` residual blocks; the last one returns pre-activation features."""
    cout = planes * block.expansion
    downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else None
    layers = [block(cin, planes, stride, downsample, relu_out=blocks > 1)]
    layers += [block(cout, planes, relu_out=i < blocks - 1) for i in range(1, blocks)]
    return nn.Sequential(*layers)


class GlobalAvgPool(nn.Module):
    """Mean over H and W, kept as (N, C, 1, 1): exports as ReduceMean, valid for any input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module: context pooled at 1/2, 1/4, 1/8 and global, in cascade."""

    def __init__(self, cin: int, branch_planes: int, cout: int) -> None:
        super().__init__()
        pools = {1: (5, 2), 2: (9, 4), 3: (17, 8)}  # fixed kernels: no adaptive pooling in the graph
        for i, (kernel, stride) in pools.items():
            setattr(self, f"scale{i}", nn.Sequential(nn.AvgPool2d(kernel, stride, kernel // 2),
                                                     *_bn_relu_conv(cin, branch_planes)))
        self.scale4 = nn.Sequential(GlobalAvgPool(), *_bn_relu_conv(cin, branch_planes))
        self.scale0 = nn.Sequential(*_bn_relu_conv(cin, branch_planes))
        for i in range(1, 5):
            setattr(self, f"process{i}", nn.Sequential(*_bn_relu_conv(branch_planes, branch_planes, 3)))
        self.compression = nn.Sequential(*_bn_relu_conv(branch_planes * 5, cout))
        self.shortcut = nn.Sequential(*_bn_relu_conv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.scale0(x)]
        for i in range(1, 5):
            pooled = getattr(self, f"scale{i}")(x)
            # The global branch is (N, C, 1, 1): broadcasting equals upsampling it, exactly.
            context = pooled if i == 4 else resize_like(pooled, x)
            branches.append(getattr(self, f"process{i}")(context + branches[-1]))
        return self.compression(torch.cat(branches, dim=1)) + self.shortcut(x)


class SegmentHead(nn.Module):
    """BN-ReLU-3x3 conv, BN-ReLU-1x1 classifier: logits at the resolution of its input."""

    def __init__(self, cin: int, planes: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(cin, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn2(self.conv1(self.relu(self.bn1(x))))))


class DualResolutionBackbone(nn.Module):
    """DDRNet-23 trunk; returns (low branch at 1/64, high branch at 1/8, high branch after stage 3)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        high = 2 * width
        self.conv1 = nn.Sequential(  # the stem convs keep their bias, as in the official code
            nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.layer1 = _stage(BasicBlock, width, width, 2)
        self.layer2 = _stage(BasicBlock, width, 2 * width, 2, stride=2)
        self.layer3 = _stage(BasicBlock, 2 * width, 4 * width, 2, stride=2)
        self.layer4 = _stage(BasicBlock, 4 * width, 8 * width, 2, stride=2)
        self.layer5 = _stage(Bottleneck, 8 * width, 8 * width, 1, stride=2)
        self.layer3_ = _stage(BasicBlock, 2 * width, high, 2)
        self.layer4_ = _stage(BasicBlock, high, high, 2)
        self.layer5_ = _stage(Bottleneck, high, high, 1)
        self.compression3 = nn.Sequential(*_conv_bn(4 * width, high, 1))
        self.compression4 = nn.Sequential(*_conv_bn(8 * width, high, 1))
        self.down3 = nn.Sequential(*_conv_bn(high, 4 * width, 3, 2))
        self.down4 = nn.Sequential(*_conv_bn(high, 4 * width, 3, 2), nn.ReLU(inplace=True),
                                   *_conv_bn(4 * width, 8 * width, 3, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.conv1(x))
        x = self.layer2(F.relu(x))
        low = self.layer3(F.relu(x))
        high = self.layer3_(F.relu(x))
        # Bilateral fusion: each branch adds the other's features, resampled to its own size.
        low, high = low + self.down3(F.relu(high)), high + resize_like(self.compression3(F.relu(low)), high)
        high_stage3 = high
        low = self.layer4(F.relu(low))
        high = self.layer4_(F.relu(high))
        low, high = low + self.down4(F.relu(high)), high + resize_like(self.compression4(F.relu(low)), high)
        return self.layer5(F.relu(low)), self.layer5_(F.relu(high)), high_stage3


class DDRNet(SegmentationModel):
    """DDRNet-23(-slim) segmenter: dual-resolution backbone, DAPPM context, seg head and auxiliary head."""

    checkpoint_renames: ClassVar[dict[str, str]] = {
        "spp.": "context.", "final_layer.": "head.", "seghead_extra.": "aux_head."}

    def __init__(self, name: str, num_classes: int, width: int, spp_planes: int, head_planes: int,
                 aux_head: bool = True, instance_head: bool = False) -> None:
        for option, value in (("width", width), ("spp_planes", spp_planes), ("head_planes", head_planes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model {name!r}: {option} must be an integer >= 1, got {value!r}")
        super().__init__(name, num_classes, width=width, aux_head=aux_head,
                         **({"instance_head": True} if instance_head else {}))
        self.backbone = DualResolutionBackbone(width)
        self.context = DAPPM(16 * width, spp_planes, 4 * width)
        self.head = SegmentHead(4 * width, head_planes, num_classes)
        self.aux_head = SegmentHead(2 * width, head_planes, num_classes) if aux_head else None
        _init_weights(self)
        self.instance_head = _instance_head(4 * width, head_planes) if instance_head else None

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high, high_stage3 = self.backbone(x)
        return resize_like(self.context(low), high) + high, high_stage3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, C, H, W) at the input resolution."""
        features, _ = self._features(x)
        return resize_like(self.head(features), x)

    def forward_train(self, x: torch.Tensor) -> SegmentationOutput:
        """Return logits, auxiliary logits (input resolution) and the fused 1/8 features."""
        if self.training and x.shape[0] < 2:
            raise ConfigError("DDRNet trains with batch >= 2: the DAPPM global branch normalises "
                             f"(N, C, 1, 1) maps, got batch {x.shape[0]}")
        features, high_stage3 = self._features(x)
        aux = None if self.aux_head is None else resize_like(self.aux_head(high_stage3), x)
        return SegmentationOutput(resize_like(self.head(features), x), aux, features, self._instances(features, x))

    def forward_instances(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, instances)`` at the input resolution (``instances``: see ``SegmentationOutput``)."""
        if self.instance_head is None:
            raise ValueError(f"model {self.config['name']!r} was built without an instance head")
        features, _ = self._features(x)
        return resize_like(self.head(features), x), self._instances(features, x)

    def _instances(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        if self.instance_head is None:
            return None
        return resize_like(self.instance_head(features.detach() if self.training else features), x)


def _instance_head(cin: int, planes: int) -> SegmentHead:
    """Return Panoptic-DeepLab's instance branch on the fused features: centre heatmap logit + (dy, dx).

    Built on a forked RNG, so the rest of the model (and everything seeded after it) is the same with
    or without it; its predictions start near 0, as Panoptic-DeepLab's (std 0.001)."""
    with torch.random.fork_rng(devices=[]):
        head = SegmentHead(cin, planes, 3)
        _init_weights(head)
        nn.init.normal_(head.conv2.weight, std=0.001)
    return head


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def ddrnet23_slim(num_classes: int, width: int = 32, aux_head: bool = True,
                  instance_head: bool = False) -> DDRNet:
    """Return DDRNet-23-slim (width 32: ~5.7M parameters); smaller ``width`` gives CPU-sized variants."""
    return DDRNet("ddrnet23_slim", num_classes, width, spp_planes=4 * width, head_planes=2 * width,
                  aux_head=aux_head, instance_head=instance_head)


def ddrnet23(num_classes: int, width: int = 64, aux_head: bool = True, instance_head: bool = False) -> DDRNet:
    """Return DDRNet-23 (width 64: ~20M parameters)."""
    return DDRNet("ddrnet23", num_classes, width, spp_planes=2 * width, head_planes=2 * width,
                  aux_head=aux_head, instance_head=instance_head)


MODELS = {"ddrnet23_slim": ddrnet23_slim, "ddrnet23": ddrnet23}
