"""The training losses: supervised cross-entropy, the GAN terms and the video context the discriminator sees."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vsda_deploy.labels import IGNORE_INDEX
from vsda_train.flow import warp
from vsda_train.models import SegmentationOutput


def labelled_pixels(label: Tensor) -> Tensor:
    """Return the number of labelled pixels per rank, averaged over ranks (the CE normaliser).

    Normalising every rank's summed loss by the *global* mean count makes DDP's gradient
    average equal to the gradient of one process holding the whole global batch.
    """
    count = (label != IGNORE_INDEX).sum().double()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        count = count / torch.distributed.get_world_size()
    return count.clamp(min=1).float()


def supervised_loss(out: SegmentationOutput, label: Tensor, aux_weight: float) -> Tensor:
    """Return the cross-entropy (ignore 255) of the logits plus ``aux_weight`` x that of the aux logits."""
    norm = labelled_pixels(label)

    def ce(logits: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), label, ignore_index=IGNORE_INDEX, reduction="sum") / norm

    loss = ce(out.logits)
    if out.aux_logits is not None:  # also at weight 0: DDP expects every parameter in the graph
        loss = loss + aux_weight * ce(out.aux_logits)
    if out.instances is not None:  # the instance head, in the graph of the phases that do not train it
        loss = loss + 0.0 * out.instances.float().sum()
    return loss


def bce_to(logits: Tensor, domain: float) -> Tensor:
    """Return the BCE-with-logits of discriminator logits against a constant domain label."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), domain))


def video_context(logits_t: Tensor, logits_prev: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(softmax(p_t), warp(softmax(p_{t-k})))``; out-of-view pixels of the warp are zero."""
    p_t, p_prev = logits_t.float().softmax(1), logits_prev.float().softmax(1)
    warped, valid = warp(p_prev, flow)
    return p_t, warped * valid


__all__ = ["bce_to", "labelled_pixels", "supervised_loss", "video_context"]
