"""Phase 2 with a mean teacher (``vst.teacher: ema``): online pseudo labels filtered by time, mixed across clips.

Each step the teacher, an exponential moving average of the student, labels the clean target
clips (frame t and t-k). Its labels are filtered as the offline VST filters them:

* time: the label of t-k, warped to t by the backward flow, must agree with the label of t
  where the forward-backward check says the pixel is visible in both frames;
* confidence: per class, the most confident ``vst.class_top_fraction`` of the pixels, from a
  running histogram of the teacher's confidences (summed over DDP ranks, so every rank takes
  the same thresholds).

The student learns from strongly augmented target frames mixed with other frames. With
``vst.mix: class`` (ClassMix across target clips) half of the classes of one clip's frame, cut out
by the teacher's labels, are pasted onto another clip's frame, labels with them. With ``vst.mix:
source`` (DACS's cross-domain mix) half of the classes of a source frame, cut out by its ground
truth, are pasted onto the target frame with their true labels; a larger source crop gives a
random window of the target's size. With ``vst.temporal_filter: false`` the same
phase works frame by frame: its image-level twin. With ``vst.pseudo_from: previous`` the labels of
frame t are the teacher's labels of frame t-k carried to t by the flow (TPS's cross-frame pseudo
labels), so the student learns frame t from what the teacher saw in another frame. With
``vst.mask_ratio`` > 0 the student also learns the target frame, most of it blanked in squares,
from the same labels (MIC's masked image consistency): it must use the context of what is left.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vsda_deploy.labels import IGNORE_INDEX
from vsda_train.flow import occlusion_mask_torch, warp
from vsda_train.pseudo_labels import LEVELS, ConfidenceHistogram


class EMATeacher(nn.Module):
    """A frozen copy of the student whose weights follow it: ``t <- m t + (1 - m) s`` after each step."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(student)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """Move the teacher's parameters towards the student's; copy its BatchNorm statistics."""
        for t, s in zip(self.model.parameters(), student.parameters(), strict=True):
            t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
        for t, s in zip(self.model.buffers(), student.buffers(), strict=True):
            t.copy_(s)

    @torch.no_grad()
    def probs(self, x: Tensor) -> Tensor:
        """Return the teacher's softmax (N, C, H, W) on a batch, in eval mode."""
        self.model.eval()
        return self.model(x).float().softmax(1)


def confidence_levels(conf: Tensor) -> Tensor:
    """Return max-softmax confidences in [0, 1] as uint8 levels (torch twin of ``pseudo_labels.quantise``)."""
    return torch.round(conf.clamp(0, 1) * (LEVELS - 1)).to(torch.uint8)


def _warp_visible(x: Tensor, flow_bw: Tensor, flow_fw: Tensor, occlusion_check: bool,
                  mode: str) -> tuple[Tensor, Tensor]:
    """Return ``x`` of frame t-k warped to t, and where t-k sees the pixel (in view, not occluded)."""
    warped, visible = warp(x, flow_bw, mode=mode)
    if occlusion_check:
        visible = visible & ~occlusion_mask_torch(flow_fw=flow_fw, flow_bw=flow_bw)
    return warped, visible


