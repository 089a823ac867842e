"""Frame sources of the streaming runtime (numpy + OpenCV, no torch).

``open_source(spec)`` opens a webcam (``camera0`` / ``0``), a V4L2 device (``/dev/video0``), a video
file, an image folder or glob, an ``rtsp://`` / ``rtmp://`` / ``http(s)://`` stream or a GStreamer
pipeline (``gst:...``) and returns a ``FrameSource``: an iterator of ``Frame(index, timestamp,
image, name)`` with RGB uint8 images, counters and ``close()`` (also a context manager).

* Files and folders are read losslessly in order; with ``realtime=True`` they are paced at their
  FPS and the frames a slow consumer misses are dropped.
* Live sources (``vsda_deploy.live_source``) connect and capture in a daemon thread into a one-slot
  buffer that always holds the newest frame, and reconnect with back-off.

Counters: ``read`` good frames the source produced (delivered or dropped); ``dropped`` of those,
never delivered because the consumer was behind; ``corrupt`` unreadable frames skipped;
``reconnects`` attempts to reopen a live source. ``Frame.index`` numbers every frame slot of the
source (read, corrupt or lost in an outage), so a jump in ``index`` tells the consumer that frames
were skipped (temporal state should be reset there). ``Frame.timestamp`` is ``time.monotonic()``
when the frame was captured, so ``time.monotonic() - frame.timestamp`` is its age. After each frame,
``source.waited_s`` is how long the consumer waited for it without work being done: a live source's
next frame arriving, or the pacing of a file under ``realtime``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import cv2
import numpy as np

from vsda_deploy.errors import VsdaError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
LIVE_KINDS = ("camera", "device", "url", "gst")
DEFAULT_FPS = 30.0  # pacing of a folder (or of a video that reports no FPS) under realtime=True
MAX_BAD_RUN = 25  # unreadable frames in a row after which a file has ended / a live source is reopened
STREAM_TIMEOUT_MS = 5000  # a dead network stream then fails its read (and is reopened) instead of hanging


class SourceError(VsdaError, ValueError):
    """A source that cannot be opened; the message starts with the source spec."""


class Frame(NamedTuple):
    """One frame of a source: slot index, capture time (monotonic s), RGB uint8 image, name."""

    index: int
    timestamp: float
    image: np.ndarray
    name: str


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` that sources use (fakes implement the same)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def isOpened(self) -> bool: ...

    def release(self) -> None: ...

    def get(self, prop_id: int) -> float: ...


CaptureFactory = Callable[[str | int, int], Capture]


def open_capture(target: str | int, api: int) -> cv2.VideoCapture:
    """Return ``cv2.VideoCapture(target, api)``; network streams get open and read timeouts."""
    if isinstance(target, str) and target.lower().startswith(URL_SCHEMES):
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        return cv2.VideoCapture(target, api, timeouts)
    return cv2.VideoCapture(target, api)


def quiet_opencv(verbose: bool = False) -> None:
    """Silence OpenCV's and FFmpeg's own console messages (probing backends, decoder noise) unless ``verbose``.

    What a source does wrong is reported by vsda in one line; their messages are for debugging. FFmpeg's
    level is read when OpenCV first starts it, so call this before opening anything.
    """
    if not verbose:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    level = 4 if verbose else 0  # cv::utils::logging: LOG_LEVEL_INFO, LOG_LEVEL_SILENT
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)  # OpenCV 5; 4.x has cv2.setLogLevel
    set_level = logging_api.setLogLevel if logging_api is not None else getattr(cv2, "setLogLevel", None)
    if set_level is not None:
        set_level(level)


def redact(spec: str) -> str:
    """Return ``spec`` with URL credentials (``user:password@``) masked, for messages and logs."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", spec)


