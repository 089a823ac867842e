"""Cityscapes-Seq loader (vsda_train/data/cityscapes_seq.py)."""

import numpy as np
import pytest

from tests.train.data_fixtures import cityscapes_raw_label, make_cityscapes_seq, write_png
from vsda_train.data import DatasetError, build_dataset


def spec(root) -> str:
    return f"cityscapes-seq:{root}"


@pytest.mark.parametrize("space, rider, person, pole, car, road", [
    ("viper15", 9, 9, 255, 10, 0),
    ("synthia12", 10, 9, 4, 11, 0),
])
def test_label_ids_map_per_space(tmp_path, space, rider, person, pole, car, road) -> None:
    ds = build_dataset(spec(make_cityscapes_seq(tmp_path)), split="val", label_space=space)
    label = ds[0].label
    assert label[0, 0] == rider and label[0, 8] == person and label[0, 16] == pole
    assert label[8, 0] == car and label[5, 5] == road and label[15, 31] == 255  # void 0
    assert ds[0].meta["label_space"] == space


def test_labelled_frames_and_their_neighbours(tmp_path) -> None:
    ds = build_dataset(spec(make_cityscapes_seq(tmp_path)), split="val", k=2)
    got = [(s.meta["video"], s.meta["index"], int(s.frame[0, 0, 0]), int(s.prev[0, 0, 0])) for s in ds]
    assert got == [
        ("frankfurt_000000_000291", 294, 294 % 256, 292 % 256),
        ("frankfurt_000000_000573", 576, 576 % 256, 574 % 256),
        ("lindau_000007_000016", 19, 19, 17),
    ]
    assert ds[2].meta["name"] == "lindau_000007_000019.png"
    assert ds.pair_keys(2) == ("leftImg8bit_sequence/val/lindau/lindau_000007_000019_leftImg8bit.png",
                               "leftImg8bit_sequence/val/lindau/lindau_000007_000017_leftImg8bit.png")


def test_unlabelled_mode_uses_every_frame_with_a_neighbour(tmp_path) -> None:
    ds = build_dataset(spec(make_cityscapes_seq(tmp_path)), split="val", labels=False)
    assert len(ds) == 3 * 4  # 5 frames per snippet, the first has no t-1
    videos = ds.videos()
    assert sorted(videos) == ["frankfurt_000000_000291", "frankfurt_000000_000573", "lindau_000007_000016"]
    assert [ds[i].meta["index"] for i in videos["frankfurt_000000_000573"]] == [574, 575, 576, 577]
    assert all(s.label is None for s in ds)


@pytest.mark.parametrize("k, skip", [(1, 293), (2, 293), (2, 292)])
def test_missing_neighbour_of_a_labelled_frame_is_an_error(tmp_path, k, skip) -> None:
    root = make_cityscapes_seq(tmp_path, skip=(skip,))
    with pytest.raises(DatasetError, match=rf"frankfurt_000000_{skip:06d}_leftImg8bit\.png: missing"):
        build_dataset(spec(root), split="val", k=k)


def test_unknown_label_id_names_the_file(tmp_path) -> None:
    root = make_cityscapes_seq(tmp_path, snippets=(("lindau", 7, 19),))
    raw = cityscapes_raw_label()
    raw[3, 3] = 34
    path = write_png(root / "gtFine" / "val" / "lindau" / "lindau_000007_000019_gtFine_labelIds.png", raw)
    with pytest.raises(DatasetError, match=rf"^{path}: unknown label id\(s\) \[34\]"):
        build_dataset(spec(root), split="val")[0]


def test_errors_for_missing_parts(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"leftImg8bit_sequence/val: Cityscapes-Seq 'val' frame folder not found"):
        build_dataset(spec(tmp_path), split="val")
    root = make_cityscapes_seq(tmp_path)
    with pytest.raises(DatasetError, match=r"gtFine/train: Cityscapes 'train' label folder \(labels=True\) not found"):
        (root / "leftImg8bit_sequence" / "train").mkdir()
        build_dataset(spec(root), split="train")
    with pytest.raises(DatasetError, match=r"^label_space: cityscapes-seq is read in"):
        build_dataset(spec(root), split="val", label_space="cityscapes19")
    (root / "leftImg8bit_sequence" / "val" / "lindau" / "lindau_000007_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=r"lindau_000007_000019_gtFine_labelIds\.png: label without its frame"):
        build_dataset(spec(root), split="val")


def test_labels_are_uint8_of_frame_size(tmp_path) -> None:
    sample = build_dataset(spec(make_cityscapes_seq(tmp_path)), split="val")[1]
    assert sample.label.dtype == np.uint8 and sample.label.shape == sample.frame.shape[:2]
