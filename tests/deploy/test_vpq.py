"""VPQ by the official rules (vsda_deploy/vpq.py): hand-computed cases and an independent reading.

The two cases where vsda once disagreed with the official ``tools/eval_vpq.py`` (mcahny/vps) are
computed by hand here: several segments of one stuff class in a frame (each is its own
segment), and a thing segment id whose class changes between frames (the tube keeps the class
of its first frame in the window). ``official_vpq`` (tests/deploy/official_vpq.py) reads the
same rules independently; random valid predictions must score exactly alike.
"""

import numpy as np
import pytest

from tests.deploy.official_vpq import official_vpq
from vsda_deploy.labels import VIPER15
from vsda_deploy.vpq import Segments, VideoPanopticQuality, segments_from_labels

ROAD, BUILDING, SKY, PERSON, CAR = 0, 2, 8, 9, 10


def seg(ids: list[int], classes: dict[int, int], crowd: frozenset = frozenset()) -> Segments:
    return Segments(np.array([ids], np.int64), classes, crowd)


def test_two_segments_of_one_stuff_class_are_two_segments() -> None:
    # GT: road (id 1) on 8 px. Prediction: road as two segments, id 10 on 5 px and id 11 on 3 px.
    # id 10: I = 5, U = 5 + 8 - 5 = 8 -> IoU 5/8 > .5: TP. id 11: 3/8: unmatched, not on void: FP.
    # PQ road = (5/8) / (1 + 1/2) = 41.67 (merging the two would give 100).
    vpq = VideoPanopticQuality(window_lengths=(1,))
    vpq.update_segments(seg([1] * 8, {1: ROAD}), seg([10] * 5 + [11] * 3, {10: ROAD, 11: ROAD}))
    stat = vpq.result().stats[0]
    assert (stat.tp[ROAD], stat.fp[ROAD], stat.fn[ROAD]) == (1, 1, 0)
    assert vpq.result().per_class(0)[ROAD] == pytest.approx(100 * (5 / 8) / 1.5)


def test_a_thing_id_that_changes_class_keeps_its_first_class_in_a_tube() -> None:
    # GT in both frames: person id 1 on px 0-3, car id 2 on px 4-7.
    # Pred: id 7 on px 0-3 is a person in frame A and a car in frame B; id 8 is a car on px 4-7.
    gt = seg([1] * 4 + [2] * 4, {1: PERSON, 2: CAR})
    pred_a = seg([7] * 4 + [8] * 4, {7: PERSON, 8: CAR})
    pred_b = seg([7] * 4 + [8] * 4, {7: CAR, 8: CAR})
    vpq = VideoPanopticQuality(window_lengths=(1, 2))
    vpq.update_segments(gt, pred_a)
    vpq.update_segments(gt, pred_b)
    res = vpq.result()
    # k=0: A: person TP, car TP. B: id 7 is a car there: person FN, id 7 a car FP (no overlap with a
    #   GT car), car TP. Person 1 / (1 + 1/2) = 66.7; car 2 / (2 + 1/2) = 80.
    assert res.per_class(0)[[PERSON, CAR]] == pytest.approx([200 / 3, 80])
    # k=5: tube 7 is a person (its class in frame A) over 8 px and covers GT person 1 exactly: TP.
    assert res.per_class(5)[[PERSON, CAR]] == pytest.approx([100, 100])
    assert res.vpq_k()[5] == pytest.approx(100)


def test_segments_of_a_class_outside_the_space_are_void() -> None:
    # GT road on 4 px, void on 4. Pred: road on 0-3, a 255-class segment (e.g. a wall in VIPER15) on 4-7.
    vpq = VideoPanopticQuality(window_lengths=(1,))
    vpq.update_segments(seg([1] * 4 + [0] * 4, {1: ROAD}), seg([5] * 4 + [6] * 4, {5: ROAD, 6: 255}))
    assert vpq.result().per_class(0)[ROAD] == pytest.approx(100)
    assert np.nansum(vpq.result().stats[0].fp) == 0


