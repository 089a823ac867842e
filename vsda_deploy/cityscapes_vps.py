"""Cityscapes-VPS on-disk format: file names, panoptic encodings, JSON (numpy + OpenCV).

The layout is the one the official ``prepare_data/`` scripts of mcahny/vps build
(``docs/datasets.md``). A labelled frame has an *image id* ``VVVV_FFFF_{city}_{seq}_{frame}``:
VVVV is the video, FFFF counts labelled frames (it is no frame index), the last field is
the Cityscapes frame number. Its files, one per folder, are named after the image id:

* ``{split}/img/{image_id}_newImg8bit.png`` (annotated by Cityscapes-VPS) or
  ``{image_id}_leftImg8bit.png`` (the snippet's 20th frame, annotated by Cityscapes);
* labels ``{image_id}_final_mask.png`` or ``{image_id}_gtFine_color.png`` in ``cls/``,
  ``inst/``, ``labelmap/`` (uint8 19 trainIds), ``panoptic_inst/`` (16-bit: 255 void,
  stuff = trainId, thing = trainId * 1000 + obj_id, obj_id from 0) and ``panoptic_video/``
  (RGB segment ids R + 256 G + 256^2 B, 0 void) described by ``panoptic_gt_{split}_city_vps.json``.

Every frame of a val/test video is ``{split}/img_all/{city}_{seq}_{frame}_leftImg8bit.png``
(a plain Cityscapes name). Official files carry the 19 Cityscapes trainIds; vsda works in a
label space (``vsda_deploy.labels``) and maps to and from them here. A panoptic frame is then
``semantic`` (H, W) uint8 train ids (255 void) and ``instance`` (H, W) int32: 0 for stuff,
void and thing crowd, else an id that is unique in the frame (across classes) and
persistent over the video.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.data.base import DatasetError
from vsda_deploy.labels import (
    CITYSCAPES19,
    FROM_CS19_LUT,
    IGNORE_INDEX,
    TO_CS19_LUT,
    VIPER15,
    LabelSpace,
    get_label_space,
)

IMAGE_SUFFIX = "_leftImg8bit.png"  # Cityscapes frames: img_all, and the 20th frame in img/
NEW_IMAGE_SUFFIX = "_newImg8bit.png"  # the five frames per video annotated by Cityscapes-VPS
LABEL_SUFFIX = {IMAGE_SUFFIX: "_gtFine_color.png", NEW_IMAGE_SUFFIX: "_final_mask.png"}
LABEL_DIVISOR = 1000
_CITY = r"(?P<city>[a-z]+(?:_[a-z]+)*?)_(?P<seq>\d{6})_(?P<frame>\d{6})"
_IMAGE_ID = re.compile(rf"^(?P<video>\d{{4}})_(?P<count>\d{{4}})_{_CITY}")
_PLAIN = re.compile(rf"^{_CITY}")


@dataclass(frozen=True)
class VpsFrameName:
    """The parts of a Cityscapes(-VPS) frame name; ``stem`` is the key vsda uses for the frame."""

    stem: str  # the image id of a labelled frame, else the plain ``{city}_{seq}_{frame}``
    video: str  # VVVV, or ``{city}_{seq}`` where the name does not say
    index: int  # the Cityscapes frame number (the name's last field)
    city: str
    seq: int
    count: int | None = None  # FFFF of an image id: labelled frames counted over the split

    @property
    def plain(self) -> str:
        """Return ``{city}_{seq:06d}_{frame:06d}``, the frame's name in Cityscapes."""
        return f"{self.city}_{self.seq:06d}_{self.index:06d}"


def parse_frame_name(name: str | Path) -> VpsFrameName:
    """Return the parts of an image-id name ``VVVV_FFFF_{city}_{seq}_{frame}*``; DatasetError names the file."""
    m = _IMAGE_ID.match(Path(name).name)
    if m is None:
        raise DatasetError(f"{name}: not a Cityscapes-VPS image id (VVVV_FFFF_city_seq_frame_*)")
    stem = f"{m['video']}_{m['count']}_{m['city']}_{m['seq']}_{m['frame']}"
    return VpsFrameName(stem, m["video"], int(m["frame"]), m["city"], int(m["seq"]), int(m["count"]))


def parse_cityscapes_name(name: str | Path) -> VpsFrameName:
    """Return the parts of a plain Cityscapes name ``{city}_{seq}_{frame}*``; video is ``{city}_{seq}``."""
    m = _PLAIN.match(Path(name).name)
    if m is None:
        raise DatasetError(f"{name}: not a Cityscapes frame name ({{city}}_{{seq:06d}}_{{frame:06d}}_*)")
    return VpsFrameName(m[0], f"{m['city']}_{m['seq']}", int(m["frame"]), m["city"], int(m["seq"]))


