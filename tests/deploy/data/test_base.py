"""Shared readers, neighbour pairing and the dataset spec (vsda_deploy/data/base.py, __init__.py)."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.deploy.data.fixtures import make_viper, tag_frame, write_png, write_rgb
from vsda_deploy.data import DATASETS, ClipSample, DatasetError, build_dataset, dataset_options, parse_spec
from vsda_deploy.data.base import natural_key, pair_frames, read_id_png, read_image


def test_fixture_png_writer_matches_opencv(tmp_path) -> None:
    rgb16 = np.zeros((2, 3, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 7, 300, 65535
    img = cv2.imread(str(write_png(tmp_path / "a.png", rgb16)), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img[0, 0].tolist() == [65535, 300, 7]  # OpenCV reads B, G, R
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert (cv2.imread(str(write_png(tmp_path / "g.png", gray)), cv2.IMREAD_UNCHANGED) == gray).all()


def test_palette_png_gives_indices_not_colours(tmp_path) -> None:
    palette = np.zeros((256, 3), np.uint8)  # most entries black: colours cannot tell ids apart
    palette[1], palette[24] = (70, 130, 180), (0, 0, 142)
    ids = np.array([[0, 1, 24], [24, 2, 31]], np.uint8)
    path = write_png(tmp_path / "p.png", ids, palette)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 3  # what OpenCV alone gives
    assert read_id_png(path).tolist() == ids.tolist()
    short = write_png(tmp_path / "short.png", np.array([[3, 0, 1]], np.uint8), np.full((4, 3), 9, np.uint8))
    assert read_id_png(short).tolist() == [[3, 0, 1]]


def test_label_with_different_channels_is_an_error(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"none\.png: label not found"):
        read_id_png(tmp_path / "none.png")
    same = write_png(tmp_path / "same.png", np.dstack([np.full((2, 2), 5, np.uint8)] * 3))
    assert read_id_png(same).tolist() == [[5, 5], [5, 5]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 3
    with pytest.raises(DatasetError, match=r"rgb\.png: expected single-channel"):
        read_id_png(write_png(tmp_path / "rgb.png", rgb))


def test_read_image_errors_name_the_file(tmp_path) -> None:
    path = write_rgb(tmp_path / "f.png", tag_frame(9))
    assert read_image(path)[0, 0].tolist() == [9, 200, 50]
    with pytest.raises(DatasetError, match=r"missing\.png: not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match=r"bad\.png: unreadable or corrupt"):
        read_image(tmp_path / "bad.png")


def test_pair_frames_first_k_gap_and_pad_start() -> None:
    frames = {i: f"f{i}" for i in (3, 4, 5, 6)}
    assert pair_frames(frames, 1) == [(4, 3), (5, 4), (6, 5)]
    assert pair_frames(frames, 2) == [(5, 3), (6, 4)]
    assert pair_frames(frames, 2, pad_start=True) == [(3, 3), (4, 3), (5, 3), (6, 4)]
    del frames[4]
    with pytest.raises(DatasetError, match=r"^f5: neighbour frame 4 \(t-1\) of video 'v' is missing"):
        pair_frames(frames, 1, video="v")


def test_natural_key_orders_numbers() -> None:
    assert sorted(["f10.png", "f2.png", "F1.png"], key=natural_key) == ["F1.png", "f2.png", "f10.png"]


def test_clip_sample_unpacks_in_contract_order() -> None:
    a, b = np.zeros((1, 1, 3), np.uint8), np.ones((1, 1, 3), np.uint8)
    frame, prev, label, flow, meta = ClipSample(a, b, None, None, {"index": 4})
    assert frame is a and prev is b and label is None and flow is None and meta == {"index": 4}


@pytest.mark.parametrize("spec", ["viper", "/data/viper", "kitti:/data", "viper:"])
def test_bad_spec_is_one_error_listing_the_kinds(spec) -> None:
    with pytest.raises(DatasetError) as e:
        build_dataset(spec)
    msg = str(e.value)
    assert msg.startswith(f"{spec}: ") and "\n" not in msg
    assert all(kind in msg for kind in DATASETS)


def test_spec_parsing_and_options(tmp_path) -> None:
    assert parse_spec("video:~/clip.mp4")[0] == "video"
    assert dataset_options("viper") == ["pad_start", "frames", "ignore_ego_vehicle"]
    assert dataset_options("cityscapes-vps") == ["pad_start", "frames", "vps_labels", "sequences"]
    make_viper(tmp_path)
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['camera'\] for viper"):
        build_dataset(f"viper:{tmp_path}", camera="x")
    with pytest.raises(DatasetError, match=r"^label_space: viper is read in \['viper15'\], not 'synthia12'"):
        build_dataset(f"viper:{tmp_path}", label_space="synthia12")
    with pytest.raises(DatasetError, match=r"^k: the frame offset must be >= 1, got 0"):
        build_dataset(f"viper:{tmp_path}", k=0)


def test_missing_root_names_it(tmp_path) -> None:
    for kind in DATASETS:
        with pytest.raises(DatasetError, match=rf"^{tmp_path / 'nope'}: "):
            build_dataset(f"{kind}:{tmp_path / 'nope'}")


def test_flow_provider_gets_keys_and_frames(tmp_path) -> None:
    make_viper(tmp_path, seqs=("001",), n=2)
    calls = []

    def provider(key_t, key_prev, frame_t, frame_prev):
        calls.append((key_t, key_prev, int(frame_t[0, 0, 0]), int(frame_prev[0, 0, 0])))
        return np.full((*frame_t.shape[:2], 2), 0.5, np.float64)

    sample = build_dataset(f"viper:{tmp_path}", flow=provider)[0]
    assert calls == [("train/img/001/001_00001.png", "train/img/001/001_00000.png", 11, 10)]
    assert sample.flow.dtype == np.float32 and sample.flow.shape == (16, 32, 2) and sample.flow[0, 0, 1] == 0.5
    bad = build_dataset(f"viper:{tmp_path}", flow=lambda *a: np.zeros((4, 4, 2)))
    with pytest.raises(DatasetError, match=r"^train/img/001/001_00001\.png: flow has shape \(4, 4, 2\)"):
        bad[0]


def test_loaders_import_no_torch() -> None:
    code = "import sys, vsda_deploy.data; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_frames_labelled_gives_labelled_positions_without_labels(tmp_path) -> None:
    root = make_viper(tmp_path, n=6, labelled=(0, 3, 5))  # frame 0 has no t-1: no sample
    positions = build_dataset(f"viper:{root}", labels=False, frames="labelled")
    assert [(s.meta["video"], s.meta["index"], s.meta["prev_index"]) for s in positions] == [
        ("001", 3, 2), ("001", 5, 4), ("002", 3, 2), ("002", 5, 4)]
    assert all(s.label is None and s.meta["label_path"] is None for s in positions)
    labelled = build_dataset(f"viper:{root}", frames="labelled")
    assert [s.meta["index"] for s in labelled] == [3, 5, 3, 5] and labelled[0].label is not None
    assert len(build_dataset(f"viper:{root}", labels=False)) == 2 * 5  # frames="all": every frame with a t-1
    with pytest.raises(DatasetError, match=r"^frames: 'labelled' needs labelled frames; a video: source has none"):
        build_dataset(f"video:{root / 'train' / 'img' / '001'}", labels=False, frames="labelled")
