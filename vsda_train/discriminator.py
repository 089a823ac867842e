"""Fully convolutional domain discriminators (ADVENT-style) for VAT."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


def _disc_layers(in_channels: int, width: int) -> nn.Sequential:
    chans = [in_channels, width, width * 2, width * 4, width * 8]
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(chans):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))
    return nn.Sequential(*layers)


class ImageDiscriminator(nn.Module):
    """Return a patch map of source(1)/target(0) logits for per-frame softmax maps (C channels)."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.net = _disc_layers(num_classes, width)

    def forward(self, probs: Tensor) -> Tensor:
        return self.net(probs)


class VideoDiscriminator(nn.Module):
    """Return patch logits for the video context ``[softmax(p_t), warp(softmax(p_{t-k}))]`` (2C channels)."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.net = _disc_layers(2 * num_classes, width)

    def forward(self, probs_t: Tensor, probs_prev_warped: Tensor) -> Tensor:
        return self.net(torch.cat([probs_t, probs_prev_warped], dim=1))
