"""mIoU, VPQ and TC against hand-computed values (vsda_deploy/metrics.py)."""

import math

import numpy as np
import pytest

from vsda_deploy.metrics import ConfusionMatrix, TemporalConsistency, VideoPanopticQuality, pair_consistency

ROAD, BUILDING, PERSON, CAR = 0, 2, 9, 10
V = 255


def row(*values: int) -> np.ndarray:
    return np.array([values], np.int64)


# --- ConfusionMatrix ------------------------------------------------------------------

def test_confusion_matrix_against_hand_counts() -> None:
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1, 1, 1, V, 2]), np.array([0, 0, 1, 1, 2, V]))
    # rows GT, cols pred (+ a last column for GT pixels predicted void); GT void not counted
    expected = np.zeros((4, 5), np.int64)
    expected[0, 0] = expected[0, 1] = 1
    expected[1, 1] = 2
    expected[2, 4] = 1
    assert (cm.matrix == expected).all()
    iou = cm.iou()
    # road 1/(2+1-1); class 1: 2/(2+3-2); class 2: 0/(1+0-0); class 3 absent everywhere
    assert iou[:3] == pytest.approx([50.0, 200 / 3, 0.0])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((50 + 200 / 3 + 0) / 3)
    assert cm.miou(classes=[0, 1]) == pytest.approx((50 + 200 / 3) / 2)
    assert cm.pixel_accuracy() == pytest.approx(100 * 3 / 5)
    assert cm.table(["a", "b", "c", "d"])["b"] == pytest.approx(200 / 3)


def test_confusion_matrix_accumulates_pixels_not_image_means() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0]), np.array([0, 0]))  # image 1: class 0 IoU 100
    cm.update(np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0]))  # image 2: class 0 IoU 25
    # one matrix: class 0 tp 3, gt 6 -> IoU 50; class 1 tp 0, pred 3 -> IoU 0
    assert cm.iou().tolist() == pytest.approx([50.0, 0.0])
    other = ConfusionMatrix(2)
    other.update(np.array([1]), np.array([1]))
    cm.merge(other)
    assert cm.iou()[1] == pytest.approx(100 / 4)


def test_confusion_matrix_rejects_bad_input() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="prediction has class id"):
        cm.update(np.array([7]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))


# --- VPQ ------------------------------------------------------------------------------

def _toy_vpq() -> VideoPanopticQuality:
    vpq = VideoPanopticQuality()
    # Frame A. GT: road 0-3, car #1 4-7, person crowd 8-9, void 10-11.
    gt_a = row(ROAD, ROAD, ROAD, ROAD, CAR, CAR, CAR, CAR, PERSON, PERSON, V, V)
    gt_ai = row(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)
    # Pred: road 0-2 and 7, car #5 3-6, person #3 8-11 (all on crowd or void).
    pr_a = row(ROAD, ROAD, ROAD, CAR, CAR, CAR, CAR, ROAD, PERSON, PERSON, PERSON, PERSON)
    pr_ai = row(0, 0, 0, 5, 5, 5, 5, 0, 3, 3, 3, 3)
    # Frame B. GT: road 0-3, car #1 4-7, person #2 8-11. Pred: exact road and car #5, person #3 8-9.
    gt_b = row(ROAD, ROAD, ROAD, ROAD, CAR, CAR, CAR, CAR, PERSON, PERSON, PERSON, PERSON)
    gt_bi = row(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2)
    pr_b = row(ROAD, ROAD, ROAD, ROAD, CAR, CAR, CAR, CAR, PERSON, PERSON, V, V)
    pr_bi = row(0, 0, 0, 0, 5, 5, 5, 5, 3, 3, 0, 0)
    vpq.update(gt_a, gt_ai, pr_a, pr_ai)
    vpq.update(gt_b, gt_bi, pr_b, pr_bi)
    return vpq


