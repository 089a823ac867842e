"""Pseudo labels for video self-training (VST): confidence per class, then agreement over time.

1. Confidence (CBST-style): for each class keep the most confident ``p`` of the pixels
   predicted as that class over the whole target set; the per-class thresholds come from
   a histogram accumulated in one pass (:class:`ConfidenceHistogram`).
2. Temporal consistency: the predictions of neighbouring frames, warped to frame ``t``
   with optical flow, must agree with the label at ``t``; pixels that are occluded or out
   of view in a neighbour (forward-backward check) do not vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from vsda_deploy.labels import IGNORE_INDEX


class ConfidenceHistogram:
    """Per-class histograms of max-softmax confidence, giving class-balanced thresholds."""

    def __init__(self, num_classes: int, bins: int = 1000) -> None:
        self.num_classes, self.bins = num_classes, bins
        self.counts = torch.zeros(num_classes, bins, dtype=torch.float64)

    def update(self, confidence: Tensor, label: Tensor) -> None:
        """Add the confidences (N, H, W) of pixels predicted as ``label`` (N, H, W)."""
        conf_bin = (confidence.detach().float().clamp(0, 1 - 1e-7) * self.bins).long().cpu()
        idx = label.long().cpu() * self.bins + conf_bin
        valid = label.cpu() != IGNORE_INDEX
        self.counts += torch.bincount(idx[valid], minlength=self.num_classes * self.bins).view(
            self.num_classes, self.bins).double()

    def thresholds(self, top_fraction: float, min_confidence: float = 0.0) -> Tensor:
        """Return (C,) thresholds keeping the top ``top_fraction`` of each class's pixels."""
        # cumulative count from the top bin down: keep bins until the fraction is reached
        from_top = self.counts.flip(1).cumsum(1)
        total = from_top[:, -1:].clamp(min=1)
        reached = (from_top / total) >= top_fraction
        first = reached.float().argmax(1)  # first bin (from the top) where the fraction is reached
        thr = (self.bins - 1 - first).double() / self.bins
        thr[self.counts.sum(1) == 0] = 1.0  # a class never predicted keeps nothing
        return thr.clamp(min=min_confidence).float()


def select_confident(label: Tensor, confidence: Tensor, thresholds: Tensor) -> Tensor:
    """Return ``label`` with pixels below their class threshold set to 255."""
    thr = thresholds.to(label.device)[label.long().clamp(max=len(thresholds) - 1)]
    out = label.clone()
    out[(confidence < thr) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out


def temporal_filter(label: Tensor, warped_neighbours: list[Tensor], voting: list[Tensor]) -> Tensor:
    """Return ``label`` (N, H, W) with pixels set to 255 where a voting neighbour disagrees.

    ``warped_neighbours[i]`` (N, H, W) is neighbour i's predicted class warped to frame t;
    ``voting[i]`` (N, H, W) bool marks where it may vote (in view and not occluded).
    """
    out = label.clone()
    for warped, vote in zip(warped_neighbours, voting):
        disagree = vote & (warped != label)
        out[disagree] = IGNORE_INDEX
    return out


@dataclass
class PseudoLabelStats:
    """Kept fraction per class and, when target labels exist, pseudo-label accuracy."""

    num_classes: int
    predicted: Tensor = field(init=False)
    kept: Tensor = field(init=False)
    kept_correct: Tensor = field(init=False)
    kept_labelled: Tensor = field(init=False)
    raw_correct: Tensor = field(init=False)
    raw_labelled: Tensor = field(init=False)

    def __post_init__(self) -> None:
        z = lambda: torch.zeros(self.num_classes, dtype=torch.float64)  # noqa: E731
        self.predicted, self.kept, self.kept_correct = z(), z(), z()
        self.kept_labelled, self.raw_correct, self.raw_labelled = z(), z(), z()

    def _count(self, label: Tensor, mask: Tensor | None = None) -> Tensor:
        sel = label[label != IGNORE_INDEX] if mask is None else label[mask & (label != IGNORE_INDEX)]
        return torch.bincount(sel.long().flatten().cpu(), minlength=self.num_classes).double()

    def update(self, raw: Tensor, kept: Tensor, gt: Tensor | None = None) -> None:
        """Count raw predictions ``raw``, kept pseudo labels ``kept`` and, optionally, their accuracy."""
        self.predicted += self._count(raw)
        self.kept += self._count(kept)
        if gt is not None:
            labelled = gt != IGNORE_INDEX
            self.kept_labelled += self._count(kept, labelled)
            self.kept_correct += self._count(kept, labelled & (kept == gt))
            self.raw_labelled += self._count(raw, labelled)
            self.raw_correct += self._count(raw, labelled & (raw == gt))

    def summary(self, class_names: tuple[str, ...]) -> dict:
        """Return JSON-ready percentages: kept fraction overall/per class, accuracy raw/kept."""
        pct = lambda a, b: float(100 * a / b) if b > 0 else None  # noqa: E731
        out = {
            "kept_fraction": pct(self.kept.sum(), self.predicted.sum()),
            "kept_fraction_per_class": {
                n: pct(self.kept[i], self.predicted[i]) for i, n in enumerate(class_names)
            },
        }
        if self.kept_labelled.sum() > 0:
            out["accuracy_kept"] = pct(self.kept_correct.sum(), self.kept_labelled.sum())
            out["accuracy_raw"] = pct(self.raw_correct.sum(), self.raw_labelled.sum())
            out["accuracy_kept_per_class"] = {
                n: pct(self.kept_correct[i], self.kept_labelled[i]) for i, n in enumerate(class_names)
            }
        return out
