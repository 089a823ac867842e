"""Frame sources: files, folders, globs, live streams, faults (vsda_deploy/sources.py)."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_deploy import live_source, sources
from vsda_deploy.live_source import LiveSource
from vsda_deploy.sources import SourceError, open_source, parse_source

CORRUPT = "corrupt"  # a read that succeeds but decodes to nothing
FAIL = "fail"  # a read that fails once in the middle of a file


def _solid(value: int, shape: tuple[int, int] = (4, 6)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


class FakeCapture:
    """A scripted capture with cv2.VideoCapture's read/isOpened/release/get; stops after the script."""

    def __init__(self, events: Iterable, opened: bool = True, period_s: float = 0.0,
                 gate: threading.Semaphore | None = None) -> None:
        self.events, self.opened, self.period_s, self.gate = iter(events), opened, period_s, gate
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.period_s:
            time.sleep(self.period_s)
        event = next(self.events, None)
        if event is None or event is FAIL:
            return False, None
        if event is CORRUPT:
            return True, np.zeros((0, 0, 3), np.uint8)
        if self.gate is not None:  # a camera slower than the consumer: wait until it took the last frame
            assert self.gate.acquire(timeout=5)
        return True, event

    def get(self, prop_id: int) -> float:
        return 25.0 if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


def _scripted_factory(sessions: list[FakeCapture], calls: list) -> sources.CaptureFactory:
    """Return a factory that hands out ``sessions`` in order, then captures that fail to open."""
    def factory(target: str | int, api: int) -> FakeCapture:
        calls.append((target, api))
        return sessions.pop(0) if sessions else FakeCapture([], opened=False)
    return factory


def _write_video(path: Path, values: list[int], fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert writer.isOpened()
    for v in values:  # BGR: blue = v, red = 255 - v
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 0], frame[..., 2] = v, 255 - v
        writer.write(frame)
    writer.release()


def _write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), _solid(value, (8, 8)))


def test_parse_source_kinds(tmp_path: Path) -> None:
    assert parse_source("camera0") == ("camera", 0)
    assert parse_source("2") == ("camera", 2)
    assert parse_source("/dev/video0") == ("device", "/dev/video0")
    assert parse_source("rtsp://10.0.0.2:554/stream") == ("url", "rtsp://10.0.0.2:554/stream")
    assert parse_source("HTTPS://cam/mjpg")[0] == "url"
    assert parse_source("gst: v4l2src ! appsink") == ("gst", "v4l2src ! appsink")
    assert parse_source(str(tmp_path)) == ("folder", str(tmp_path))
    assert parse_source(f"{tmp_path}/*.png")[0] == "glob"
    assert parse_source("clip.MP4") == ("video", "clip.MP4")
    assert parse_source("frame.JPG") == ("image", "frame.JPG")
    with pytest.raises(SourceError, match="empty source"):
        parse_source("  ")


def test_video_file_is_read_losslessly_in_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    values = [0, 40, 80, 120, 160, 200, 240, 20, 60]
    _write_video(path, values)
    with open_source(str(path)) as src:
        frames = list(src)
    assert src.fps == pytest.approx(10.0)
    assert [f.index for f in frames] == list(range(len(values)))
    assert frames[3].name == "clip_000003"
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    blue = [float(f.image[..., 2].mean()) for f in frames]  # RGB: blue is the last channel
    red = [float(f.image[..., 0].mean()) for f in frames]
    np.testing.assert_allclose(blue, values, atol=6)
    np.testing.assert_allclose(red, [255 - v for v in values], atol=6)
    assert src.counters() == {"read": 9, "dropped": 0, "corrupt": 0, "reconnects": 0}
    assert src.error is None


def test_video_realtime_drops_what_a_slow_consumer_misses(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, [25 * i for i in range(10)], fps=20.0)  # one frame every 50 ms
    indices = []
    with open_source(str(path), realtime=True) as src:
        for frame in src:
            indices.append(frame.index)
            time.sleep(0.12)  # 2.4 frame periods per frame
    assert indices == sorted(set(indices)) and indices[0] == 0 and indices[-1] == 9
    assert src.dropped >= 3 and src.read == 10 and len(indices) == 10 - src.dropped


def test_folder_realtime_paces_a_fast_consumer(tmp_path: Path) -> None:
    for i in range(6):
        _write_png(tmp_path / f"f{i}.png", i)
    start = time.monotonic()
    frames = list(open_source(str(tmp_path), realtime=True, fps=20.0))
    assert time.monotonic() - start >= 5 * 0.05 - 0.01
    assert [f.index for f in frames] == list(range(6))


