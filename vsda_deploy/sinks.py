"""Where ``vsda-infer`` puts its predictions: overlay video, label PNGs, panoptic PNGs, JSON lines, a window.

Every sink takes one frame at a time (``write``) and is finished with ``close()``; ``abort()``
instead removes what it started, so a run that fails leaves nothing half-written:

* ``OverlayVideoWriter``: the frame blended with the class colours, written to a hidden
  temporary file renamed into place on ``close()`` (the container is finalised first, so a
  stopped run still leaves a playable video).
* ``LabelWriter``: one single-channel PNG of train ids (255 void) per frame, named after the
  source frame (``{frame name}.png``), each written atomically.
* ``PanopticWriter``: Cityscapes-VPS ``pan_pred/{image_id}.png`` + ``pred.json`` (19-trainId
  categories) that the official VPQ scorer and ``vsda_deploy.evaluation`` read.
* ``JsonLinesWriter``: one JSON object per frame (name, stage latencies, class pixel fractions).
* ``WindowSink``: an OpenCV window (``q`` or Esc stops), off without a display.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.evaluation import PAN_PRED, PRED_JSON
from vsda_deploy.labels import IGNORE_INDEX

log = logging.getLogger(__name__)

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}
OVERLAY_ALPHA = 0.5
WINDOW_NAME = "vsda-infer"


def palette_lut(palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Return a (256, 3) uint8 RGB table of a model's palette (void and unknown ids black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
    return lut


def overlay(frame_rgb: np.ndarray, semantic: np.ndarray, lut: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Return the RGB frame blended with the class colours of ``semantic``; void pixels stay as they are."""
    out = cv2.addWeighted(frame_rgb, 1.0 - alpha, lut[semantic], alpha, 0.0)
    void = semantic == IGNORE_INDEX
    if void.any():
        out[void] = frame_rgb[void]
    return out


def _partial(path: Path) -> Path:
    """Return the hidden temporary name ``path`` is written under (same folder, same suffix)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_output_file(path: Path, option: str) -> Path:
    """Return ``path`` once its folder exists (created) and it is not a folder; errors name the option."""
    if path.is_dir():
        raise ValueError(f"{path}: {option} needs a file name, this is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"{path}: {option}: cannot create its folder ({e.strerror})") from None
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """Return ``path`` once it is usable as an output folder (nothing is created yet)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: {option} needs a folder, this is a file")
    return path


def _write_png_atomic(path: Path, image: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"{path}: cannot write PNG")
    os.replace(tmp, path)


class Sink:
    """One output of the stream; subclasses write frames, finish on ``close`` and undo on ``abort``."""

    def close(self) -> None:
        """Finish the output (it is complete and valid afterwards)."""

    def abort(self) -> None:
        """Remove what was started (a run that failed before producing anything)."""
        self.close()


