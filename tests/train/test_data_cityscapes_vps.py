"""Cityscapes-VPS loader (vsda_train/data/cityscapes_vps.py)."""

import json

import numpy as np
import pytest

from tests.train.data_fixtures import H, W, make_vps, vps_panoptic_inst, vps_stem, write_png
from vsda_train.data import DatasetError, build_dataset


def spec(root) -> str:
    return f"cityscapes-vps:{root}"


def expected() -> tuple[np.ndarray, np.ndarray]:
    """(semantic, instance) of ``vps_panoptic_inst``, by hand."""
    sem = np.zeros((H, W), np.uint8)  # road
    sem[0:4] = 8  # sky (trainId 10)
    sem[6:10, 2:6] = 9  # rider 12003 -> person
    sem[6:10, 10:14] = 9  # person 11005
    sem[6:10, 18:24] = 10  # car crowd 13
    sem[12:14, 0:4] = 255  # pole
    sem[12:14, 28:32] = 255  # void
    sem[6:10, 26:30] = 255  # train
    inst = np.zeros((H, W), np.int32)
    inst[6:10, 2:6] = 3
    inst[6:10, 10:14] = 5
    return sem, inst


def test_panoptic_inst_labels(tmp_path) -> None:
    ds = build_dataset(spec(make_vps(tmp_path)), split="val")
    assert len(ds) == 4  # 2 videos x frames 5 and 10
    sem, inst = expected()
    frame, prev, label, _, meta = ds[0]
    assert (label == sem).all() and meta["instance"].dtype == np.int32 and (meta["instance"] == inst).all()
    assert meta["name"] == f"{vps_stem(1, 5)}.png" and meta["video"] == "0001" and meta["index"] == 5
    assert frame[0, 0, 0] == 15 and prev[0, 0, 0] == 14  # t-1 comes from img_all


def test_panoptic_video_gives_the_same_semantic_and_instances(tmp_path) -> None:
    root = make_vps(tmp_path)
    a = build_dataset(spec(root), split="val")
    b = build_dataset(spec(root), split="val", vps_labels="panoptic_video")
    assert len(a) == len(b)
    for sa, sb in zip(a, b):
        assert (sa.label == sb.label).all()
        ia, ib = sa.meta["instance"], sb.meta["instance"]
        assert ((ia > 0) == (ib > 0)).all()
        pairs = {(x, y) for x, y in zip(ia.ravel().tolist(), ib.ravel().tolist())}
        assert len(pairs) == len(np.unique(ia)) == len(np.unique(ib)) == 3  # a one-to-one renaming


@pytest.mark.parametrize("k, count", [(1, 18), (2, 16)])
def test_unlabelled_mode_reads_img_all(tmp_path, k, count) -> None:
    ds = build_dataset(spec(make_vps(tmp_path)), split="val", labels=False, k=k)
    assert len(ds) == count and ds[0].label is None
    assert [(ds[i].meta["index"], ds[i].meta["prev_index"]) for i in ds.videos()["0002"]][:2] == [
        (1 + k, 1), (2 + k, 2)]
    assert all(int(s.prev[0, 0, 0]) == int(s.frame[0, 0, 0]) - k for s in ds)


def test_split_without_img_all_uses_img(tmp_path) -> None:
    root = make_vps(tmp_path, img_all=False, every=1, n=4)
    ds = build_dataset(spec(root), split="val", labels=False)
    assert len(ds) == 2 * 3 and ds.all_folder == "img"
    assert len(build_dataset(spec(root), split="val")) == 2 * 3


def test_gap_in_img_all_is_an_error(tmp_path) -> None:
    root = make_vps(tmp_path)
    (root / "val" / "img_all" / f"{vps_stem(2, 9)}_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=rf"{vps_stem(2, 10)}_leftImg8bit\.png: neighbour frame 9 \(t-1\)"):
        build_dataset(spec(root), split="val")


def test_missing_label_file_and_json_annotation(tmp_path) -> None:
    root = make_vps(tmp_path)
    missing = root / "val" / "panoptic_inst" / f"{vps_stem(1, 10)}_gtFine_instanceTrainIds.png"
    missing.unlink()
    with pytest.raises(DatasetError, match=rf"^{missing}: label of labelled frame"):
        build_dataset(spec(root), split="val")
    json_file = root / "panoptic_gt_val_city_vps.json"
    data = json.loads(json_file.read_text())
    data["annotations"] = data["annotations"][1:]
    json_file.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"^{json_file}: no annotation for labelled frame {vps_stem(1, 5)}"):
        build_dataset(spec(root), split="val", vps_labels="panoptic_video")
    json_file.unlink()
    with pytest.raises(DatasetError, match=rf"^{json_file}: file not found"):
        build_dataset(spec(root), split="val", vps_labels="panoptic_video")


def test_unknown_train_id_and_segment(tmp_path) -> None:
    root = make_vps(tmp_path, videos=1)
    bad = vps_panoptic_inst()
    bad[0, 0] = 25
    path = write_png(root / "val" / "panoptic_inst" / f"{vps_stem(1, 5)}_gtFine_instanceTrainIds.png", bad)
    with pytest.raises(DatasetError, match=rf"^{path}: unknown Cityscapes trainId\(s\) \[25\]"):
        build_dataset(spec(root), split="val")[0]
    seg = root / "val" / "panoptic_video" / f"{vps_stem(1, 5)}_gtFine_color.png"
    write_png(seg, np.full((H, W, 3), 9, np.uint8))
    with pytest.raises(DatasetError, match=rf"^{seg}: segment id\(s\) \[592137\] are in the PNG but not in the JSON"):
        build_dataset(spec(root), split="val", vps_labels="panoptic_video")[0]


def test_bad_options_and_missing_split(tmp_path) -> None:
    root = make_vps(tmp_path)
    with pytest.raises(DatasetError, match=r"^vps_labels: 'colour' is not one of"):
        build_dataset(spec(root), split="val", vps_labels="colour")
    with pytest.raises(DatasetError, match=r"/train: Cityscapes-VPS 'train' split folder not found"):
        build_dataset(spec(root), split="train")
    with pytest.raises(DatasetError, match=r"^label_space: cityscapes-vps is read in \['viper15'\]"):
        build_dataset(spec(root), split="val", label_space="synthia12")
