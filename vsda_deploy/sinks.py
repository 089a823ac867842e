"""Where ``vsda-infer`` puts its predictions: label PNGs, panoptic PNGs, JSON lines, a window (and, in
``vsda_deploy.overlay_video``, the overlay video).

Every sink checks its path when it is made (before the first frame, ``vsda_deploy.outputs``), takes
one frame at a time (``write``) and is finished with ``close()``. A write or close that fails raises
``OutputError`` naming the option and the file; ``salvage()`` then keeps what is valid and says what,
and ``abort()`` removes what was started, so no half-written or temporary file is left behind:

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
from vsda_deploy.data.base import DatasetError
from vsda_deploy.evaluation import PAN_PRED, PRED_JSON
from vsda_deploy.labels import IGNORE_INDEX
from vsda_deploy.legend import draw_legend
from vsda_deploy.outputs import OutputError, check_dir_output, check_file_output, hidden_temp, reason, write_json
from vsda_deploy.sources import SourceError

log = logging.getLogger(__name__)

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


def write_png_atomic(path: Path, image: np.ndarray, option: str) -> None:
    """Write a PNG through a hidden temporary file; OutputError naming ``option`` (and no temp left) on failure."""
    tmp = hidden_temp(path, "tmp")
    try:
        ok = cv2.imwrite(str(tmp), image)
        if ok:
            os.replace(tmp, path)
    except (OSError, cv2.error) as e:
        ok, error = False, e
    else:
        error = None
    if not ok:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{option} {path}: cannot write the PNG ({reason(error, path.parent)})")


class Sink:
    """One output of the stream; subclasses write frames, finish on ``close`` and undo on ``abort``."""

    option = ""
    path: Path
    written = 0  # frames (or lines) written

    def close(self) -> None:
        """Finish the output (it is complete and valid afterwards); OutputError if that fails."""

    def abort(self) -> None:
        """Remove what was started (a run that failed before producing anything)."""
        self.close()

    def salvage(self) -> str:
        """After a failed write: keep what is valid, remove the rest; return what was kept."""
        self.abort()
        return "nothing kept"


class LabelWriter(Sink):
    """Train-id PNGs ``{dir}/{frame name}.png``; a second frame of the same name is an error."""

    option = "--save-labels"

    def __init__(self, folder: str | Path) -> None:
        self.path = self.folder = check_dir_output(Path(folder), self.option)
        self.paths: list[Path] = []
        self._names: set[str] = set()

    @property
    def written(self) -> int:
        return len(self.paths)

    def write(self, name: str, semantic: np.ndarray) -> Path:
        """Write one label map; return its path."""
        if name in self._names:
            raise SourceError(f"{self.folder / name}.png: two frames of the source are named {name!r}; "
                             "label PNGs are named after the frames, so their names must differ")
        path = self.folder / f"{name}.png"
        write_png_atomic(path, np.ascontiguousarray(semantic, np.uint8), self.option)
        self._names.add(name)
        self.paths.append(path)
        return path

    def salvage(self) -> str:
        return f"kept the {len(self.paths)} PNGs written before"

    def abort(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()


def image_id(frame_name: str) -> str:
    """Return the Cityscapes-VPS image id of a frame (its ``VVVV_FFFF_city_seq_frame`` stem, else the name)."""
    try:
        return vps.parse_frame_name(frame_name).stem
    except DatasetError:
        return frame_name


class PanopticWriter(Sink):
    """``{dir}/pan_pred/{image_id}.png`` per frame and ``{dir}/pred.json`` on close (official format).

    With ``image_ids`` (the ground truth's labelled frames, in the order of its JSON) only those frames
    are written and ``pred.json`` lists them in that order: the official ``eval_vpq.py`` pairs
    prediction and ground-truth annotations by position.
    """

    option = "--panoptic"

    def __init__(self, folder: str | Path, image_ids: list[str] | None = None) -> None:
        self.path = self.folder = check_dir_output(Path(folder), "--save-labels")
        self.annotations: list[dict[str, Any]] = []
        self.paths: list[Path] = []
        self.order = None if image_ids is None else {iid: i for i, iid in enumerate(image_ids)}

    @property
    def written(self) -> int:
        return len(self.paths)

    def write(self, name: str, semantic: np.ndarray, instance: np.ndarray) -> Path | None:
        """Write one panoptic frame (semantic + persistent instance ids); return its PNG (None: not labelled)."""
        iid = image_id(name)
        if self.order is not None and iid not in self.order:
            return None
        seg, info = vps.to_segments(semantic, instance)
        path = self.folder / PAN_PRED / f"{iid}.png"
        if not self.paths:
            check_dir_output(path.parent, self.option)
        write_png_atomic(path, cv2.cvtColor(vps.id_to_rgb(seg), cv2.COLOR_RGB2BGR), self.option)
        self.paths.append(path)
        self.annotations.append({"image_id": iid, "file_name": path.name, "segments_info": info})
        return path

    def close(self) -> None:
        if self.annotations:
            if self.order is not None:
                self.annotations.sort(key=lambda a: self.order[a["image_id"]])
            write_json(self.folder / PRED_JSON, {"annotations": self.annotations, "categories": vps.categories()},
                       self.option)

    def salvage(self) -> str:
        try:
            self.close()
        except OutputError:
            self.abort()
            return "nothing kept (pred.json could not be written)"
        return f"kept the {len(self.paths)} frames written before (pan_pred/ + pred.json)"

    def abort(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()
        self.annotations.clear()


class JsonLinesWriter(Sink):
    """One JSON object per frame: index, name, video, timestamp, ``latency_ms``, class pixel fractions.

    ``timestamp`` is the frame's capture time in ``time.monotonic()`` seconds (differences are
    intervals; ``latency_ms`` holds the stage times of vsda-infer's report).
    """

    option = "--save-jsonl"

    def __init__(self, path: str | Path, classes: tuple[str, ...]) -> None:
        self.path = check_file_output(Path(path), self.option)
        self.classes = classes
        self.written = 0
        self._tmp = hidden_temp(self.path)
        self._file = None
        self._good = 0  # bytes of complete lines on disk

    def write(self, record: dict[str, Any], semantic: np.ndarray) -> None:
        """Append ``record`` plus the fraction of pixels of each predicted class."""
        counts = np.bincount(semantic.ravel(), minlength=256)[: len(self.classes)]
        fractions = {self.classes[c]: round(int(counts[c]) / semantic.size, 5) for c in np.flatnonzero(counts)}
        line = json.dumps({**record, "classes": fractions}) + "\n"
        try:
            if self._file is None:
                self._file = open(self._tmp, "w", encoding="utf-8")  # open for the whole stream
            self._file.write(line)
            self._file.flush()
        except OSError as e:
            raise OutputError(f"{self.option} {self.path}: writing line {self.written + 1} failed "
                              f"({reason(e, self.path.parent)})") from None
        self._good = self._file.tell()
        self.written += 1

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except OSError as e:
            raise OutputError(f"{self.option} {self.path}: cannot finish the file ({reason(e, self.path.parent)})",
                              self.salvage()) from None

    def salvage(self) -> str:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the unflushed tail is cut off below
            self._file = None
        try:
            os.truncate(self._tmp, self._good)
            os.replace(self._tmp, self.path)
        except OSError:
            self._tmp.unlink(missing_ok=True)
            return "nothing kept"
        return f"kept the {self.written} complete lines written before"

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        self._tmp.unlink(missing_ok=True)


def has_display() -> bool:
    """Return whether a window can be shown: a desktop session on Linux/BSD, always on macOS/Windows."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink(Sink):
    """Shows the overlay in an OpenCV window; ``stop_requested`` turns true on ``q`` or Esc."""

    def __init__(self, palette: tuple[tuple[int, int, int], ...], alpha: float = OVERLAY_ALPHA,
                 classes: tuple[str, ...] = (), legend: bool = False) -> None:
        self.lut, self.alpha, self.classes, self.legend = palette_lut(palette), alpha, classes, legend
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
        picture = overlay(frame_rgb, semantic, self.lut, self.alpha)
        if self.legend:
            draw_legend(picture, semantic, self.classes, self.lut)
        picture = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
        if text:
            y = picture.shape[0] - 8 if self.legend else 20  # the legend holds the top left
            cv2.putText(picture, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow(WINDOW_NAME, picture)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        if self.enabled:
            cv2.destroyWindow(WINDOW_NAME)
            self.enabled = False
