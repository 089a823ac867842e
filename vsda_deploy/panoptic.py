"""Video panoptic labels from a semantic segmenter (numpy + OpenCV).

Stuff is one segment per class and frame (instance 0). Each thing class is split into
connected components; those under ``min_area`` pixels keep instance 0, so a prediction's
speckles form one leftover segment per class and frame. With ``split_ratio`` > 0 a component
whose distance transform has several cores (pixels at least ``split_ratio`` times as deep as
its deepest point) is cut between them, so two blobs joined by a neck become two segments.
A component takes the id of the previous frame's instance of the same class whose mask,
warped to the current frame with optical flow, overlaps it best (greedy one-to-one matching
on mask IoU at least ``link_iou``), else a new id. Ids therefore persist over a video, which
is what VPQ scores. Works on consecutive frames and on sparse ones (every 5th frame): the
flow is taken between the frames given.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from vsda_deploy.flow import create_dis, dis_flow, warp
from vsda_deploy.labels import VIPER15

# Picked on the synthetic val split (GT semantic, clean and with speckle noise): smaller
# thing blobs are mostly noise (they join the class's one leftover segment, instance 0),
# and a low link IoU keeps ids across 5-frame gaps where DIS flow is rough.
DEFAULT_MIN_AREA = 8  # pixels, at the prediction's resolution
DEFAULT_LINK_IOU = 0.2
# No cut at necks by default: on the synthetic benchmark a cut moved VPQ-things by tenths of a point
# (benchmarks/results/probes/neck-split-vm-2026-12-07.json); touching instances rarely form necks.
DEFAULT_SPLIT_RATIO = 0.0

ThingSegments = tuple[np.ndarray, list[int], list[int]]  # (int32 map numbering segments 1..M, classes, areas)


def _box_around(mask: np.ndarray) -> tuple[slice, slice]:
    """Return the mask's bounding box with a 1-px margin of background (clipped to the frame): inside
    it, connected components and distances to the background are those of the whole frame."""
    x, y, w, h = cv2.boundingRect(mask)
    x, y = max(x - 1, 0), max(y - 1, 0)
    return slice(y, y + h + 2), slice(x, x + w + 2)


def split_at_necks(mask: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(parts, areas)``: an int32 map numbering the parts of a binary ``mask`` 1..K (0 outside
    it) and the pixel count of each (``areas[0]`` is the background's).

    Parts are the 8-connected components, each cut between its cores: the connected regions where
    the L2 distance to the background is at least ``ratio`` times the component's maximum. Every
    pixel of a cut component goes to its nearest core (Euclidean). ``ratio`` 0 cuts nothing.
    The work is over the whole of ``mask``: ``thing_components`` passes the box ``_box_around`` gives.
    """
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1 or ratio <= 0:
        return comp, stats[:, cv2.CC_STAT_AREA]
    inside = mask > 0
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    peak = np.zeros(n, np.float32)
    np.maximum.at(peak, comp[inside], dist[inside])
    core = (inside & (dist >= ratio * peak[comp])).astype(np.uint8)
    n_cores, cores = cv2.connectedComponents(core, connectivity=8, ltype=cv2.CV_32S)
    owner = np.zeros(n_cores, np.int32)  # core -> its component
    owner[cores[core > 0]] = comp[core > 0]
    next_part = n
    for c in np.flatnonzero(np.bincount(owner[1:], minlength=n) > 1).tolist():
        next_part = _cut(comp, cores, stats[c], c, next_part)
    if next_part == n:
        return comp, stats[:, cv2.CC_STAT_AREA]
    return comp, np.bincount(comp[inside], minlength=next_part)


