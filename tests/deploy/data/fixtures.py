"""Tiny datasets in the real on-disk formats, written into a test's tmp_path.

Every frame is filled with a *tag* (``frame[..., 0] == tag``) so a test can tell which
file a sample read. Labels are hand-made maps whose train ids the tests know by heart.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.labels import CITYSCAPES19

H, W = 16, 32


def tag_frame(tag: int) -> np.ndarray:
    """Return an (H, W, 3) RGB frame whose red channel is ``tag`` everywhere."""
    frame = np.empty((H, W, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = tag, 200, 50
    return frame


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_png(path: Path, data: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write a PNG byte by byte, channels in file order (R, G, B[, A]); 8 or 16 bit.

    Written without OpenCV so the tests check the loaders against the format, not
    against OpenCV's own channel order. ``palette`` (N, 3) makes a palette PNG of indices.
    """
    data = np.asarray(data)
    h, w = data.shape[:2]
    channels = 1 if data.ndim == 2 else data.shape[2]
    depth = 16 if data.dtype == np.uint16 else 8
    colour = 3 if palette is not None else {1: 0, 3: 2, 4: 6}[channels]
    raw = data.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = b"".join(b"\x00" + row.tobytes() for row in raw)  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if palette is not None:
        png += chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


# --- VIPER -------------------------------------------------------------------------------

def viper_raw_label() -> np.ndarray:
    """Return a VIPER class-id map: sky, vegetation, unlabelled, a car, a van and the ego car."""
    raw = np.full((H, W), 3, np.uint8)  # road -> 0
    raw[0:4] = 2  # sky -> 8
    raw[4:8, 0:8] = 8  # vegetation (VIPER 8) -> 6
    raw[4:8, 8:16] = 0  # unlabelled -> 255
    raw[5:8, 20:24] = 24  # a car away from the ego vehicle -> 10
    raw[10:12, 0:4] = 25  # van -> 255
    raw[13:16, 10:22] = 24  # ego vehicle: contains (H-1, W//2) -> 255
    return raw


VIPER_PALETTE = np.array([[i * 7 % 256, i * 13 % 256, i * 29 % 256] for i in range(32)], np.uint8)


def make_viper(root: Path, split: str = "train", seqs: tuple[str, ...] = ("001", "002"), n: int = 4,
               labelled: tuple[int, ...] | None = None, ext: str = ".png", palette: bool = False) -> Path:
    """Write ``seqs`` x ``n`` frames (tag = 10 * seq + frame); labels on ``labelled`` (all by default)."""
    for s in seqs:
        for i in range(n):
            write_rgb(root / split / "img" / s / f"{s}_{i:05d}{ext}", tag_frame(10 * int(s) + i))
            if labelled is None or i in labelled:
                path = root / split / "cls" / s / f"{s}_{i:05d}.png"
                raw = viper_raw_label()
                write_png(path, raw, VIPER_PALETTE) if palette else write_png(path, raw)
    return root


# --- Cityscapes-Seq ----------------------------------------------------------------------

def cityscapes_raw_label() -> np.ndarray:
    """Return a labelIds map: road 7, rider 25, person 24, pole 17, car 26, void 0."""
    raw = np.full((H, W), 7, np.uint8)
    raw[0:4, 0:8] = 25
    raw[0:4, 8:16] = 24
    raw[0:4, 16:24] = 17
    raw[8:12, 0:8] = 26
    raw[12:16, 24:32] = 0
    return raw


def make_cityscapes_seq(root: Path, split: str = "val", snippets: tuple[tuple[str, int, int], ...] = (
        ("frankfurt", 0, 294), ("frankfurt", 0, 576), ("lindau", 7, 19)), before: int = 3, after: int = 1,
        skip: tuple[int, ...] = ()) -> Path:
    """Write one snippet per ``(city, seq, labelled frame)``: frames L-before..L+after, label on L.

    Frame tags are ``frame % 256``; frames listed in ``skip`` are not written.
    """
    for city, seq, lab in snippets:
        for f in range(lab - before, lab + after + 1):
            if f not in skip:
                name = f"{city}_{seq:06d}_{f:06d}_leftImg8bit.png"
                write_rgb(root / "leftImg8bit_sequence" / split / city / name, tag_frame(f % 256))
        write_png(root / "gtFine" / split / city / f"{city}_{seq:06d}_{lab:06d}_gtFine_labelIds.png",
                  cityscapes_raw_label())
    return root


