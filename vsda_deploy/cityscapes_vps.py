"""Cityscapes-VPS on-disk format: file names, panoptic encodings, JSON (numpy + OpenCV).

vsda works with a panoptic frame as two arrays in its 15-class space:

* ``semantic`` (H, W) uint8: VIPER15 train id, 255 = void;
* ``instance`` (H, W) int32: an id > 0 for a thing pixel that belongs to an instance
  (persistent over a video), 0 for stuff pixels and for thing *crowd* regions.

Files in the official format always carry the 19 Cityscapes trainIds (method.md):

* ``{split}/panoptic_inst/{stem}_gtFine_instanceTrainIds.png``: 16-bit; 255 void,
  v < 1000 a trainId (for a thing class: crowd), v >= 1000 ``trainId * 1000 + inst``;
* ``{split}/panoptic_video/{stem}_gtFine_color.png``: RGB, id = R + 256 G + 256^2 B,
  0 void, described by ``panoptic_gt_{split}_city_vps.json`` (COCO-panoptic style);
* predictions: ``pan_pred/{image_id}.png`` + ``pred.json`` with the same encoding.

Here ``stem`` is ``VVVV_FFFF_{city}_{seq}_{frame}`` (video id, frame index in video).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.labels import (
    CITYSCAPES19,
    CS19_TO_VIPER15_LUT,
    IGNORE_INDEX,
    VIPER15,
    VIPER15_TO_CS19_LUT,
)

IMAGE_SUFFIX = "_leftImg8bit.png"
INST_SUFFIX = "_gtFine_instanceTrainIds.png"
VIDEO_GT_SUFFIX = "_gtFine_color.png"
LABEL_DIVISOR = 1000
_STEM = re.compile(r"^(?P<video>\d{4})_(?P<index>\d{4})_(?P<city>[a-z_]+?)_(?P<seq>\d{6})_(?P<frame>\d{6})")


@dataclass(frozen=True)
class VpsFrameName:
    """The parts of a Cityscapes-VPS frame name."""

    stem: str
    video: str
    index: int
    city: str
    seq: int
    frame: int


def parse_frame_name(name: str) -> VpsFrameName:
    """Return the parts of ``VVVV_FFFF_{city}_{seq}_{frame}_*``; ValueError names the file."""
    m = _STEM.match(Path(name).name)
    if m is None:
        raise ValueError(f"{name}: not a Cityscapes-VPS frame name (VVVV_FFFF_city_seq_frame_*)")
    return VpsFrameName(
        stem=m.group(0), video=m["video"], index=int(m["index"]), city=m["city"],
        seq=int(m["seq"]), frame=int(m["frame"]),
    )


def json_path(root: str | Path, split: str) -> Path:
    """Return the path of the official ``panoptic_gt_{split}_city_vps.json``."""
    return Path(root) / f"panoptic_gt_{split}_city_vps.json"


# --- id <-> RGB ------------------------------------------------------------------------

def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Return the uint32 segment ids of an RGB (H, W, 3) panoptic PNG (R + 256 G + 256^2 B)."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Return the RGB (H, W, 3) uint8 encoding of a segment id map."""
    ids = ids.astype(np.uint32)
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def read_rgb_png(path: Path) -> np.ndarray:
    """Return an RGB uint8 image; OSError names the file when it cannot be read."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"{path}: cannot read image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write image")


# --- panoptic_inst (trainId * 1000 + inst) ---------------------------------------------

def encode_panoptic_inst(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Return the uint16 ``panoptic_inst`` encoding (19 trainIds) of a 15-class panoptic frame."""
    cs = VIPER15_TO_CS19_LUT[semantic].astype(np.int64)
    thing = np.isin(semantic, sorted(VIPER15.things)) & (instance > 0)
    if instance.max(initial=0) >= LABEL_DIVISOR:
        raise ValueError(f"instance id {int(instance.max())} does not fit below {LABEL_DIVISOR}")
    out = np.where(thing, cs * LABEL_DIVISOR + instance, cs)
    out[semantic == IGNORE_INDEX] = IGNORE_INDEX
    return out.astype(np.uint16)


