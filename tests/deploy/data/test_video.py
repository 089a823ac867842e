"""Generic video source (vsda_deploy/data/video.py): a frame folder or a video file."""

import pickle

import cv2
import numpy as np
import pytest

from tests.deploy.data.fixtures import H, W, tag_frame, write_rgb
from vsda_deploy.data import DatasetError, VideoDataset, build_dataset


def make_video_file(path, n: int = 6) -> list[int]:
    """Write an MJPG .avi of ``n`` frames whose red channel is ``40 * i``; return the tags."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert writer.isOpened()
    tags = [40 * i for i in range(n)]
    for t in tags:
        writer.write(cv2.cvtColor(tag_frame(t), cv2.COLOR_RGB2BGR))
    writer.release()
    return tags


def test_frame_folder_in_natural_order(tmp_path) -> None:
    for name, tag in (("f10.png", 3), ("f2.png", 2), ("f1.jpg", 1), ("notes.txt", 0)):
        if name.endswith("txt"):
            (tmp_path / name).write_text("x")
        else:
            write_rgb(tmp_path / name, tag_frame(tag * 50))
    ds = build_dataset(f"video:{tmp_path}")
    assert len(ds) == 2 and ds.videos() == {tmp_path.name: [0, 1]}
    frame, prev, label, flow, meta = ds[1]
    assert label is None and flow is None and int(frame[0, 0, 0]) == 150 and int(prev[0, 0, 0]) == 100
    assert meta["name"] == "f10.png" and meta["index"] == 2 and meta["label_space"] == "viper15"
    assert ds.pair_keys(1) == ("f10.png", "f2.png")
    assert len(build_dataset(f"video:{tmp_path}", pad_start=True)) == 3


def test_video_file_sequential_and_random_access(tmp_path) -> None:
    tags = make_video_file(tmp_path / "clip.avi")
    ds = build_dataset(f"video:{tmp_path / 'clip.avi'}", k=2, label_space="synthia12")
    assert len(ds) == 4 and ds.frame_count == 6 and ds.videos() == {"clip": [0, 1, 2, 3]}
    assert ds.pair_keys(0) == ("clip.avi#000002", "clip.avi#000000")
    for i in (0, 1, 2, 3, 1, 0):  # sequential, then seeking backwards
        frame, prev, _, _, meta = ds[i]
        assert abs(int(frame[0, 0, 0]) - tags[i + 2]) <= 6 and abs(int(prev[0, 0, 0]) - tags[i]) <= 6
        assert meta["name"] == f"clip_{i + 2:06d}.png" and meta["label_space"] == "synthia12"
    copy = pickle.loads(pickle.dumps(ds))  # DataLoader workers pickle the dataset
    assert abs(int(copy[3].frame[0, 0, 0]) - tags[5]) <= 6


def test_video_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(DatasetError, match=rf"^{tmp_path}: no frames"):
        VideoDataset(tmp_path)
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    with pytest.raises(DatasetError, match=rf"^{bad}: cannot open as a video"):
        VideoDataset(bad)
    write_rgb(tmp_path / "frames" / "a.png", tag_frame(1))
    with pytest.raises(DatasetError, match=r"frames: no frames with a t-1 neighbour"):
        build_dataset(f"video:{tmp_path / 'frames'}")
    write_rgb(tmp_path / "frames" / "b.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"a\.png: size \(16, 32\) differs from frame t \(8, 8\)"):
        build_dataset(f"video:{tmp_path / 'frames'}")[0]