# --- Cityscapes-VPS ----------------------------------------------------------------------

# Two real Cityscapes-VPS videos: (video, FFFF of its first labelled frame, city, seq, frame
# number of its first labelled frame). Video 0001: ``0001_0001_frankfurt_000000_000279_newImg8bit.png``
# (the first training image listed in TarViS's data README) around Cityscapes' labelled
# ``frankfurt_000000_000294`` (DA-VSN ``CityscapesSeq_list/val.txt``, first line). Video 0005:
# ``0005_0025_frankfurt_000000_001736_newImg8bit.png`` .. ``0005_0028_frankfurt_000000_001751_leftImg8bit.png``
# (mcahny/vps ``tools/test_vpq.py``, comment), whose snippet starts at
# ``img_all/frankfurt_000000_001732_leftImg8bit.png``. Labelled frames are frames 5, 10, ..., 30
# of the snippet; the 4th of 6 (the snippet's 20th) is the Cityscapes-annotated ``_leftImg8bit`` one.
VPS_VIDEOS = (("0001", 1, "frankfurt", 0, 279), ("0005", 25, "frankfurt", 0, 1736))
VPS_LABELS = ("labelmap", "panoptic_inst", "panoptic_video")


def vps_labelled(video: tuple = VPS_VIDEOS[0], labelled: int = 6) -> list[tuple[str, str, int]]:
    """Return ``(image_id, img file name, frame number)`` of a video's labelled frames."""
    v, count, city, seq, first = video
    out = []
    for j in range(labelled):
        frame = first + 5 * j
        image_id = f"{v}_{count + j:04d}_{city}_{seq:06d}_{frame:06d}"
        suffix = "_leftImg8bit.png" if j == 3 else "_newImg8bit.png"
        out.append((image_id, image_id + suffix, frame))
    return out


def vps_label_name(img_name: str) -> str:
    """Return the label file name of an ``img/`` file, as tools/eval_vpq.py derives it."""
    return img_name.replace("_newImg8bit.png", "_final_mask.png").replace("_leftImg8bit.png", "_gtFine_color.png")


def vps_panoptic_inst() -> np.ndarray:
    """Return a ``panoptic_inst`` map (19 trainIds): person #0, person #1, rider #0, car #0 and stuff.

    obj_id 0 is an object: create_panoptic_labels.py writes ``trainId * 1000 + inst_id % 1000``.
    """
    v = np.zeros((H, W), np.uint16)  # road
    v[0:4] = 10  # sky
    v[6:10, 2:6] = 11000  # person #0
    v[6:10, 8:12] = 11001  # person #1
    v[6:10, 14:18] = 12000  # rider #0
    v[6:10, 20:26] = 13000  # car #0
    v[12:14, 0:4] = 5  # pole -> void in VIPER15
    v[12:14, 28:32] = 255  # void (also: thing pixels without instance)
    v[6:10, 27:31] = 16000  # train #0 -> void in VIPER15
    return v