def test_vpq_two_frame_toy_by_hand() -> None:
    res = _toy_vpq().result()
    # k=0, frame A: road I=3 U=4+4-3=5 -> TP .6; car I=3 U=5 -> TP .6; pred person #3 lies
    #   2 px on crowd + 2 px on void = 4/4 > .5 -> not an FP.
    # k=0, frame B: road TP 1, car TP 1; person #2 vs #3: I=2 U=4+2-2=4 -> .5, not > .5:
    #   FN person, FP person (no crowd in B).
    # PQ road = car = 1.6 / 2 = .8; person 0 / (0 + .5 + .5) = 0.
    k0 = res.stats[0]
    assert k0.tp[ROAD] == 2 and k0.tp[CAR] == 2 and k0.fp[PERSON] == 1 and k0.fn[PERSON] == 1
    assert res.per_class(0)[[ROAD, CAR, PERSON]] == pytest.approx([80, 80, 0])
    assert res.vpq_k()[0] == pytest.approx(160 / 3)
    assert res.vpq_k("things")[0] == pytest.approx(40)
    assert res.vpq_k("stuff")[0] == pytest.approx(80)
    # k=5, tube A+B: road I=7 U=8+8-7=9 -> 7/9; car I=7 U=9 -> 7/9;
    #   person #2 (4 px) vs #3 (6 px): I=2, U = 6+4-2-2 (void under #3) = 6 -> 1/3: FN;
    #   #3 unmatched: (2 void + 2 crowd) / 6 > .5 -> not an FP. PQ person = 0.
    k5 = res.stats[5]
    assert k5.tp[ROAD] == 1 and k5.fn[PERSON] == 1 and k5.fp[PERSON] == 0
    assert res.per_class(5)[[ROAD, CAR, PERSON]] == pytest.approx([700 / 9, 700 / 9, 0])
    assert res.vpq_k()[5] == pytest.approx(1400 / 27)
    assert res.vpq_k("things")[5] == pytest.approx(350 / 9)
    # k=10, 15: no window of 3 or 4 labelled frames -> left out of the mean over k
    assert res.windows == {0: 2, 5: 1, 10: 0, 15: 0}
    assert math.isnan(res.vpq_k()[10])
    assert res.vpq() == pytest.approx((160 / 3 + 1400 / 27) / 2)


