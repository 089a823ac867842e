"""Dataset splits as frame sources with their ground truth: ``cityscapes-vps:ROOT`` and ``cityscapes-seq:ROOT``.

``open_dataset`` streams every frame of a split, video after video (``VideoListSource``), and returns
the labelled frames (``GroundTruth``) that ``vsda-infer`` scores on the way; ``load_ground_truth`` reads
the labels alone for ``--gt``. Both go through the one reader of each dataset
(``vsda_deploy.data``: numpy + OpenCV, no torch), so videos, frame numbers and labels are the
ones training and ``vsda-train eval`` see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.data import CityscapesSeqDataset, DatasetError, FrameRecord
from vsda_deploy.evaluation import GtFrame, list_gt, split_frames
from vsda_deploy.labels import VIPER15, LabelSpace, get_label_space
from vsda_deploy.sources import DEFAULT_FPS, Frame, FrameSource, ImageSequenceSource, SourceError

log = logging.getLogger(__name__)

DATASET_KINDS = ("cityscapes-vps", "cityscapes-seq")
Named = dict[str, list[tuple[vps.VpsFrameName, Path]]]  # video -> [(frame name, file)] in order


def parse_seq_name(name: str) -> vps.VpsFrameName:
    """Return a plain Cityscapes frame name (``city_seq_frame_*``) as a frame name; video ``city_seq``."""
    return vps.parse_cityscapes_name(name)


@dataclass(frozen=True)
class SeqGtFrame:
    """A labelled Cityscapes-Seq frame (``gtFine`` labelIds): semantic only, no instances."""

    name: vps.VpsFrameName
    image_id: str
    path: Path
    reader: CityscapesSeqDataset = field(compare=False, repr=False)
    record: FrameRecord = field(compare=False, repr=False)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(semantic, instance)`` in the reader's label space; instance is all 0 (not labelled)."""
        semantic, _ = self.reader.load_label(self.record)
        return semantic, np.zeros(semantic.shape, np.int32)


@dataclass(frozen=True)
class GroundTruth:
    """The labelled frames of a split, by frame stem, and the names of the streamed frames."""

    kind: str  # cityscapes-vps | cityscapes-seq
    labelled: dict[str, GtFrame | SeqGtFrame]
    videos: frozenset[str]
    names: dict[str, vps.VpsFrameName] = field(default_factory=dict)  # file stem -> frame name

    def frame_name(self, name: str) -> vps.VpsFrameName:
        """Return the parsed name of a streamed frame; DatasetError names the frame."""
        if name in self.names:
            return self.names[name]
        return vps.parse_frame_name(name) if self.kind == "cityscapes-vps" else parse_seq_name(name)


def parse_dataset_spec(spec: str) -> tuple[str, Path] | None:
    """Return ``(kind, root)`` of ``cityscapes-vps:ROOT`` / ``cityscapes-seq:ROOT``; None for other specs."""
    kind, sep, root = spec.partition(":")
    if not sep or kind not in DATASET_KINDS:
        return None
    if not root:
        raise SourceError(f"{spec}: give the dataset root, e.g. {kind}:data/synth/target")
    return kind, Path(root).expanduser()


def _file_names(videos: Named) -> dict[str, vps.VpsFrameName]:
    return {path.stem: name for named in videos.values() for name, path in named}


def vps_ground_truth(root: Path, split: str, label_space: str | LabelSpace = VIPER15,
                     videos: Named | None = None) -> GroundTruth:
    """Return the Cityscapes-VPS labels of a split (panoptic, through the Cityscapes-VPS reader)."""
    gt = list_gt(root, split, label_space)
    names = _file_names(videos if videos is not None else split_frames(root, split, gt)[1])
    names.update({g.image.stem: g.name for v in gt.values() for g in v})
    return GroundTruth("cityscapes-vps", {g.name.stem: g for v in gt.values() for g in v}, frozenset(gt), names)


def _seq_reader(root: Path, split: str, labels: bool, label_space: str) -> CityscapesSeqDataset:
    return CityscapesSeqDataset(root, split, k=1, labels=labels, label_space=label_space, pad_start=True)


def _seq_videos(ds: CityscapesSeqDataset) -> Named:
    out = {}
    for video, frames in ds.video_frames.items():
        names = [(vps.parse_cityscapes_name(Path(p).name), Path(p)) for p in frames.values()]
        out[video] = [(vps.VpsFrameName(n.stem, video, n.index, n.city, n.seq), p) for n, p in names]
    return out


def seq_ground_truth(root: Path, split: str, label_space: str | LabelSpace = VIPER15,
                     ds: CityscapesSeqDataset | None = None) -> GroundTruth:
    """Return the Cityscapes-Seq labels of a split (``gtFine/{split}/{city}/*_gtFine_labelIds.png``)."""
    space = label_space if isinstance(label_space, str) else label_space.name
    ds = ds if ds is not None and ds.labels else _seq_reader(root, split, True, space)
    names = _file_names(_seq_videos(ds))
    labelled = {}
    for rec in ds.records:
        name = names[Path(rec.path).stem]
        labelled[name.stem] = SeqGtFrame(name, name.stem, Path(rec.label_path), ds, rec)
    return GroundTruth("cityscapes-seq", labelled, frozenset(g.name.video for g in labelled.values()), names)


