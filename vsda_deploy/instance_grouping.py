"""Thing segments from an instance head: Panoptic-DeepLab's grouping (numpy + OpenCV).

Centres are the peaks of the predicted centre heatmap: pixels equal to the maximum of their
``nms_kernel`` x ``nms_kernel`` window and above ``threshold``, the ``top_k`` highest kept. Each
thing pixel votes for the centre nearest to where its offset points; a segment is the pixels of
one class that vote for one centre. Segments under ``min_area`` pixels, and thing pixels when no
centre is found, get no instance (0), as ``thing_components`` leaves speckles. Panoptic-DeepLab
uses threshold 0.1, a 7-pixel window and the top 200 at Cityscapes' 1024 x 2048.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from vsda_deploy.panoptic import ThingSegments

DEFAULT_CENTER_THRESHOLD = 0.1
DEFAULT_NMS_KERNEL = 3  # pixels of the prediction: picked on source-val (3, 5, 7 within 0.02 PQ-things)
DEFAULT_TOP_K = 200

Prediction = np.ndarray | tuple[np.ndarray, ThingSegments]  # a train-id map, with or without thing segments


def split_prediction(prediction: Prediction) -> tuple[np.ndarray, ThingSegments | None]:
    """Return ``(train-id map, thing segments or None)`` of what a predictor returned."""
    if isinstance(prediction, tuple):
        semantic, segments = prediction
        return np.asarray(semantic), segments
    return np.asarray(prediction), None


def find_centers(center: np.ndarray, threshold: float = DEFAULT_CENTER_THRESHOLD,
                 nms_kernel: int = DEFAULT_NMS_KERNEL, top_k: int = DEFAULT_TOP_K) -> np.ndarray:
    """Return the (K, 2) float32 ``(y, x)`` of the heatmap's peaks, highest first."""
    heat = np.ascontiguousarray(center, np.float32)
    pooled = cv2.dilate(heat, np.ones((nms_kernel, nms_kernel), np.uint8))
    ys, xs = np.nonzero((heat >= pooled) & (heat > threshold))
    order = np.argsort(-heat[ys, xs], kind="stable")[:top_k]
    return np.stack([ys[order], xs[order]], 1).astype(np.float32)


def group_instances(semantic: np.ndarray, center: np.ndarray, offset: np.ndarray, things: Iterable[int],
                    min_area: int = 0, threshold: float = DEFAULT_CENTER_THRESHOLD,
                    nms_kernel: int = DEFAULT_NMS_KERNEL, top_k: int = DEFAULT_TOP_K
                    ) -> ThingSegments:
    """Return ``(components, classes, areas)`` like ``panoptic.thing_components``: an int32 map numbering
    the thing segments 1..M of ``semantic`` (H, W), grouped by ``center`` (H, W) and ``offset`` (2, H, W)."""
    components = np.zeros(semantic.shape, np.int32)
    centers = find_centers(center, threshold, nms_kernel, top_k)
    ys, xs = np.nonzero(np.isin(semantic, list(things)))
    if len(centers) == 0 or len(ys) == 0:
        return components, [], []
    vy, vx = ys + offset[0, ys, xs], xs + offset[1, ys, xs]  # where each thing pixel points
    nearest = np.zeros(len(ys), np.int64)
    best = np.full(len(ys), np.inf, np.float32)
    for k, (cy, cx) in enumerate(centers.tolist()):  # memory O(pixels), not O(pixels x centres)
        d = (vy - cy) ** 2 + (vx - cx) ** 2
        closer = d < best
        nearest[closer], best[closer] = k, d[closer]
    cls = semantic[ys, xs].astype(np.int64)
    keys, inverse, counts = np.unique(nearest * 256 + cls, return_inverse=True, return_counts=True)
    keep = counts >= min_area
    number = np.zeros(len(keys), np.int32)
    number[keep] = np.arange(1, int(keep.sum()) + 1)
    components[ys, xs] = number[inverse.ravel()]
    return components, (keys[keep] % 256).tolist(), counts[keep].tolist()


__all__ = ["Prediction", "find_centers", "group_instances", "split_prediction"]
