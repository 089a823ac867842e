"""The overlay video of ``--save-video``: real time, every write and the close checked, playable after a failure.

* Real time: each frame goes to its time slot (``slot``: frame periods since the start, from the
  source's frame index or a live frame's capture time); the slots of frames that were dropped, corrupt
  or lost in an outage repeat the previous overlay, so N seconds of stream play for N seconds at the
  video's frame rate. An outage longer than ``MAX_FILL_S`` is cut to that.
* Checked: a frame the writer refuses (OpenCV >= 5 says so) is an ``OutputError``; so is a video whose
  frame count after closing differs from what was written (how a failure shows on OpenCV 4).
* Written to a hidden temporary file renamed into place once finished. After a failure the part
  written so far is kept where the container plays without its end (.avi, .mkv: up to the last frame
  that reached the disk; how many play is counted); an .mp4/.mov needs its index written at the end,
  so it is removed. No temporary file stays.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.legend import draw_legend
from vsda_deploy.options import OptionError
from vsda_deploy.outputs import OutputError, check_file_output, hidden_temp, reason
from vsda_deploy.sinks import OVERLAY_ALPHA, Sink, overlay, palette_lut

VIDEO_CODECS = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_FPS = 30.0
MAX_FILL_S = 10.0
COUNT_BUDGET_S = 5.0  # after a failure, the playable frames are counted for at most this long
OPTION = "--save-video"


def check_container(path: Path) -> str:
    """Return the FourCC for ``path``'s container; OptionError for an unsupported one."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_CODECS:
        raise OptionError(f"{OPTION} {path}: unsupported container {suffix or '(none)'}; use "
                          f"{', '.join(VIDEO_CODECS)}")
    return VIDEO_CODECS[suffix]


def open_writer(path: Path, tmp: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """Return a VideoWriter on ``tmp`` for ``path``'s container; OutputError when OpenCV cannot encode it."""
    codec = check_container(path)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        writer.release()
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{OPTION} {path}: OpenCV cannot write {codec} video into a {path.suffix} file here "
                          f"({reason(None, path.parent)}); try {OPTION} {path.with_suffix('.avi')}")
    return writer


def check_video_output(path: Path) -> None:
    """Open, write and remove a tiny video next to ``path``: the encoder and the folder work (before the stream)."""
    probe = hidden_temp(path, f"{os.getpid()}.probe")
    writer = open_writer(path, probe, DEFAULT_FPS, (64, 64))
    ok = writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    probe.unlink(missing_ok=True)
    if ok is False:
        raise OutputError(f"{OPTION} {path}: cannot write a video frame there ({reason(None, path.parent)})")


def playable_frames(path: Path, budget_s: float = COUNT_BUDGET_S) -> tuple[int, bool]:
    """Return (frames that decode from the start, whether all were counted within ``budget_s`` seconds)."""
    cap = cv2.VideoCapture(str(path))
    count, deadline = 0, time.monotonic() + budget_s
    try:
        while cap.isOpened() and cap.grab():
            count += 1
            if time.monotonic() > deadline:
                return count, False
    finally:
        cap.release()
    return count, True


def inspect_video(path: Path) -> tuple[bool, int]:
    """Return (whether the first frame decodes, the frame count the container records)."""
    cap = cv2.VideoCapture(str(path))
    try:
        playable = cap.isOpened() and cap.read()[0]
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if playable else 0
    finally:
        cap.release()
    return bool(playable), int(count) if 0 <= count < 1e12 else -1


class OverlayVideoWriter(Sink):
    """Overlay frames (and ``--legend``) into a real-time video, opened at the first frame's size."""

    option = OPTION

    def __init__(self, path: str | Path, palette: tuple[tuple[int, int, int], ...], classes: tuple[str, ...] = (),
                 legend: bool = False, alpha: float = OVERLAY_ALPHA) -> None:
        self.path = Path(path)
        check_file_output(self.path, OPTION)
        check_container(self.path)
        check_video_output(self.path)
        self.fps = DEFAULT_FPS  # the caller sets the source's rate before the first frame
        self.lut, self.alpha, self.classes, self.legend = palette_lut(palette), alpha, classes, legend
        self.written = 0  # video frames written (repeats included)
        self._tmp = hidden_temp(self.path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._origin: int | None = None
        self._next = 0  # the slot of the next video frame
        self._last: np.ndarray | None = None

    def picture(self, frame_rgb: np.ndarray, semantic: np.ndarray) -> np.ndarray:
        """Return the RGB overlay of one frame (with the legend when asked)."""
        picture = overlay(frame_rgb, semantic, self.lut, self.alpha)
        if self.legend:
            draw_legend(picture, semantic, self.classes, self.lut)
        return picture

    def write(self, frame_rgb: np.ndarray, semantic: np.ndarray, slot: int | None = None) -> None:
        """Write one frame's overlay at time ``slot`` (None: the next one), repeating the last one over a gap."""
        picture = self.picture(frame_rgb, semantic)
        if self._writer is None:
            self._size = (picture.shape[1], picture.shape[0])
            self.fps = self.fps if 0 < self.fps < 1000 else DEFAULT_FPS
            self._writer = open_writer(self.path, self._tmp, self.fps, self._size)
        if (picture.shape[1], picture.shape[0]) != self._size:
            picture = cv2.resize(picture, self._size, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
        if slot is not None and self._last is not None:
            target = min(slot - self._origin, self._next + round(MAX_FILL_S * self.fps))
            self._origin = slot - target  # an outage cut to MAX_FILL_S shifts the time origin
            while self._next < target:
                self._put(self._last)
        elif slot is not None:
            self._origin = slot
        self._put(bgr)
        self._last = bgr

    def _put(self, bgr: np.ndarray) -> None:
        if self._writer.write(bgr) is False:  # OpenCV >= 5 reports a refused frame; 4.x returns None
            raise OutputError(f"{OPTION} {self.path}: writing video frame {self.written + 1} failed "
                              f"({reason(None, self.path.parent)})")
        self.written += 1
        self._next += 1

    def close(self) -> None:
        """Finish the video and move it into place; OutputError (what was kept) if it is not complete."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        playable, count = inspect_video(self._tmp)
        if playable and count == self.written:
            self._commit()
            return
        kept = self.salvage()
        raise OutputError(f"{OPTION} {self.path}: the video could not be finished ({max(count, 0)} of "
                          f"{self.written} frames recorded)", kept)

    def salvage(self) -> str:
        """Keep what plays after a failure (moved into place), else remove it; return what was kept."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if not self._tmp.exists():
            return "nothing kept"
        count, complete = playable_frames(self._tmp)
        if count:  # the writer buffers: the last frames it accepted may not have reached the disk
            try:
                self._commit()
                frames = f"{count} playable frame{'s' * (count != 1)}"
                return f"kept: {frames}" if complete else f"kept: at least {frames}"
            except OutputError:
                pass
        self._tmp.unlink(missing_ok=True)
        return f"nothing kept (a {self.path.suffix} without its end does not play)"

    def _commit(self) -> None:
        try:
            os.replace(self._tmp, self.path)
        except OSError as e:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"{OPTION} {self.path}: cannot move the finished video into place "
                              f"({reason(e, self.path.parent)})") from None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)
