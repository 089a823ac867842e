"""Label spaces and id maps (method.md)."""

import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.labels import (
    CITYSCAPES_LUT,
    CS19_TO_VIPER15_LUT,
    SYNTHIA12,
    VIPER15,
    VIPER_LUT,
    unknown_ids,
)


def test_viper15_space() -> None:
    assert VIPER15.num_classes == 15
    assert VIPER15.classes[8] == "sky" and VIPER15.classes[14] == "bicycle"
    assert sorted(VIPER15.things) == [9, 10, 11, 12, 13, 14]
    assert VIPER15.palette[0] == (128, 64, 128)


def test_viper_ids_map_to_train_ids() -> None:
    assert VIPER_LUT[3] == 0 and VIPER_LUT[7] == 6 and VIPER_LUT[8] == 6 and VIPER_LUT[22] == 14
    assert VIPER_LUT[0] == 255 and VIPER_LUT[25] == 255  # unlabelled, van


def test_cityscapes_rider_is_person_and_pole_is_void() -> None:
    lut = CITYSCAPES_LUT["viper15"]
    assert lut[24] == lut[25] == 9
    assert lut[17] == 255
    assert CS19_TO_VIPER15_LUT[12] == 9 and CS19_TO_VIPER15_LUT[5] == 255 and CS19_TO_VIPER15_LUT[16] == 255


def test_synthia_evaluates_11_of_12() -> None:
    assert SYNTHIA12.num_classes == 12 and len(SYNTHIA12.eval_classes) == 11
    assert 3 not in SYNTHIA12.eval_classes  # fence dropped


def test_unknown_ids() -> None:
    assert unknown_ids(np.array([0, 5, 40, 255]), 34) == [40]


def test_panoptic_inst_round_trip() -> None:
    sem = np.array([[0, 9, 10, 255, 8]], np.uint8)
    inst = np.array([[0, 3, 0, 0, 0]], np.int32)
    enc = vps.encode_panoptic_inst(sem, inst)
    assert enc.tolist() == [[0, 11003, 13, 255, 10]]  # person 11, car 13 crowd, sky 10
    s2, i2 = vps.decode_panoptic_inst(enc)
    assert (s2 == sem).all() and (i2 == inst).all()


def test_segments_round_trip_keeps_crowd_and_instances() -> None:
    sem = np.array([[0, 9, 10, 255]], np.uint8)
    inst = np.array([[0, 3, 0, 0]], np.int32)
    seg, info = vps.to_segments(sem, inst)
    crowd = {s["category_id"]: s["iscrowd"] for s in info}
    assert crowd == {0: 0, 11: 0, 13: 1}
    rgb = vps.id_to_rgb(seg)
    s2, i2 = vps.from_segments(vps.rgb_to_id(rgb), info)
    assert (s2 == sem).all() and (i2 > 0).tolist() == [[False, True, False, False]]
