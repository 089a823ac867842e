"""Panoptic-DeepLab's instance targets and loss (Cheng et al., CVPR 2020), for a batch of label maps.

An instance is a ``(class, instance id)`` pair over the thing pixels of one frame (id > 0). Its
centre is its centre of mass, rounded to a pixel; the centre target is a 2-D Gaussian (``sigma``
pixels) around every centre, the maximum where two overlap. Each thing pixel's offset target is
(centre - pixel) as (dy, dx). The loss is the heatmap's mean binary cross-entropy (the head
predicts its logits) over labelled pixels (void excluded) plus the mean L1 error of the offsets
over thing pixels. Panoptic-DeepLab regresses the heatmap with a squared error (weight 200) under
Adam; under the recipe's SGD (lr 0.01, momentum 0.9) that regression diverges within 30 updates
even at weight 1, while the cross-entropy's gradient is bounded, as the segmentation loss's is.
Pixels whose instance is unknown (-1: a frame without instance labels) add nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vsda_deploy.labels import IGNORE_INDEX

UNKNOWN = -1  # the instance map of a frame without instance labels


class InstanceTargets(NamedTuple):
    """Per-pixel targets of a batch: heatmap (N, H, W), offsets (N, 2, H, W) and the pixels each counts on."""

    center: Tensor
    offset: Tensor
    center_mask: Tensor  # bool (N, H, W): labelled pixels whose instance is known
    offset_mask: Tensor  # bool (N, H, W): thing pixels with an instance id


def instance_targets(instance: Tensor, label: Tensor, things: Iterable[int], sigma: float) -> InstanceTargets:
    """Return the targets of ``instance`` (N, H, W) int ids and ``label`` (N, H, W) class ids."""
    n, h, w = label.shape
    known = instance != UNKNOWN
    thing = torch.isin(label, torch.as_tensor(sorted(things), device=label.device))
    offset_mask = known & thing & (instance > 0)
    center = torch.zeros(n, h, w, device=label.device)
    offset = torch.zeros(n, 2, h, w, device=label.device)
    if offset_mask.any():
        frame, ys, xs = offset_mask.nonzero(as_tuple=True)
        key = (frame * 256 + label[offset_mask]) * (1 << 32) + instance[offset_mask]
        keys, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        cy = torch.zeros(keys.numel(), device=label.device).index_add_(0, inverse, ys.float()) / counts
        cx = torch.zeros(keys.numel(), device=label.device).index_add_(0, inverse, xs.float()) / counts
        owner = torch.div(keys, 256 * (1 << 32), rounding_mode="floor")  # each instance's frame
        offset[frame, 0, ys, xs] = cy[inverse] - ys.float()
        offset[frame, 1, ys, xs] = cx[inverse] - xs.float()
        center = _gaussians(cy.round(), cx.round(), owner, n, h, w, sigma)
    return InstanceTargets(center, offset, known & (label != IGNORE_INDEX), offset_mask)


def _gaussians(cy: Tensor, cx: Tensor, owner: Tensor, n: int, h: int, w: int, sigma: float) -> Tensor:
    """Return (N, H, W): per frame, the maximum of unit Gaussians at its centres ``(cy, cx)``."""
    yy = torch.arange(h, device=cy.device, dtype=torch.float32)[None, :, None]
    xx = torch.arange(w, device=cy.device, dtype=torch.float32)[None, None, :]
    g = torch.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / (2 * sigma ** 2))
    index = owner[:, None].expand(-1, h * w)
    return torch.zeros(n, h * w, device=cy.device).scatter_reduce_(0, index, g.flatten(1), "amax").view(n, h, w)


def instance_loss(pred: Tensor, targets: InstanceTargets, center_weight: float, offset_weight: float) -> Tensor:
    """Return ``center_weight`` x heatmap BCE + ``offset_weight`` x offset L1 of ``pred`` (N, 3, H, W):
    heatmap logits, then offsets (dy, dx) in pixels."""
    pred = pred.float()
    heat_err = F.binary_cross_entropy_with_logits(pred[:, 0], targets.center, reduction="none")
    off_err = (pred[:, 1:] - targets.offset).abs().sum(1)
    heat = (heat_err * targets.center_mask).sum() / targets.center_mask.sum().clamp(min=1)
    off = (off_err * targets.offset_mask).sum() / targets.offset_mask.sum().clamp(min=1)
    return center_weight * heat + offset_weight * off


__all__ = ["UNKNOWN", "InstanceTargets", "instance_loss", "instance_targets"]
