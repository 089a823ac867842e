"""SYNTHIA-Seq loader (vsda_deploy/data/synthia_seq.py) and its id map (vsda_deploy/labels.py)."""

import numpy as np
import pytest

from tests.deploy.data.fixtures import H, W, make_synthia, synthia_raw_label, tag_frame, write_png, write_rgb
from vsda_deploy.data import DatasetError, build_dataset
from vsda_deploy.labels import SYNTHIA12, SYNTHIA_SEQ_LUT, SYNTHIA_SEQ_NUM_IDS


def test_synthia_ids_map_as_da_vsn() -> None:
    names = {raw: SYNTHIA12.classes[SYNTHIA_SEQ_LUT[raw]] for raw in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15)}
    assert names == {1: "sky", 2: "building", 3: "road", 4: "sidewalk", 5: "fence", 6: "vegetation",
                     7: "pole", 8: "car", 9: "traffic sign", 10: "person", 11: "rider", 15: "traffic light"}
    assert SYNTHIA_SEQ_LUT[0] == SYNTHIA_SEQ_LUT[12] == SYNTHIA_SEQ_LUT[13] == 255 and SYNTHIA_SEQ_NUM_IDS == 16


@pytest.mark.parametrize("channels", [3, 4])
def test_class_is_the_first_channel(tmp_path, channels) -> None:
    ds = build_dataset(f"synthia-seq:{make_synthia(tmp_path, channels=channels)}")
    label = ds[0].label
    expect = np.zeros((H, W), np.uint8)  # road
    expect[0:4] = 8  # sky
    expect[4:8, 0:4] = 4  # pole
    expect[4:8, 4:8] = 5  # traffic light
    expect[4:8, 8:12] = 10  # cyclist -> rider
    expect[4:8, 12:20] = 11  # car
    expect[12:16, 0:8] = 255  # lane marking
    assert (label == expect).all()
    assert ds[0].meta["label_space"] == "synthia12" and ds.label_space is SYNTHIA12


def test_one_sequence_or_a_folder_of_sequences(tmp_path) -> None:
    root = make_synthia(tmp_path, seqs=("SYNTHIA-SEQS-04-DAWN", "SYNTHIA-SEQS-05-FALL"))
    one = build_dataset(f"synthia-seq:{root / 'SYNTHIA-SEQS-04-DAWN'}", k=2)
    assert len(one) == 2 and [int(s.prev[0, 0, 0]) for s in one] == [40, 41]
    both = build_dataset(f"synthia-seq:{root}")
    assert len(both) == 6 and sorted(both.videos()) == ["SYNTHIA-SEQS-04-DAWN", "SYNTHIA-SEQS-05-FALL"]
    last = both[5]
    assert last.meta["name"] == "SYNTHIA-SEQS-05-FALL_000003.png" and last.frame[0, 0, 0] == 53
    assert both.pair_keys(5) == ("SYNTHIA-SEQS-05-FALL/RGB/Stereo_Left/Omni_F/000003.png",
                                 "SYNTHIA-SEQS-05-FALL/RGB/Stereo_Left/Omni_F/000002.png")


def test_unknown_id_and_missing_parts(tmp_path) -> None:
    root = make_synthia(tmp_path)
    seq = root / "SYNTHIA-SEQS-04-DAWN"
    raw = np.zeros((H, W, 3), np.uint16)
    raw[..., 0] = synthia_raw_label()
    raw[2, 2, 0] = 20
    path = write_png(seq / "GT" / "LABELS" / "Stereo_Left" / "Omni_F" / "000001.png", raw)
    with pytest.raises(DatasetError, match=rf"^{path}: unknown label id\(s\) \[20\]"):
        build_dataset(f"synthia-seq:{root}")[0]
    with pytest.raises(DatasetError, match=r"Omni_B: SYNTHIA-Seq frame folder not found"):
        build_dataset(f"synthia-seq:{root}", camera="Stereo_Left/Omni_B")
    with pytest.raises(DatasetError, match=r"no SYNTHIA-Seq sequence"):
        build_dataset(f"synthia-seq:{tmp_path / 'SYNTHIA-SEQS-04-DAWN' / 'GT'}")
    (seq / "RGB" / "Stereo_Left" / "Omni_F" / "000001.png").unlink()
    with pytest.raises(DatasetError, match=r"000002\.png: neighbour frame 1 \(t-1\)"):
        build_dataset(f"synthia-seq:{root}", labels=False)


def test_rearranged_layout_of_da_vsn_and_tps(tmp_path) -> None:
    # DA-VSN and TPS read data/SynthiaSeq/SEQS-04-DAWN/rgb/NNNNNN.png + label/NNNNNN.png
    # (davsn/dataset/SynthiaSeq.py, tps/dataset/SynthiaSeq.py); their SynthiaSeq_list/train.txt is
    # "000001.png" .. "000849.png" (849 lines), each paired with frame - 1.
    seq = tmp_path / "SEQS-04-DAWN"
    for i in range(4):  # 000000 .. 000003
        write_rgb(seq / "rgb" / f"{i:06d}.png", tag_frame(40 + i))
        label = np.zeros((H, W, 3), np.uint16)
        label[..., 0] = synthia_raw_label()
        write_png(seq / "label" / f"{i:06d}.png", label)
    ds = build_dataset(f"synthia-seq:{seq}")
    assert len(ds) == 3  # list entries 000001 .. 000003: every labelled frame with a t-1
    assert [s.meta["index"] for s in ds] == [1, 2, 3] and int(ds[0].prev[0, 0, 0]) == 40
    assert ds.pair_keys(0) == ("rgb/000001.png", "rgb/000000.png") and ds[0].meta["name"] == "SEQS-04-DAWN_000001.png"
    assert ds[0].label[0, 0] == 8 and ds[0].label[5, 13] == 11  # sky, car
    assert len(build_dataset(f"synthia-seq:{tmp_path}", labels=False, frames="labelled")) == 3
