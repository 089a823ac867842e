"""Segmentation metrics streamed frame by frame (numpy only): mIoU, VPQ and TC.

* ``ConfusionMatrix``: one matrix per split; IoU = TP / (TP + FP + FN) per class.
* ``VideoPanopticQuality``: VPQ of Cityscapes-VPS (Kim et al., CVPR 2020), matching the
  official ``tools/eval_vpq.py`` of mcahny/vps: windows of 1..4 labelled frames
  (k = 0, 5, 10, 15), tubes = segments with the same id over a window, tube IoU > 0.5.
* ``TemporalConsistency``: IoU between the prediction at t and the prediction at t-1
  warped to t with optical flow (Liu et al., ECCV 2020).

All three report percent. Panoptic frames are vsda's ``(semantic, instance)`` pair
(see ``vsda_deploy.cityscapes_vps``): a thing pixel with instance 0 is *crowd* in the
ground truth and one leftover segment per class and frame in a prediction.
The streaming classes keep their totals over videos; ``reset()`` starts a new video.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from vsda_deploy.flow import create_dis, dis_flow, warp
from vsda_deploy.labels import IGNORE_INDEX, VIPER15

MATCH_IOU = 0.5  # tube IoU above which a prediction matches a ground-truth tube
VOID_OVERLAP = 0.5  # an unmatched prediction more inside void/crowd than this is no FP
_INST_BITS = 32  # segment key = class << 32 | instance


def _nanmean(values: np.ndarray) -> float:
    """Return the mean of the finite values, NaN when there are none (without a warning)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(unique values, index of each element into them)`` of non-negative integers.

    Small values (the usual case: class ids, instance ids) are counted with a bincount in
    O(N); large ones fall back to a sort.
    """
    values = values.ravel().astype(np.int64, copy=False)
    if values.size and values.max() < 4 * values.size + 65536:
        unique = np.flatnonzero(np.bincount(values))
        lut = np.zeros(int(unique[-1]) + 1, np.int64)
        lut[unique] = np.arange(unique.size)
        return unique, lut[values]
    unique, index = np.unique(values, return_inverse=True)
    return unique, index.ravel()


def _check_pair(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"{what}: prediction shape {pred.shape} differs from ground truth {gt.shape}")


# --- mIoU -----------------------------------------------------------------------------

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
        tp = np.diag(self.matrix[:, : self.num_classes]).astype(np.float64)
        union = self.matrix.sum(1) + self.matrix[:, : self.num_classes].sum(0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, 100.0 * tp / np.maximum(union, 1), np.nan)

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


# --- VPQ ------------------------------------------------------------------------------

@dataclass
class _FrameSegments:
    """Overlaps of one labelled frame: (gt key, pred key) -> pixels, and segment areas."""

    pairs: dict[tuple[int, int], int]
    gt_area: dict[int, int]
    pred_area: dict[int, int]


@dataclass(frozen=True)
class PQStat:
    """Per-class totals of one window length: matched IoU sum, TP, FP, FN."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> PQStat:
        z = np.zeros(num_classes, np.int64)
        return cls(np.zeros(num_classes), z.copy(), z.copy(), z.copy())

    def pq(self) -> np.ndarray:
        """Return the per-class PQ in percent; NaN for classes with TP + FP + FN = 0."""
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 100.0 * self.iou / np.maximum(denom, 1e-12), np.nan)


@dataclass(frozen=True)
class VPQResult:
    """VPQ (percent) per window ``k`` and averaged over k; All / Things / Stuff."""

    stats: dict[int, PQStat]  # k (frames between first and last labelled frame) -> totals
    things: tuple[int, ...]
    windows: dict[int, int]  # k -> number of windows scored

    def per_class(self, k: int) -> np.ndarray:
        """Return the per-class PQ (percent) of window ``k``."""
        return self.stats[k].pq()

    def _mean(self, k: int, subset: str) -> float:
        pq = self.per_class(k)
        thing = np.zeros(pq.size, bool)
        thing[list(self.things)] = True
        picks = {"all": np.ones_like(thing), "things": thing, "stuff": ~thing}
        if subset not in picks:
            raise ValueError(f"unknown VPQ subset {subset!r}; choose from {sorted(picks)}")
        return _nanmean(pq[picks[subset]])

    def vpq_k(self, subset: str = "all") -> dict[int, float]:
        """Return ``{k: VPQ}`` over ``subset`` (all|things|stuff) classes that occur."""
        return {k: self._mean(k, subset) for k in self.stats}

    def vpq(self, subset: str = "all") -> float:
        """Return the VPQ averaged over the window lengths k that have scores.

        A k without any window (videos shorter than its number of frames) is left out.
        """
        return _nanmean(np.array(list(self.vpq_k(subset).values())))


