"""The overlay video: real-time slots, checked writes and close, what a failure keeps (vsda_deploy/overlay_video.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_deploy import overlay_video
from vsda_deploy.labels import VIPER15
from vsda_deploy.options import OptionError
from vsda_deploy.outputs import OutputError
from vsda_deploy.overlay_video import MAX_FILL_S, OverlayVideoWriter
from vsda_deploy.sinks import overlay, palette_lut

H, W = 32, 48


def semantic_map() -> np.ndarray:
    sem = np.zeros((H, W), np.uint8)
    sem[4:12, 4:20] = 10
    return sem


def decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames


def grey(value: int, h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_video_writer_finalises_a_playable_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "overlay.mp4"
    writer = OverlayVideoWriter(path, VIPER15.palette)
    writer.fps = 10
    for i in range(5):
        writer.write(grey(20 * i), semantic_map())
    writer.write(np.zeros((2 * H, 2 * W, 3), np.uint8), np.zeros((2 * H, 2 * W), np.uint8))  # resized to fit
    assert not path.exists() and (tmp_path / "out" / ".overlay.partial.mp4").exists()
    writer.close()
    assert path.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["overlay.mp4"]
    frames = decode(path)
    assert len(frames) == 6 and frames[0].shape == (H, W, 3)
    expected = overlay(grey(40), semantic_map(), palette_lut(VIPER15.palette))
    error = np.abs(frames[2][..., ::-1].astype(int) - expected).mean()
    assert error < 5, error  # the overlay up to the lossy codec (swapped channels give 8)


def test_frames_go_to_their_time_slots_so_the_video_keeps_real_time(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    writer = OverlayVideoWriter(path, VIPER15.palette)
    writer.fps = 10
    for value, slot in ((0, 100), (60, 101), (120, 104), (180, 104), (240, 106)):  # 3 dropped, 1 late
        writer.write(grey(value), np.full((H, W), 255, np.uint8), slot)  # void: the frame itself
    writer.close()
    means = [round(float(f.mean()) / 60) * 60 for f in decode(path)]
    # slots 102-103 repeat 101; the frame that collided with 104 takes 105; 106 as stamped
    assert means == [0, 60, 60, 60, 120, 180, 240]
    long = OverlayVideoWriter(tmp_path / "long.avi", VIPER15.palette)
    long.fps = 5
    long.write(grey(0), semantic_map(), 0)
    long.write(grey(200), semantic_map(), 10_000)  # a 33-minute outage
    long.close()
    assert len(decode(tmp_path / "long.avi")) == 1 + round(MAX_FILL_S * 5) + 1


def test_video_writer_abort_and_bad_paths(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    writer = OverlayVideoWriter(path, VIPER15.palette)
    writer.write(grey(0), semantic_map())
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OptionError, match=rf"^--save-video {tmp_path / 'v.gif'}: unsupported container .gif"):
        OverlayVideoWriter(tmp_path / "v.gif", VIPER15.palette)
    with pytest.raises(OptionError, match=rf"^--save-video {tmp_path}: needs a file name, this is a folder"):
        OverlayVideoWriter(tmp_path, VIPER15.palette)
    with pytest.raises(OutputError, match=r"^--save-video /proc/v\.avi: cannot write there"):
        OverlayVideoWriter("/proc/v.avi", VIPER15.palette)
    assert list(tmp_path.iterdir()) == []  # the encoder probe is gone too


class RefusingWriter:
    """A cv2.VideoWriter stand-in that writes ``room`` frames to the real writer, then refuses (as on a full disk).

    ``answer`` is what ``write`` returns: False as OpenCV 5 says; None as OpenCV 4 returns either way.
    """

    def __init__(self, real: cv2.VideoWriter, room: int, answer: bool | None) -> None:
        self.real, self.room, self.answer = real, room, answer

    def write(self, frame: np.ndarray) -> bool | None:
        if self.room == 0:
            return self.answer
        self.room -= 1
        self.real.write(frame)
        return True if self.answer is False else None

    def release(self) -> None:
        self.real.release()


def refuse_after(monkeypatch: pytest.MonkeyPatch, room: int, answer: bool | None) -> None:
    real_open = overlay_video.open_writer
    monkeypatch.setattr(overlay_video, "open_writer",
                        lambda *args: RefusingWriter(real_open(*args), room, answer))


def test_a_refused_frame_stops_with_the_playable_part_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_after(monkeypatch, room=3, answer=False)
    path = tmp_path / "v.avi"
    writer = OverlayVideoWriter(path, VIPER15.palette)
    for i in range(3):
        writer.write(grey(50 * i), semantic_map())
    with pytest.raises(OutputError, match=rf"^--save-video {path}: writing video frame 4 failed"):
        writer.write(grey(200), semantic_map())
    assert writer.salvage() == "kept: 3 playable frames"
    assert len(decode(path)) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["v.avi"]


def test_a_silent_loss_shows_at_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV 4 returns None from write() even when the frame was lost: the frame count at close tells."""
    refuse_after(monkeypatch, room=2, answer=None)
    path = tmp_path / "v.avi"
    writer = OverlayVideoWriter(path, VIPER15.palette)
    for i in range(5):
        writer.write(grey(40 * i), semantic_map())
    with pytest.raises(OutputError, match=rf"^--save-video {path}: the video could not be finished \(2 of 5 frames "
                                          r"recorded\)$") as err:
        writer.close()
    assert err.value.kept == "kept: 2 playable frames"
    assert len(decode(path)) == 2


def test_an_unplayable_file_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay_video, "inspect_video", lambda path: (False, 0))  # an .mp4 without its index
    monkeypatch.setattr(overlay_video, "playable_frames", lambda path: (0, True))
    path = tmp_path / "v.mp4"
    writer = OverlayVideoWriter(path, VIPER15.palette)
    writer.write(grey(0), semantic_map())
    with pytest.raises(OutputError, match=r"could not be finished \(0 of 1 frames recorded\)$") as err:
        writer.close()
    assert err.value.kept == "nothing kept (a .mp4 without its end does not play)"
    assert list(tmp_path.iterdir()) == []
