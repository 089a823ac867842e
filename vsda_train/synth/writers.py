"""Writers of the synthetic benchmark in the real on-disk formats (VIPER, Cityscapes-VPS), videos and sheet.

Every format goes through the repository's codecs (``vsda_deploy.cityscapes_vps``,
``vsda_deploy.labels``), so the loaders read the benchmark exactly as they read the
real datasets.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.labels import IGNORE_INDEX, VIPER15, VIPER_CAR_ID, VIPER_ID_TO_TRAIN


def _train_to_viper() -> np.ndarray:
    """Return the uint8 LUT train id -> VIPER class id (the smallest VIPER id of each class; void -> 0)."""
    lut = np.zeros(256, np.uint8)  # VIPER id 0 is "unlabelled"
    for viper_id, train_id in sorted(VIPER_ID_TO_TRAIN.items(), reverse=True):
        lut[train_id] = viper_id
    return lut


TRAIN_TO_VIPER = _train_to_viper()


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


# --- Cityscapes-VPS (target) ---------------------------------------------------------------

def vps_stem(video: int, index: int, city: str, seq: int, frame: int) -> str:
    """Return the frame stem ``VVVV_FFFF_{city}_{seq:06d}_{frame:06d}``."""
    return f"{video:04d}_{index:04d}_{city}_{seq:06d}_{frame:06d}"


def write_vps_image(root: Path, split: str, folder: str, stem: str, rgb: np.ndarray) -> Path:
    """Write ``{root}/{split}/{folder}/{stem}_leftImg8bit.png`` and return its path."""
    path = root / split / folder / f"{stem}{vps.IMAGE_SUFFIX}"
    vps.write_rgb_png(path, rgb)
    return path


def write_vps_labels(root: Path, split: str, stem: str, semantic: np.ndarray, instance: np.ndarray,
                     video_gt: bool = True) -> dict | None:
    """Write ``panoptic_inst`` (and the official ``panoptic_video`` PNG); return its JSON annotation."""
    vps.write_panoptic_inst(root / split / "panoptic_inst" / f"{stem}{vps.INST_SUFFIX}", semantic, instance)
    if not video_gt:
        return None
    seg, info = vps.to_segments(semantic, instance)
    vps.write_rgb_png(root / split / "panoptic_video" / f"{stem}{vps.VIDEO_GT_SUFFIX}", vps.id_to_rgb(seg))
    return {"image_id": stem, "file_name": f"{stem}{vps.VIDEO_GT_SUFFIX}", "segments_info": info}


def write_vps_json(root: Path, split: str, annotations: list[dict], width: int, height: int) -> Path:
    """Write ``panoptic_gt_{split}_city_vps.json`` (COCO-panoptic), images and annotations sorted by stem."""
    annotations = sorted(annotations, key=lambda a: a["image_id"])
    images = [{"id": a["image_id"], "file_name": f"{a['image_id']}{vps.IMAGE_SUFFIX}", "width": width,
               "height": height} for a in annotations]
    path = vps.json_path(root, split)
    vps.dump_json(path, {"images": images, "annotations": annotations, "categories": vps.categories()})
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


def contact_sheet(rows: list[list[np.ndarray]], titles: list[str], scale: int = 2) -> np.ndarray:
    """Return an RGB sheet: one row per list of equally sized tiles, a title over each column."""
    def big(tile: np.ndarray) -> np.ndarray:
        return cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

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
