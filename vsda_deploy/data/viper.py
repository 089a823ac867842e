"""VIPER (Richter et al., 2017): the simulator source, read in the 15-class VIPER15 space.

Layout: ``ROOT/{split}/img/SSS/SSS_NNNNN.jpg|png`` (every frame), class labels
``ROOT/{split}/cls/SSS/SSS_NNNNN.png`` (VIPER class ids 0..31, single-channel or palette
PNG; every 10th frame in the release, 13,367 of them in DA-VSN's train list) and, where
downloaded, instances ``ROOT/{split}/inst/SSS/SSS_NNNNN.png`` (R = class id, instance =
256 G + B). The previous frame of ``SSS_NNNNN`` is ``SSS_(NNNNN-k)``. The ego vehicle (the
car component that contains the bottom-centre pixel) is ignored, as the field does.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.labels import IGNORE_INDEX, VIPER_CAR_ID, VIPER_LUT, VIPER_NUM_IDS
from vsda_deploy.data.base import (
    IMAGE_EXTENSIONS,
    ClipDataset,
    DatasetError,
    FlowProvider,
    FrameRecord,
    check_ids,
    read_id_png,
    require_dir,
)

_FRAME = re.compile(r"^(?P<seq>.+)_(?P<frame>\d+)$")


def ego_vehicle_mask(raw: np.ndarray) -> np.ndarray:
    """Return the bool (H, W) mask of the car component containing pixel (H-1, W//2)."""
    car = (raw == VIPER_CAR_ID).astype(np.uint8)
    _, components = cv2.connectedComponents(car, connectivity=8)
    ego = components[-1, raw.shape[1] // 2]
    return components == ego if ego > 0 else np.zeros(raw.shape, bool)


def viper_to_train(raw: np.ndarray, path: str | Path = "<array>", ignore_ego_vehicle: bool = True) -> np.ndarray:
    """Return VIPER15 train ids (uint8, 255 ignore) of a raw VIPER class-id map."""
    check_ids(raw, VIPER_NUM_IDS, path)
    label = VIPER_LUT[raw.astype(np.intp)]
    if ignore_ego_vehicle:
        label[ego_vehicle_mask(raw)] = IGNORE_INDEX
    return label


def read_instance(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(class ids, instance ids)`` of a VIPER ``inst`` PNG: R is the class, 256 G + B the instance."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: unreadable or corrupt instance image")
    if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit RGB instance PNG (R class, 256 G + B instance), "
                           f"got shape {img.shape} {img.dtype}")
    blue, green, red = (img[..., c].astype(np.int32) for c in range(3))  # OpenCV order is B, G, R
    return red, 256 * green + blue


def _frames_of(folder: Path, extensions: tuple[str, ...]) -> dict[int, str]:
    """Return ``{frame index: path}`` of the ``SSS_NNNNN.*`` files of one sequence folder."""
    frames: dict[int, str] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in extensions:
            continue
        m = _FRAME.match(f.stem)
        if m is None or m["seq"] != folder.name:
            raise DatasetError(f"{f}: not a VIPER frame name ({folder.name}_NNNNN)")
        i = int(m["frame"])
        if i in frames:
            raise DatasetError(f"{f}: frame {i} of sequence {folder.name} also stored as {frames[i]}")
        frames[i] = str(f)
    return frames


def _sequences(folder: Path, extensions: tuple[str, ...]) -> dict[str, dict[int, str]]:
    return {d.name: _frames_of(d, extensions) for d in sorted(folder.iterdir()) if d.is_dir()}


class ViperDataset(ClipDataset):
    """VIPER clips; labelled samples are the frames that have a ``cls`` label.

    ``meta["instance_raw"]`` (int32, 256 G + B) and ``meta["instance_class"]`` (R) come from
    the ``inst`` PNG of a labelled frame where it exists.
    """

    dataset = "viper"
    label_spaces = ("viper15",)

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, frames: str = "all", ignore_ego_vehicle: bool = True) -> None:
        super().__init__(root, split, k, labels, flow, label_space, pad_start, frames)
        self.ignore_ego_vehicle = ignore_ego_vehicle
        require_dir(self.root, "VIPER root")
        img_dir = require_dir(self.root / split / "img", f"VIPER {split!r} image folder")
        videos = _sequences(img_dir, IMAGE_EXTENSIONS)
        labelled = None
        if self.labelled_positions:
            cls_dir = require_dir(self.root / split / "cls", f"VIPER {split!r} class-label folder (labelled frames)")
            labelled = {(v, i): p if labels else None
                        for v, fr in _sequences(cls_dir, (".png",)).items() for i, p in fr.items()}
        self._index(videos, labelled, lambda v, i, p: f"{Path(p).stem}.png")
        self._require_records(img_dir)

    def load_label(self, rec: FrameRecord) -> tuple[np.ndarray, dict]:
        raw = read_id_png(rec.label_path)
        label = viper_to_train(raw, rec.label_path, self.ignore_ego_vehicle)
        extra = {}
        inst = self.root / self.split / "inst" / rec.video / Path(rec.label_path).name
        if inst.is_file():
            extra["instance_class"], extra["instance_raw"] = read_instance(inst)
        return label, extra