def label_file_name(image_file_name: str) -> str:
    """Return the label file name of an ``img/`` file name (``_newImg8bit`` -> ``_final_mask``, ...)."""
    for image_suffix, label_suffix in LABEL_SUFFIX.items():
        if image_file_name.endswith(image_suffix):
            return image_file_name[: -len(image_suffix)] + label_suffix
    raise DatasetError(f"{image_file_name}: not a Cityscapes-VPS image name (*{NEW_IMAGE_SUFFIX} or *{IMAGE_SUFFIX})")


def json_path(root: str | Path, split: str) -> Path:
    """Return the path of the official ``panoptic_gt_{split}_city_vps.json``."""
    return Path(root) / f"panoptic_gt_{split}_city_vps.json"


def all_info_path(root: str | Path, split: str) -> Path:
    """Return the path of the official ``im_all_info_{split}_city_vps.json`` (every frame of val/test)."""
    return Path(root) / f"im_all_info_{split}_city_vps.json"


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


def _space(space: str | LabelSpace) -> LabelSpace:
    return space if isinstance(space, LabelSpace) else get_label_space(space)


# --- labelmap and panoptic_inst (19 trainIds) --------------------------------------------

def read_grey_png(path: str | Path, what: str) -> np.ndarray:
    """Return a single-channel PNG (8 or 16 bit) as it is stored; OSError / DatasetError name the file."""
    value = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if value is None:
        raise OSError(f"{path}: cannot read {what}")
    if value.ndim != 2:
        raise DatasetError(f"{path}: {what} must be single-channel, got shape {value.shape}")
    return value


def decode_labelmap(value: np.ndarray, space: str | LabelSpace = VIPER15, path: str | Path = "<array>") -> np.ndarray:
    """Return the train ids of ``space`` of a ``labelmap`` array (19 trainIds, 255 void)."""
    _check_train_ids(value.astype(np.int64), path)
    return FROM_CS19_LUT[_space(space).name][value.astype(np.uint8)]


def _check_train_ids(train_id: np.ndarray, path: str | Path) -> None:
    bad = np.unique(train_id[(train_id != IGNORE_INDEX) & (train_id >= CITYSCAPES19.num_classes)])
    if bad.size:
        raise DatasetError(f"{path}: unknown Cityscapes trainId(s) {bad.tolist()[:10]}")


