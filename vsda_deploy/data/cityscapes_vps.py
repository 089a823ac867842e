"""Cityscapes-VPS as the official ``prepare_data/`` scripts of mcahny/vps build it.

ROOT is the Cityscapes-VPS folder (``docs/datasets.md``):

* ``ROOT/{split}/img/``: the six labelled frames of each video, ``{image_id}_newImg8bit.png``
  (five, annotated by Cityscapes-VPS) and ``{image_id}_leftImg8bit.png`` (the Cityscapes one),
  ``image_id = VVVV_FFFF_{city}_{seq}_{frame}``. They are frames 5, 10, ..., 30 of the video's
  30-frame snippet, so a video runs from 4 frames before its first labelled frame to its last
  (``video_frames``).
* every frame of a video: ``ROOT/{split}/img_all/{city}_{seq}_{frame}_leftImg8bit.png`` (val,
  test). The train split has no ``img_all``: its frames are Cityscapes'
  ``leftImg8bit_sequence/val/{city}/``, found under ``sequences`` (a Cityscapes root), by
  default ``ROOT/..`` or ``ROOT`` (the official DATASET.md puts ``leftImg8bit_sequence`` next to
  the Cityscapes-VPS folder).
* labels, named ``{image_id}_final_mask.png`` / ``_gtFine_color.png``, from ``vps_labels``:
  ``panoptic_video`` (+ ``ROOT/panoptic_gt_{split}_city_vps.json``), ``panoptic_inst``,
  ``labelmap`` (semantic only), or ``auto``: the first of these the split has.

A video is ``VVVV``; a frame's index is its Cityscapes frame number; ``meta["name"]`` is
``{city}_{seq}_{frame}.png`` and labelled frames add ``meta["image_id"]``. Labels are read
in VIPER15, SYNTHIA12 or the 19 Cityscapes trainIds; ``meta["instance"]`` (panoptic labels
only) is the instance map of ``vsda_deploy.cityscapes_vps`` (0: stuff, void, crowd).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.labels import LabelSpace, get_label_space
from vsda_deploy.data.base import (
    ClipDataset,
    DatasetError,
    FlowProvider,
    FrameRecord,
    read_image,
    require_dir,
)

LABEL_SOURCES = ("panoptic_video", "panoptic_inst", "labelmap")
LEAD = 4  # frames of a video before its first labelled frame (the labelled ones are 5, 10, ..., 30)
PREPARE = {  # the official step that makes each part (mcahny/vps, prepare_data/)
    "img": "prepare_data/fetch_city_images.py --mode {split} (merge_datasets.sh)",
    "img_all": "prepare_data/fetch_city_images.py --mode {split} (merge_datasets.sh), from "
               "im_all_info_{split}_city_vps.json",
    "labelmap": "prepare_data/create_panoptic_labels.py --mode {split} (create_panoptic_labels.sh)",
    "panoptic_inst": "prepare_data/create_panoptic_labels.py --mode {split} (create_panoptic_labels.sh)",
    "panoptic_video": "prepare_data/create_panoptic_video_labels.py --mode {split} (create_panoptic_labels.sh)",
}


def prepared_by(part: str, split: str) -> str:
    """Return ``made by <official step>`` for a part of the tree (``img``, ``img_all``, a label folder)."""
    return f"made by {PREPARE[part].format(split=split)}"


@dataclass(frozen=True)
class VpsLabelled:
    """A labelled frame of ``img/``: its parsed image id, image file and label file name."""

    name: vps.VpsFrameName
    image: Path

    @property
    def label_name(self) -> str:
        return vps.label_file_name(self.image.name)


def list_labelled(root: Path, split: str) -> dict[str, list[VpsLabelled]]:
    """Return ``{video: labelled frames in frame order}`` of ``ROOT/{split}/img``; errors name the folder."""
    folder = root / split / "img"
    if not folder.is_dir():
        raise DatasetError(f"{folder}: Cityscapes-VPS labelled frames not found; {prepared_by('img', split)}")
    videos: dict[str, list[VpsLabelled]] = {}
    for f in sorted(folder.iterdir()):
        if not f.name.endswith((vps.NEW_IMAGE_SUFFIX, vps.IMAGE_SUFFIX)):
            continue
        name = vps.parse_frame_name(f.name)  # DatasetError names the file
        videos.setdefault(name.video, []).append(VpsLabelled(name, f))
    if not videos:
        raise DatasetError(f"{folder}: no *{vps.NEW_IMAGE_SUFFIX} or *{vps.IMAGE_SUFFIX} frames; "
                           f"{prepared_by('img', split)}")
    return {v: sorted(fs, key=lambda f: f.name.index) for v, fs in sorted(videos.items())}


def sequence_folder(root: Path, split: str, sequences: str | Path | None) -> Path | None:
    """Return the folder holding every frame of the split: ``img_all``, else ``leftImg8bit_sequence/val``."""
    img_all = root / split / "img_all"
    if img_all.is_dir():
        return img_all
    candidates = [Path(sequences)] if sequences is not None else [root.parent, root]
    for base in candidates:
        folder = base / "leftImg8bit_sequence" / "val"
        if folder.is_dir():
            return folder
    return None


def split_videos(root: Path, split: str, labelled: dict[str, list[VpsLabelled]],
                 sequences: str | Path | None = None) -> tuple[Path, dict[str, dict[int, str]]]:
    """Return ``(frame folder, {video: {frame number: path}})``: every frame of every video, checked to exist."""
    folder = sequence_folder(root, split, sequences)
    if folder is None:
        where = sequences or f"{root.parent} or {root}"
        raise DatasetError(
            f"{root / split / 'img_all'}: not found ({prepared_by('img_all', split)}); a split without "
            f"img_all (train) reads Cityscapes' leftImg8bit_sequence/val, not found under {where} "
            f"(option sequences=CITYSCAPES_ROOT)")
    videos = {v: video_frames(fs, folder) for v, fs in labelled.items()}
    known = {e.name for e in os.scandir(folder)} if folder.name == "img_all" else None
    for v, frames in videos.items():
        for path in frames.values():
            if (Path(path).name not in known) if known is not None else not os.path.isfile(path):
                why = (prepared_by("img_all", split) if known is not None
                       else "from Cityscapes' leftImg8bit_sequence_trainvaltest.zip")
                raise DatasetError(f"{path}: frame of Cityscapes-VPS video {v} not found; {why}")
    return folder, videos


def video_frames(labelled: list[VpsLabelled], folder: Path) -> dict[int, str]:
    """Return ``{frame number: path}`` of one video, from its first frame to its last labelled one.

    Labelled frames are every s-th frame of the snippet from its s-th (s = 5 in the release:
    frames 5, 10, ..., 30), so the video starts s - 1 frames before its first labelled frame.
    """
    first = labelled[0].name
    step = labelled[1].name.index - first.index if len(labelled) > 1 else LEAD + 1
    nested = folder.name != "img_all"  # leftImg8bit_sequence/val/{city}/
    base = folder / first.city if nested else folder
    frames = {}
    for i in range(first.index - (step - 1), labelled[-1].name.index + 1):
        frames[i] = str(base / f"{first.city}_{first.seq:06d}_{i:06d}{vps.IMAGE_SUFFIX}")
    return frames


def named_frames(labelled: dict[str, list[VpsLabelled]], videos: dict[str, dict[int, str]]
                 ) -> dict[str, list[tuple[vps.VpsFrameName, Path]]]:
    """Return ``{video: [(frame name, path)]}`` in frame order; a labelled frame's name is its image id."""
    out = {}
    for v, frames in videos.items():
        ids = {f.name.index: f.name for f in labelled[v]}
        city, seq = labelled[v][0].name.city, labelled[v][0].name.seq
        out[v] = [(ids.get(i) or vps.VpsFrameName(f"{city}_{seq:06d}_{i:06d}", v, i, city, seq), Path(p))
                  for i, p in sorted(frames.items())]
    return out


