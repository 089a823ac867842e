"""Any camera recording as one unlabelled video: a folder of frames or a video file.

``video:PATH`` is a folder of ``.png``/``.jpg`` frames (natural sort: ``f2`` before ``f10``)
or a file OpenCV can decode (``cv2.VideoCapture``: mp4, avi, mkv, ...). There are no labels;
``label_space`` is only recorded (it names the model's classes). Frames of a video file are
decoded in order and the last ``k + 1`` are kept, so a sequential pass decodes each frame once;
random access seeks. The frame count of a file comes from its container.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.labels import LABEL_SPACES
from vsda_deploy.data.base import (
    IMAGE_EXTENSIONS,
    ClipDataset,
    DatasetError,
    FlowProvider,
    natural_key,
)


def _frame_count(path: Path) -> int:
    """Return the number of frames of a video file (container metadata, else counted)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DatasetError(f"{path}: cannot open as a video (not a video file, or codec unsupported)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if count <= 0:  # some containers (e.g. raw streams) do not store it
        count = 0
        while cap.grab():
            count += 1
    cap.release()
    return count


class VideoDataset(ClipDataset):
    """Clips of one unlabelled video (frame folder or video file); ``label`` is always None."""

    dataset = "video"
    label_spaces = tuple(LABEL_SPACES)

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, frames: str = "all") -> None:
        super().__init__(root, split, k, labels, flow, label_space, pad_start, frames)
        if frames == "labelled":
            raise DatasetError("frames: 'labelled' needs labelled frames; a video: source has none (use 'all')")
        self.labels = False  # a recording has no labels, whatever was asked
        self.source = self.root
        if not self.source.exists():
            raise DatasetError(f"{self.source}: video or frame folder not found")
        self.is_file = self.source.is_file()
        self._capture: cv2.VideoCapture | None = None
        self._next = -1  # index of the frame the open capture decodes next
        self._cache: dict[int, np.ndarray] = {}
        if self.is_file:
            self.root = self.source.parent  # keys are relative to the folder holding the file
            self.frame_count = _frame_count(self.source)
            frames = {i: f"{self.source}#{i:06d}" for i in range(self.frame_count)}
            name_of = self._file_frame_name
        else:
            files = sorted((f for f in self.source.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS),
                           key=lambda f: natural_key(f.name))
            frames = {i: str(f) for i, f in enumerate(files)}
            self.frame_count = len(frames)
            name_of = self._folder_frame_name
        if not frames:
            raise DatasetError(f"{self.source}: no frames (expected {'/'.join(IMAGE_EXTENSIONS)} files or a video)")
        self._index({self.source.stem if self.is_file else self.source.name: frames}, None, name_of)
        self._require_records(self.source)

    @staticmethod
    def _file_frame_name(video: str, i: int, path: str) -> str:
        return f"{video}_{i:06d}.png"

    @staticmethod
    def _folder_frame_name(video: str, i: int, path: str) -> str:
        return f"{Path(path).stem}.png"

    def read_frame(self, path: str) -> np.ndarray:
        if not self.is_file:
            return super().read_frame(path)
        return self._decode(int(path.rsplit("#", 1)[1]))

    def _decode(self, i: int) -> np.ndarray:
        """Return frame ``i`` of the video file, decoding forward from the last one read."""
        if i in self._cache:
            return self._cache[i]
        if self._capture is None:
            self._capture = cv2.VideoCapture(str(self.source))
            self._next = 0
        if i != self._next:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = self._capture.read()
        if not ok:
            raise DatasetError(f"{self.source}: cannot decode frame {i} of {self.frame_count}")
        self._next = i + 1
        self._cache[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        while len(self._cache) > self.k + 1:  # forget the oldest decoded: a pass needs t and t-k only
            del self._cache[next(iter(self._cache))]
        return self._cache[i]

    def __getstate__(self) -> dict:
        # A cv2.VideoCapture cannot be pickled (DataLoader workers); each copy reopens the file.
        state = self.__dict__.copy()
        state.update(_capture=None, _next=-1, _cache={})
        return state