def _random_video(rng: np.random.Generator, frames: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for t in range(frames):
        sem = np.full((20, 30), ROAD, np.uint8)
        sem[:6] = BUILDING
        sem[0] = V
        inst = np.zeros(sem.shape, np.int32)
        sem[8:14, 2 + t:10 + t], inst[8:14, 2 + t:10 + t] = CAR, 1
        sem[10:18, 20 - t:24 - t], inst[10:18, 20 - t:24 - t] = PERSON, 2
        sem[15:19, 12:15] = CAR  # crowd: a thing without instance
        sem[rng.random(sem.shape) < 0.02] = V
        out.append((sem, inst))
    return out


def test_perfect_prediction_scores_100() -> None:
    video = _random_video(np.random.default_rng(0))
    vpq, cm = VideoPanopticQuality(), ConfusionMatrix(15)
    for sem, inst in video:
        vpq.update(sem, inst, sem, inst * 7)  # ids differ from GT ids but are consistent
        cm.update(sem, sem)
    res = vpq.result()
    assert cm.miou() == pytest.approx(100)
    assert [res.vpq_k()[k] for k in (0, 5, 10, 15)] == pytest.approx([100] * 4)
    assert res.vpq() == pytest.approx(100) and res.vpq("things") == pytest.approx(100)
    # huge instance ids (counted by sorting, not by bincount) score the same
    big = VideoPanopticQuality()
    for sem, inst in video:
        big.update(sem, inst, sem, np.where(inst > 0, inst + 2**30, 0).astype(np.int64))
    assert big.result().vpq() == pytest.approx(100)


def test_swapped_instance_ids_lose_vpq_only_for_k_above_0() -> None:
    sem = np.full((10, 20), ROAD, np.uint8)
    inst = np.zeros(sem.shape, np.int32)
    sem[2:6, 2:7], inst[2:6, 2:7] = CAR, 1
    sem[2:6, 12:17], inst[2:6, 12:17] = CAR, 2  # same size as car #1
    swapped = np.where(inst > 0, 3 - inst, 0)
    vpq = VideoPanopticQuality()
    for t in range(4):
        vpq.update(sem, inst, sem, swapped if t % 2 else inst)
    res = vpq.result()
    assert res.vpq_k("things")[0] == pytest.approx(100)
    # Over >= 2 frames, predicted tube #1 covers GT car #1 in half of its frames and
    # car #2 in the other half: IoU = 1/2 for even windows, not > .5 -> no match.
    assert res.stats[5].tp[CAR] == 0 and res.stats[5].fn[CAR] == 2 * 3 and res.stats[5].fp[CAR] == 2 * 3
    assert res.vpq_k("things")[5] == pytest.approx(0)
    assert res.vpq_k("things")[15] == pytest.approx(0)
    # 3-frame windows: the id kept twice covers 2/3 of one car -> IoU 2/(3+3-2) = .5 again
    assert res.vpq_k("things")[10] == pytest.approx(0)
    assert res.vpq_k("stuff") == pytest.approx({0: 100, 5: 100, 10: 100, 15: 100})


def test_prediction_mostly_in_void_is_not_a_false_positive() -> None:
    gt = row(ROAD, ROAD, ROAD, ROAD, V, V, V, V)
    gi = np.zeros_like(gt)
    inside = row(ROAD, ROAD, ROAD, ROAD, CAR, CAR, CAR, ROAD)  # car 3/3 on void
    straddles = row(ROAD, ROAD, CAR, CAR, CAR, V, V, V)  # car 1/3 on void -> FP
    for pred, fp in ((inside, 0), (straddles, 1)):
        vpq = VideoPanopticQuality(window_lengths=(1,))
        vpq.update(gt, gi, pred, np.where(pred == CAR, 4, 0))
        assert vpq.result().stats[0].fp[CAR] == fp


def test_vpq_does_not_link_tubes_across_videos() -> None:
    sem = row(CAR, CAR, ROAD, ROAD)
    vpq = VideoPanopticQuality(window_lengths=(1, 2))
    vpq.update(sem, row(1, 1, 0, 0), sem, row(1, 1, 0, 0))
    vpq.reset()
    vpq.update(sem, row(1, 1, 0, 0), sem, row(1, 1, 0, 0))
    assert vpq.result().windows == {0: 2, 5: 0}


def test_vpq_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="prediction has class id"):
        VideoPanopticQuality().update(row(0), row(0), row(20), row(0))


# --- TC -------------------------------------------------------------------------------

def _scene(shift: int) -> np.ndarray:
    label = np.zeros((24, 40), np.uint8)
    label[6:16, 5 + shift:15 + shift] = CAR
    label[18:, :] = 1
    return label


def test_tc_of_translation_with_true_flow_is_100() -> None:
    tc = TemporalConsistency(15)
    # The object moves 3 px right per frame, so pixel x of frame t came from x - 3.
    flow = np.zeros((24, 40, 2), np.float32)
    flow[..., 0] = -3
    assert tc.update(_scene(0)) is None
    for t in (1, 2, 3):
        assert tc.update(_scene(3 * t), flow=flow) == pytest.approx(100)
    assert tc.pairs == 3 and tc.value() == pytest.approx(100)


def test_tc_of_flicker_by_hand_and_static_video_with_dis() -> None:
    prev = np.zeros((4, 4), np.uint8)
    cur = prev.copy()
    cur[:, 2:] = 1
    # class 0: I=8, U=16 -> 50; class 1: I=0, U=8 -> 0; mean 25
    assert pair_consistency(cur, prev, np.zeros((4, 4, 2), np.float32), 2) == pytest.approx(25)
    rng = np.random.default_rng(0)
    frame = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    tc = TemporalConsistency(15)
    for _ in range(3):
        tc.update(_scene(0), frame_rgb=frame)
    assert tc.pairs == 2 and tc.value() == pytest.approx(100)
    tc.reset()
    assert tc.update(_scene(0)) is None  # a new video starts without a pair
    with pytest.raises(ValueError, match="frame_rgb"):
        tc.update(_scene(0))
