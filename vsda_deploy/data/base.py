"""Clip datasets: the sample type, the base class and the readers every loader shares.

A *clip* is frame ``t`` and its neighbour ``t-k`` of the same video, with the label of
``t`` (train ids of the dataset's label space, 255 = ignore) and optionally the backward
flow ``t -> t-k`` (``vsda_deploy.flow`` convention). Loaders index file names when they
are built (so a broken dataset fails at once, naming the file) and read pixels lazily in
``__getitem__``. They use numpy and OpenCV only: no torch, no resizing, no augmentation.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from vsda_deploy.labels import LabelSpace, get_label_space, unknown_ids
from vsda_deploy.errors import VsdaError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class DatasetError(VsdaError, ValueError):
    """A dataset that cannot be read as asked; the message starts with the file or option at fault."""


@dataclass
class ClipSample:
    """One training / inference sample: frame t, frame t-k, label of t, flow t -> t-k, meta."""

    frame: np.ndarray  # (H, W, 3) uint8 RGB, frame t
    prev: np.ndarray  # (H, W, 3) uint8 RGB, frame t-k
    label: np.ndarray | None  # (H, W) uint8 train ids, 255 = ignore
    flow: np.ndarray | None  # (H, W, 2) float32 backward flow t -> t-k
    meta: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator:
        return iter((self.frame, self.prev, self.label, self.flow, self.meta))


class FlowProvider(Protocol):
    """Anything that returns the backward flow (H, W, 2) float32 of a frame pair."""

    def __call__(self, key_t: str, key_prev: str, frame_t: np.ndarray, frame_prev: np.ndarray) -> np.ndarray:
        ...


@dataclass(frozen=True)
class FrameRecord:
    """What a loader indexes per sample: where frame t, frame t-k and the label of t are."""

    video: str
    index: int  # frame index in the video, as the dataset numbers it
    prev_index: int
    path: str
    prev_path: str
    label_path: str | None
    name: str  # output file name of a prediction for this frame


# --- readers -----------------------------------------------------------------------------

def read_image(path: str | Path) -> np.ndarray:
    """Return the RGB (H, W, 3) uint8 image at ``path``; DatasetError names the file."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        what = "not found" if not Path(path).is_file() else "unreadable or corrupt image"
        raise DatasetError(f"{path}: {what}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_palette_indices(data: bytes, path: str | Path) -> np.ndarray | None:
    """Return the palette indices (H, W) uint8 of palette-PNG bytes, or None for other images."""
    # OpenCV expands a palette PNG to colours, and two ids may share a colour. Swapping in a
    # palette whose entry i is the colour (i, 0, 0) makes the red channel the exact index.
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos, colour_type = len(PNG_SIGNATURE), None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            colour_type = data[pos + 17]
        elif kind == b"PLTE" and colour_type == 3:
            red = np.zeros((length // 3, 3), np.uint8)
            red[:, 0] = np.arange(length // 3)
            body = red.tobytes()
            chunk = data[pos:pos + 8] + body + struct.pack(">I", zlib.crc32(kind + body))
            patched = data[:pos] + chunk + data[pos + 12 + length:]
            img = cv2.imdecode(np.frombuffer(patched, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise DatasetError(f"{path}: unreadable or corrupt label image")
            return img[..., 2].copy()  # OpenCV order is B, G, R
        elif kind == b"IDAT":
            return None
        pos += 12 + length
    return None


def read_id_png(path: str | Path) -> np.ndarray:
    """Return the (H, W) raw class ids of a single-channel or palette label PNG (ids not checked)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: label not found") from None
    indices = _decode_palette_indices(data, path)
    if indices is not None:
        return indices
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: unreadable or corrupt label image")
    if img.ndim == 3:
        if not (img == img[..., :1]).all():
            raise DatasetError(f"{path}: expected single-channel class ids, got {img.shape[2]} different channels")
        img = img[..., 0]
    return img


def check_ids(raw: np.ndarray, num_ids: int, path: str | Path) -> None:
    """Raise DatasetError naming ``path`` if ``raw`` holds ids outside ``0..num_ids-1`` and 255."""
    bad = unknown_ids(raw, num_ids)
    if bad:
        raise DatasetError(f"{path}: unknown label id(s) {bad[:10]} (valid: 0..{num_ids - 1}, 255)")


def remap(raw: np.ndarray, lut: np.ndarray, num_ids: int, path: str | Path) -> np.ndarray:
    """Return ``lut[raw]`` as uint8 train ids after checking every raw id is known."""
    check_ids(raw, num_ids, path)
    return lut[raw.astype(np.intp)]


def natural_key(name: str) -> list:
    """Return a sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder; DatasetError naming it otherwise."""
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found")
    return path


def pair_frames(
    frames: Mapping[int, str], k: int, pad_start: bool = False, video: str = ""
) -> list[tuple[int, int]]:
    """Return ``(index, prev_index)`` of every frame of one video that has a sample (see ``neighbour``)."""
    pairs = [(i, neighbour(frames, i, k, pad_start, video, frames[i])) for i in sorted(frames)]
    return [(i, j) for i, j in pairs if j is not None]


def neighbour(frames: Mapping[int, str], i: int, k: int, pad_start: bool, video: str, where: str) -> int | None:
    """Return the index of frame ``i - k`` in ``frames`` (one video), or None: no sample.

    The first ``k`` frames of a video have no neighbour and no sample (with ``pad_start``
    they are paired with the video's first frame instead). A frame ``i - k`` that lies
    inside the video but is missing is a gap: DatasetError names ``where`` and the frame.
    """
    first = min(frames)
    j = i - k
    if j < first:
        return first if pad_start else None
    if j not in frames:
        raise DatasetError(f"{where}: neighbour frame {j} (t-{k}) of video {video!r} is missing")
    return j


# --- the base class ----------------------------------------------------------------------

FRAMES = ("all", "labelled")


class ClipDataset:
    """A list of clips (frame t, frame t-k, label of t) of one dataset split.

    Which frames are samples: with ``labels`` (or ``frames="labelled"``) the labelled frames,
    else (``frames="all"``) every frame that has a t-k neighbour. ``frames="labelled"`` with
    ``labels=False`` gives the labelled-frame positions without reading a label (what the
    peers train on: e.g. the 2,975 labelled Cityscapes frames and their t-1).
    Subclasses fill ``self.records`` in ``__init__`` and implement ``load_label``.
    """

    dataset = "base"
    label_spaces: tuple[str, ...] = ()  # the label spaces this dataset can be read in

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, frames: str = "all") -> None:
        if int(k) < 1:
            raise DatasetError(f"k: the frame offset must be >= 1, got {k}")
        if frames not in FRAMES:
            raise DatasetError(f"frames: {frames!r} is not one of {list(FRAMES)}")
        self.root = Path(root)
        self.split = split
        self.k = int(k)
        self.labels = labels
        self.frames_mode = frames
        self.flow = flow
        self.pad_start = pad_start
        self.label_space = self._resolve_space(label_space)
        self.records: list[FrameRecord] = []
        self.video_frames: dict[str, dict[int, str]] = {}  # every frame of every video, by index

    @property
    def labelled_positions(self) -> bool:
        """Whether the samples are the labelled frames (``labels`` or ``frames="labelled"``)."""
        return self.labels or self.frames_mode == "labelled"

    def _resolve_space(self, name: str | None) -> LabelSpace:
        name = name or self.label_spaces[0]
        if name not in self.label_spaces:
            raise DatasetError(f"label_space: {self.dataset} is read in {list(self.label_spaces)}, not {name!r}")
        return get_label_space(name)

    def _require_records(self, where: Path) -> None:
        if not self.records:
            what = "labelled frames" if self.labelled_positions else f"frames with a t-{self.k} neighbour"
            raise DatasetError(f"{where}: no {what} found for {self.dataset} split {self.split!r}")

    def _index(self, videos: Mapping[str, Mapping[int, str]], labelled: Mapping[tuple[str, int], str] | None,
               name_of: Callable[[str, int, str], str]) -> None:
        """Fill ``self.records`` from ``{video: {index: frame path}}``.

        With ``labelled`` (``{(video, index): label path or None}``) the samples are the
        labelled frames; without, every frame that has a t-k neighbour.
        """
        self.video_frames = {v: dict(sorted(f.items())) for v, f in videos.items()}
        pairs: list[tuple[str, int, int, str | None]] = []
        if labelled is None:
            for v, frames in videos.items():
                pairs += [(v, i, j, None) for i, j in pair_frames(frames, self.k, self.pad_start, v)]
        else:
            for (v, i), label_path in labelled.items():
                frames = videos.get(v, {})
                if i not in frames:
                    raise DatasetError(f"{label_path}: label without its frame (video {v!r}, frame {i})")
                j = neighbour(frames, i, self.k, self.pad_start, v, frames[i])
                if j is not None:
                    pairs.append((v, i, j, label_path))
        self.records = [
            FrameRecord(v, i, j, videos[v][i], videos[v][j], lp, name_of(v, i, videos[v][i]))
            for v, i, j, lp in sorted(pairs, key=lambda p: (natural_key(p[0]), p[1]))
        ]

    # -- what subclasses provide --------------------------------------------------------

    def load_label(self, rec: FrameRecord) -> tuple[np.ndarray, dict]:
        """Return ``(label, extra_meta)`` of a record; label (H, W) uint8 train ids."""
        raise NotImplementedError

    def read_frame(self, path: str) -> np.ndarray:
        """Return the RGB frame stored at ``path``."""
        return read_image(path)

    def record_meta(self, rec: FrameRecord) -> dict:
        """Return extra ``meta`` entries of a record (a dataset's own names and ids)."""
        return {}

    # -- the contract -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.records)

    def _record(self, i: int) -> FrameRecord:
        n = len(self.records)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return self.records[i]

    def pair_keys(self, i: int) -> tuple[str, str]:
        """Return stable keys (paths relative to the dataset root) of frame t and t-k."""
        rec = self._record(i)
        return self.frame_key(rec.path), self.frame_key(rec.prev_path)

    def frame_key(self, path: str) -> str:
        """Return the stable key of a frame file: its path relative to the dataset root (flow caches, pseudo labels)."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def frames(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(frame_t, frame_prev)`` RGB uint8 of sample ``i``."""
        rec = self._record(i)
        frame, prev = self.read_frame(rec.path), self.read_frame(rec.prev_path)
        if frame.shape != prev.shape:
            raise DatasetError(f"{rec.prev_path}: size {prev.shape[:2]} differs from frame t {frame.shape[:2]}")
        return frame, prev

    def videos(self) -> dict[str, list[int]]:
        """Return ``{video id: sample indices in temporal order}``."""
        out: dict[str, list[int]] = {}
        for i, rec in enumerate(self.records):
            out.setdefault(rec.video, []).append(i)
        return {v: sorted(ix, key=lambda j: self.records[j].index) for v, ix in out.items()}

    def __getitem__(self, i: int) -> ClipSample:
        rec = self._record(i)
        frame, prev = self.frames(i)
        label, extra = None, {}
        if self.labels and rec.label_path is not None:
            label, extra = self.load_label(rec)
            if label.shape != frame.shape[:2]:
                raise DatasetError(f"{rec.label_path}: label size {label.shape} differs from frame {frame.shape[:2]}")
        flow = None
        if self.flow is not None:
            flow = self._flow(i, frame, prev)
        meta = {
            "dataset": self.dataset, "split": self.split, "video": rec.video, "index": rec.index,
            "prev_index": rec.prev_index, "k": self.k, "path": rec.path, "prev_path": rec.prev_path,
            "label_path": rec.label_path, "name": rec.name, "label_space": self.label_space.name,
            **self.record_meta(rec), **extra,
        }
        return ClipSample(frame, prev, label, flow, meta)

    def _flow(self, i: int, frame: np.ndarray, prev: np.ndarray) -> np.ndarray:
        key_t, key_prev = self.pair_keys(i)
        flow = np.asarray(self.flow(key_t, key_prev, frame, prev), np.float32)
        if flow.shape != (*frame.shape[:2], 2):
            raise DatasetError(f"{key_t}: flow has shape {flow.shape}, expected {(*frame.shape[:2], 2)}")
        return flow

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, k={self.k}, "
                f"labels={self.labels}, samples={len(self)}, videos={len(self.videos())})")

