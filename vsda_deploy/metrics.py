"""Segmentation metrics streamed frame by frame (numpy only): mIoU, VPQ and TC.

* ``ConfusionMatrix``: one matrix per split; IoU = TP / (TP + FP + FN) per class.
* ``VideoPanopticQuality``: VPQ of Cityscapes-VPS (Kim et al., CVPR 2020) by the rules of
  the official ``tools/eval_vpq.py`` of mcahny/vps (``vsda_deploy.vpq``).
* ``TemporalConsistency``: IoU between the prediction at t and the prediction at t-1
  warped to t with optical flow (Liu et al., ECCV 2020).

All three report percent. The streaming classes keep their totals over videos; ``reset()`` starts a new video.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vsda_deploy.flow import create_dis, dis_flow, warp
from vsda_deploy.labels import IGNORE_INDEX
from vsda_deploy.vpq import PQStat, Segments, VideoPanopticQuality, VPQResult, nanmean

_nanmean = nanmean


def _check_pair(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"{what}: prediction shape {pred.shape} differs from ground truth {gt.shape}")


# --- mIoU -----------------------------------------------------------------------------

def class_iou(tp: np.ndarray, gt: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Return IoU = TP / (GT + predicted - TP) per class in percent from pixel counts; NaN where both are 0."""
    tp = np.asarray(tp, np.float64)
    union = np.asarray(gt) + np.asarray(predicted) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, 100.0 * tp / np.maximum(union, 1), np.nan)


class ConfusionMatrix:
    """Pixel confusion matrix of one split, accumulated over frames (rows GT, columns prediction).

    A ground-truth pixel predicted as ``ignore_index`` counts as a miss of its class
    (column ``num_classes``); ground-truth ``ignore_index`` pixels are not counted.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def _check_ids(self, label: np.ndarray, what: str) -> None:
        bad = ((label >= self.num_classes) | (label < 0)) & (label != self.ignore_index)
        if bad.any():
            ids = np.unique(label[bad]).tolist()
            raise ValueError(f"{what} has class id(s) {ids[:5]} outside 0..{self.num_classes - 1} "
                             f"and {self.ignore_index}")

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame (or batch) of integer label maps of the same shape."""
        _check_pair(pred, gt, "ConfusionMatrix.update")
        self._check_ids(pred, "prediction")
        self._check_ids(gt, "ground truth")
        valid = gt != self.ignore_index
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        p[p == self.ignore_index] = self.num_classes
        n1 = self.num_classes + 1
        counts = np.bincount(g * n1 + p, minlength=self.num_classes * n1)
        self.matrix += counts.reshape(self.num_classes, n1)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of another matrix of the same classes (e.g. another worker)."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a "
                             f"{self.num_classes}-class one")
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """Return the per-class IoU in percent; NaN for classes absent from GT and prediction."""
        predicted = self.matrix[:, : self.num_classes]
        return class_iou(np.diag(predicted), self.matrix.sum(1), predicted.sum(0))

    def miou(self, classes: Sequence[int] | None = None) -> float:
        """Return the mean IoU (percent) over ``classes`` (default all) present in GT or prediction."""
        iou = self.iou()
        return _nanmean(iou if classes is None else iou[list(classes)])

    def pixel_accuracy(self) -> float:
        """Return the share (percent) of labelled pixels predicted right; NaN without pixels."""
        total = self.matrix.sum()
        return float(100.0 * np.trace(self.matrix[:, : self.num_classes]) / total) if total else float("nan")

    def table(self, class_names: Sequence[str]) -> dict[str, float]:
        """Return ``{class name: IoU percent}`` (NaN for absent classes)."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"got {len(class_names)} class names for {self.num_classes} classes")
        return dict(zip(class_names, self.iou().tolist()))


# --- TC -------------------------------------------------------------------------------

class TemporalConsistency:
    """Streaming TC: mean over consecutive frame pairs of the mIoU of pred_t vs warped pred_{t-1}.

    The previous prediction is warped to t with nearest-neighbour backward warping
    (``vsda_deploy.flow`` convention); pixels whose source is out of view or void in
    either map are left out. ``reset()`` between videos.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, preset: str = "medium") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._dis = create_dis(preset)
        self._pair_ious: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Start a new video. Pair scores so far are kept."""
        self._prev_pred: np.ndarray | None = None
        self._prev_frame: np.ndarray | None = None

    def update(self, pred: np.ndarray, frame_rgb: np.ndarray | None = None,
               flow: np.ndarray | None = None) -> float | None:
        """Add the next frame; return the pair's mIoU (percent), None for a video's first frame.

        ``flow`` is the backward flow t -> t-1; without it, DIS flow is computed from
        ``frame_rgb`` and the previous frame.
        """
        prev_pred, prev_frame = self._prev_pred, self._prev_frame
        self._prev_pred, self._prev_frame = pred, frame_rgb
        if prev_pred is None:
            return None
        if flow is None:
            if frame_rgb is None or prev_frame is None:
                raise ValueError("TemporalConsistency.update needs frame_rgb (for both frames) or flow")
            flow = dis_flow(frame_rgb, prev_frame, dis=self._dis)
        if flow.shape[:2] != pred.shape or prev_pred.shape != pred.shape:
            raise ValueError(f"TemporalConsistency.update: prediction {pred.shape}, previous prediction "
                             f"{prev_pred.shape} and flow {flow.shape[:2]} must have the same size")
        value = pair_consistency(pred, prev_pred, flow, self.num_classes, self.ignore_index)
        if np.isfinite(value):
            self._pair_ious.append(value)
        return value

    @property
    def pairs(self) -> int:
        return len(self._pair_ious)

    def value(self) -> float:
        """Return TC in percent (mean over scored pairs); NaN before any pair."""
        return _nanmean(np.array(self._pair_ious))


def pair_consistency(pred: np.ndarray, prev_pred: np.ndarray, flow: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> float:
    """Return the mIoU (percent) of ``pred`` vs ``prev_pred`` warped to it with ``flow``."""
    warped, valid = warp(prev_pred.astype(np.uint8), flow, nearest=True)
    keep = valid & (warped != ignore_index) & (pred != ignore_index)
    cm = ConfusionMatrix(num_classes, ignore_index)
    cm.update(pred[keep], warped[keep])
    return cm.miou()


__all__ = [
    "ConfusionMatrix",
    "PQStat",
    "Segments",
    "TemporalConsistency",
    "VPQResult",
    "VideoPanopticQuality",
    "class_iou",
    "pair_consistency",
]
