"""Cityscapes-Seq loader (vsda_deploy/data/cityscapes_seq.py)."""

import numpy as np
import pytest

from tests.deploy.data.fixtures import cityscapes_raw_label, make_cityscapes_seq, write_png
from vsda_deploy.data import DatasetError, build_dataset


def spec(root) -> str:
    return f"cityscapes-seq:{root}"


@pytest.mark.parametrize("space, rider, person, pole, car, road", [
    ("viper15", 9, 9, 255, 10, 0),
    ("synthia12", 10, 9, 4, 11, 0),
    ("cityscapes19", 12, 11, 5, 13, 0),
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
    with pytest.raises(DatasetError, match=r"gtFine/train: Cityscapes 'train' label folder \(gtFine_trainvaltest.zip"):
        (root / "leftImg8bit_sequence" / "train").mkdir()
        build_dataset(spec(root), split="train")
    with pytest.raises(DatasetError, match=r"^label_space: cityscapes-seq is read in"):
        build_dataset(spec(root), split="val", label_space="kitti")
    (root / "leftImg8bit_sequence" / "val" / "lindau" / "lindau_000007_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=r"lindau_000007_000019_gtFine_labelIds\.png: label without its frame"):
        build_dataset(spec(root), split="val")


def test_labels_are_uint8_of_frame_size(tmp_path) -> None:
    sample = build_dataset(spec(make_cityscapes_seq(tmp_path)), split="val")[1]
    assert sample.label.dtype == np.uint8 and sample.label.shape == sample.frame.shape[:2]


# DA-VSN davsn/dataset/CityscapesSeq_list/train.txt (2,975 lines) and val.txt (500): the labelled
# 20th frames. Most train names end in _000019 (aachen/aachen_000000_000019_leftImg8bit.png), 1,098
# do not (bochum/bochum_000000_000313_leftImg8bit.png); val starts with frankfurt_000000_000294 and
# ends with munster/munster_000173_000019. CityscapesSeq.py pairs each with its frame - 1.
REAL_TRAIN = (("aachen", 0, 19), ("bochum", 0, 313))
REAL_VAL = (("frankfurt", 0, 294), ("munster", 173, 19))


@pytest.mark.parametrize("split, snippets", [("train", REAL_TRAIN), ("val", REAL_VAL)])
def test_real_names_give_one_sample_per_list_entry(tmp_path, split, snippets) -> None:
    # Each snippet: 30 frames, the labelled one 20th (frames L-19 .. L+10).
    root = make_cityscapes_seq(tmp_path, split, snippets, before=19, after=10)
    ds = build_dataset(spec(root), split=split)
    assert len(ds) == len(snippets)  # one per list line
    assert [(s.meta["index"], s.meta["prev_index"]) for s in ds] == [(f, f - 1) for _, _, f in snippets]
    assert sorted(ds.videos()) == sorted(f"{c}_{q:06d}_{f - 19:06d}" for c, q, f in snippets)
    peers = build_dataset(spec(root), split=split, labels=False, frames="labelled")
    assert [s.meta["name"] for s in peers] == [f"{c}_{q:06d}_{f:06d}.png" for c, q, f in snippets]
    assert peers[0].label is None
    every = build_dataset(spec(root), split=split, labels=False)
    assert len(every) == 29 * len(snippets)
    assert all(len(v) == 30 for v in every.video_frames.values())