def test_folder_natural_order_skips_and_counts_corrupt_images(tmp_path: Path) -> None:
    for name, value in [("frame10.png", 10), ("frame2.png", 2), ("frame1.png", 1)]:
        _write_png(tmp_path / name, value)
    (tmp_path / "frame3.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(str(tmp_path))
    frames = list(src)
    assert [f.name for f in frames] == ["frame1", "frame2", "frame10"]
    assert [f.index for f in frames] == [0, 1, 3]  # the gap at 2 is the corrupt frame3
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10]
    assert (src.read, src.corrupt, src.dropped) == (3, 1, 0)


def test_glob_spans_folders_in_natural_order(tmp_path: Path) -> None:
    _write_png(tmp_path / "b" / "img_1.png", 3)
    _write_png(tmp_path / "a" / "img_12.png", 2)
    _write_png(tmp_path / "a" / "img_9.png", 1)
    _write_png(tmp_path / "a" / "skip_1.png", 99)
    frames = list(open_source(f"{tmp_path}/*/img_*.png"))
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 3]


def test_single_image_is_a_one_frame_source(tmp_path: Path) -> None:
    _write_png(tmp_path / "x.jpg", 7)
    assert [f.name for f in open_source(str(tmp_path / "x.jpg"))] == ["x"]


def test_folder_of_only_corrupt_images_ends_with_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    src = open_source(str(tmp_path))
    assert list(src) == [] and src.corrupt == 2
    assert src.error == f"{tmp_path}: none of its 2 frames could be read"


@pytest.mark.parametrize(("spec", "message"), [
    ("/dev/video9", r"^/dev/video9: no such video device"),
    ("missing.mp4", r"^missing.mp4: no such file or folder"),
    ("missing.png", r"^missing.png: no such file or folder"),
])
def test_missing_sources_fail_at_open_naming_them(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_empty_folder_glob_and_non_video_fail_at_open(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"^{re.escape(str(tmp_path))}: no images in this folder"):
        open_source(str(tmp_path))
    with pytest.raises(SourceError, match=r"no images match this pattern"):
        open_source(f"{tmp_path}/*.png")
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 50)
    with pytest.raises(SourceError, match=f"^{re.escape(str(tmp_path / 'bad.mp4'))}: cannot open as a video"):
        open_source(str(tmp_path / "bad.mp4"))
    with pytest.raises(ValueError, match="max_reconnects must be >= 0"):
        open_source(str(tmp_path), max_reconnects=-1)


def test_video_decode_errors_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"")  # exists; the fake capture decodes it
    script = [_solid(0), _solid(1), FAIL, CORRUPT, _solid(2)]  # then end of file
    src = open_source(str(path), capture_factory=lambda t, a: FakeCapture(script))
    frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2]
    assert [f.index for f in frames] == [0, 1, 4]
    assert (src.read, src.corrupt, src.error) == (3, 2, None)  # the failed reads at the end are no corruption


def test_rtsp_url_selects_the_live_path_with_ffmpeg() -> None:
    calls: list = []
    cam = FakeCapture([_solid(5), _solid(6)])
    url = "rtsp://admin:secret@10.0.0.2:554/stream1"
    src = open_source(url, max_reconnects=0, capture_factory=_scripted_factory([cam], calls))
    assert isinstance(src, LiveSource) and src.live
    frames = list(src)
    assert calls == [(url, cv2.CAP_FFMPEG)]
    assert [f.name for f in frames][-1].startswith("stream_")
    assert src.error == "rtsp://***@10.0.0.2:554/stream1: stream lost (reconnects disabled)"
    assert cam.released


def test_gst_without_gstreamer_names_the_opencv_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_source, "has_gstreamer", lambda: False)
    spec = "gst:nvarguscamerasrc ! appsink"
    build = re.escape(f"this OpenCV build ({cv2.__version__}")
    with pytest.raises(SourceError, match=f"^{re.escape(spec)}: {build}"):
        open_source(spec)


def test_gst_with_gstreamer_opens_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_source, "has_gstreamer", lambda: True)
    calls: list = []
    factory = _scripted_factory([FakeCapture([])], calls)
    with open_source("gst:videotestsrc ! appsink", capture_factory=factory):
        pass
    assert calls[0] == ("videotestsrc ! appsink", cv2.CAP_GSTREAMER)


