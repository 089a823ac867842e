"""Writers of the synthetic benchmark in the real on-disk formats (VIPER, Cityscapes, Cityscapes-VPS), videos and sheet.

The files are named and encoded as the released datasets are (``docs/datasets.md``): VIPER
``cls`` ids and ``inst`` RGB (R class, 256 G + B instance); Cityscapes
``leftImg8bit_sequence`` frames and ``gtFine`` labelIds; Cityscapes-VPS as its official
``prepare_data/`` scripts leave it (``img/`` with ``_newImg8bit`` / ``_leftImg8bit`` names,
``img_all/`` with plain names, ``labelmap``, 16-bit ``panoptic_inst`` with obj_id from 0,
``panoptic_video`` + JSON), so the loaders read the benchmark exactly as they read the real data.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.labels import (
    CITYSCAPES19,
    CITYSCAPES_LABELID_TO_VIPER15,
    IGNORE_INDEX,
    VIPER15,
    VIPER_CAR_ID,
    VIPER_ID_TO_TRAIN,
)


def _train_to_viper() -> np.ndarray:
    """Return the uint8 LUT train id -> VIPER class id (the smallest VIPER id of each class; void -> 0)."""
    lut = np.zeros(256, np.uint8)  # VIPER id 0 is "unlabelled"
    for viper_id, train_id in sorted(VIPER_ID_TO_TRAIN.items(), reverse=True):
        lut[train_id] = viper_id
    return lut


TRAIN_TO_VIPER = _train_to_viper()


def _train_to_labelid() -> np.ndarray:
    """Return the uint8 LUT VIPER15 train id -> Cityscapes labelId (person -> 24; void -> 0, unlabeled)."""
    lut = np.zeros(256, np.uint8)
    for label_id, train_id in sorted(CITYSCAPES_LABELID_TO_VIPER15.items(), reverse=True):
        lut[train_id] = label_id
    return lut


TRAIN_TO_LABELID = _train_to_labelid()


# --- VIPER (source) ------------------------------------------------------------------------

def viper_paths(root: Path, split: str, seq: int, frame: int) -> dict[str, Path]:
    """Return the ``img``, ``cls`` and ``inst`` paths of frame ``SSS_NNNNN`` of a VIPER tree."""
    s = f"{seq:03d}"
    name = f"{s}_{frame:05d}.png"
    return {kind: root / split / kind / s / name for kind in ("img", "cls", "inst")}


def write_viper_frame(root: Path, split: str, seq: int, frame: int, rgb: np.ndarray, semantic: np.ndarray,
                      instance: np.ndarray, hood: np.ndarray) -> None:
    """Write one VIPER frame: RGB image, class ids (the hood as VIPER car, the ego vehicle) and the
    ``inst`` RGB PNG (R = class id, 256 G + B = instance id, 0 for stuff).

    Loaders drop the car component touching the bottom centre (the ego vehicle); car pixels
    right next to the hood become unlabelled, so that a real car is never merged into it.
    """
    paths = viper_paths(root, split, seq, frame)
    cls, inst = TRAIN_TO_VIPER[semantic], instance.astype(np.uint16)
    seam = cv2.dilate(hood.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~hood
    seam &= cls == VIPER_CAR_ID
    cls[seam], inst[seam] = 0, 0
    cls[hood] = VIPER_CAR_ID
    vps.write_rgb_png(paths["img"], rgb)
    _write_png(paths["cls"], cls)
    inst_rgb = np.stack([cls, inst // 256, inst % 256], axis=-1).astype(np.uint8)
    vps.write_rgb_png(paths["inst"], inst_rgb)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: cannot write image")


# --- Cityscapes and Cityscapes-VPS (target) -----------------------------------------------------

def cityscapes_name(city: str, seq: int, frame: int) -> str:
    """Return the plain Cityscapes frame name ``{city}_{seq:06d}_{frame:06d}``."""
    return f"{city}_{seq:06d}_{frame:06d}"


def write_sequence_frame(root: Path, split: str, city: str, name: str, rgb: np.ndarray) -> Path:
    """Write ``{root}/leftImg8bit_sequence/{split}/{city}/{name}_leftImg8bit.png`` and return its path."""
    path = root / "leftImg8bit_sequence" / split / city / f"{name}{vps.IMAGE_SUFFIX}"
    vps.write_rgb_png(path, rgb)
    return path


def write_label_ids(root: Path, split: str, city: str, name: str, semantic: np.ndarray) -> None:
    """Write ``{root}/gtFine/{split}/{city}/{name}_gtFine_labelIds.png`` (Cityscapes labelIds, 0 unlabeled)."""
    _write_png(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", TRAIN_TO_LABELID[semantic])


class PanopticVideoIds:
    """Segment ids of ``panoptic_video`` as create_panoptic_video_labels.py draws them with panopticapi's
    IdGenerator: a stuff segment is its category colour, a thing the category colour while it is free,
    else a colour near it; one ``panoptic_inst`` value keeps its id over a video."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.taken = {(0, 0, 0)} | {tuple(c) for i, c in enumerate(CITYSCAPES19.palette)
                                     if not CITYSCAPES19.is_thing(i)}
        self.by_value: dict[int, int] = {}

    def new_video(self) -> None:
        self.by_value = {}

    def __call__(self, value: int) -> int:
        if value not in self.by_value:
            cat = value // vps.LABEL_DIVISOR if value >= vps.LABEL_DIVISOR else value
            colour = tuple(CITYSCAPES19.palette[cat])
            if CITYSCAPES19.is_thing(cat):
                while colour in self.taken:
                    jitter = self.rng.integers(-30, 31, 3)
                    colour = tuple(int(v) for v in np.clip(np.asarray(CITYSCAPES19.palette[cat]) + jitter, 0, 255))
                self.taken.add(colour)
            self.by_value[value] = colour[0] + 256 * colour[1] + 65536 * colour[2]
        return self.by_value[value]