def encode_panoptic_inst(semantic: np.ndarray, obj_id: np.ndarray, space: str | LabelSpace = VIPER15) -> np.ndarray:
    """Return the uint16 ``panoptic_inst`` map of a panoptic frame, as ``create_panoptic_labels.py`` writes it.

    ``obj_id`` is the per-class object number (0 is an object) and negative where a thing pixel
    has no instance: those pixels become 255, as the official script leaves them.
    """
    space = _space(space)
    cs = TO_CS19_LUT[space.name][semantic].astype(np.int64)
    thing = np.isin(semantic, sorted(space.things))
    if obj_id.max(initial=0) >= LABEL_DIVISOR:
        raise ValueError(f"object id {int(obj_id.max())} does not fit below {LABEL_DIVISOR}")
    out = np.where(thing, cs * LABEL_DIVISOR + obj_id, cs)
    out[(semantic == IGNORE_INDEX) | (thing & (obj_id < 0)) | (cs == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(np.uint16)


def decode_panoptic_inst(value: np.ndarray, path: str | Path = "<array>",
                         space: str | LabelSpace = VIPER15) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(semantic, instance)`` in ``space`` from a ``panoptic_inst`` array.

    A value >= 1000 is one object (``trainId * 1000 + obj_id``, obj_id 0 included): its
    instance id is the value itself, unique across classes. A thing trainId below 1000 is
    a crowd region (instance 0), as ``create_panoptic_video_labels.py`` reads it.
    """
    space = _space(space)
    value = value.astype(np.int64)
    train_id = np.where(value >= LABEL_DIVISOR, value // LABEL_DIVISOR, value)
    _check_train_ids(train_id, path)
    semantic = FROM_CS19_LUT[space.name][np.clip(train_id, 0, 255).astype(np.uint8)]
    instance = np.where(value >= LABEL_DIVISOR, value, 0).astype(np.int32)
    instance[semantic == IGNORE_INDEX] = 0
    return semantic, instance


def read_panoptic_inst(path: str | Path, space: str | LabelSpace = VIPER15) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``panoptic_inst`` PNG; return ``(semantic, instance)`` in ``space``."""
    return decode_panoptic_inst(read_grey_png(path, "panoptic_inst label"), path, space)


def write_panoptic_inst(path: str | Path, semantic: np.ndarray, obj_id: np.ndarray,
                        space: str | LabelSpace = VIPER15) -> None:
    """Write a 16-bit ``panoptic_inst`` PNG (see ``encode_panoptic_inst``)."""
    _write_png(Path(path), encode_panoptic_inst(semantic, obj_id, space))


def write_labelmap(path: str | Path, semantic: np.ndarray, space: str | LabelSpace = VIPER15) -> None:
    """Write a uint8 ``labelmap`` PNG (19 trainIds, 255 void)."""
    _write_png(Path(path), TO_CS19_LUT[_space(space).name][semantic])


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: cannot write image")


# --- segment maps (official panoptic_video / pan_pred) ---------------------------------

def categories() -> list[dict]:
    """Return the 19 Cityscapes-VPS categories as in the official JSON (which spells ``vegitation``)."""
    return [
        {"id": i, "name": "vegitation" if n == "vegetation" else n, "isthing": int(CITYSCAPES19.is_thing(i)),
         "color": list(c)}
        for i, (n, c) in enumerate(zip(CITYSCAPES19.classes, CITYSCAPES19.palette))
    ]


def to_segments(semantic: np.ndarray, instance: np.ndarray,
                space: str | LabelSpace = VIPER15) -> tuple[np.ndarray, list[dict]]:
    """Return ``(segment_id_map, segments_info)`` with 19-trainId categories.

    One segment per stuff class and per thing instance; segment ids are
    ``(trainId19 + 1) * 1000 + instance % 1000``, so an instance keeps its id in every frame.
    A thing region without instance (instance 0) is one segment marked ``iscrowd``.
    """
    space = _space(space)
    cs = TO_CS19_LUT[space.name][semantic].astype(np.int64)
    valid = (semantic != IGNORE_INDEX) & (cs != IGNORE_INDEX)
    inst = np.where(np.isin(semantic, sorted(space.things)), instance.astype(np.int64), 0)
    keys, dense, areas = np.unique(np.where(valid, cs * 2**32 + inst, -1), return_inverse=True, return_counts=True)
    sids = np.zeros(keys.size, np.int64)
    info, taken = [], set()
    for d, (key, area) in enumerate(zip(keys.tolist(), areas.tolist())):
        if key < 0:
            continue
        cat, obj = key >> 32, key & 0xFFFFFFFF
        sid = (cat + 1) * LABEL_DIVISOR + obj % LABEL_DIVISOR
        while sid in taken:  # two instances whose ids agree modulo 1000
            sid += 100 * LABEL_DIVISOR
        taken.add(sid)
        sids[d] = sid
        crowd = int(CITYSCAPES19.is_thing(cat) and obj == 0)
        info.append({"id": sid, "category_id": cat, "iscrowd": crowd, "area": area})
    return sids[dense.reshape(semantic.shape)].astype(np.uint32), info


def segment_classes(segments_info: list[dict], space: str | LabelSpace = VIPER15,
                    where: str = "<segments>") -> dict[int, tuple[int, bool]]:
    """Return ``{segment id: (class in space or 255, iscrowd)}`` of a ``segments_info`` list."""
    lut = FROM_CS19_LUT[_space(space).name]
    out = {}
    for s in segments_info:
        cat = int(s["category_id"])
        if not 0 <= cat < CITYSCAPES19.num_classes:
            raise DatasetError(f"{where}: segment {s['id']} has unknown category_id {cat}")
        out[int(s["id"])] = (int(lut[cat]), bool(s.get("iscrowd", 0)))
    return out


def from_segments(seg: np.ndarray, segments_info: list[dict], where: str = "<segments>",
                  space: str | LabelSpace = VIPER15) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(semantic, instance)`` in ``space`` from an official segment map.

    Things keep their segment id as instance id (it persists over the video); crowd
    segments get instance 0; segments of classes outside ``space`` are void. A segment id
    in the PNG but not in ``segments_info`` is an error.
    """
    space = _space(space)
    by_id = segment_classes(segments_info, space, where)
    ids, index = np.unique(seg, return_inverse=True)
    index = index.reshape(seg.shape)
    missing = [int(i) for i in ids.tolist() if i != 0 and int(i) not in by_id]
    if missing:
        raise DatasetError(f"{where}: segment id(s) {missing[:5]} are in the PNG but not in the JSON")
    cls = np.array([by_id.get(int(i), (IGNORE_INDEX, False))[0] for i in ids.tolist()], np.uint8)
    keep = np.array([space.is_thing(int(c)) and not by_id.get(int(i), (0, True))[1]
                     for i, c in zip(ids.tolist(), cls.tolist())], bool)
    semantic = cls[index]
    instance = np.where(keep[index], seg, 0).astype(np.int32)
    return semantic, instance


def load_json(path: str | Path) -> dict:
    """Load a COCO-panoptic style JSON (GT or ``pred.json``); errors name the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: invalid JSON ({e})") from None


def dump_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