def test_labels_and_segments_forms_score_alike() -> None:
    sem = np.array([[ROAD, ROAD, CAR, CAR, PERSON, PERSON, 255, SKY]], np.uint8)
    inst = np.array([[0, 0, 11000, 11000, 0, 0, 0, 0]], np.int32)  # person without instance: crowd
    a, b = VideoPanopticQuality(), VideoPanopticQuality()
    pred_sem = np.array([[ROAD, ROAD, CAR, CAR, PERSON, ROAD, ROAD, SKY]], np.uint8)
    pred_inst = np.array([[0, 0, 4, 4, 6, 0, 0, 0]], np.int32)
    a.update(sem, inst, pred_sem, pred_inst)
    b.update_segments(segments_from_labels(sem, inst, VIPER15.things),
                      segments_from_labels(pred_sem, pred_inst, VIPER15.things))
    assert a.result().vpq() == pytest.approx(b.result().vpq())
    assert b.result().stats[0].fp[PERSON] == 0  # the person on the crowd region is no FP


def _random_video(rng: np.random.Generator, frames: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return GT ``(semantic, instance)`` frames: stuff bands, two moving cars, a person, void specks."""
    out = []
    for t in range(frames):
        sem = np.full((24, 40), ROAD, np.uint8)
        sem[:8] = BUILDING
        sem[:3] = SKY
        inst = np.zeros(sem.shape, np.int32)
        for i, (y, x) in enumerate(((10, 2 + 2 * t), (14, 30 - 2 * t))):
            sem[y:y + 6, x:x + 8], inst[y:y + 6, x:x + 8] = CAR, 13000 + i
        sem[9:20, 20:23], inst[9:20, 20:23] = PERSON, 11000
        sem[rng.random(sem.shape) < 0.03] = 255
        out.append((sem, inst))
    return out


def _perturb(rng: np.random.Generator, sem: np.ndarray, inst: np.ndarray, t: int) -> Segments:
    """Return a valid official-style prediction: stuff split into several segments, thing ids that
    change class between frames, shifted masks, random blobs."""
    ids = np.zeros(sem.shape, np.int64)
    classes: dict[int, int] = {}
    shifted_sem, shifted_inst = np.roll(sem, rng.integers(-1, 2), 1), np.roll(inst, rng.integers(-1, 2), 1)
    for c in np.unique(shifted_sem).tolist():
        if c == 255:
            continue
        mask = shifted_sem == c
        if c in VIPER15.things:
            for i in np.unique(shifted_inst[mask]).tolist():
                sid = 100 + i % 1000 + 10 * (c == CAR)
                ids[mask & (shifted_inst == i)] = sid
                # the person id is a car every other frame: a thing id whose class changes
                classes[sid] = CAR if (c == PERSON and t % 2) else c
        else:
            left = np.arange(sem.shape[1]) < rng.integers(0, sem.shape[1])
            for part, sel in enumerate((mask & left, mask & ~left)):
                if sel.any():
                    ids[sel] = 1 + c * 10 + part  # several segments of one stuff class
                    classes[1 + c * 10 + part] = c
    blob = rng.random(sem.shape) < 0.02
    ids[blob], classes[999] = 999, int(rng.choice([ROAD, CAR, PERSON]))
    if not blob.any():
        del classes[999]
    return Segments(ids, classes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_valid_predictions_score_as_the_official_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vpq = VideoPanopticQuality()
    videos = []
    for _ in range(2):
        gt_frames, pred_frames = [], []
        vpq.reset()
        for t, (sem, inst) in enumerate(_random_video(rng)):
            gt = segments_from_labels(sem, inst, VIPER15.things)
            pred = _perturb(rng, sem, inst, t)
            vpq.update_segments(gt, pred)
            gt_frames.append((gt.ids, {i: (c, int(i in gt.crowd)) for i, c in gt.classes.items()}))
            pred_frames.append((pred.ids, {i: (c, 0) for i, c in pred.classes.items()}))
        videos.append((gt_frames, pred_frames))
    ref = official_vpq(videos, {c: c in VIPER15.things for c in range(VIPER15.num_classes)})
    res = vpq.result()
    for k, (all_, things, stuff) in ref["k"].items():
        assert [res.vpq_k()[k], res.vpq_k("things")[k], res.vpq_k("stuff")[k]] == pytest.approx([all_, things, stuff])
    assert res.vpq() == pytest.approx(ref["vpq"][0]) and 0 < res.vpq() < 100