def load_ground_truth(spec: str, split: str, label_space: str | LabelSpace = VIPER15) -> GroundTruth:
    """Return the ground truth of ``--gt cityscapes-vps:ROOT`` or ``cityscapes-seq:ROOT``."""
    parsed = parse_dataset_spec(spec)
    if parsed is None:
        raise SourceError(f"--gt {spec}: unknown ground-truth spec; use cityscapes-vps:ROOT or cityscapes-seq:ROOT")
    kind, root = parsed
    if kind == "cityscapes-vps":
        return vps_ground_truth(root, split, label_space)
    return seq_ground_truth(root, split, label_space)


class VideoListSource(FrameSource):
    """The videos of a dataset split one after another, each read like an image folder; counters add up.

    A frame is named after its file, or ``rename[file stem]`` (Cityscapes-VPS: a labelled frame
    streamed from ``img_all`` is named after its ``img/`` file, so outputs carry its image id);
    ``frame_name(name)`` returns the video, frame number and key of a frame it streamed.
    """

    def __init__(self, spec: str, videos: dict[str, list[Path]], *, realtime: bool = False,
                 fps: float | None = None, names: dict[str, vps.VpsFrameName] | None = None,
                 rename: dict[str, str] | None = None) -> None:
        super().__init__(spec, fps or DEFAULT_FPS)
        self.videos = videos
        self.names = names or {}
        self.rename = rename or {}
        self._pending = iter(videos.items())
        self._source: ImageSequenceSource | None = None
        self._realtime = realtime
        self._done = {"read": 0, "dropped": 0, "corrupt": 0}

    def frame_name(self, name: str) -> vps.VpsFrameName:
        """Return the frame name of a streamed frame (its file stem); ValueError for another name."""
        if name not in self.names:
            raise ValueError(f"{name}: not a frame of {self.spec}")
        return self.names[name]

    def __next__(self) -> Frame:
        while True:
            if self._source is None:
                _, paths = next(self._pending)  # StopIteration: every video done
                self._source = ImageSequenceSource(self.spec, paths, realtime=self._realtime, fps=self.fps)
            try:
                frame = next(self._source)
                return frame._replace(name=self.rename.get(frame.name, frame.name))
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


def _dataset_videos(kind: str, root: Path, split: str,
                    space: str) -> tuple[Named, dict[str, str], CityscapesSeqDataset | None]:
    """Return every frame by video, the stream names of labelled Cityscapes-VPS frames, the Cityscapes-Seq reader."""
    if kind == "cityscapes-vps":
        from vsda_deploy.data.cityscapes_vps import list_labelled, named_frames, split_videos

        labelled = list_labelled(root, split)
        rename = {f"{f.name.plain}{vps.IMAGE_SUFFIX[:-4]}": f.image.stem for fs in labelled.values() for f in fs}
        return named_frames(labelled, split_videos(root, split, labelled)[1]), rename, None
    ds = _seq_reader(root, split, False, space)
    return _seq_videos(ds), {}, ds


def open_dataset(spec: str, split: str, realtime: bool,
                 label_space: str | LabelSpace = VIPER15) -> tuple[VideoListSource, GroundTruth | None]:
    """Return the frames of a dataset split (every frame of every video) and its labels (None if unlabelled)."""
    kind, root = parse_dataset_spec(spec)
    space = get_label_space(label_space) if isinstance(label_space, str) else label_space
    if not root.is_dir():
        raise SourceError(f"{spec}: dataset root {root} not found")
    try:
        videos, rename, seq = _dataset_videos(kind, root, split, space.name)
    except (OSError, DatasetError) as e:
        raise SourceError(f"{spec}: {e}") from None
    names = _file_names(videos)
    names.update({new: names[old] for old, new in rename.items()})
    source = VideoListSource(spec, {v: [p for _, p in named] for v, named in videos.items()},
                             realtime=realtime, names=names, rename=rename)
    if not _has_labels(kind, root, split):
        log.warning("%s: no labels for split %r; running without metrics", spec, split)
        return source, None
    try:
        if kind == "cityscapes-vps":
            return source, vps_ground_truth(root, split, space, videos)
        return source, seq_ground_truth(root, split, space, seq)
    except (OSError, DatasetError) as e:
        raise SourceError(f"{spec}: {e}") from None


def _has_labels(kind: str, root: Path, split: str) -> bool:
    """Whether a split has the labels ``vsda-infer`` scores: panoptic (Cityscapes-VPS) or gtFine."""
    if kind == "cityscapes-seq":
        return (root / "gtFine" / split).is_dir()
    return any((root / split / f).is_dir() for f in ("panoptic_video", "panoptic_inst"))
