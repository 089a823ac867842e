"""Dataset splits as frame sources with their ground truth: ``cityscapes-vps:ROOT`` and ``cityscapes-seq:ROOT``.

``open_dataset`` streams every frame of a split, video after video (``VideoListSource``), and returns
the labelled frames (``GroundTruth``) that ``vsda-infer`` scores on the way; ``load_ground_truth`` reads
the labels alone for ``--gt``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.evaluation import GtFrame, list_gt
from vsda_deploy.labels import CITYSCAPES_LUT, VIPER15
from vsda_deploy.sources import DEFAULT_FPS, Frame, FrameSource, ImageSequenceSource, SourceError

log = logging.getLogger(__name__)

DATASET_KINDS = ("cityscapes-vps", "cityscapes-seq")

_SEQ_NAME = re.compile(r"^(?P<city>[A-Za-z]+(?:_[A-Za-z]+)*)_(?P<seq>\d{6})_(?P<frame>\d{6})")


def parse_seq_name(name: str) -> vps.VpsFrameName:
    """Return a Cityscapes-Seq frame name (``city_seq_frame_*``) as a frame name; video ``city_seq``."""
    m = _SEQ_NAME.match(Path(name).name)
    if m is None:
        raise ValueError(f"{name}: not a Cityscapes frame name ({{city}}_{{seq:06d}}_{{frame:06d}}_*)")
    return vps.VpsFrameName(stem=m[0], video=f"{m['city']}_{m['seq']}", index=int(m["frame"]),
                            city=m["city"], seq=int(m["seq"]), frame=int(m["frame"]))


@dataclass(frozen=True)
class SeqGtFrame:
    """A labelled Cityscapes-Seq frame (``gtFine`` labelIds): semantic only, no instances."""

    name: vps.VpsFrameName
    image_id: str
    path: Path

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(semantic, instance)`` in the VIPER15 space; instance is all 0 (not labelled)."""
        raw = cv2.imread(str(self.path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2:
            raise OSError(f"{self.path}: cannot read as a single-channel labelIds PNG")
        semantic = CITYSCAPES_LUT[VIPER15.name][raw.astype(np.uint8)]
        return semantic, np.zeros(raw.shape, np.int32)


@dataclass(frozen=True)
class GroundTruth:
    """The labelled frames of a split, by frame stem, and how to name a streamed frame."""

    kind: str  # cityscapes-vps | cityscapes-seq
    labelled: dict[str, GtFrame | SeqGtFrame]
    videos: frozenset[str]

    def frame_name(self, name: str) -> vps.VpsFrameName:
        """Return the parsed name of a streamed frame; ValueError names the frame."""
        return vps.parse_frame_name(name) if self.kind == "cityscapes-vps" else parse_seq_name(name)


def parse_dataset_spec(spec: str) -> tuple[str, Path] | None:
    """Return ``(kind, root)`` of ``cityscapes-vps:ROOT`` / ``cityscapes-seq:ROOT``; None for other specs."""
    kind, sep, root = spec.partition(":")
    if not sep or kind not in DATASET_KINDS:
        return None
    if not root:
        raise SourceError(f"{spec}: give the dataset root, e.g. {kind}:data/synth/target")
    return kind, Path(root).expanduser()


def vps_ground_truth(root: Path, split: str) -> GroundTruth:
    """Return the Cityscapes-VPS labels of a split (``list_gt``: official JSON or ``panoptic_inst``)."""
    gt = list_gt(root, split)
    return GroundTruth("cityscapes-vps", {g.name.stem: g for v in gt.values() for g in v}, frozenset(gt))


def seq_ground_truth(root: Path, split: str) -> GroundTruth:
    """Return the Cityscapes-Seq labels of a split: ``gtFine/{split}/{city}/*_gtFine_labelIds.png``."""
    folder = root / "gtFine" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Cityscapes gtFine folder not found")
    labelled = {}
    for path in sorted(folder.glob("*/*_gtFine_labelIds.png")):
        name = parse_seq_name(path.name)
        labelled[name.stem] = SeqGtFrame(name, name.stem, path)
    if not labelled:
        raise FileNotFoundError(f"{folder}: no *_gtFine_labelIds.png labels")
    return GroundTruth("cityscapes-seq", labelled, frozenset(g.name.video for g in labelled.values()))


def load_ground_truth(spec: str, split: str) -> GroundTruth:
    """Return the ground truth of ``--gt cityscapes-vps:ROOT`` or ``cityscapes-seq:ROOT``."""
    parsed = parse_dataset_spec(spec)
    if parsed is None:
        raise ValueError(f"--gt {spec}: unknown ground-truth spec; use cityscapes-vps:ROOT or cityscapes-seq:ROOT")
    kind, root = parsed
    return vps_ground_truth(root, split) if kind == "cityscapes-vps" else seq_ground_truth(root, split)


def seq_videos(root: Path, split: str) -> dict[str, list[Path]]:
    """Return ``{city_seq: frames}`` of ``leftImg8bit_sequence/{split}``, sorted by frame number."""
    folder = root / "leftImg8bit_sequence" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Cityscapes-Seq frame folder not found")
    videos: dict[str, list[tuple[int, Path]]] = {}
    for path in folder.glob("*/*_leftImg8bit.png"):
        name = parse_seq_name(path.name)
        videos.setdefault(name.video, []).append((name.index, path))
    if not videos:
        raise FileNotFoundError(f"{folder}: no *_leftImg8bit.png frames")
    return {v: [p for _, p in sorted(frames)] for v, frames in sorted(videos.items())}


class VideoListSource(FrameSource):
    """The videos of a dataset split one after another, each read like an image folder; counters add up."""

    def __init__(self, spec: str, videos: dict[str, list[Path]], *, realtime: bool = False,
                 fps: float | None = None) -> None:
        super().__init__(spec, fps or DEFAULT_FPS)
        self.videos = videos
        self._pending = iter(videos.items())
        self._source: ImageSequenceSource | None = None
        self._realtime = realtime
        self._done = {"read": 0, "dropped": 0, "corrupt": 0}

    def __next__(self) -> Frame:
        while True:
            if self._source is None:
                _, paths = next(self._pending)  # StopIteration: every video done
                self._source = ImageSequenceSource(self.spec, paths, realtime=self._realtime, fps=self.fps)
            try:
                return next(self._source)
            except StopIteration:
                self.error = self.error or self._source.error
                for key in self._done:
                    self._done[key] += getattr(self._source, key)
                self._source = None
            finally:
                self._sync()

    def _sync(self) -> None:
        live = self._source
        self.read, self.dropped, self.corrupt = (self._done[k] + (getattr(live, k) if live else 0)
                                                 for k in ("read", "dropped", "corrupt"))

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self._pending = iter(())


def open_dataset(spec: str, split: str, realtime: bool) -> tuple[VideoListSource, GroundTruth | None]:
    """Return the frames of a dataset split (every frame: ``img_all``) and its labels (None if unlabelled)."""
    kind, root = parse_dataset_spec(spec)
    if not root.is_dir():
        raise SourceError(f"{spec}: dataset root {root} not found")
    try:
        if kind == "cityscapes-vps":
            folder = "img_all" if (root / split / "img_all").is_dir() else "img"
            videos = vps.list_frames(root, split, folder)
        else:
            videos = seq_videos(root, split)
    except (FileNotFoundError, ValueError) as e:
        raise SourceError(f"{spec}: {e}") from None
    try:
        gt = vps_ground_truth(root, split) if kind == "cityscapes-vps" else seq_ground_truth(root, split)
    except FileNotFoundError as e:
        log.warning("%s: no labels for split %r (%s); running without metrics", spec, split, e)
        return VideoListSource(spec, videos, realtime=realtime), None
    streamed = {gt.frame_name(p.name).stem for paths in videos.values() for p in paths}
    missing = sorted(set(gt.labelled) - streamed)
    if missing:
        raise SourceError(f"{spec}: labelled frame {missing[0]} has no frame in split {split!r} "
                          f"({len(missing)} missing)")
    return VideoListSource(spec, videos, realtime=realtime), gt
