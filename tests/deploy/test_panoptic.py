"""Semantic -> video panoptic: components and ids that persist (vsda_deploy/panoptic.py)."""

import cv2
import numpy as np
import pytest

from vsda_deploy.panoptic import PanopticTracker, semantic_to_panoptic, split_at_necks, thing_components

ROAD, SKY, PERSON, CAR = 0, 8, 9, 10
H, W = 48, 80


def _label(car_x: int, person_x: int | None = 60) -> np.ndarray:
    label = np.full((H, W), ROAD, np.uint8)
    label[:12] = SKY
    label[20:32, car_x:car_x + 16] = CAR
    if person_x is not None:
        label[16:40, person_x:person_x + 6] = PERSON
    return label


def _frame(car_x: int, rng_seed: int = 0) -> np.ndarray:
    """Return a textured RGB frame: a static background and a textured car at ``car_x``."""
    rng = np.random.default_rng(rng_seed)
    frame = (rng.random((H, W, 3)) * 120).astype(np.uint8)
    car = 130 + (np.random.default_rng(1).random((12, 16, 3)) * 120).astype(np.uint8)
    frame[20:32, car_x:car_x + 16] = car
    return frame


def test_components_split_each_thing_class_and_drop_tiny_ones() -> None:
    label = _label(4)
    label[20:32, 40:50] = CAR  # a second car
    label[44:46, 2:4] = CAR  # 4 px speckle
    comp, classes, areas = thing_components(label, {PERSON, CAR}, min_area=5)
    assert sorted(zip(classes, areas)) == [(PERSON, 144), (CAR, 120), (CAR, 192)]
    assert comp[45, 2] == 0 and comp[0, 0] == 0
    assert len(np.unique(comp[(label == CAR) & (comp > 0)])) == 2


def _two_cars_and_a_bar() -> np.ndarray:
    """Two 12 x 12 cars (x 4..15 and 28..39) joined by a 2-px bar (rows 25..26, x 16..27), a third car apart."""
    label = np.full((H, W), ROAD, np.uint8)
    label[20:32, 4:16] = CAR
    label[20:32, 28:40] = CAR
    label[25:27, 16:28] = CAR
    label[20:32, 56:76] = CAR
    return label


def test_necks_cut_a_component_between_its_cores() -> None:
    mask = (_two_cars_and_a_bar() == CAR).astype(np.uint8)
    whole, areas = split_at_necks(mask, 0.0)
    assert areas[1:].tolist() == [144 + 24 + 144, 240]
    assert whole.max() == 2 and whole[25, 10] == whole[25, 34]  # connected: one part
    parts, areas = split_at_necks(mask, 0.5)
    assert areas[1:].tolist() == [np.count_nonzero(parts == k) for k in (1, 2, 3)]
    assert parts.max() == 3 and np.array_equal(parts > 0, mask > 0)
    left, right, apart = parts[25, 10], parts[25, 34], parts[25, 60]
    assert len({left, right, apart}) == 3
    # the cores lie around the cars' centres (x 9.5 and 33.5): each bar pixel goes to the nearer
    # one, the bar's 12 columns are halved at x 21.5 (x 16..21 left, 22..27 right)
    assert (parts[20:32, 4:16] == left).all() and (parts[25:27, 16:22] == left).all()
    assert (parts[20:32, 28:40] == right).all() and (parts[25:27, 22:28] == right).all()
    assert (parts[20:32, 56:76] == apart).all()  # a 20 x 12 box has one core: never cut
    comp, classes, areas = thing_components(_two_cars_and_a_bar(), {CAR}, min_area=0, split_ratio=0.5)
    assert classes == [CAR] * 3 and sorted(areas) == [144 + 12, 144 + 12, 240]
    assert np.array_equal(comp > 0, mask > 0)


