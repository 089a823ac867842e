"""Panoptic-DeepLab's instance targets and loss (vsda_train/instance_loss.py).

The rules come from the authors' target generator, detectron2
``projects/Panoptic-DeepLab/panoptic_deeplab/target_generator.py`` (``PanopticDeepLabTargetGenerator``):
the centre is the instance's mean pixel coordinate; the heatmap's Gaussian sits at that centre rounded
with Python's ``round`` (half to even); the offset target is (centre - pixel) with the *unrounded*
centre, (y, x) order; overlapping Gaussians keep their maximum; the Cityscapes config ignores stuff in
the offsets (``IGNORE_STUFF_IN_OFFSET: True``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vsda_deploy.instance_grouping import group_instances
from vsda_deploy.labels import IGNORE_INDEX
from vsda_train.instance_loss import UNKNOWN, instance_loss, instance_targets

CAR, PERSON, ROAD = 12, 11, 0
THINGS = (PERSON, CAR)


def _one_car() -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.full((1, 6, 8), ROAD)
    instance = torch.zeros((1, 6, 8), dtype=torch.long)
    label[0, 1:3, 1:4] = CAR  # rows 1-2, columns 1-3: centre (1.5, 2.0), rounded (2, 2)
    instance[0, 1:3, 1:4] = 7
    label[0, 5, 7] = IGNORE_INDEX
    return instance, label


def test_targets_follow_panoptic_deeplab_rules() -> None:
    instance, label = _one_car()
    t = instance_targets(instance, label, THINGS, sigma=1.0)
    assert t.center[0, 2, 2] == 1.0  # round(1.5) == 2, as Python rounds
    assert math.isclose(float(t.center[0, 1, 2]), math.exp(-0.5), rel_tol=1e-6)  # one pixel away, sigma 1
    assert math.isclose(float(t.center[0, 0, 0]), math.exp(-(4 + 4) / 2), rel_tol=1e-5)
    assert t.offset[0, 0, 1, 1] == 0.5 and t.offset[0, 0, 2, 1] == -0.5  # unrounded centre row 1.5
    assert t.offset[0, 1, 1, 1] == 1.0 and t.offset[0, 1, 1, 3] == -1.0
    assert int(t.offset_mask.sum()) == 6 and t.offset[0, :, 4, 4].abs().sum() == 0  # stuff: no offset
    assert int(t.center_mask.sum()) == 6 * 8 - 1  # every labelled pixel, void excluded


def test_overlapping_gaussians_keep_the_maximum_and_ids_are_per_class_and_frame() -> None:
    label = torch.full((2, 5, 9), ROAD)
    instance = torch.zeros((2, 5, 9), dtype=torch.long)
    label[0, 2, 1:4], label[0, 2, 5:8] = CAR, PERSON  # one id, two classes: two instances
    instance[0, 2, 1:8] = 3
    label[1, 2, 1:4] = CAR  # the same id in another frame: a third instance
    instance[1, 2, 1:4] = 3
    t = instance_targets(instance, label, THINGS, sigma=1.0)
    assert t.center[0, 2, 2] == 1.0 and t.center[0, 2, 6] == 1.0 and t.center[1, 2, 2] == 1.0
    assert t.center[1, 2, 6] < 1e-3  # frame 1 has no person
    mid = math.exp(-4 / 2)  # (2, 4) is 2 px from both centres: the max of two equal values, not their sum
    assert math.isclose(float(t.center[0, 2, 4]), mid, rel_tol=1e-6)
    assert t.offset[0, 1, 2, 7] == -1.0 and t.offset[0, 1, 2, 5] == 1.0  # person centre x 6


def test_unknown_instances_add_nothing() -> None:
    instance, label = _one_car()
    instance[:] = UNKNOWN  # a frame without instance labels
    t = instance_targets(instance, label, THINGS, sigma=1.0)
    assert not t.center_mask.any() and not t.offset_mask.any()
    loss = instance_loss(torch.randn(1, 3, 6, 8), t, 1.0, 0.1)
    assert float(loss) == 0.0


def test_loss_of_a_zero_prediction_by_hand() -> None:
    instance, label = _one_car()
    t = instance_targets(instance, label, THINGS, sigma=1.0)
    pred = torch.zeros(1, 3, 6, 8)
    c = t.center[t.center_mask].double()
    bce = float((math.log(2) * torch.ones_like(c)).mean())  # logit 0: -t log .5 - (1-t) log .5 = log 2
    l1 = (0.5 + 1 + 0.5 + 0 + 0.5 + 1) * 2 / 6  # |dy| + |dx| over the six car pixels, mean
    assert math.isclose(bce, math.log(2))
    assert math.isclose(float(instance_loss(pred, t, 2.0, 0.1)), 2 * bce + 0.1 * l1, rel_tol=1e-6)


def test_grouping_perfect_targets_recovers_touching_instances() -> None:
    """Two paths: the training targets of touching instances, read back by the runtime's grouping,
    give the instances again, where connected components would give one segment per class."""
    label = torch.full((1, 12, 20), ROAD)
    instance = torch.zeros((1, 12, 20), dtype=torch.long)
    label[0, 3:9, 2:8], instance[0, 3:9, 2:8] = CAR, 1
    label[0, 3:9, 8:15], instance[0, 3:9, 8:15] = CAR, 2  # touches car 1
    label[0, 2:10, 15:18], instance[0, 2:10, 15:18] = PERSON, 1  # touches car 2, same id as car 1
    t = instance_targets(instance, label, THINGS, sigma=1.0)
    semantic = label[0].numpy().astype(np.uint8)
    components, classes, areas = group_instances(semantic, t.center[0].numpy(), t.offset[0].numpy(), THINGS,
                                                 threshold=0.5, nms_kernel=3)
    assert sorted(zip(classes, areas)) == [(PERSON, 24), (CAR, 36), (CAR, 42)]
    for cls, inst in ((CAR, 1), (CAR, 2), (PERSON, 1)):
        mask = (label[0] == cls).numpy() & (instance[0] == inst).numpy()
        assert len(np.unique(components[mask])) == 1 and components[mask][0] > 0
