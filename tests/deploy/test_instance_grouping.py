"""Panoptic-DeepLab's grouping of thing pixels by predicted centres and offsets (vsda_deploy/instance_grouping.py).

Rules from the authors' post-processing, detectron2 ``projects/Panoptic-DeepLab/panoptic_deeplab/
post_processing.py``: centres are heatmap pixels equal to their window's max-pool and above the
threshold, the top k kept; each thing pixel joins the centre nearest to pixel + offset.
"""

from __future__ import annotations

import numpy as np

from vsda_deploy.instance_grouping import find_centers, group_instances, split_prediction
from vsda_deploy.panoptic import PanopticTracker

CAR, PERSON = 12, 11


def _pointing(shape: tuple[int, int], centres: list[tuple[int, int]], owner: np.ndarray) -> np.ndarray:
    """Return (2, H, W) offsets from each pixel to ``centres[owner]``."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    cy = np.array([c[0] for c in centres])[owner]
    cx = np.array([c[1] for c in centres])[owner]
    return np.stack([cy - yy, cx - xx]).astype(np.float32)


def test_peaks_are_window_maxima_above_the_threshold_highest_first() -> None:
    heat = np.zeros((9, 9), np.float32)
    heat[2, 2], heat[2, 3] = 0.9, 0.5  # 0.5 is not the max of its window
    heat[7, 7], heat[5, 0] = 0.3, 0.05  # 0.05 is under the threshold
    assert find_centers(heat, 0.1, 3).tolist() == [[2, 2], [7, 7]]
    assert find_centers(heat, 0.1, 3, top_k=1).tolist() == [[2, 2]]
    assert find_centers(heat, 0.1, 1).tolist() == [[2, 2], [2, 3], [7, 7]]  # a 1-px window keeps every pixel


def test_one_component_two_centres_two_segments_and_a_class_boundary() -> None:
    semantic = np.zeros((8, 12), np.uint8)
    semantic[2:6, 1:11] = CAR
    semantic[2:6, 9:11] = PERSON  # a person in the right car's region: its own segment
    heat = np.zeros((8, 12), np.float32)
    heat[3, 3], heat[4, 8] = 0.9, 0.8
    owner = (np.mgrid[0:8, 0:12][1] >= 6).astype(int)
    comps, classes, areas = group_instances(semantic, heat, _pointing((8, 12), [(3, 3), (4, 8)], owner), (PERSON, CAR))
    assert sorted(zip(classes, areas)) == [(PERSON, 8), (CAR, 12), (CAR, 20)]
    assert len(np.unique(comps[2:6, 1:6])) == 1 and len(np.unique(comps[2:6, 6:9])) == 1
    assert comps[0, 0] == 0 and comps[2, 1] != comps[2, 7] != comps[2, 9]


def test_min_area_and_no_centre_leave_pixels_without_instance() -> None:
    semantic = np.zeros((8, 12), np.uint8)
    semantic[2:6, 1:11] = CAR
    heat = np.zeros((8, 12), np.float32)
    heat[3, 3], heat[4, 10] = 0.9, 0.8
    owner = (np.mgrid[0:8, 0:12][1] >= 10).astype(int)  # 4 pixels vote for the second centre
    offset = _pointing((8, 12), [(3, 3), (4, 10)], owner)
    comps, classes, areas = group_instances(semantic, heat, offset, (CAR,), min_area=5)
    assert classes == [CAR] and areas == [36] and (comps[2:6, 10] == 0).all()
    comps, classes, _ = group_instances(semantic, np.zeros_like(heat), offset, (CAR,))
    assert classes == [] and not comps.any()


def test_tracker_links_the_given_segments_over_frames() -> None:
    semantic = np.zeros((8, 12), np.uint8)
    semantic[2:6, 1:11] = CAR  # one connected component
    heat = np.zeros((8, 12), np.float32)
    heat[3, 3], heat[4, 8] = 0.9, 0.8
    owner = (np.mgrid[0:8, 0:12][1] >= 6).astype(int)
    segments = group_instances(semantic, heat, _pointing((8, 12), [(3, 3), (4, 8)], owner), (CAR,))
    tracker = PanopticTracker(things=(CAR,), min_area=0)
    first = tracker.update(semantic, segments=segments)
    second = tracker.update(semantic, segments=segments)
    assert len(np.unique(first[semantic == CAR])) == 2 and (first == second).all()
    assert len(np.unique(PanopticTracker(things=(CAR,), min_area=0).update(semantic)[semantic == CAR])) == 1


def test_split_prediction_reads_both_forms() -> None:
    semantic = np.zeros((2, 3), np.uint8)
    assert split_prediction(semantic)[1] is None
    segments = (np.zeros((2, 3), np.int32), [], [])
    assert split_prediction((semantic, segments))[1] is segments