class OverlayVideoWriter(Sink):
    """An overlay video (.mp4 mp4v, .avi/.mkv MJPG), opened at the first frame's size."""

    def __init__(self, path: str | Path, fps: float, palette: tuple[tuple[int, int, int], ...],
                 alpha: float = OVERLAY_ALPHA) -> None:
        self.path = check_output_file(Path(path), "--save-video")
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise ValueError(f"{self.path}: --save-video: unsupported container {suffix or '(none)'}; "
                             f"use {', '.join(VIDEO_CODECS)}")
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.lut, self.alpha = palette_lut(palette), alpha
        self.frames = 0
        self._tmp = _partial(self.path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise OSError(f"{self.path}: OpenCV cannot write this video (no encoder for "
                          f"{VIDEO_CODECS[self.path.suffix.lower()]}); try --save-video out.avi")
        self._size = (width, height)
        return writer

    def write(self, frame_rgb: np.ndarray, semantic: np.ndarray) -> None:
        """Append one overlay frame (frames of another size are resized to the first one's)."""
        picture = overlay(frame_rgb, semantic, self.lut, self.alpha)
        if self._writer is None:
            self._writer = self._open(picture.shape[1], picture.shape[0])
        if (picture.shape[1], picture.shape[0]) != self._size:
            picture = cv2.resize(picture, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()  # writes the index: the file is playable from here on
        self._writer = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)


class LabelWriter(Sink):
    """Train-id PNGs ``{dir}/{frame name}.png``; a second frame of the same name is an error."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = check_output_dir(Path(folder), "--save-labels")
        self.written: list[Path] = []
        self._names: set[str] = set()

    def write(self, name: str, semantic: np.ndarray) -> Path:
        """Write one label map; return its path."""
        if name in self._names:
            raise ValueError(f"{self.folder / name}.png: two frames of the source are named {name!r}; "
                             "label PNGs are named after the frames, so their names must differ")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.png"
        _write_png_atomic(path, np.ascontiguousarray(semantic, np.uint8))
        self._names.add(name)
        self.written.append(path)
        return path

    def abort(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()


def image_id(frame_name: str) -> str:
    """Return the Cityscapes-VPS image id of a frame (its ``VVVV_FFFF_city_seq_frame`` stem, else the name)."""
    try:
        return vps.parse_frame_name(frame_name).stem
    except ValueError:
        return frame_name


class PanopticWriter(Sink):
    """``{dir}/pan_pred/{image_id}.png`` per frame and ``{dir}/pred.json`` on close (official format)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = check_output_dir(Path(folder), "--save-labels")
        self.annotations: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def write(self, name: str, semantic: np.ndarray, instance: np.ndarray) -> Path:
        """Write one panoptic frame (15-class semantic + persistent instance ids); return its PNG."""
        seg, info = vps.to_segments(semantic, instance)
        iid = image_id(name)
        path = self.folder / PAN_PRED / f"{iid}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_png_atomic(path, cv2.cvtColor(vps.id_to_rgb(seg), cv2.COLOR_RGB2BGR))
        self.written.append(path)
        self.annotations.append({"image_id": iid, "file_name": path.name, "segments_info": info})
        return path

    def close(self) -> None:
        if self.annotations:
            vps.dump_json(self.folder / PRED_JSON, {"annotations": self.annotations,
                                                      "categories": vps.categories()})

    def abort(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()
        self.annotations.clear()


class JsonLinesWriter(Sink):
    """One JSON object per frame: index, name, video, timestamp, ``latency_ms``, class pixel fractions.

    ``timestamp`` is the frame's capture time in ``time.monotonic()`` seconds (differences are
    intervals; ``latency_ms`` holds the stage times of vsda-infer's report).
    """

    def __init__(self, path: str | Path, classes: tuple[str, ...]) -> None:
        self.path = check_output_file(Path(path), "--save-jsonl")
        self.classes = classes
        self._tmp = _partial(self.path)
        self._file = None

    def write(self, record: dict[str, Any], semantic: np.ndarray) -> None:
        """Append ``record`` plus the fraction of pixels of each predicted class."""
        if self._file is None:
            self._file = open(self._tmp, "w", encoding="utf-8")  # open for the whole stream
        counts = np.bincount(semantic.ravel(), minlength=256)[: len(self.classes)]
        fractions = {self.classes[c]: round(int(counts[c]) / semantic.size, 5) for c in np.flatnonzero(counts)}
        self._file.write(json.dumps({**record, "classes": fractions}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


def has_display() -> bool:
    """Return whether a window can be shown: a desktop session on Linux/BSD, always on macOS/Windows."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink(Sink):
    """Shows the overlay in an OpenCV window; ``stop_requested`` turns true on ``q`` or Esc."""

    def __init__(self, palette: tuple[tuple[int, int, int], ...], alpha: float = OVERLAY_ALPHA) -> None:
        self.lut, self.alpha = palette_lut(palette), alpha
        self.stop_requested = False
        self.enabled = has_display()
        if not self.enabled:
            log.warning("--show: no display (DISPLAY/WAYLAND_DISPLAY unset); running without a window")
            return
        try:
            cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        except cv2.error as e:  # a headless OpenCV build has no GUI
            self.enabled = False
            log.warning("--show: this OpenCV build cannot open windows (%s); running without one",
                        str(e).strip().splitlines()[-1])

    def write(self, frame_rgb: np.ndarray, semantic: np.ndarray, text: str = "") -> None:
        """Show one overlay frame with ``text`` (e.g. FPS) in its corner."""
        if not self.enabled:
            return
        picture = cv2.cvtColor(overlay(frame_rgb, semantic, self.lut, self.alpha), cv2.COLOR_RGB2BGR)
        if text:
            cv2.putText(picture, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow(WINDOW_NAME, picture)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        if self.enabled:
            cv2.destroyWindow(WINDOW_NAME)
            self.enabled = False
