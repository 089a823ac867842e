"""Video panoptic quality (VPQ) of Cityscapes-VPS, by the rules of the official ``tools/eval_vpq.py``.

The rules (mcahny/vps, ``tools/eval_vpq.py`` at its latest commit): a window is ``n`` consecutive
labelled frames of one video (n = 1..4, k = (n - 1) * 5); a *tube* is every pixel of the window
that carries one segment id; a tube's class (and crowd flag) is the one its segment has in the
first frame of the window where it occurs; ground-truth and predicted tubes of the same class
match when ``I / (A_pred + A_gt - I - A_pred_on_void) > 0.5``; unmatched ground-truth tubes are
FN (crowd excepted), unmatched predicted tubes are FP unless more than half of them lies on void
or on the crowd region of their class. PQ per class = sum IoU / (TP + FP/2 + FN/2), averaged
over the classes with TP + FP + FN > 0, then over k.

Frames come in two forms: ``Segments`` (an id map and each id's class, as the official files
are) or vsda's ``(semantic, instance)`` pair, which is one segment per stuff class and per
(thing class, instance), thing instance 0 being one crowd segment per class.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vsda_deploy.labels import IGNORE_INDEX, VIPER15

MATCH_IOU = 0.5  # tube IoU above which a prediction matches a ground-truth tube
VOID_OVERLAP = 0.5  # an unmatched prediction more inside void/crowd than this is no FP
_INST_BITS = 32  # segment id of a (semantic, instance) pair = (class + 1) << 32 | instance


def nanmean(values: np.ndarray) -> float:
    """Return the mean of the finite values, NaN when there are none (without a warning)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(unique values, index of each element into them)`` of non-negative integers.

    Small values (class ids, instance ids) are counted with a bincount in O(N); large ones
    fall back to a sort.
    """
    values = values.ravel().astype(np.int64, copy=False)
    if values.size and values.max() < 4 * values.size + 65536:
        unique = np.flatnonzero(np.bincount(values))
        lut = np.zeros(int(unique[-1]) + 1, np.int64)
        lut[unique] = np.arange(unique.size)
        return unique, lut[values]
    unique, index = np.unique(values, return_inverse=True)
    return unique, index.ravel()


@dataclass(frozen=True)
class Segments:
    """One panoptic frame as the official files store it: a segment id per pixel and each id's class.

    ``ids`` (H, W) non-negative integers, 0 = void. ``classes`` maps every id in ``ids`` to a
    class of the label space; an id of class ``IGNORE_INDEX`` (a class outside the space) is
    void. ``crowd`` lists ground-truth ids marked ``iscrowd``.
    """

    ids: np.ndarray
    classes: Mapping[int, int]
    crowd: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class _Dense:
    """A frame's segments as ``keys`` (segment ids, 0 = void) and each pixel's position in them."""

    keys: np.ndarray
    index: np.ndarray
    classes: dict[int, int]
    crowd: frozenset[int]


@dataclass
class _FrameSegments:
    """Overlaps of one labelled frame: (gt id, pred id) -> pixels, areas, and each id's class."""

    pairs: dict[tuple[int, int], int]
    gt_area: dict[int, int]
    pred_area: dict[int, int]
    gt_class: dict[int, tuple[int, bool]]  # id -> (class, crowd)
    pred_class: dict[int, int]


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
    evaluated: tuple[int, ...] | None = None  # classes averaged over (None: all)

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
        pick = picks[subset].copy()
        if self.evaluated is not None:
            pick &= np.isin(np.arange(pq.size), self.evaluated)
        return nanmean(pq[pick])

    def vpq_k(self, subset: str = "all") -> dict[int, float]:
        """Return ``{k: VPQ}`` over ``subset`` (all|things|stuff) classes that occur."""
        return {k: self._mean(k, subset) for k in self.stats}

    def vpq(self, subset: str = "all") -> float:
        """Return the VPQ averaged over the window lengths k that have scores.

        A k without any window (videos shorter than its number of frames) is left out.
        """
        return nanmean(np.array(list(self.vpq_k(subset).values())))