def natural_key(text: str) -> list:
    """Return a sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def parse_source(spec: str) -> tuple[str, str | int]:
    """Return ``(kind, target)``: kind is camera|device|url|gst|video|image|folder|glob."""
    text = spec.strip()
    if not text:
        raise SourceError("'': empty source; give camera0, a file, a folder, a glob, a URL or gst:PIPELINE")
    if text.startswith("gst:"):
        return "gst", text[4:].strip()
    if text.lower().startswith(URL_SCHEMES):
        return "url", text
    camera = re.fullmatch(r"(?:camera|cam)?(\d+)", text)
    if camera:
        return "camera", int(camera.group(1))
    if text.startswith("/dev/"):
        return "device", text
    if any(c in text for c in "*?["):
        return "glob", os.path.expanduser(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder", str(path)
    return ("image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"), str(path)


def _to_rgb(bgr: np.ndarray | None) -> np.ndarray | None:
    """Return an OpenCV frame as RGB uint8 (H, W, 3), or None for an empty (corrupt) frame."""
    if bgr is None or bgr.size == 0 or bgr.dtype != np.uint8:
        return None
    if bgr.ndim == 2 or bgr.shape[2] == 1:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def read_image_rgb(path: str | Path) -> np.ndarray | None:
    """Return the image at ``path`` as RGB uint8, or None when it cannot be read or decoded."""
    try:  # imdecode(fromfile) rather than imread: also reads non-ASCII paths on Windows
        data = np.fromfile(path, dtype=np.uint8)
        return _to_rgb(cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None)
    except (OSError, cv2.error):
        return None


class FrameSource:
    """An iterator of ``Frame`` with counters (read, dropped, corrupt, reconnects) and ``close()``."""

    live = False

    def __init__(self, spec: str, fps: float | None = None) -> None:
        self.spec = redact(spec)
        self.fps = fps
        self.read = self.dropped = self.corrupt = self.reconnects = 0
        self.error: str | None = None  # why the stream ended early, when it did
        self.waited_s = 0.0  # idle time before the last frame (module docstring)
        self.state: str | None = None  # what a live source is doing when it delivers nothing (None: streaming)

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> Frame:
        raise NotImplementedError

    def close(self) -> None:
        """Release the source; iteration then ends."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counters(self) -> dict[str, int]:
        """Return the frame counters as a dict (the report's ``frames`` and ``reconnects``)."""
        return {"read": self.read, "dropped": self.dropped, "corrupt": self.corrupt,
                "reconnects": self.reconnects}

    def _ended(self) -> None:
        if self.read == 0 and self.corrupt > 0 and self.error is None:
            self.error = f"{self.spec}: none of its {self.corrupt} frames could be read"


