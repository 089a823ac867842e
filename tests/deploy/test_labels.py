"""Label spaces and id maps (docs/method.md)."""

import numpy as np
import pytest

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.labels import (
    CITYSCAPES_LUT,
    CS19_TO_VIPER15_LUT,
    FROM_CS19_LUT,
    SYNTHIA12,
    TO_CS19_LUT,
    VIPER15,
    VIPER_LUT,
    get_label_space,
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


def test_cityscapes19_and_synthia12_maps() -> None:
    lut = CITYSCAPES_LUT["cityscapes19"]  # cityscapesscripts labels.py, trainId column
    assert [lut[i] for i in (7, 8, 12, 17, 25, 31, 33, 0, 34 - 1)] == [0, 1, 3, 5, 12, 16, 18, 255, 18]
    assert FROM_CS19_LUT["synthia12"][[5, 9, 12, 14]].tolist() == [4, 255, 10, 255]  # pole, terrain, rider, truck
    for space in ("viper15", "synthia12", "cityscapes19"):
        n = get_label_space(space).num_classes
        assert (FROM_CS19_LUT[space][TO_CS19_LUT[space][np.arange(n)]] == np.arange(n)).all()


def test_panoptic_inst_obj_id_0_is_an_object() -> None:
    # create_panoptic_labels.py (mcahny/vps): thing = trainId * 1000 + inst_id % 1000, "obj_id can be ZERO";
    # thing pixels without an instance stay 255.
    sem = np.array([[0, 9, 9, 10, 10, 255, 8]], np.uint8)
    obj = np.array([[-1, 0, 1, 0, -1, -1, -1]], np.int64)
    enc = vps.encode_panoptic_inst(sem, obj)
    assert enc.dtype == np.uint16 and enc.tolist() == [[0, 11000, 11001, 13000, 255, 255, 10]]
    value = np.array([[0, 11000, 11001, 12000, 13, 255, 10, 16000]], np.uint16)
    s15, i15 = vps.decode_panoptic_inst(value)
    assert s15.tolist() == [[0, 9, 9, 9, 10, 255, 8, 255]]  # rider is person, train is void
    assert i15.tolist() == [[0, 11000, 11001, 12000, 0, 0, 0, 0]]  # 13: a car crowd region
    s19, i19 = vps.decode_panoptic_inst(value, space="cityscapes19")
    assert s19.tolist() == [[0, 11, 11, 12, 13, 255, 10, 16]] and i19[0, 7] == 16000


def test_segments_round_trip_keeps_crowd_and_instances() -> None:
    sem = np.array([[0, 9, 10, 255, 9]], np.uint8)
    inst = np.array([[0, 11000, 0, 0, 12000]], np.int32)
    seg, info = vps.to_segments(sem, inst)
    crowd = {s["id"]: (s["category_id"], s["iscrowd"]) for s in info}
    assert sorted(crowd.values()) == [(0, 0), (11, 0), (11, 0), (13, 1)]  # two people, a car crowd
    s2, i2 = vps.from_segments(vps.rgb_to_id(vps.id_to_rgb(seg)), info)
    assert (s2 == sem).all() and (i2 > 0).tolist() == [[False, True, False, False, True]] and i2[0, 1] != i2[0, 4]
    with pytest.raises(ValueError, match=r"x: segment id\(s\) \[7\] are in the PNG"):
        vps.from_segments(np.array([[7]]), info, "x")


def test_names_as_the_release_spells_them() -> None:
    # mcahny/vps tools/eval_vpq.py: label = image name with _newImg8bit -> _final_mask, _leftImg8bit -> _gtFine_color
    assert vps.label_file_name("0005_0025_frankfurt_000000_001736_newImg8bit.png") == \
        "0005_0025_frankfurt_000000_001736_final_mask.png"
    assert vps.label_file_name("0005_0028_frankfurt_000000_001751_leftImg8bit.png") == \
        "0005_0028_frankfurt_000000_001751_gtFine_color.png"
    name = vps.parse_frame_name("0005_0028_frankfurt_000000_001751_leftImg8bit.png")
    assert (name.stem, name.video, name.index, name.count) == ("0005_0028_frankfurt_000000_001751", "0005", 1751, 28)
    plain = vps.parse_cityscapes_name("frankfurt_000000_001732_leftImg8bit.png")
    assert (plain.stem, plain.video, plain.index) == ("frankfurt_000000_001732", "frankfurt_000000", 1732)
    assert vps.parse_cityscapes_name("munster_000171_000019_leftImg8bit.png").video == "munster_000171"
    with pytest.raises(ValueError, match="not a Cityscapes-VPS image id"):
        vps.parse_frame_name("frankfurt_000000_001732_leftImg8bit.png")
    assert [c["name"] for c in vps.categories()][8] == "vegitation"  # as the official JSON spells it
