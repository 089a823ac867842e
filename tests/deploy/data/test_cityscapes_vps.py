"""Cityscapes-VPS loader (vsda_deploy/data/cityscapes_vps.py) on trees named as the official release.

Names and layout: mcahny/vps ``prepare_data/fetch_city_images.py`` (``img/`` from
``panoptic_im_{split}_city_vps.json``, ``img_all/`` from ``im_all_info_{split}_city_vps.json``
with plain Cityscapes names, val/test only), ``create_panoptic_labels.py`` (``labelmap/`` and
``panoptic_inst/`` named like ``cls/``: ``*_final_mask.png`` / ``*_gtFine_color.png``;
``trainId * 1000 + obj_id``, "obj_id can be ZERO") and ``create_panoptic_video_labels.py``
(``panoptic_video/`` + ``panoptic_gt_{split}_city_vps.json``). The two videos are real ones
(``tests/deploy/data/fixtures.py`` cites where each name comes from).
"""

import json

import numpy as np
import pytest

from tests.deploy.data.fixtures import (
    VPS_VIDEOS,
    H,
    W,
    make_cityscapes_sequences,
    make_vps,
    vps_labelled,
    vps_panoptic_inst,
    write_png,
)
from vsda_deploy.data import DatasetError, build_dataset

PERSON0, PERSON1, RIDER0, CAR0 = (6, 2), (6, 8), (6, 14), (6, 20)  # a pixel of each object


def spec(root) -> str:
    return f"cityscapes-vps:{root}"


def test_real_names_give_the_labelled_frames_of_img(tmp_path) -> None:
    ds = build_dataset(spec(make_vps(tmp_path)), split="val")
    assert len(ds) == 12  # 2 videos x 6 labelled frames (the lists imply 6 per video)
    first = ds[0]
    assert first.meta["video"] == "0001" and first.meta["index"] == 279  # the frame number, not FFFF
    assert first.meta["image_id"] == "0001_0001_frankfurt_000000_000279"
    assert first.meta["name"] == "frankfurt_000000_000279.png"
    assert first.frame[0, 0, 0] == 279 % 256 and first.prev[0, 0, 0] == 278 % 256  # t-1 from img_all
    assert ds.pair_keys(0) == ("val/img_all/frankfurt_000000_000279_leftImg8bit.png",
                               "val/img_all/frankfurt_000000_000278_leftImg8bit.png")
    cityscapes_frame = ds[ds.videos()["0005"][3]].meta
    assert cityscapes_frame["image_id"] == "0005_0028_frankfurt_000000_001751"
    assert cityscapes_frame["label_path"].endswith("panoptic_video/0005_0028_frankfurt_000000_001751_gtFine_color.png")
    assert ds[ds.videos()["0005"][0]].meta["label_path"].endswith("0005_0025_frankfurt_000000_001736_final_mask.png")


def test_obj_id_0_and_rider_are_their_own_instances(tmp_path) -> None:
    root = make_vps(tmp_path, videos=VPS_VIDEOS[:1])
    for source in ("panoptic_inst", "panoptic_video"):
        sample = build_dataset(spec(root), split="val", vps_labels=source)[0]
        label, inst = sample.label, sample.meta["instance"]
        assert [label[p] for p in (PERSON0, PERSON1, RIDER0, CAR0)] == [9, 9, 9, 10]  # rider counts as person
        ids = [int(inst[p]) for p in (PERSON0, PERSON1, RIDER0, CAR0)]
        assert 0 not in ids and len(set(ids)) == 4, (source, ids)
        assert label[0, 0] == 8 and label[12, 0] == 255 and label[12, 30] == 255 and label[6, 28] == 255
        assert inst[0, 0] == 0 and inst[15, 0] == 0  # sky, road: stuff
    value = build_dataset(spec(root), split="val", vps_labels="panoptic_inst")[0].meta["instance"]
    assert [int(value[p]) for p in (PERSON0, PERSON1, RIDER0, CAR0)] == [11000, 11001, 12000, 13000]


def test_label_spaces_and_labelmap(tmp_path) -> None:
    root = make_vps(tmp_path, videos=VPS_VIDEOS[:1])
    cs19 = build_dataset(spec(root), split="val", label_space="cityscapes19", vps_labels="labelmap")[0]
    assert [cs19.label[p] for p in (PERSON0, RIDER0, CAR0)] == [11, 12, 13]
    assert cs19.label[12, 0] == 5 and cs19.label[6, 28] == 16 and "instance" not in cs19.meta
    syn = build_dataset(spec(root), split="val", label_space="synthia12")[0].label
    assert [syn[p] for p in (PERSON0, RIDER0, CAR0)] == [9, 10, 11] and syn[12, 0] == 4 and syn[0, 0] == 8


def test_frames_option(tmp_path) -> None:
    root = make_vps(tmp_path)
    every = build_dataset(spec(root), split="val", labels=False)
    assert len(every) == 2 * 29  # frames="all": every frame with a t-1
    assert [every[i].meta["index"] for i in every.videos()["0005"]][:2] == [1733, 1734]  # 1732 has no t-1
    assert every.video_frames["0005"][1732].endswith("img_all/frankfurt_000000_001732_leftImg8bit.png")
    peers = build_dataset(spec(root), split="val", labels=False, frames="labelled")
    assert len(peers) == 12 and all(s.label is None and s.meta["label_path"] is None for s in peers)
    assert [peers[i].meta["index"] for i in peers.videos()["0005"]] == [1736, 1741, 1746, 1751, 1756, 1761]
    assert len(build_dataset(spec(make_vps(tmp_path / "bare", labels=())), split="val", labels=False,
                             frames="labelled")) == 12  # no label folder needed