class VideoPanopticQuality:
    """Streaming VPQ: feed the labelled frames of a video in order, ``reset()`` between videos.

    ``window_lengths`` are numbers of labelled frames per tube (1..4 in Cityscapes-VPS);
    ``frame_step`` is the spacing of labelled frames, so k = (length - 1) * frame_step.
    """

    def __init__(self, num_classes: int = VIPER15.num_classes, things: Iterable[int] = VIPER15.things,
                 window_lengths: Sequence[int] = (1, 2, 3, 4), frame_step: int = 5,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.things = tuple(sorted(things))
        self.ignore_index = ignore_index
        self.window_lengths = tuple(window_lengths)
        self.frame_step = frame_step
        self._is_thing = np.zeros(max(256, ignore_index + 1), bool)
        self._is_thing[list(self.things)] = True
        self._void = ignore_index << _INST_BITS
        self._stats = {n: PQStat.zeros(num_classes) for n in self.window_lengths}
        self._windows = dict.fromkeys(self.window_lengths, 0)
        self._buffer: deque[_FrameSegments] = deque(maxlen=max(self.window_lengths))

    def reset(self) -> None:
        """Start a new video: no tube spans the boundary. Totals are kept."""
        self._buffer.clear()

    def _segments(self, semantic: np.ndarray, instance: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(keys, index)``: the frame's segment keys (class << 32 | instance) and each pixel's key."""
        if semantic.shape != instance.shape:
            raise ValueError(f"{what}: semantic {semantic.shape} and instance {instance.shape} differ")
        if semantic.dtype.kind not in "ui" or instance.dtype.kind not in "ui":
            raise ValueError(f"{what}: semantic and instance must be integer arrays")
        sem = semantic.ravel()
        if sem.size and sem.min() < 0:
            raise ValueError(f"{what} has negative class ids")
        classes, cls_index = _compact(sem)
        bad = [c for c in classes.tolist() if c >= self.num_classes and c != self.ignore_index]
        if bad:
            raise ValueError(f"{what} has class id(s) {bad[:5]} outside 0..{self.num_classes - 1} "
                             f"and {self.ignore_index}")
        # Stuff and void ignore the instance map: stuff is one segment per class and frame.
        inst = np.where(self._is_thing[sem], instance.ravel(), 0)
        if inst.size and inst.min() < 0:
            raise ValueError(f"{what} has negative instance ids")
        inst_ids, inst_index = _compact(inst)
        codes, index = _compact(cls_index * inst_ids.size + inst_index)
        keys = (classes[codes // inst_ids.size].astype(np.int64) << _INST_BITS) | inst_ids[codes % inst_ids.size]
        return keys, index

    def _frame_segments(self, gt: tuple[np.ndarray, np.ndarray],
                        pred: tuple[np.ndarray, np.ndarray]) -> _FrameSegments:
        (gu, gi), (pu, pi) = gt, pred
        counts = np.bincount(gi * pu.size + pi, minlength=gu.size * pu.size).reshape(gu.size, pu.size)
        gu, pu = gu.tolist(), pu.tolist()
        rows, cols = np.nonzero(counts)
        # Predicted void is no segment; ground-truth void stays in ``pairs`` for the void rule.
        pairs = {(gu[i], pu[j]): int(counts[i, j]) for i, j in zip(rows.tolist(), cols.tolist())
                 if pu[j] != self._void}
        gt_area = {g: a for g, a in zip(gu, counts.sum(1).tolist()) if g != self._void}
        pred_area = {p: a for p, a in zip(pu, counts.sum(0).tolist()) if p != self._void}
        return _FrameSegments(pairs, gt_area, pred_area)

    def update(self, gt_semantic: np.ndarray, gt_instance: np.ndarray,
               pred_semantic: np.ndarray, pred_instance: np.ndarray) -> None:
        """Add the next labelled frame of the current video and score the windows ending at it."""
        _check_pair(pred_semantic, gt_semantic, "VideoPanopticQuality.update")
        gt = self._segments(gt_semantic, gt_instance, "ground truth")
        pred = self._segments(pred_semantic, pred_instance, "prediction")
        self._buffer.append(self._frame_segments(gt, pred))
        frames = list(self._buffer)
        for n in self.window_lengths:
            if len(frames) >= n:
                self._match_window(frames[-n:], self._stats[n])
                self._windows[n] += 1

    def _is_crowd(self, gt_key: int) -> bool:
        return bool(self._is_thing[gt_key >> _INST_BITS]) and gt_key & 0xFFFFFFFF == 0

    def _match_window(self, frames: list[_FrameSegments], stat: PQStat) -> None:
        """Match the tubes of one window and add TP/FP/FN/IoU per class (official rules)."""
        pairs: Counter = Counter()
        gt_area: Counter = Counter()
        pred_area: Counter = Counter()
        for f in frames:  # a tube's intersections and areas are sums over its frames
            pairs.update(f.pairs)
            gt_area.update(f.gt_area)
            pred_area.update(f.pred_area)
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in pairs.items():
            if g == self._void or self._is_crowd(g) or g >> _INST_BITS != p >> _INST_BITS:
                continue
            # Pixels of the prediction on void are left out of the union.
            union = pred_area[p] + gt_area[g] - inter - pairs.get((self._void, p), 0)
            iou = inter / union
            if iou > MATCH_IOU:
                cls = g >> _INST_BITS
                stat.tp[cls] += 1
                stat.iou[cls] += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd = {}  # class -> crowd key of the window
        for g in gt_area:
            if g in gt_matched:
                continue
            if self._is_crowd(g):
                crowd[g >> _INST_BITS] = g
                continue
            stat.fn[g >> _INST_BITS] += 1
        for p, area in pred_area.items():
            if p in pred_matched:
                continue
            cls = p >> _INST_BITS
            ignored = pairs.get((self._void, p), 0)
            if cls in crowd:
                ignored += pairs.get((crowd[cls], p), 0)
            if ignored / area > VOID_OVERLAP:
                continue
            stat.fp[cls] += 1

    def result(self) -> VPQResult:
        """Return the VPQ of everything fed so far."""
        stats = {(n - 1) * self.frame_step: PQStat(s.iou.copy(), s.tp.copy(), s.fp.copy(), s.fn.copy())
                 for n, s in self._stats.items()}
        windows = {(n - 1) * self.frame_step: c for n, c in self._windows.items()}
        return VPQResult(stats, self.things, windows)


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
    "TemporalConsistency",
    "VPQResult",
    "VideoPanopticQuality",
    "pair_consistency",
]