class _Pacer:
    """Paces a file at ``fps`` from the first frame asked for, as a player would show it."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.start: float | None = None

    def overdue(self, index: int) -> tuple[int, float]:
        """Return how many frames from ``index`` on are already past, and the seconds slept until it was due."""
        now = time.monotonic()
        if self.start is None:
            self.start = now - index * self.period
        late = int((now - self.start) / self.period) - index
        slept = 0.0
        if late <= 0:
            slept = max(0.0, self.start + index * self.period - now)
            time.sleep(slept)
        return max(late, 0), slept


class ImageSequenceSource(FrameSource):
    """Frames from a list of image files (a folder or a glob, naturally sorted)."""

    def __init__(self, spec: str, paths: list[Path], *, realtime: bool = False, fps: float | None = None):
        super().__init__(spec, fps or DEFAULT_FPS)
        self.paths = paths
        self._next = 0
        self._pacer = _Pacer(self.fps) if realtime else None

    def __next__(self) -> Frame:
        self.waited_s = 0.0
        while self._next < len(self.paths):
            if self._pacer is not None:  # skip what the consumer missed, but always show the last frame
                late, slept = self._pacer.overdue(self._next)
                self.waited_s += slept
                skip = min(late, len(self.paths) - 1 - self._next)
                self._next += skip
                self.read += skip
                self.dropped += skip
            index, path = self._next, self.paths[self._next]
            self._next += 1
            image = read_image_rgb(path)
            if image is None:
                self.corrupt += 1
                log.warning("%s: unreadable image, skipped", path)
                continue
            self.read += 1
            return Frame(index, time.monotonic(), image, path.stem)
        self._ended()
        raise StopIteration

    def close(self) -> None:
        self._next = len(self.paths)


class VideoFileSource(FrameSource):
    """Frames of a video file, decoded in order (paced at its FPS under ``realtime``)."""

    def __init__(self, spec: str, path: Path, factory: CaptureFactory, *, realtime: bool = False,
                 fps: float | None = None) -> None:
        super().__init__(spec)
        cap = factory(str(path), cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{path}: cannot open as a video (not a video file, or no OpenCV backend "
                              f"decodes it)")
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (file_fps if 0 < file_fps < 1000 else DEFAULT_FPS)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if 0 < count < 1e12 else 0  # streams report -1 or nan
        self._cap: Capture | None = cap
        self._stem = path.stem
        self._next = 0
        self._pacer = _Pacer(self.fps) if realtime else None

    def __next__(self) -> Frame:
        self.waited_s = 0.0
        if self._cap is None:
            raise StopIteration
        if self._pacer is not None:  # skip what the consumer missed, but always show the last frame
            last = self.frame_count - 1 if self.frame_count else None
            skip, self.waited_s = self._pacer.overdue(self._next)
            self._skip(skip if last is None else min(skip, last - self._next))
        failed = bad = 0
        while bad < MAX_BAD_RUN:
            ok, bgr = self._cap.read()
            index = self._next
            self._next += 1
            image = _to_rgb(bgr) if ok else None
            if image is not None:
                self.corrupt += failed  # failed reads followed by a good frame were corrupt frames
                self.read += 1
                return Frame(index, time.monotonic(), image, f"{self._stem}_{index:06d}")
            bad += 1
            if ok:
                self.corrupt += 1
            else:  # a failed read is a corrupt frame only if the file goes on, else it is the end
                failed += 1
        self._finish(end=self._next - bad)
        raise StopIteration

    def _skip(self, frames: int) -> None:
        grab = getattr(self._cap, "grab", None)
        for _ in range(frames):
            ok = grab() if grab is not None else self._cap.read()[0]
            if not ok:
                return
            self._next += 1
            self.read += 1
            self.dropped += 1

    def _finish(self, end: int) -> None:
        self.close()
        if self.frame_count and end < self.frame_count - 1:  # the count is an estimate for some containers
            log.warning("%s: stopped at frame %d of about %d (%d unreadable frames in a row)",
                        self.spec, end, self.frame_count, MAX_BAD_RUN)
        self._ended()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _list_images(kind: str, target: str, spec: str) -> list[Path]:
    """Return the image files of a folder, glob or single image, naturally sorted."""
    if kind == "image":
        if not Path(target).is_file():
            raise SourceError(f"{spec}: no such file or folder")
        return [Path(target)]
    found = Path(target).iterdir() if kind == "folder" else map(Path, glob.glob(target, recursive=True))
    paths = sorted((p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                   key=lambda p: natural_key(str(p)))
    if not paths:
        what = "no images in this folder" if kind == "folder" else "no images match this pattern"
        raise SourceError(f"{spec}: {what} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return paths


def open_source(spec: str | os.PathLike, *, realtime: bool = False, fps: float | None = None,
                max_reconnects: int = 5, backoff_s: float = 0.5,
                capture_factory: CaptureFactory | None = None) -> FrameSource:
    """Return an open ``FrameSource`` for ``spec``; ``SourceError`` names a source that cannot open.

    ``realtime`` paces files and folders at ``fps`` (default: the file's, else 30) and drops what
    the consumer misses; live sources always are. ``max_reconnects`` / ``backoff_s`` bound the
    reopening of a live source that stops (delays backoff_s, 2 backoff_s, ... up to 10 s).
    ``capture_factory(target, api)`` replaces ``cv2.VideoCapture`` (tests inject faults with it).
    """
    if max_reconnects < 0:
        raise ValueError(f"max_reconnects must be >= 0, got {max_reconnects}")
    if backoff_s < 0:
        raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    factory = capture_factory or open_capture
    spec = os.fspath(spec)
    kind, target = parse_source(spec)
    if kind in LIVE_KINDS:
        from vsda_deploy.live_source import open_live

        return open_live(spec, kind, target, factory, max_reconnects=max_reconnects, backoff_s=backoff_s)
    if kind == "video":
        path = Path(target)
        if not path.exists():
            raise SourceError(f"{spec}: no such file or folder")
        return VideoFileSource(spec, path, factory, realtime=realtime, fps=fps)
    return ImageSequenceSource(spec, _list_images(kind, str(target), spec), realtime=realtime, fps=fps)