def consistent_labels(probs_t: Tensor, probs_prev: Tensor, flow_bw: Tensor, flow_fw: Tensor,
                      occlusion_check: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(label, consistent, level)`` of frame t (N, H, W): argmax, time-filtered argmax, uint8 confidence.

    A pixel of t keeps its label where the warped label of t-k agrees, or where t-k cannot vote
    (out of view, or occluded by the forward-backward check).
    """
    conf, label = probs_t.max(1)
    warped, vote = _warp_visible(probs_prev.argmax(1, keepdim=True), flow_bw, flow_fw, occlusion_check, "nearest")
    disagree = (vote & (warped != label[:, None]))[:, 0]
    return label, label.masked_fill(disagree, IGNORE_INDEX), confidence_levels(conf)


def cross_frame_labels(probs_prev: Tensor, flow_bw: Tensor, flow_fw: Tensor,
                       occlusion_check: bool = True) -> tuple[Tensor, Tensor]:
    """Return ``(label, level)`` of frame t (N, H, W) from the teacher's softmax on frame t-k (TPS).

    The probabilities of t-k are warped to t by the backward flow; pixels whose source is out of
    view, or occluded by the forward-backward check, get no label (255).
    """
    warped, visible = _warp_visible(probs_prev, flow_bw, flow_fw, occlusion_check, "bilinear")
    conf, label = warped.max(1)
    return label.masked_fill(~visible[:, 0], IGNORE_INDEX), confidence_levels(conf)


class RunningThresholds:
    """Class-balanced thresholds from a decaying histogram of the teacher's confidences."""

    def __init__(self, num_classes: int, top_fraction: float, decay: float = 0.99) -> None:
        self.hist = ConfidenceHistogram(num_classes)
        self.hist.counts = self.hist.counts.astype(np.float64)
        self.top_fraction, self.decay = top_fraction, decay

    def update(self, level: Tensor, label: Tensor) -> np.ndarray:
        """Add one batch (counts summed over DDP ranks); return the thresholds (C,) in levels."""
        step = ConfidenceHistogram(self.hist.num_classes)
        step.update(level.cpu().numpy(), label.cpu().numpy())
        counts = torch.from_numpy(step.counts.astype(np.float64))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        self.hist.counts = self.decay * self.hist.counts + counts.numpy()
        return self.hist.thresholds(self.top_fraction)

    def state(self) -> Tensor:
        return torch.from_numpy(self.hist.counts.copy())

    def load(self, counts: Tensor) -> None:
        self.hist.counts = counts.numpy().astype(np.float64)


def select(label: Tensor, level: Tensor, thresholds: np.ndarray) -> Tensor:
    """Return ``label`` with pixels below their class threshold set to 255 (torch, any device)."""
    table = torch.as_tensor(np.append(thresholds, LEVELS), device=label.device)
    cls = torch.where(label == IGNORE_INDEX, torch.full_like(label, len(thresholds)), label)
    return torch.where(level.long() >= table[cls], label, torch.full_like(label, IGNORE_INDEX))


def half_of_classes(label: Tensor, generator: torch.Generator) -> Tensor:
    """Return the mask (H, W) of a random half, rounded up, of the classes in ``label`` (255 is none)."""
    classes = torch.unique(label)
    classes = classes[classes != IGNORE_INDEX]
    order = torch.randperm(classes.numel(), generator=generator)
    return torch.isin(label, classes[order[: (classes.numel() + 1) // 2]].to(label.device))


def class_mix(images: Tensor, labels: Tensor, masks_from: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Return images and labels mixed across the batch (ClassMix): sample i gets half of sample i+1's classes.

    ``masks_from`` (N, H, W) are the labels that cut the pasted regions (the teacher's argmax);
    ``labels`` (N, H, W) are the (filtered) pseudo labels that travel with them.
    """
    n = images.shape[0]
    if n < 2:
        return images, labels
    partner = torch.roll(torch.arange(n), -1)
    mask = torch.stack([half_of_classes(masks_from[j], generator) for j in partner.tolist()])
    mixed = torch.where(mask[:, None], images[partner], images)
    return mixed, torch.where(mask, labels[partner], labels)


def crop_like(frames: Tensor, labels: Tensor, size: tuple[int, int], generator: torch.Generator
              ) -> tuple[Tensor, Tensor]:
    """Return a random ``size`` window of each frame (N, C, H, W) and its label (N, H, W), drawn per sample."""
    h, w = size
    height, width = labels.shape[-2:]
    if (height, width) == (h, w):
        return frames, labels
    if height < h or width < w:
        raise ValueError(f"cannot crop {height}x{width} frames to {h}x{w}")
    ys = torch.randint(0, height - h + 1, (len(labels),), generator=generator).tolist()
    xs = torch.randint(0, width - w + 1, (len(labels),), generator=generator).tolist()
    return (torch.stack([f[:, y:y + h, x:x + w] for f, y, x in zip(frames, ys, xs, strict=True)]),
            torch.stack([lab[y:y + h, x:x + w] for lab, y, x in zip(labels, ys, xs, strict=True)]))


def domain_mix(source: Tensor, source_labels: Tensor, target: Tensor, pseudo: Tensor,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Return target frames with half of each source frame's classes pasted on (DACS), and their labels.

    Sample i pairs source i with target i (crops of one size: see ``crop_like``). Of the classes in
    source label i (255 excluded), a random half, rounded up, is cut out by that label; those pixels
    take the source's image and its ground truth, the rest keep the target's image and pseudo labels.
    """
    mask = torch.stack([half_of_classes(label, generator) for label in source_labels])
    return torch.where(mask[:, None], source, target), torch.where(mask, source_labels, pseudo)


def block_mask(frames: Tensor, ratio: float, block: int, generator: torch.Generator) -> Tensor:
    """Return ``frames`` (N, C, H, W) with about ``ratio`` of their ``block`` x ``block`` squares blanked (MIC).

    Each square is drawn independently per frame; a blanked pixel becomes 0, the normalised mean colour.
    The grid has ``round(H / block)`` x ``round(W / block)`` squares (at least one), stretched to the frame.
    """
    n, _, h, w = frames.shape
    grid = torch.rand((n, 1, max(1, round(h / block)), max(1, round(w / block))), generator=generator) >= ratio
    keep = F.interpolate(grid.float(), size=(h, w), mode="nearest").to(frames.device, frames.dtype)
    return frames * keep


__all__ = ["EMATeacher", "RunningThresholds", "block_mask", "class_mix", "confidence_levels", "consistent_labels",
           "crop_like", "cross_frame_labels", "domain_mix", "half_of_classes", "select"]
