"""VIPER loader (vsda_deploy/data/viper.py)."""

import cv2
import numpy as np
import pytest

from tests.deploy.data.fixtures import H, W, make_viper, tag_frame, viper_raw_label, write_png, write_rgb
from vsda_deploy.data import DatasetError, ViperDataset, build_dataset
from vsda_deploy.data.viper import viper_to_train


def expected_label() -> np.ndarray:
    """The train ids of ``viper_raw_label``, by hand."""
    label = np.zeros((H, W), np.uint8)  # road
    label[0:4] = 8  # sky
    label[4:8, 0:8] = 6  # VIPER vegetation 8 -> vegetation 6
    label[4:8, 8:16] = 255  # unlabelled
    label[5:8, 20:24] = 10  # the other car stays car
    label[10:12, 0:4] = 255  # van
    label[13:16, 10:22] = 255  # ego vehicle
    return label


def test_labels_map_and_ego_vehicle_is_ignored(tmp_path) -> None:
    ds = build_dataset(f"viper:{make_viper(tmp_path)}")
    frame, prev, label, flow, meta = ds[0]
    assert label.dtype == np.uint8 and (label == expected_label()).all()
    assert flow is None and frame.shape == prev.shape == (H, W, 3)
    assert meta["label_space"] == "viper15" and meta["dataset"] == "viper" and meta["split"] == "train"


def test_palette_labels_read_the_same(tmp_path) -> None:
    ds = build_dataset(f"viper:{make_viper(tmp_path, palette=True)}")
    assert (ds[0].label == expected_label()).all()