class VpsLabels:
    """The labels of one split: which folder they come from, each frame's file, and reading them."""

    def __init__(self, root: Path, split: str, source: str = "auto", space: str | LabelSpace = "viper15") -> None:
        if source not in ("auto", *LABEL_SOURCES):
            raise DatasetError(f"vps_labels: {source!r} is not one of {['auto', *LABEL_SOURCES]}")
        self.root, self.split = root, split
        self.space = space if isinstance(space, LabelSpace) else get_label_space(space)
        self.source = self._pick(source)
        self.segments = self._load_segments() if self.source == "panoptic_video" else {}

    def _pick(self, source: str) -> str:
        split_dir = self.root / self.split
        if source != "auto":
            require_dir(split_dir / source, f"Cityscapes-VPS label folder (vps_labels={source!r}); "
                        f"{prepared_by(source, self.split)}")
            return source
        for name in LABEL_SOURCES:
            if (split_dir / name).is_dir():
                return name
        raise DatasetError(f"{split_dir}: no Cityscapes-VPS labels (panoptic_video/, panoptic_inst/ or "
                           f"labelmap/); {prepared_by('panoptic_inst', self.split)}")

    def _load_segments(self) -> dict[str, list[dict]]:
        """Return ``{image_id: segments_info}`` of ``panoptic_gt_{split}_city_vps.json``."""
        path = vps.json_path(self.root, self.split)
        if not path.is_file():
            raise DatasetError(f"{path}: not found; {prepared_by('panoptic_video', self.split)}")
        try:
            data = vps.load_json(path)
            return {str(a["image_id"]): a["segments_info"] for a in data["annotations"]}
        except (KeyError, TypeError) as e:
            raise DatasetError(f"{path}: not a COCO-panoptic JSON (missing {e})") from None

    @property
    def panoptic(self) -> bool:
        """Whether the labels have instances (``panoptic_video`` or ``panoptic_inst``)."""
        return self.source != "labelmap"

    def path(self, f: VpsLabelled) -> Path:
        """Return the label file of a labelled frame; DatasetError names it and its preparation step."""
        path = self.root / self.split / self.source / f.label_name
        if not path.is_file():
            raise DatasetError(f"{path}: label of {f.image.name} not found; {prepared_by(self.source, self.split)}")
        if self.source == "panoptic_video" and f.name.stem not in self.segments:
            raise DatasetError(f"{vps.json_path(self.root, self.split)}: no annotation for {f.name.stem}; "
                               f"{prepared_by('panoptic_video', self.split)}")
        return path

    def read(self, path: str | Path, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Return ``(semantic, instance)`` of a label file in the label space (instance None: labelmap)."""
        try:
            if self.source == "labelmap":
                return vps.decode_labelmap(vps.read_grey_png(path, "labelmap label"), self.space, path), None
            if self.source == "panoptic_inst":
                return vps.read_panoptic_inst(path, self.space)
            seg = vps.rgb_to_id(read_image(path))
            return vps.from_segments(seg, self.segments[image_id], str(path), self.space)
        except OSError as e:
            raise DatasetError(str(e)) from None


class CityscapesVpsDataset(ClipDataset):
    """Cityscapes-VPS clips (see the module docstring); labelled samples are the frames of ``img/``."""

    dataset = "cityscapes-vps"
    label_spaces = ("viper15", "synthia12", "cityscapes19")

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, frames: str = "all", vps_labels: str = "auto",
                 sequences: str | None = None) -> None:
        super().__init__(root, split, k, labels, flow, label_space, pad_start, frames)
        require_dir(self.root, "Cityscapes-VPS root")
        self.labelled = list_labelled(self.root, split)
        self.frame_folder, videos = split_videos(self.root, split, self.labelled, sequences)
        self.label_reader = VpsLabels(self.root, split, vps_labels, self.label_space) if labels else None
        self._image_ids = {(v, f.name.index): f.name.stem for v, fs in self.labelled.items() for f in fs}
        positions = None
        if self.labelled_positions:
            reader = self.label_reader
            positions = {(v, f.name.index): str(reader.path(f)) if reader else None
                         for v, fs in self.labelled.items() for f in fs}
        self._index(videos, positions, lambda v, i, p: f"{Path(p).name[: -len(vps.IMAGE_SUFFIX)]}.png")
        self._require_records(self.root / split)

    def record_meta(self, rec: FrameRecord) -> dict:
        image_id = self._image_ids.get((rec.video, rec.index))
        return {"image_id": image_id} if image_id else {}

    def load_label(self, rec: FrameRecord) -> tuple[np.ndarray, dict]:
        semantic, instance = self.label_reader.read(rec.label_path, self._image_ids[(rec.video, rec.index)])
        return semantic, {} if instance is None else {"instance": instance}