class VideoPanopticQuality:
    """Streaming VPQ: feed the labelled frames of a video in order, ``reset()`` between videos.

    ``window_lengths`` are numbers of labelled frames per tube (1..4 in Cityscapes-VPS);
    ``frame_step`` is the spacing of labelled frames, so k = (length - 1) * frame_step.
    """

    def __init__(self, num_classes: int = VIPER15.num_classes, things: Iterable[int] = VIPER15.things,
                 window_lengths: Sequence[int] = (1, 2, 3, 4), frame_step: int = 5,
                 ignore_index: int = IGNORE_INDEX, evaluated: Sequence[int] | None = None) -> None:
        self.num_classes = num_classes
        self.things = tuple(sorted(things))
        self.ignore_index = ignore_index
        self.evaluated = None if evaluated is None else tuple(evaluated)
        self.window_lengths = tuple(window_lengths)
        self.frame_step = frame_step
        self._is_thing = np.zeros(max(256, ignore_index + 1), bool)
        self._is_thing[list(self.things)] = True
        self._stats = {n: PQStat.zeros(num_classes) for n in self.window_lengths}
        self._windows = dict.fromkeys(self.window_lengths, 0)
        self._buffer: deque[_FrameSegments] = deque(maxlen=max(self.window_lengths))

    def reset(self) -> None:
        """Start a new video: no tube spans the boundary. Totals are kept."""
        self._buffer.clear()

    # -- frames in, as (semantic, instance) or as Segments ---------------------------------

    def update(self, gt_semantic: np.ndarray, gt_instance: np.ndarray,
               pred_semantic: np.ndarray, pred_instance: np.ndarray) -> None:
        """Add the next labelled frame of the current video as ``(semantic, instance)`` pairs."""
        _check_shapes(pred_semantic, gt_semantic, "VideoPanopticQuality.update")
        gt = self._from_labels(gt_semantic, gt_instance, "ground truth")
        pred = self._from_labels(pred_semantic, pred_instance, "prediction")
        self._add(gt, pred)

    def update_segments(self, gt: Segments, pred: Segments) -> None:
        """Add the next labelled frame of the current video as segment maps (the official form)."""
        _check_shapes(pred.ids, gt.ids, "VideoPanopticQuality.update_segments")
        self._add(self._from_segments(gt, "ground truth"), self._from_segments(pred, "prediction"))

    def _from_labels(self, semantic: np.ndarray, instance: np.ndarray, what: str) -> _Dense:
        """Return the segments of a ``(semantic, instance)`` pair (see the module docstring)."""
        if semantic.shape != instance.shape:
            raise ValueError(f"{what}: semantic {semantic.shape} and instance {instance.shape} differ")
        if semantic.dtype.kind not in "ui" or instance.dtype.kind not in "ui":
            raise ValueError(f"{what}: semantic and instance must be integer arrays")
        sem = semantic.ravel()
        if sem.size and sem.min() < 0:
            raise ValueError(f"{what} has negative class ids")
        classes, cls_index = compact(sem)
        self._check_classes(classes.tolist(), what)
        inst = np.where(self._is_thing[sem], instance.ravel(), 0)  # stuff: one segment per class
        if inst.size and inst.min() < 0:
            raise ValueError(f"{what} has negative instance ids")
        inst_ids, inst_index = compact(inst)
        codes, index = compact(cls_index * inst_ids.size + inst_index)
        cls = classes[codes // inst_ids.size].astype(np.int64)
        ins = inst_ids[codes % inst_ids.size].astype(np.int64)
        keys = np.where(cls == self.ignore_index, 0, ((cls + 1) << _INST_BITS) | ins)
        label = {int(k): int(c) for k, c in zip(keys.tolist(), cls.tolist()) if k}
        crowd = frozenset(int(k) for k, c, i in zip(keys.tolist(), cls.tolist(), ins.tolist())
                          if k and self._is_thing[c] and i == 0)
        return _Dense(keys, index, label, crowd)

    def _from_segments(self, seg: Segments, what: str) -> _Dense:
        ids = np.asarray(seg.ids)
        if ids.dtype.kind not in "ui" or (ids.size and ids.min() < 0):
            raise ValueError(f"{what}: segment ids must be non-negative integers")
        keys, index = compact(ids)
        missing = [k for k in keys.tolist() if k and k not in seg.classes]
        if missing:
            raise ValueError(f"{what}: segment id(s) {missing[:5]} have no class")
        label = {k: int(seg.classes[k]) for k in keys.tolist() if k}
        self._check_classes(list(label.values()), what)
        void = [k for k, c in label.items() if c == self.ignore_index]
        if void:  # segments of classes outside the label space are void
            keys = np.where(np.isin(keys, void), 0, keys)
            label = {k: c for k, c in label.items() if c != self.ignore_index}
        return _Dense(keys.astype(np.int64), index, label, frozenset(seg.crowd) & set(label))

    def _check_classes(self, classes: list[int], what: str) -> None:
        bad = [c for c in classes if (c >= self.num_classes or c < 0) and c != self.ignore_index]
        if bad:
            raise ValueError(f"{what} has class id(s) {bad[:5]} outside 0..{self.num_classes - 1} "
                             f"and {self.ignore_index}")

    # -- windows ---------------------------------------------------------------------------

    def _add(self, gt: _Dense, pred: _Dense) -> None:
        self._buffer.append(_frame_segments(gt, pred))
        frames = list(self._buffer)
        for n in self.window_lengths:
            if len(frames) >= n:
                self._match_window(frames[-n:], self._stats[n])
                self._windows[n] += 1

    def _match_window(self, frames: list[_FrameSegments], stat: PQStat) -> None:
        """Match the tubes of one window and add TP/FP/FN/IoU per class (official rules)."""
        pairs: Counter = Counter()
        gt_area: Counter = Counter()
        pred_area: Counter = Counter()
        gt_class: dict[int, tuple[int, bool]] = {}
        pred_class: dict[int, int] = {}
        for f in frames:  # a tube sums its frames; its class is that of its first frame
            pairs.update(f.pairs)
            gt_area.update(f.gt_area)
            pred_area.update(f.pred_area)
            for g, c in f.gt_class.items():
                gt_class.setdefault(g, c)
            for p, c in f.pred_class.items():
                pred_class.setdefault(p, c)
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in pairs.items():
            if g == 0 or gt_class[g][1] or gt_class[g][0] != pred_class[p]:
                continue
            # Pixels of the prediction on void are left out of the union.
            iou = inter / (pred_area[p] + gt_area[g] - inter - pairs.get((0, p), 0))
            if iou > MATCH_IOU:
                cls = gt_class[g][0]
                stat.tp[cls] += 1
                stat.iou[cls] += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd = {}  # class -> crowd id of the window (the last one, as the official dict keeps)
        for g, (cls, is_crowd) in gt_class.items():
            if g in gt_matched:
                continue
            if is_crowd:
                crowd[cls] = g
                continue
            stat.fn[cls] += 1
        for p, area in pred_area.items():
            if p in pred_matched:
                continue
            cls = pred_class[p]
            ignored = pairs.get((0, p), 0) + (pairs.get((crowd[cls], p), 0) if cls in crowd else 0)
            if ignored / area > VOID_OVERLAP:
                continue
            stat.fp[cls] += 1

    def result(self) -> VPQResult:
        """Return the VPQ of everything fed so far."""
        stats = {(n - 1) * self.frame_step: PQStat(s.iou.copy(), s.tp.copy(), s.fp.copy(), s.fn.copy())
                 for n, s in self._stats.items()}
        windows = {(n - 1) * self.frame_step: c for n, c in self._windows.items()}
        return VPQResult(stats, self.things, windows, self.evaluated)


def _frame_segments(gt: _Dense, pred: _Dense) -> _FrameSegments:
    """Return the overlaps and areas of one frame; predicted void is no segment."""
    counts = np.bincount(gt.index * pred.keys.size + pred.index, minlength=gt.keys.size * pred.keys.size)
    counts = counts.reshape(gt.keys.size, pred.keys.size)
    gk, pk = gt.keys.tolist(), pred.keys.tolist()
    pairs: Counter = Counter()
    gt_area: Counter = Counter()
    pred_area: Counter = Counter()
    for i, j in zip(*np.nonzero(counts)):
        g, p, n = gk[i], pk[j], int(counts[i, j])
        if g:
            gt_area[g] += n
        if p:  # ground-truth void stays in ``pairs`` for the void rule
            pred_area[p] += n
            pairs[(g, p)] += n
    gt_class = {g: (c, g in gt.crowd) for g, c in gt.classes.items() if g in gt_area}
    pred_class = {p: c for p, c in pred.classes.items() if p in pred_area}
    return _FrameSegments(dict(pairs), dict(gt_area), dict(pred_area), gt_class, pred_class)


def _check_shapes(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"{what}: prediction shape {pred.shape} differs from ground truth {gt.shape}")




def segments_from_labels(semantic: np.ndarray, instance: np.ndarray, things: Iterable[int],
                         ignore_index: int = IGNORE_INDEX) -> Segments:
    """Return the ``Segments`` of a ``(semantic, instance)`` pair (see the module docstring)."""
    things = set(things)
    sem = semantic.astype(np.int64)
    is_thing = np.isin(sem, list(things))
    ids = np.where(sem == ignore_index, 0, ((sem + 1) << _INST_BITS) | np.where(is_thing, instance, 0))
    keys = np.unique(ids)
    classes = {int(k): (int(k) >> _INST_BITS) - 1 for k in keys.tolist() if k}
    crowd = frozenset(k for k, c in classes.items() if c in things and k & 0xFFFFFFFF == 0)
    return Segments(ids, classes, crowd)


__all__ = ["PQStat", "Segments", "VPQResult", "VideoPanopticQuality", "segments_from_labels"]
