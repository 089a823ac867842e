"""Pseudo-label rules of video self-training (VST), as plain functions over numpy arrays.

1. Confidence (CBST-style): for each class keep the most confident ``p`` of the pixels
   predicted as that class over the whole target set. Confidences are quantised to 256 levels
   (``quantise``), so the per-class thresholds come exactly from a histogram of integer counts
   (:class:`ConfidenceHistogram`), which DDP ranks add up to identical thresholds.
2. Temporal consistency: the predictions of neighbouring frames, warped to frame ``t`` with
   optical flow, must agree with the label at ``t``; pixels that are occluded or out of view in
   a neighbour (forward-backward check) do not vote.

Both rules only turn pixels into 255, so they commute; what ``vst.time_first`` changes is which
pixels the histogram counts (every prediction, or only the temporally consistent ones). With
``vst.time_rule: rank`` time orders instead of vetoing: each pixel's rank is its confidence
level, raised by ``LEVELS`` where it is temporally consistent (:func:`time_ranks`), and the
class-balanced top fraction is taken over these ranks, so every class keeps as many pixels as
without time, the consistent ones first. With ``vst.time_rule: fuse`` time adds evidence instead:
each pixel's softmax is averaged with those of the neighbours that see it, warped by the flow
(:func:`fuse_probs`), and the class-balanced top fraction is taken over the fused confidences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vsda_deploy.labels import IGNORE_INDEX
from vsda_deploy.metrics import class_iou

LEVELS = 256  # confidence levels of a uint8 quantisation


def quantise(confidence: np.ndarray) -> np.ndarray:
    """Return max-softmax confidences in [0, 1] as uint8 levels ``round(255 * c)``."""
    return np.rint(np.clip(confidence, 0.0, 1.0) * (LEVELS - 1)).astype(np.uint8)


class ConfidenceHistogram:
    """Per-class counts of each confidence level, giving class-balanced thresholds."""

    def __init__(self, num_classes: int, levels: int = LEVELS) -> None:
        self.num_classes, self.levels = num_classes, levels
        self.counts = np.zeros((num_classes, levels), np.int64)

    def update(self, levels: np.ndarray, label: np.ndarray) -> None:
        """Add the confidence levels (or ranks) of the pixels labelled ``label`` (255 ignored)."""
        keep = label != IGNORE_INDEX
        idx = label[keep].astype(np.int64) * self.levels + levels[keep]
        n = self.num_classes * self.levels
        self.counts += np.bincount(idx, minlength=n).reshape(self.num_classes, self.levels)

    def thresholds(self, top_fraction: float, min_confidence: float = 0.0) -> np.ndarray:
        """Return (C,) int levels: a pixel of class c is kept at a level >= thresholds[c].

        The threshold is the highest level at which at least ``top_fraction`` of the class's
        pixels are kept; a class never predicted gets ``LEVELS`` (keeps nothing).
        """
        from_top = self.counts[:, ::-1].cumsum(1)
        total = np.maximum(from_top[:, -1:], 1)
        first = (from_top >= top_fraction * total).argmax(1)  # levels counted from the top
        thr = self.levels - 1 - first
        thr[self.counts.sum(1) == 0] = self.levels
        return np.maximum(thr, min_level(min_confidence))


def min_level(min_confidence: float) -> int:
    """Return the lowest quantised level at or above ``min_confidence``."""
    return int(np.ceil(min_confidence * (LEVELS - 1) - 1e-9))


def time_ranks(label: np.ndarray, consistent: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Return uint16 ranks: each pixel's confidence level, plus ``LEVELS`` where the temporal filter kept it.

    ``consistent`` is ``label`` with 255 where a neighbour disagreed (:func:`temporal_filter`).
    """
    agreed = (consistent == label) & (label != IGNORE_INDEX)
    return levels.astype(np.uint16) + np.uint16(LEVELS) * agreed.astype(np.uint16)