def _cut(comp: np.ndarray, cores: np.ndarray, stat: np.ndarray, c: int, next_part: int) -> int:
    """Give each pixel of component ``c`` (in place) its nearest core's part: the first core keeps
    ``c``, the others take ``next_part``, ``next_part + 1``, ...; return the next free part number."""
    x, y, w, h = stat[:4].tolist()
    box = (slice(y, y + h), slice(x, x + w))
    mine = comp[box] == c
    seeds = np.where(mine, cores[box], 0)
    _, nearest = cv2.distanceTransformWithLabels((seeds == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    seed_of = np.zeros(int(nearest.max()) + 1, np.int32)  # nearest seed pixel -> its core
    ys, xs = np.nonzero(seeds)
    seed_of[nearest[ys, xs]] = seeds[ys, xs]
    part = seed_of[nearest]
    ids = np.unique(part[mine]).tolist()
    lut = np.zeros(int(part.max()) + 1, np.int32)
    lut[ids] = [c, *range(next_part, next_part + len(ids) - 1)]
    comp[box] = np.where(mine, lut[part], comp[box])
    return next_part + len(ids) - 1


def thing_components(semantic: np.ndarray, things: Iterable[int], min_area: int = 0,
                     split_ratio: float = DEFAULT_SPLIT_RATIO) -> tuple[np.ndarray, list[int], list[int]]:
    """Return ``(components, classes, areas)``: an int32 map numbering the thing components 1..M.

    Components (8-connected, cut at necks by ``split_at_necks`` when ``split_ratio`` > 0) smaller
    than ``min_area`` pixels are 0, like stuff and void. ``classes[i]`` and ``areas[i]`` describe
    component ``i + 1``.
    """
    components = np.zeros(semantic.shape, np.int32)
    classes: list[int] = []
    areas: list[int] = []
    present = set(np.unique(semantic).tolist())
    for cls in sorted(set(things) & present):
        mask = (semantic == cls).astype(np.uint8)
        box = _box_around(mask)  # labelling a class's box, not the frame: 4x faster at 1024x512
        labels, part_areas = split_at_necks(mask[box], split_ratio)
        lut = np.zeros(len(part_areas), np.int32)  # part -> component number (0: dropped)
        for i, area in enumerate(part_areas[1:].tolist(), start=1):
            if area >= min_area:
                classes.append(cls)
                areas.append(area)
                lut[i] = len(classes)
        components[box] += lut[labels]  # classes do not overlap, background maps to 0
    return components, classes, areas


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Return one-to-one ``(row, col)`` pairs taken by descending IoU, IoU >= ``threshold``."""
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r, used_c, pairs = set(), set(), []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


def thing_segments(semantic: np.ndarray, things: Iterable[int], segments: ThingSegments | None = None,
                   min_area: int = DEFAULT_MIN_AREA, split_ratio: float = DEFAULT_SPLIT_RATIO) -> ThingSegments:
    """Return ``segments`` when given (an instance head's, ``instance_grouping.group_instances``), else the
    thing components the panoptic step cuts from ``semantic`` (``thing_components``)."""
    if segments is not None:
        return segments
    return thing_components(semantic, things, min_area, split_ratio)


class PanopticTracker:
    """Streaming semantic -> panoptic: ``update(semantic, frame_rgb)`` returns the instance map.

    ``reset()`` starts a new video (ids restart at 1). Without ``frame_rgb`` and ``flow``
    the previous instances are compared in place (zero flow).
    """

    def __init__(self, things: Iterable[int] = VIPER15.things, min_area: int = DEFAULT_MIN_AREA,
                 link_iou: float = DEFAULT_LINK_IOU, preset: str = "medium",
                 split_ratio: float = DEFAULT_SPLIT_RATIO) -> None:
        if not 0.0 < link_iou <= 1.0:
            raise ValueError(f"link_iou must be in (0, 1], got {link_iou}")
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        if not 0.0 <= split_ratio < 1.0:
            raise ValueError(f"split_ratio must be in [0, 1), got {split_ratio}")
        self.things = tuple(sorted(things))
        self.min_area = min_area
        self.split_ratio = split_ratio
        self.link_iou = link_iou
        self._dis = create_dis(preset)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame and restart ids at 1."""
        self._prev_instance: np.ndarray | None = None
        self._prev_frame: np.ndarray | None = None
        self._prev_class: dict[int, int] = {}
        self._next_id = 1

    def update(self, semantic: np.ndarray, frame_rgb: np.ndarray | None = None,
               flow: np.ndarray | None = None, segments: ThingSegments | None = None) -> np.ndarray:
        """Return the int32 instance map of this frame (0 for stuff, void and tiny components).

        ``flow`` is the backward flow from this frame to the previous one given; without
        it, DIS flow is computed from ``frame_rgb`` and the previous frame when both exist.
        ``segments`` (an instance head's, ``instance_grouping.group_instances``) replace the
        thing components cut from ``semantic``.
        """
        if frame_rgb is not None and frame_rgb.shape[:2] != semantic.shape:
            raise ValueError(f"PanopticTracker.update: frame {frame_rgb.shape[:2]} and semantic "
                             f"{semantic.shape} differ in size")
        components, classes, areas = thing_segments(semantic, self.things, segments, self.min_area,
                                                    self.split_ratio)
        ids = self._link(components, classes, areas, self._flow_to_prev(semantic, frame_rgb, flow))
        lut = np.zeros(len(classes) + 1, np.int32)
        lut[1:] = ids
        instance = lut[components]
        self._prev_instance, self._prev_frame = instance, frame_rgb
        self._prev_class = dict(zip(ids, classes))
        return instance

    def _flow_to_prev(self, semantic: np.ndarray, frame_rgb: np.ndarray | None,
                      flow: np.ndarray | None) -> np.ndarray | None:
        if self._prev_instance is None:
            return None
        if self._prev_instance.shape != semantic.shape:
            raise ValueError(f"PanopticTracker.update: frame size {semantic.shape} differs from the "
                             f"previous frame {self._prev_instance.shape}; call reset() between videos")
        if flow is None and frame_rgb is not None and self._prev_frame is not None:
            flow = dis_flow(frame_rgb, self._prev_frame, dis=self._dis)
        return flow

    def _link(self, components: np.ndarray, classes: list[int], areas: list[int],
              flow: np.ndarray | None) -> list[int]:
        """Return the instance id of every component: a previous id when linked, else a new one."""
        ids = [0] * len(classes)
        if self._prev_instance is not None and classes and self._prev_class:
            prev = self._prev_instance
            if flow is not None:
                prev, valid = warp(prev, flow, nearest=True)
                prev = np.where(valid, prev, 0)
            for comp, prev_id in self._match(components, classes, areas, prev):
                ids[comp] = prev_id
        for i, cur in enumerate(ids):
            if cur == 0:
                ids[i] = self._next_id
                self._next_id += 1
        return ids

    def _match(self, components: np.ndarray, classes: list[int], areas: list[int],
               prev: np.ndarray) -> list[tuple[int, int]]:
        """Return ``(component index, previous id)`` links by mask IoU, same class only."""
        prev_ids = np.array(sorted(self._prev_class), np.int64)
        lut = np.full(int(prev_ids.max()) + 1, -1, np.int64)
        lut[prev_ids] = np.arange(prev_ids.size)
        col = lut[prev]  # -1 where no previous instance landed
        n_comp = len(classes)
        prev_area = np.bincount(col[col >= 0], minlength=prev_ids.size)
        both = (components > 0) & (col >= 0)
        inter = np.bincount((components[both] - 1).astype(np.int64) * prev_ids.size + col[both],
                            minlength=n_comp * prev_ids.size).reshape(n_comp, prev_ids.size)
        union = np.asarray(areas)[:, None] + prev_area[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        prev_classes = np.array([self._prev_class[i] for i in prev_ids.tolist()])
        iou[np.asarray(classes)[:, None] != prev_classes[None, :]] = 0.0  # same class only
        return [(r, int(prev_ids[c])) for r, c in _greedy_match(iou, self.link_iou)]


def semantic_to_panoptic(semantics: Iterable[np.ndarray], frames: Iterable[np.ndarray | None] | None = None,
                         things: Iterable[int] = VIPER15.things, min_area: int = DEFAULT_MIN_AREA,
                         link_iou: float = DEFAULT_LINK_IOU, preset: str = "medium") -> list[np.ndarray]:
    """Return the instance maps of one video's semantic maps (in frame order), ids persistent.

    ``frames`` are the matching RGB frames for optical flow; None links without motion.
    """
    tracker = PanopticTracker(things, min_area, link_iou, preset)
    semantics = list(semantics)
    frames = [None] * len(semantics) if frames is None else list(frames)
    if len(frames) != len(semantics):
        raise ValueError(f"semantic_to_panoptic: {len(semantics)} label maps but {len(frames)} frames")
    return [tracker.update(s, f) for s, f in zip(semantics, frames)]


__all__ = ["PanopticTracker", "ThingSegments", "semantic_to_panoptic", "thing_components", "thing_segments"]