def decode_panoptic_inst(
    value: np.ndarray, path: str | Path = "<array>"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(semantic, instance)`` in the 15-class space from a ``panoptic_inst`` array."""
    value = value.astype(np.int64)
    train_id = np.where(value >= LABEL_DIVISOR, value // LABEL_DIVISOR, value)
    bad = np.unique(train_id[(train_id != IGNORE_INDEX) & (train_id >= CITYSCAPES19.num_classes)])
    if bad.size:
        raise ValueError(f"{path}: unknown Cityscapes trainId(s) {bad.tolist()}")
    semantic = CS19_TO_VIPER15_LUT[np.clip(train_id, 0, 255).astype(np.uint8)]
    instance = np.where(value >= LABEL_DIVISOR, value % LABEL_DIVISOR, 0).astype(np.int32)
    instance[semantic == IGNORE_INDEX] = 0
    return semantic, instance


def read_panoptic_inst(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``panoptic_inst`` PNG; return ``(semantic, instance)`` in the 15-class space."""
    value = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if value is None:
        raise OSError(f"{path}: cannot read panoptic_inst label")
    if value.ndim != 2:
        raise ValueError(f"{path}: panoptic_inst label must be single-channel, got shape {value.shape}")
    return decode_panoptic_inst(value, path)


def write_panoptic_inst(path: str | Path, semantic: np.ndarray, instance: np.ndarray) -> None:
    """Write a ``panoptic_inst`` 16-bit PNG from a 15-class panoptic frame."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), encode_panoptic_inst(semantic, instance)):
        raise OSError(f"{path}: cannot write image")


# --- segment maps (official panoptic_video / pan_pred) ---------------------------------

def categories() -> list[dict]:
    """Return the 19 Cityscapes-VPS categories as in the official JSON."""
    return [
        {"id": i, "name": n, "isthing": int(CITYSCAPES19.is_thing(i)), "color": list(c)}
        for i, (n, c) in enumerate(zip(CITYSCAPES19.classes, CITYSCAPES19.palette))
    ]


def to_segments(semantic: np.ndarray, instance: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Return ``(segment_id_map, segments_info)`` with 19-trainId categories.

    Segment ids are ``(trainId19 + 1) * 1000 + instance``: the same instance keeps its id
    in every frame. A thing region without instance (instance 0) is marked ``iscrowd``.
    """
    cs = VIPER15_TO_CS19_LUT[semantic].astype(np.int64)
    valid = semantic != IGNORE_INDEX
    seg = np.where(valid, (cs + 1) * LABEL_DIVISOR + instance.astype(np.int64), 0).astype(np.uint32)
    ids, areas = np.unique(seg[valid], return_counts=True)
    info = []
    for sid, area in zip(ids.tolist(), areas.tolist()):
        cat, inst = sid // LABEL_DIVISOR - 1, sid % LABEL_DIVISOR
        crowd = int(CITYSCAPES19.is_thing(cat) and inst == 0)
        info.append({"id": sid, "category_id": cat, "iscrowd": crowd, "area": area})
    return seg, info


def from_segments(
    seg: np.ndarray, segments_info: list[dict], where: str = "<segments>"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(semantic, instance)`` in the 15-class space from an official segment map.

    Things keep their segment id as instance id (it persists over the video); crowd
    segments become instance 0. A segment id missing from ``segments_info`` is an error.
    """
    semantic = np.full(seg.shape, IGNORE_INDEX, np.uint8)
    instance = np.zeros(seg.shape, np.int32)
    by_id = {int(s["id"]): s for s in segments_info}
    present = np.unique(seg)
    missing = [int(i) for i in present if i != 0 and int(i) not in by_id]
    if missing:
        raise ValueError(f"{where}: segment id(s) {missing[:5]} are in the PNG but not in the JSON")
    for sid in present.tolist():
        if sid == 0:
            continue
        info = by_id[sid]
        cat = int(info["category_id"])
        if not 0 <= cat < CITYSCAPES19.num_classes:
            raise ValueError(f"{where}: segment {sid} has unknown category_id {cat}")
        cls = int(CS19_TO_VIPER15_LUT[cat])
        if cls == IGNORE_INDEX:
            continue
        mask = seg == sid
        semantic[mask] = cls
        if VIPER15.is_thing(cls) and not info.get("iscrowd", 0):
            instance[mask] = sid
    return semantic, instance


def load_json(path: str | Path) -> dict:
    """Load a COCO-panoptic style JSON (GT or ``pred.json``); errors name the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def dump_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


# --- listing a split -------------------------------------------------------------------

def list_frames(root: str | Path, split: str, folder: str = "img") -> dict[str, list[Path]]:
    """Return ``{video id: frame paths sorted by frame index}`` of ``{root}/{split}/{folder}``.

    ``folder`` is ``img`` (labelled frames) or ``img_all`` (every frame). A missing folder
    or a folder without frames is an error naming the folder.
    """
    path = Path(root) / split / folder
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: Cityscapes-VPS folder not found")
    videos: dict[str, list[tuple[int, Path]]] = {}
    for f in path.glob(f"*{IMAGE_SUFFIX}"):
        name = parse_frame_name(f.name)
        videos.setdefault(name.video, []).append((name.index, f))
    if not videos:
        raise FileNotFoundError(f"{path}: no *{IMAGE_SUFFIX} frames")
    return {v: [p for _, p in sorted(frames)] for v, frames in sorted(videos.items())}
