"""Live sources: a camera, V4L2 device, network stream or GStreamer pipeline, captured in a thread.

The capture thread connects and reads into a one-slot buffer that always holds the newest frame: a
slow consumer drops frames instead of falling behind, so latency stays bounded. A source that cannot
connect (a camera or server that comes up after ``vsda-infer``) or stops delivering is (re)opened
with exponential back-off; after ``max_reconnects`` failed attempts the iterator ends and
``source.error`` says why. ``source.state`` says what it is doing meanwhile (``connecting (2/5)``,
``reconnecting (3/5)``), for a live status line. ``open_source`` (``vsda_deploy.sources``) opens these.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import re
import threading
import time
from pathlib import Path

import cv2

from vsda_deploy.sources import (
    MAX_BAD_RUN,
    Capture,
    CaptureFactory,
    Frame,
    FrameSource,
    SourceError,
    _to_rgb,
    natural_key,
)

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0  # the longest wait between two connection attempts


@functools.cache
def has_gstreamer() -> bool:
    """Return whether this OpenCV build can open GStreamer pipelines."""
    return re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()) is not None



class LiveSource(FrameSource):
    """A camera or stream connected and captured in a daemon thread into a one-slot "latest frame" buffer.

    ``fps`` is None until the first connection (then the capture's own figure, when it reports one).
    """

    live = True

    def __init__(self, spec: str, target: str | int, api: int, factory: CaptureFactory, *,
                 label: str, open_error: str, max_reconnects: int = 5, backoff_s: float = 0.5) -> None:
        super().__init__(spec)
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.state = "connecting"
        self._target, self._api, self._factory, self._label = target, api, factory, label
        self._open_error = open_error
        self._connected = False
        self._slot: Frame | None = None
        self._done = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, daemon=True, name=f"vsda-capture-{label}")
        self._thread.start()

    def __next__(self) -> Frame:
        start = time.monotonic()
        with self._cond:
            while self._slot is None and not self._done:
                self._cond.wait(timeout=0.5)
            self.waited_s = time.monotonic() - start  # the capture thread decodes: all of this is waiting
            if self._slot is None:
                raise StopIteration
            frame, self._slot = self._slot, None
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._done = True
            self._slot = None
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)  # a read blocked in the driver ends at its own timeout

    def _open(self) -> Capture | None:
        try:
            cap = self._factory(self._target, self._api)
        except cv2.error as exc:
            log.debug("%s: open failed: %s", self.spec, exc)
            return None
        if not cap.isOpened():
            cap.release()
            return None
        set_prop = getattr(cap, "set", None)
        if set_prop is not None:  # fewer frames queued in the driver = lower latency (where supported)
            set_prop(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not self._connected:
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if 0 < fps < 1000 else None
        return cap

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._done:  # closed while this frame was being read
                return
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.read += 1
            self._cond.notify()

    def _capture(self) -> None:
        try:
            self._capture_loop()
        except Exception as exc:  # the stream must end with a reason, not hang the consumer
            self.error = f"{self.spec}: capture failed: {exc!r}"
        finally:
            self.state = None
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _capture_loop(self) -> None:
        cap = self._open()
        index = attempt = bad = 0
        while not self._stop.is_set():
            if cap is None:
                attempt += 1
                cap = self._reopen(attempt)
                if cap is None and (self._stop.is_set() or self.error):
                    return
                continue
            ok, bgr = cap.read()
            stamp = time.monotonic()
            image = _to_rgb(bgr) if ok else None
            if image is not None:
                self._connected, self.state = True, None
                attempt = bad = 0
                self._publish(Frame(index, stamp, image, f"{self._label}_{index:06d}"))
                index += 1
                continue
            index += 1  # the frame slot is lost either way
            if ok:
                self.corrupt += 1
                bad += 1
                if bad < MAX_BAD_RUN:
                    continue
            cap.release()
            cap, bad = None, 0
        if cap is not None:
            cap.release()

    def _reopen(self, attempt: int) -> Capture | None:
        """Return a (re)opened capture (None if this attempt failed) after the back-off delay."""
        if attempt > self.max_reconnects:
            self.error = self._give_up()
            return None
        self.state = f"{'reconnecting' if self._connected else 'connecting'} ({attempt}/{self.max_reconnects})"
        if self._stop.wait(min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)):
            return None
        self.reconnects += 1
        if self._connected:
            log.warning("%s: stream stopped, reconnect attempt %d of %d", self.spec, attempt, self.max_reconnects)
        else:
            log.info("%s: not up yet, connection attempt %d of %d", self.spec, attempt + 1, self.max_reconnects + 1)
        return self._open()

    def _give_up(self) -> str:
        """Return why the source ended: lost after streaming, or never connected."""
        if self._connected:
            return (f"{self.spec}: stream lost; {self.max_reconnects} reconnect attempts failed"
                    if self.max_reconnects else f"{self.spec}: stream lost (reconnects disabled)")
        tries = self.max_reconnects + 1
        return f"{self.spec}: {self._open_error}; {tries} connection attempt{'s' if tries > 1 else ''} failed"


def open_live(spec: str, kind: str, target: str | int, factory: CaptureFactory, **kwargs) -> LiveSource:
    """Return a started ``LiveSource`` for a camera, V4L2 device, network URL or GStreamer pipeline."""
    if kind == "camera":
        return LiveSource(spec, target, cv2.CAP_ANY, factory, label=f"camera{target}", **kwargs,
                          open_error=f"cannot open webcam {target} (no camera with that index, or in use)")
    if kind == "device":
        if not os.path.exists(target):
            present = ", ".join(sorted(glob.glob("/dev/video*"), key=natural_key)) or "none"
            raise SourceError(f"{spec}: no such video device (video devices present: {present})")
        return LiveSource(spec, target, cv2.CAP_V4L2, factory, label=Path(target).name, **kwargs,
                          open_error="cannot open the video device (not a capture device, or in use)")
    if kind == "url":
        return LiveSource(spec, target, cv2.CAP_FFMPEG, factory, label="stream", **kwargs,
                          open_error="cannot open the stream (unreachable, wrong path or credentials, "
                                     "or an unsupported codec)")
    if not has_gstreamer():
        raise SourceError(f"{spec}: this OpenCV build ({cv2.__version__} at {Path(cv2.__file__).parent}) has "
                          f"no GStreamer support (getBuildInformation: 'GStreamer: NO'); use an OpenCV built "
                          f"with GStreamer, e.g. the system OpenCV of JetPack")
    return LiveSource(spec, target, cv2.CAP_GSTREAMER, factory, label="gst", **kwargs,
                      open_error="GStreamer cannot start this pipeline (try it with gst-launch-1.0; "
                                 "it must end in appsink)")