def test_ego_vehicle_is_only_the_bottom_centre_component() -> None:
    raw = np.full((H, W), 3, np.uint8)
    raw[12:16, 0:6] = 24  # a car in the bottom-left corner, not under the bottom centre
    raw[15, W // 2] = 24  # one ego pixel, touching nothing else
    label = viper_to_train(raw)
    assert (label[12:16, 0:6] == 10).all() and label[15, W // 2] == 255
    assert (label == 255).sum() == 1
    assert viper_to_train(raw, ignore_ego_vehicle=False)[15, W // 2] == 10


def test_no_car_at_bottom_centre_ignores_nothing() -> None:
    raw = np.full((H, W), 24, np.uint8)
    raw[-1, W // 2] = 3
    assert (viper_to_train(raw) == 255).sum() == 0


@pytest.mark.parametrize("k, count", [(1, 6), (2, 4), (3, 2)])
def test_neighbours_with_k(tmp_path, k, count) -> None:
    ds = build_dataset(f"viper:{make_viper(tmp_path)}", k=k)
    assert len(ds) == count
    for sample in ds:
        meta = sample.meta
        seq = int(meta["video"])
        assert meta["prev_index"] == meta["index"] - k
        assert sample.frame[0, 0, 0] == 10 * seq + meta["index"]
        assert sample.prev[0, 0, 0] == 10 * seq + meta["index"] - k
        assert meta["name"] == f"{meta['video']}_{meta['index']:05d}.png"
    assert ds.videos() == {"001": list(range(count // 2)), "002": list(range(count // 2, count))}


def test_labelled_subset_and_unlabelled_mode(tmp_path) -> None:
    root = make_viper(tmp_path, n=6, labelled=(0, 3))  # frame 0 has no t-1: no sample
    ds = build_dataset(f"viper:{root}")
    assert [(s.meta["video"], s.meta["index"]) for s in ds] == [("001", 3), ("002", 3)]
    every = build_dataset(f"viper:{root}", labels=False)
    assert len(every) == 2 * 5 and every[0].label is None and every[0].meta["label_path"] is None


def test_pad_start_pairs_first_frames_with_the_first(tmp_path) -> None:
    ds = build_dataset(f"viper:{make_viper(tmp_path)}", k=2, pad_start=True)
    assert len(ds) == 8
    assert [(s.meta["index"], s.meta["prev_index"]) for s in ds][:4] == [(0, 0), (1, 0), (2, 0), (3, 1)]


def test_jpg_frames_and_split(tmp_path) -> None:
    ds = build_dataset(f"viper:{make_viper(tmp_path, split='val', ext='.jpg')}", split="val")
    assert len(ds) == 6 and abs(int(ds[0].frame[0, 0, 0]) - 11) <= 3
    assert ds.pair_keys(0) == ("val/img/001/001_00001.jpg", "val/img/001/001_00000.jpg")


def test_instances_go_to_meta_when_present(tmp_path) -> None:
    # VIPER inst PNGs (docs/datasets.md, from the VIPER toolkit): R is the class, the instance is 256 G + B.
    root = make_viper(tmp_path, seqs=("001",), n=2)
    inst = np.zeros((H, W, 3), np.uint8)
    inst[..., 0], inst[..., 1], inst[..., 2] = 24, 1, 2  # R, G, B in the file: car, instance 258
    inst[0, 0] = (20, 0, 0)  # a person with instance 0
    write_png(root / "train" / "inst" / "001" / "001_00001.png", inst)
    meta = build_dataset(f"viper:{root}")[0].meta
    assert meta["instance_raw"].dtype == np.int32 and meta["instance_raw"][1, 1] == 256 * 1 + 2
    assert meta["instance_class"][1, 1] == 24 and meta["instance_class"][0, 0] == 20 and meta["instance_raw"][0, 0] == 0
    write_png(root / "train" / "inst" / "001" / "001_00001.png", np.zeros((H, W), np.uint16))
    with pytest.raises(DatasetError, match=r"001_00001\.png: expected an 8-bit RGB instance PNG"):
        build_dataset(f"viper:{root}")[0]


def test_real_names_of_the_da_vsn_list(tmp_path) -> None:
    # DA-VSN davsn/dataset/Viper_list/train.txt: "001/001_00010.jpg", "001/001_00020.jpg", ...,
    # "077/077_02660.jpg" (13,367 lines): jpg frames, every 10th labelled (cls/001/001_00010.png);
    # Viper.py pairs each with frame - 1 (001_00009.jpg).
    for seq, frames in (("001", (10, 20)), ("077", (2650, 2660))):
        for f in frames:
            for i in (f - 1, f):
                write_rgb_jpg = tmp_path / "train" / "img" / seq / f"{seq}_{i:05d}.jpg"
                write_rgb(write_rgb_jpg, tag_frame(i % 256))
            write_png(tmp_path / "train" / "cls" / seq / f"{seq}_{f:05d}.png", viper_raw_label())
    ds = build_dataset(f"viper:{tmp_path}")
    assert len(ds) == 4  # 4 list entries -> 4 samples, as the list implies
    assert [(s.meta["video"], s.meta["index"], s.meta["prev_index"]) for s in ds] == [
        ("001", 10, 9), ("001", 20, 19), ("077", 2650, 2649), ("077", 2660, 2659)]
    assert ds.pair_keys(0) == ("train/img/001/001_00010.jpg", "train/img/001/001_00009.jpg")
    assert ds[0].meta["name"] == "001_00010.png" and (ds[0].label == expected_label()).all()


@pytest.mark.parametrize("labels", [True, False])
def test_gap_in_sequence_is_an_error(tmp_path, labels) -> None:
    root = make_viper(tmp_path, labelled=(0, 2))
    (root / "train" / "img" / "002" / "002_00001.png").unlink()
    with pytest.raises(DatasetError, match=r"002_00002\.png: neighbour frame 1 \(t-1\) of video '002' is missing"):
        build_dataset(f"viper:{root}", labels=labels)


def test_label_without_frame_is_an_error(tmp_path) -> None:
    root = make_viper(tmp_path)
    (root / "train" / "img" / "001" / "001_00003.png").unlink()
    with pytest.raises(DatasetError, match=r"cls/001/001_00003\.png: label without its frame"):
        build_dataset(f"viper:{root}")


def test_unknown_id_names_the_label(tmp_path) -> None:
    root = make_viper(tmp_path, seqs=("001",), n=2)
    raw = viper_raw_label()
    raw[0, 0] = 40
    path = write_png(root / "train" / "cls" / "001" / "001_00001.png", raw)
    ds = build_dataset(f"viper:{root}")
    with pytest.raises(DatasetError, match=rf"^{path}: unknown label id\(s\) \[40\]"):
        ds[0]


def test_corrupt_frame_names_the_file(tmp_path) -> None:
    root = make_viper(tmp_path, seqs=("001",), n=2)
    path = root / "train" / "img" / "001" / "001_00000.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=rf"^{path}: unreadable or corrupt image"):
        build_dataset(f"viper:{root}")[0]


def test_missing_folders_and_empty_dataset(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"train/img: VIPER 'train' image folder not found"):
        build_dataset(f"viper:{tmp_path}")
    root = make_viper(tmp_path / "a", labelled=())
    with pytest.raises(DatasetError, match=r"train/cls: VIPER 'train' class-label folder \(labelled frames\)"):
        build_dataset(f"viper:{root}")
    (root / "train" / "cls").mkdir()
    with pytest.raises(DatasetError, match=r"train/img: no labelled frames found for viper split 'train'"):
        build_dataset(f"viper:{root}")
    with pytest.raises(DatasetError, match=r"no frames with a t-9 neighbour"):
        build_dataset(f"viper:{root}", labels=False, k=9)


def test_bad_frame_name_is_an_error(tmp_path) -> None:
    root = make_viper(tmp_path, seqs=("001",), n=2)
    cv2.imwrite(str(root / "train" / "img" / "001" / "thumb.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match=r"thumb\.png: not a VIPER frame name \(001_NNNNN\)"):
        ViperDataset(root)