def select_confident(label: np.ndarray, levels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Return ``label`` with pixels below their class threshold set to 255."""
    table = np.append(thresholds, np.iinfo(np.int64).max)  # a void pixel is never kept
    cls = np.where(label == IGNORE_INDEX, len(thresholds), label)
    return np.where(levels >= table[cls], label, IGNORE_INDEX).astype(label.dtype)


def temporal_filter(label: np.ndarray, warped_neighbours: Sequence[np.ndarray],
                    voting: Sequence[np.ndarray]) -> np.ndarray:
    """Return ``label`` with pixels set to 255 where a voting neighbour disagrees.

    ``warped_neighbours[i]`` is neighbour i's predicted class warped to frame t; ``voting[i]``
    (bool) marks where it may vote (in view and not occluded).
    """
    out = label.copy()
    for warped, vote in zip(warped_neighbours, voting, strict=True):
        out[vote & (warped != label)] = IGNORE_INDEX
    return out


def fuse_probs(probs: np.ndarray, warped_neighbours: Sequence[np.ndarray],
               seen: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return (class, confidence level) of each pixel from the mean of its softmax and its neighbours'.

    ``probs`` is frame t's (H, W, C) softmax; ``warped_neighbours[i]`` is neighbour i's softmax warped
    to frame t and ``seen[i]`` (bool, (H, W)) where it sees the pixel: a neighbour that does not see a
    pixel takes no part in its mean.
    """
    total, count = probs.astype(np.float32), np.ones(probs.shape[:2], np.float32)
    for warped, mask in zip(warped_neighbours, seen, strict=True):
        total += warped * mask[..., None]
        count += mask
    mean = total / count[..., None]
    return mean.argmax(2).astype(np.uint8), quantise(mean.max(2))


class PseudoLabelStats:
    """Kept fraction per class and, when target labels exist, pseudo-label accuracy (integer counts).

    ``update_time`` counts how often the neighbours agree with the right and with the wrong raw pixels,
    all of them and those confident enough to be kept: time can only sort out errors that pass less
    often than right pixels, and beyond what the confidence does only among the confident ones.
    """

    FIELDS = ("predicted", "kept", "kept_correct", "kept_labelled", "raw_correct", "raw_labelled", "gt_labelled")
    TIME = ("right", "right_agreed", "wrong", "wrong_agreed")  # raw labelled pixels; rows: all, confident

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.counts = np.zeros((len(self.FIELDS), num_classes), np.int64)
        self.time = np.zeros((2, len(self.TIME)), np.int64)

    def _count(self, label: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        keep = label != IGNORE_INDEX if mask is None else mask & (label != IGNORE_INDEX)
        return np.bincount(label[keep].astype(np.int64), minlength=self.num_classes)

    def update(self, raw: np.ndarray, kept: np.ndarray, gt: np.ndarray | None = None) -> None:
        """Count raw predictions ``raw``, kept pseudo labels ``kept`` and, optionally, their accuracy."""
        row = dict(zip(self.FIELDS, self.counts))
        row["predicted"] += self._count(raw)
        row["kept"] += self._count(kept)
        if gt is not None:
            labelled = gt != IGNORE_INDEX
            row["kept_labelled"] += self._count(kept, labelled)
            row["kept_correct"] += self._count(kept, labelled & (kept == gt))
            row["raw_labelled"] += self._count(raw, labelled)
            row["raw_correct"] += self._count(raw, labelled & (raw == gt))
            row["gt_labelled"] += self._count(gt)

    def update_time(self, raw: np.ndarray, consistent: np.ndarray, confident: np.ndarray, gt: np.ndarray) -> None:
        """Count the right and wrong raw pixels and those the neighbours agree with (``consistent == raw``),
        over all labelled pixels and over the ``confident`` ones (bool: those the thresholds keep)."""
        labelled = (gt != IGNORE_INDEX) & (raw != IGNORE_INDEX)
        right, agreed = raw == gt, consistent == raw
        for row, where in zip(self.time, (labelled, labelled & confident)):
            row += [np.count_nonzero(where & right), np.count_nonzero(where & right & agreed),
                    np.count_nonzero(where & ~right), np.count_nonzero(where & ~right & agreed)]

    def summary(self, class_names: Sequence[str]) -> dict:
        """Return JSON-ready percentages: kept fraction overall/per class, accuracy raw/kept, the raw labels' IoU.

        ``miou_raw`` scores the labels before any filter as a segmentation (mean over the classes in
        the ground truth or the prediction): pixel accuracy favours the large classes, this does not.
        """
        c = dict(zip(self.FIELDS, self.counts))

        def pct(a: float, b: float) -> float | None:
            return float(100 * a / b) if b > 0 else None

        out = {
            "kept_fraction": pct(c["kept"].sum(), c["predicted"].sum()),
            "kept_fraction_per_class": {n: pct(c["kept"][i], c["predicted"][i]) for i, n in enumerate(class_names)},
        }
        if c["kept_labelled"].sum() > 0:
            out["accuracy_kept"] = pct(c["kept_correct"].sum(), c["kept_labelled"].sum())
            out["accuracy_raw"] = pct(c["raw_correct"].sum(), c["raw_labelled"].sum())
            out["accuracy_kept_per_class"] = {
                n: pct(c["kept_correct"][i], c["kept_labelled"][i]) for i, n in enumerate(class_names)
            }
            iou = class_iou(c["raw_correct"], c["gt_labelled"], c["raw_labelled"])
            present = iou[~np.isnan(iou)]  # classes in the ground truth or the prediction
            out["miou_raw"] = float(present.mean()) if present.size else None
            out["iou_raw_per_class"] = {n: None if np.isnan(v) else float(v) for n, v in zip(class_names, iou)}
        if self.time.any():  # the share of right and of wrong raw pixels the neighbours agree with
            agreement = {}
            for among, row in (("", self.time[0]), ("_confident", self.time[1])):
                t = dict(zip(self.TIME, row.tolist()))
                agreement[f"right{among}"] = pct(t["right_agreed"], t["right"])
                agreement[f"wrong{among}"] = pct(t["wrong_agreed"], t["wrong"])
            out["time_agreement"] = agreement
        return out


__all__ = ["LEVELS", "ConfidenceHistogram", "PseudoLabelStats", "min_level", "quantise", "select_confident",
           "temporal_filter", "time_ranks"]