def official_segments(inst: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Return the ``panoptic_video`` segment map and segments_info of a ``panoptic_inst`` map.

    Ids follow panopticapi's IdGenerator as create_panoptic_video_labels.py uses it: a stuff
    segment is its category colour, a thing the category colour or one near it.
    """
    palette = dict(enumerate(CITYSCAPES19.palette))
    seg = np.zeros(inst.shape, np.uint32)
    info, used = [], set()
    for value in np.unique(inst).tolist():
        if value == 255:
            continue
        cat = value // 1000 if value >= 1000 else value
        r, g, b = palette[cat]
        while (r, g, b) in used and value >= 1000:
            r = (r + 7) % 256
        used.add((r, g, b))
        sid = r + 256 * g + 65536 * b
        seg[inst == value] = sid
        info.append({"id": sid, "category_id": cat, "iscrowd": 0, "area": int((inst == value).sum())})
    return seg, info


def make_vps(root: Path, split: str = "val", videos: tuple = VPS_VIDEOS, img_all: bool = True,
             labels: tuple[str, ...] = VPS_LABELS, labelled: int = 6) -> Path:
    """Write a Cityscapes-VPS split as prepare_data/ leaves it; frame tag = frame number % 256.

    ``img/`` holds the labelled frames, ``img_all/`` all 30 frames under plain Cityscapes names
    (val/test), label folders get ``vps_panoptic_inst`` in their own encoding (labelmap uint8,
    panoptic_inst 16-bit, panoptic_video RGB + the JSON).
    """
    images, annotations, all_info = [], [], []
    for video in videos:
        v, _, city, seq, first = video
        for k, frame in enumerate(range(first - 4, first + 5 * labelled - 4), start=1):
            all_info.append({"id": int(v) * 10000 + k, "file_name": f"{city}_{seq:06d}_{frame:06d}_leftImg8bit.png",
                             "height": H, "width": W})
            if img_all:
                write_rgb(root / split / "img_all" / all_info[-1]["file_name"], tag_frame(frame % 256))
        for image_id, img_name, frame in vps_labelled(video, labelled):
            write_rgb(root / split / "img" / img_name, tag_frame(frame % 256))
            inst = vps_panoptic_inst()
            label = vps_label_name(img_name)
            if "labelmap" in labels:
                train_ids = np.where(inst >= 1000, inst // 1000, inst).astype(np.uint8)
                write_png(root / split / "labelmap" / label, train_ids)
            if "panoptic_inst" in labels:
                write_png(root / split / "panoptic_inst" / label, inst)
            if "panoptic_video" in labels:
                seg, info = official_segments(inst)
                write_png(root / split / "panoptic_video" / label, vps.id_to_rgb(seg))
                images.append({"id": image_id, "file_name": img_name, "height": H, "width": W})
                annotations.append({"image_id": image_id, "file_name": label, "segments_info": info})
    if "panoptic_video" in labels:
        data = {"images": images, "annotations": annotations, "categories": vps.categories()}
        (root / f"panoptic_gt_{split}_city_vps.json").write_text(json.dumps(data))
    if img_all:
        (root / f"im_all_info_{split}_city_vps.json").write_text(json.dumps({"images": all_info}))
    return root


def make_cityscapes_sequences(root: Path, videos: tuple = VPS_VIDEOS, labelled: int = 6) -> Path:
    """Write Cityscapes' ``leftImg8bit_sequence/val/{city}/`` frames of the given VPS videos."""
    for _, _, city, seq, first in videos:
        for frame in range(first - 4, first + 5 * labelled - 4):
            name = f"{city}_{seq:06d}_{frame:06d}_leftImg8bit.png"
            write_rgb(root / "leftImg8bit_sequence" / "val" / city / name, tag_frame(frame % 256))
    return root


# --- SYNTHIA-Seq -------------------------------------------------------------------------

def synthia_raw_label() -> np.ndarray:
    """Return SYNTHIA class ids: sky 1, road 3, pole 7, light 15, cyclist 11, car 8, lane marking 12."""
    raw = np.full((H, W), 3, np.uint16)
    raw[0:4] = 1
    raw[4:8, 0:4] = 7
    raw[4:8, 4:8] = 15
    raw[4:8, 8:12] = 11
    raw[4:8, 12:20] = 8
    raw[12:16, 0:8] = 12
    return raw


def make_synthia(root: Path, seqs: tuple[str, ...] = ("SYNTHIA-SEQS-04-DAWN",), n: int = 4,
                 camera: str = "Stereo_Left/Omni_F", channels: int = 3) -> Path:
    """Write ``seqs`` x ``n`` frames (tag = 10 * seq number + frame) with 16-bit labels of
    ``channels`` channels in file order: R = class id, G = instance id, B = 0 (A = 65535)."""
    for s in seqs:
        seq_no = int(s.split("-")[2])
        for i in range(n):
            write_rgb(root / s / "RGB" / camera / f"{i:06d}.png", tag_frame(10 * seq_no + i))
            label = np.zeros((H, W, channels), np.uint16)
            label[..., 0] = synthia_raw_label()
            label[..., 1] = 40  # an instance id, not a class: must not leak into the label
            if channels == 4:
                label[..., 3] = 65535
            write_png(root / s / "GT" / "LABELS" / camera / f"{i:06d}.png", label)
    return root