def test_a_live_source_that_never_comes_up_ends_after_the_back_off() -> None:
    calls: list = []
    src = open_source("camera3", max_reconnects=2, backoff_s=0.001, capture_factory=_scripted_factory([], calls))
    assert src.fps is None and list(src) == []  # opening does not block: connecting happens in the thread
    assert calls == [(3, cv2.CAP_ANY)] * 3 and src.reconnects == 2
    assert src.error == ("camera3: cannot open webcam 3 (no camera with that index, or in use); "
                         "3 connection attempts failed")
    assert src.state is None


def test_the_first_connection_is_retried_like_a_reconnect() -> None:
    """A camera or RTSP server that comes up a little after vsda-infer: connected on the third try."""
    calls: list = []
    gate = threading.Semaphore(1)
    late = FakeCapture([_solid(1), _solid(2)], gate=gate)
    src = open_source("rtsp://cam/stream", max_reconnects=2, backoff_s=0.001,
                      capture_factory=_scripted_factory([FakeCapture([], opened=False)] * 2 + [late], calls))
    values = []
    for frame in src:
        values.append(int(frame.image[0, 0, 0]))
        gate.release()
    assert values == [1, 2]
    assert src.fps == 25.0 and len(calls) == 3 + 2  # 3 to connect, then 2 reconnects after the stream ended
    assert src.error == "rtsp://cam/stream: stream lost; 2 reconnect attempts failed"


def test_the_state_says_what_a_live_source_is_doing_during_an_outage() -> None:
    gate = threading.Event()
    cam = FakeCapture([_solid(1)])
    src = open_source("camera0", max_reconnects=3, backoff_s=0.2, capture_factory=_scripted_factory([cam], []))
    assert next(src).index == 0 and src.waited_s >= 0
    deadline = time.monotonic() + 5
    states = set()
    while time.monotonic() < deadline and not gate.is_set():
        states.add(src.state)
        if src.state == "reconnecting (2/3)":
            gate.set()
        time.sleep(0.01)
    src.close()
    assert {"reconnecting (1/3)", "reconnecting (2/3)"} <= states


def test_a_live_source_reports_how_long_the_consumer_waited() -> None:
    cam = FakeCapture((_solid(k) for k in range(6)), period_s=0.05)
    src = open_source("0", capture_factory=lambda t, a: cam)
    waits = []
    for _ in itertools.islice(src, 4):
        waits.append(src.waited_s)
    src.close()
    assert 0.02 < float(np.median(waits)) < 0.2  # a camera at 20 FPS and a consumer with nothing to do


def test_live_source_reconnects_after_dropouts_and_skips_corrupt_frames() -> None:
    gate = threading.Semaphore(1)
    s1 = FakeCapture([_solid(0), _solid(1), _solid(2), CORRUPT, _solid(3)], gate=gate)  # then drops out
    s2 = FakeCapture([], opened=False)  # first reopen fails
    s3 = FakeCapture([_solid(4), _solid(5), CORRUPT, _solid(6)], gate=gate)  # drops out again, for good
    calls: list = []
    src = open_source("camera0", max_reconnects=3, backoff_s=0.001,
                      capture_factory=_scripted_factory([s1, s2, s3], calls))
    frames = []
    for frame in src:
        frames.append(frame)
        gate.release()
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4, 5, 6]
    assert [f.index for f in frames] == [0, 1, 2, 4, 6, 7, 9]  # gaps: corrupt frames and lost slots
    assert src.counters() == {"read": 7, "dropped": 0, "corrupt": 2, "reconnects": 2 + 3}
    assert len(calls) == 1 + 5
    assert src.error == "camera0: stream lost; 3 reconnect attempts failed"
    assert s1.released and s3.released


def test_slow_consumer_drops_frames_and_latency_stays_bounded() -> None:
    endless = (_solid(k % 256) for k in itertools.count())
    cam = FakeCapture(endless, period_s=0.001)
    src = open_source("0", capture_factory=lambda t, a: cam)
    ages, indices = [], []
    for frame in itertools.islice(src, 12):
        ages.append(time.monotonic() - frame.timestamp)
        indices.append(frame.index)
        time.sleep(0.02)  # the model is 20x slower than the camera
    src.close()
    assert not src._thread.is_alive() and cam.released
    assert next(src, None) is None
    assert indices == sorted(set(indices)) and indices[-1] >= 12 + 20
    assert src.dropped >= 20 and src.read - src.dropped - len(indices) in (0, 1)
    # an unbounded queue would age the 12th frame by ~0.2 s; the one-slot buffer keeps it fresh
    assert max(ages) < 0.1
