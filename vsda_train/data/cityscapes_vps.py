"""Cityscapes-VPS: the real target with video panoptic labels, read in VIPER15.

``ROOT/{split}/img/`` holds the labelled frames, ``ROOT/{split}/img_all/`` every frame (the
neighbours come from there; a split without ``img_all`` uses ``img``). Labels, per labelled
frame ``stem`` (``VVVV_FFFF_{city}_{seq}_{frame}``), from either source (same result):

* ``vps_labels="panoptic_inst"``: ``{split}/panoptic_inst/{stem}_gtFine_instanceTrainIds.png``;
* ``vps_labels="panoptic_video"``: ``{split}/panoptic_video/{stem}_gtFine_color.png`` with
  ``ROOT/panoptic_gt_{split}_city_vps.json``.

``meta["instance"]`` is the (H, W) int32 instance map (0 = stuff or crowd); ids persist over a
video. With ``panoptic_inst`` an id is the per-class instance number; with ``panoptic_video``
it is the official segment id. Both partition the image the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_train.data.base import (
    ClipDataset,
    DatasetError,
    FlowProvider,
    FrameRecord,
    read_image,
    require_dir,
)

LABEL_SOURCES = {"panoptic_inst": vps.INST_SUFFIX, "panoptic_video": vps.VIDEO_GT_SUFFIX}


def _list_frames(root: Path, split: str, folder: str) -> dict[str, list[Path]]:
    try:
        return vps.list_frames(root, split, folder)
    except (OSError, ValueError) as e:
        raise DatasetError(str(e)) from None


def _segments_by_stem(path: Path) -> dict[str, list[dict]]:
    """Return ``{stem: segments_info}`` of an official Cityscapes-VPS panoptic JSON."""
    try:
        data = vps.load_json(path)
        files = {img["id"]: img["file_name"] for img in data.get("images", [])}
        out = {}
        for ann in data["annotations"]:
            name = ann.get("file_name") or files[ann["image_id"]]
            out[vps.parse_frame_name(name).stem] = ann["segments_info"]
    except (OSError, ValueError) as e:
        raise DatasetError(str(e)) from None
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a COCO-panoptic JSON (missing {e})") from None
    return out


class CityscapesVpsDataset(ClipDataset):
    """Cityscapes-VPS clips; with ``labels`` the samples are the frames of ``img/``."""

    dataset = "cityscapes-vps"
    label_spaces = ("viper15",)

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, vps_labels: str = "panoptic_inst") -> None:
        super().__init__(root, split, k, labels, flow, label_space, pad_start)
        if vps_labels not in LABEL_SOURCES:
            raise DatasetError(f"vps_labels: {vps_labels!r} is not one of {sorted(LABEL_SOURCES)}")
        self.vps_labels = vps_labels
        require_dir(self.root, "Cityscapes-VPS root")
        split_dir = require_dir(self.root / split, f"Cityscapes-VPS {split!r} split folder")
        self.all_folder = "img_all" if (split_dir / "img_all").is_dir() else "img"
        videos = {
            v: {vps.parse_frame_name(p.name).index: str(p) for p in paths}
            for v, paths in _list_frames(self.root, split, self.all_folder).items()
        }
        self._segments: dict[str, list[dict]] = {}
        labelled = self._labelled(videos) if labels else None
        self._index(videos, labelled, lambda v, i, p: f"{vps.parse_frame_name(p).stem}.png")
        self._require_records(split_dir / self.all_folder)

    def _labelled(self, videos: dict[str, dict[int, str]]) -> dict[tuple[str, int], str]:
        """Return ``{(video, index): label path}`` of the frames of ``img/``; every label must exist."""
        label_dir = require_dir(self.root / self.split / self.vps_labels,
                                f"Cityscapes-VPS label folder (vps_labels={self.vps_labels!r})")
        if self.vps_labels == "panoptic_video":
            json_file = vps.json_path(self.root, self.split)
            self._segments = _segments_by_stem(json_file)
        labelled = {}
        for v, paths in _list_frames(self.root, self.split, "img").items():
            for p in paths:
                name = vps.parse_frame_name(p.name)
                label = label_dir / f"{name.stem}{LABEL_SOURCES[self.vps_labels]}"
                if not label.is_file():
                    raise DatasetError(f"{label}: label of labelled frame {p.name} not found")
                if self.vps_labels == "panoptic_video" and name.stem not in self._segments:
                    raise DatasetError(f"{json_file}: no annotation for labelled frame {name.stem}")
                if name.index not in videos.get(v, {}):
                    raise DatasetError(f"{p}: labelled frame missing from {self.all_folder}/")
                labelled[(v, name.index)] = str(label)
        return labelled

    def load_label(self, rec: FrameRecord) -> tuple[np.ndarray, dict]:
        try:
            if self.vps_labels == "panoptic_inst":
                semantic, instance = vps.read_panoptic_inst(rec.label_path)
            else:
                seg = vps.rgb_to_id(read_image(rec.label_path))
                stem = vps.parse_frame_name(rec.label_path).stem
                semantic, instance = vps.from_segments(seg, self._segments[stem], where=rec.label_path)
        except (OSError, ValueError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(str(e)) from None
        return semantic, {"instance": instance}