def panoptic_video_segments(pan_inst: np.ndarray, ids: PanopticVideoIds) -> tuple[np.ndarray, list[dict]]:
    """Return the ``panoptic_video`` segment map and segments_info of a ``panoptic_inst`` map."""
    seg = np.zeros(pan_inst.shape, np.uint32)
    info = []
    for value in np.unique(pan_inst).tolist():
        if value == IGNORE_INDEX:
            continue
        cat = value // vps.LABEL_DIVISOR if value >= vps.LABEL_DIVISOR else value
        mask = pan_inst == value
        sid = ids(value)
        seg[mask] = sid
        crowd = int(value < vps.LABEL_DIVISOR and CITYSCAPES19.is_thing(cat))
        info.append({"id": sid, "category_id": cat, "iscrowd": crowd, "area": int(mask.sum())})
    return seg, info


class ObjectNumbers:
    """Per-class object numbers of a video, from 0 in order of appearance, as Cityscapes numbers
    instances (``labelId * 1000 + k``, k from 0) and ``panoptic_inst`` keeps them (``obj_id``)."""

    def __init__(self) -> None:
        self.numbers: dict[tuple[int, int], int] = {}
        self.count: dict[int, int] = {}

    def __call__(self, semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
        """Return the (H, W) int64 object numbers, -1 where a pixel has no instance."""
        out = np.full(semantic.shape, -1, np.int64)
        for cls in sorted(VIPER15.things):
            for inst in np.unique(instance[(semantic == cls) & (instance > 0)]).tolist():
                if (cls, inst) not in self.numbers:
                    self.numbers[(cls, inst)] = self.count.get(cls, 0)
                    self.count[cls] = self.numbers[(cls, inst)] + 1
                out[(semantic == cls) & (instance == inst)] = self.numbers[(cls, inst)]
        return out


def write_vps_labels(root: Path, split: str, label_name: str, semantic: np.ndarray, obj_id: np.ndarray,
                     ids: PanopticVideoIds | None) -> list[dict] | None:
    """Write a labelled frame's ``labelmap`` and, with ``ids``, its ``panoptic_inst`` and ``panoptic_video``.

    ``obj_id`` comes from ``ObjectNumbers`` (0 is an object; -1: a thing pixel without instance,
    which is void). Returns the segments_info (None without ``ids``).
    """
    vps.write_labelmap(root / split / "labelmap" / label_name, semantic)
    if ids is None:
        return None
    pan = vps.encode_panoptic_inst(semantic, obj_id)
    _write_png(root / split / "panoptic_inst" / label_name, pan)
    seg, info = panoptic_video_segments(pan, ids)
    vps.write_rgb_png(root / split / "panoptic_video" / label_name, vps.id_to_rgb(seg))
    return info


def write_vps_json(root: Path, split: str, images: list[dict], annotations: list[dict]) -> Path:
    """Write ``panoptic_gt_{split}_city_vps.json`` (images, annotations and categories, in file-name order)."""
    order = sorted(range(len(images)), key=lambda i: annotations[i]["file_name"])
    data = {"images": [images[i] for i in order], "annotations": [annotations[i] for i in order],
            "categories": vps.categories()}
    path = vps.json_path(root, split)
    vps.dump_json(path, data)
    return path


def write_all_info_json(root: Path, split: str, images: list[dict]) -> Path:
    """Write ``im_all_info_{split}_city_vps.json``: every frame, id ``video * 10000 + n`` (n from 1)."""
    path = vps.all_info_path(root, split)
    vps.dump_json(path, {"images": images, "categories": vps.categories()})
    return path


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``; copy where the file system cannot link."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# --- videos and the contact sheet ------------------------------------------------------------

class ClipVideo:
    """An .mp4 (mp4v) writer that checks, when closed, that the video reads back frame for frame."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.count = path, 0
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot write mp4v video (no video backend in this OpenCV build?)")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.count += 1

    def close(self) -> None:
        self.writer.release()
        cap = cv2.VideoCapture(str(self.path))
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
        if frames != self.count:
            raise OSError(f"{self.path}: wrote {self.count} frames but {frames} read back")


def label_overlay(rgb: np.ndarray, semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Return the frame blended with its class colours, void dimmed, instance outlines in white."""
    colour = VIPER15.colorize(semantic).astype(np.float32)
    out = .4 * rgb + .6 * colour
    void = semantic == IGNORE_INDEX
    out[void] = .35 * rgb[void]
    inst = instance.astype(np.int64)
    edge = np.zeros(inst.shape, bool)
    edge[:, 1:] |= inst[:, 1:] != inst[:, :-1]
    edge[1:] |= inst[1:] != inst[:-1]
    out[edge & (inst > 0)] = 255
    return out.astype(np.uint8)


def contact_sheet(rows: list[list[np.ndarray]], titles: list[str], tile_width: int = 512) -> np.ndarray:
    """Return an RGB sheet: one row per list of equally sized tiles, each shown ``tile_width`` px wide,
    a title over each column (small frames are enlarged pixel for pixel, large ones shrunk)."""
    def big(tile: np.ndarray) -> np.ndarray:
        scale = tile_width / tile.shape[1]
        interp = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
        return cv2.resize(tile, (tile_width, round(tile.shape[0] * scale)), interpolation=interp)

    tiles = [[big(t) for t in r] for r in rows]
    th, tw = tiles[0][0].shape[:2]
    pad, head = 4, 22
    sheet = np.full((head + len(tiles) * (th + pad), len(titles) * (tw + pad), 3), 255, np.uint8)
    for j, title in enumerate(titles):
        cv2.putText(sheet, title, (j * (tw + pad) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, .5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            y, x = head + i * (th + pad), j * (tw + pad)
            sheet[y:y + th, x:x + tw] = tile
    return sheet