def _blobs(seed: int) -> np.ndarray:
    """Return a 64 x 96 mask of 3 random discs and 3 random boxes (flat sides, as cars have), which
    overlap one another and stay inside the frame."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((64, 96), np.uint8)
    for x, y, r in zip(rng.integers(20, 76, 3), rng.integers(16, 48, 3), rng.integers(4, 10, 3)):
        cv2.circle(mask, (int(x), int(y)), int(r), 1, -1)
    for x, y, w, h in zip(rng.integers(8, 60, 3), rng.integers(8, 40, 3), rng.integers(8, 28, 3),
                          rng.integers(4, 14, 3)):
        mask[y:y + h, x:x + w] = 1
    return mask


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_necks_are_cut_as_the_whole_frames_distance_transform_says(seed: int, ratio: float) -> None:
    """Two paths: the cores from OpenCV's distance transform of the whole frame, one component at a
    time, against split_at_necks (which works in the mask's bounding box): every core falls in one
    part, cores of one component in different parts, and there are as many parts as cores."""
    mask = _blobs(seed)
    n, comp = cv2.connectedComponents(mask, connectivity=8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    parts, areas = split_at_necks(mask, ratio)
    expected = 0
    for c in range(1, n):
        core = ((comp == c) & (dist >= ratio * dist[comp == c].max())).astype(np.uint8)
        k, cores = cv2.connectedComponents(core, connectivity=8)
        expected += k - 1
        owners = [np.unique(parts[cores == i]) for i in range(1, k)]
        assert all(o.size == 1 for o in owners)
        assert len({int(o[0]) for o in owners}) == k - 1
    assert parts.max() == expected == len(areas) - 1
    assert np.array_equal(parts > 0, mask > 0)
    assert areas[1:].tolist() == np.bincount(parts.ravel(), minlength=expected + 1)[1:].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_components_are_the_whole_frames_per_class(seed: int) -> None:
    """Two paths: thing_components (which labels each class inside its bounding box) against OpenCV's
    8-connected components of each class's whole-frame mask: the same segments, the same areas."""
    rng = np.random.default_rng(seed)
    label = rng.choice([ROAD, SKY, PERSON, CAR], size=(H, W), p=[0.4, 0.2, 0.2, 0.2]).astype(np.uint8)
    label = cv2.medianBlur(label, 3)  # blobs, touching across classes and the frame's border
    comp, classes, areas = thing_components(label, {PERSON, CAR}, min_area=3)
    expected = []
    for cls in (PERSON, CAR):
        n, whole, stats, _ = cv2.connectedComponentsWithStats((label == cls).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] >= 3:
                ids = np.unique(comp[whole == i])
                assert ids.size == 1 and ids[0] > 0 and classes[ids[0] - 1] == cls
                expected.append((cls, int(stats[i, cv2.CC_STAT_AREA])))
            else:
                assert (comp[whole == i] == 0).all()
    assert sorted(zip(classes, areas)) == sorted(expected) and len(expected) == comp.max()


def test_translated_object_keeps_its_id_with_true_flow() -> None:
    tracker = PanopticTracker(min_area=0)
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = -10  # the car moves 10 px right per frame; the person is static
    flow[:, 56:] = 0
    first = tracker.update(_label(4))
    car_id, person_id = first[25, 10], first[25, 62]
    assert car_id > 0 and person_id > 0 and car_id != person_id
    assert (first[_label(4) == ROAD] == 0).all()  # stuff has no instance
    for t in (1, 2, 3):
        inst = tracker.update(_label(4 + 10 * t), flow=flow)
        assert inst[25, 4 + 10 * t + 5] == car_id and inst[25, 62] == person_id
        assert set(np.unique(inst).tolist()) == {0, car_id, person_id}


def test_sparse_frames_link_through_dis_flow_not_without_it() -> None:
    # 12 px per step (e.g. every 5th frame): the car masks overlap only 4/28 without motion
    xs = (4, 16, 28, 40)
    labels = [_label(x, person_x=None) for x in xs]
    with_flow = semantic_to_panoptic(labels, [_frame(x) for x in xs], min_area=0)
    ids = [inst[25, x + 8] for inst, x in zip(with_flow, xs)]
    assert ids[0] > 0 and ids == [ids[0]] * 4
    without = semantic_to_panoptic(labels, None, min_area=0)
    assert len({inst[25, x + 8] for inst, x in zip(without, xs)}) == 4  # a new id each time


def test_new_object_and_class_change_get_new_ids() -> None:
    tracker = PanopticTracker(min_area=0)
    a = tracker.update(_label(4, person_x=None))
    b_label = _label(4, person_x=60)
    b_label[20:32, 4:20] = PERSON  # the car became a person: same pixels, other class
    b = tracker.update(b_label)
    assert len({a[25, 10], b[25, 10], b[25, 62]}) == 3
    tracker.reset()
    assert tracker.update(_label(4, person_x=None))[25, 10] == 1  # ids restart per video


def test_bad_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="link_iou"):
        PanopticTracker(link_iou=0)
    with pytest.raises(ValueError, match="split_ratio"):
        PanopticTracker(split_ratio=1.0)
    tracker = PanopticTracker()
    with pytest.raises(ValueError, match="differ in size"):
        tracker.update(_label(4), frame_rgb=np.zeros((10, 10, 3), np.uint8))
    tracker.update(_label(4))
    with pytest.raises(ValueError, match="reset"):
        tracker.update(np.zeros((10, 10), np.uint8))