def test_train_split_reads_leftimg8bit_sequence_val(tmp_path) -> None:
    # The train split is img/ + labelmap/ only; its frames are Cityscapes' val sequences,
    # which the official DATASET.md keeps next to the Cityscapes-VPS folder.
    root = make_vps(tmp_path / "cityscapes_vps", split="train", img_all=False, labels=("labelmap",))
    with pytest.raises(DatasetError, match=r"train/img_all: not found \(made by prepare_data/fetch_city_images\.py "
                                           r"--mode train.*leftImg8bit_sequence/val.*sequences="):
        build_dataset(spec(root), split="train", labels=False)
    make_cityscapes_sequences(tmp_path)
    ds = build_dataset(spec(root), split="train", labels=False)
    assert len(ds) == 2 * 29 and ds[0].frame[0, 0, 0] == 276 % 256
    assert ds.pair_keys(0)[0] == "../leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000276_leftImg8bit.png"
    peers = build_dataset(spec(root), split="train", labels=False, frames="labelled")
    assert len(peers) == 12 and peers[0].meta["image_id"] == "0001_0001_frankfurt_000000_000279"
    oracle = build_dataset(spec(root), split="train")
    assert len(oracle) == 12 and oracle[0].label[PERSON0] == 9
    other = tmp_path / "elsewhere"
    make_cityscapes_sequences(other)
    assert len(build_dataset(spec(root), split="train", labels=False, sequences=str(other))) == 58


def test_missing_parts_give_one_line_with_the_preparation_step(tmp_path) -> None:
    root = make_vps(tmp_path)
    gone = root / "val" / "img_all" / "frankfurt_000000_001732_leftImg8bit.png"
    gone.unlink()
    with pytest.raises(DatasetError, match=rf"^{gone}: frame of Cityscapes-VPS video 0005 not found; made by "
                                           r"prepare_data/fetch_city_images.py --mode val"):
        build_dataset(spec(root), split="val", labels=False)
    make_vps(root)
    label = root / "val" / "panoptic_video" / "0001_0004_frankfurt_000000_000294_gtFine_color.png"
    label.unlink()
    with pytest.raises(DatasetError, match=rf"^{label}: label of 0001_0004_frankfurt_000000_000294_leftImg8bit.png "
                                           r"not found; made by prepare_data/create_panoptic_video_labels.py"):
        build_dataset(spec(root), split="val")
    make_vps(root)
    json_file = root / "panoptic_gt_val_city_vps.json"
    data = json.loads(json_file.read_text())
    data["annotations"] = data["annotations"][1:]
    json_file.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"^{json_file}: no annotation for 0001_0001_frankfurt_000000_000279"):
        build_dataset(spec(root), split="val")
    json_file.unlink()
    with pytest.raises(DatasetError, match=rf"^{json_file}: not found; made by prepare_data/create_panoptic_video"):
        build_dataset(spec(root), split="val")
    assert len(build_dataset(spec(root), split="val", vps_labels="panoptic_inst")) == 12
    empty = make_vps(tmp_path / "nolabels", labels=())
    with pytest.raises(DatasetError, match=r"nolabels/val: no Cityscapes-VPS labels .*create_panoptic_labels"):
        build_dataset(spec(empty), split="val")
    with pytest.raises(DatasetError, match=r"test/img: Cityscapes-VPS labelled frames not found; made by "
                                           r"prepare_data/fetch_city_images.py --mode test"):
        build_dataset(spec(root), split="test")


def test_unknown_train_id_and_segment(tmp_path) -> None:
    root = make_vps(tmp_path, videos=VPS_VIDEOS[:1])
    _, img_name, _ = vps_labelled()[0]
    bad = vps_panoptic_inst()
    bad[0, 0] = 25
    path = write_png(root / "val" / "panoptic_inst" / img_name.replace("_newImg8bit", "_final_mask"), bad)
    with pytest.raises(DatasetError, match=rf"^{path}: unknown Cityscapes trainId\(s\) \[25\]"):
        build_dataset(spec(root), split="val", vps_labels="panoptic_inst")[0]
    seg = root / "val" / "panoptic_video" / img_name.replace("_newImg8bit", "_final_mask")
    write_png(seg, np.full((H, W, 3), 9, np.uint8))
    with pytest.raises(DatasetError, match=rf"^{seg}: segment id\(s\) \[592137\] are in the PNG but not in the JSON"):
        build_dataset(spec(root), split="val")[0]


def test_bad_options(tmp_path) -> None:
    root = make_vps(tmp_path, videos=VPS_VIDEOS[:1])
    with pytest.raises(DatasetError, match=r"^vps_labels: 'colour' is not one of"):
        build_dataset(spec(root), split="val", vps_labels="colour")
    with pytest.raises(DatasetError, match=r"^frames: 'some' is not one of"):
        build_dataset(spec(root), split="val", frames="some")
    with pytest.raises(DatasetError, match=r"^label_space: cityscapes-vps is read in"):
        build_dataset(spec(root), split="val", label_space="kitti")
