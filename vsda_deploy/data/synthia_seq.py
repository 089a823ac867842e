"""SYNTHIA-Seq (SYNTHIA-SEQS, Ros et al., 2016): the second simulator source, read in SYNTHIA12.

Two layouts, one video per sequence folder; ROOT is one sequence folder or a folder of them:

* official (the ``SYNTHIA-SEQS-04-DAWN.rar`` release): ``RGB/{camera}/NNNNNN.png`` and
  ``GT/LABELS/{camera}/NNNNNN.png``, camera ``Stereo_Left/Omni_F`` by default (the one
  DA-VSN and TPS train on);
* rearranged, as DA-VSN and TPS read it (``data/SynthiaSeq/SEQS-04-DAWN``): ``rgb/NNNNNN.png``
  and ``label/NNNNNN.png``, the same files under other folder names (``camera`` unused).

The label PNG is 16-bit multi-channel; the class id is its *first* channel (R), which is
what imageio/PIL return at ``[..., 0]`` (DA-VSN) and OpenCV, reading BGR(A), returns at
``[..., 2]``. Class ids follow the SYNTHIA-SEQS README (0..15); the map to SYNTHIA12 is
``vsda_deploy.labels.SYNTHIA_SEQ_ID_TO_TRAIN``. SYNTHIA-Seq has no splits: ``split`` is
recorded only. Frames are not cropped (DA-VSN drops the bottom 120 rows in its loader;
that belongs to the training transforms).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vsda_deploy.labels import SYNTHIA_SEQ_LUT, SYNTHIA_SEQ_NUM_IDS
from vsda_deploy.data.base import (
    ClipDataset,
    DatasetError,
    FlowProvider,
    FrameRecord,
    remap,
    require_dir,
)

DEFAULT_CAMERA = "Stereo_Left/Omni_F"
REARRANGED = ("rgb", "label")  # DA-VSN / TPS folder names


def read_synthia_label(path: str | Path) -> np.ndarray:
    """Return the raw SYNTHIA class ids (H, W) of a ``GT/LABELS`` PNG."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        what = "not found" if not Path(path).is_file() else "unreadable or corrupt label image"
        raise DatasetError(f"{path}: {what}")
    return img[..., 2] if img.ndim == 3 else img  # OpenCV order is B, G, R(, A): R holds the class


def _numbered_pngs(folder: Path) -> dict[int, str]:
    frames = {}
    for f in sorted(folder.glob("*.png")):
        if not f.stem.isdigit():
            raise DatasetError(f"{f}: not a SYNTHIA-Seq frame name (NNNNNN.png)")
        frames[int(f.stem)] = str(f)
    return frames


def sequence_folders(seq: Path, camera: str) -> tuple[Path, Path] | None:
    """Return ``(frame folder, label folder)`` of one sequence in either layout, None if it is none."""
    if (seq / "RGB").is_dir():
        return seq / "RGB" / camera, seq / "GT" / "LABELS" / camera
    if (seq / REARRANGED[0]).is_dir():
        return seq / REARRANGED[0], seq / REARRANGED[1]
    return None


class SynthiaSeqDataset(ClipDataset):
    """SYNTHIA-Seq clips; labelled samples are the frames that have a label PNG."""

    dataset = "synthia-seq"
    label_spaces = ("synthia12",)

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, labels: bool = True,
                 flow: FlowProvider | None = None, label_space: str | None = None,
                 pad_start: bool = False, frames: str = "all", camera: str = DEFAULT_CAMERA) -> None:
        super().__init__(root, split, k, labels, flow, label_space, pad_start, frames)
        require_dir(self.root, "SYNTHIA-Seq root")
        found = {self.root: sequence_folders(self.root, camera)}
        if found[self.root] is None:
            found = {d: sequence_folders(d, camera) for d in sorted(self.root.iterdir()) if d.is_dir()}
        sequences = {d: f for d, f in found.items() if f is not None}
        if not sequences:
            raise DatasetError(f"{self.root}: no SYNTHIA-Seq sequence (a folder with RGB/{camera}/, "
                               f"or rgb/ + label/ as DA-VSN and TPS arrange it)")
        videos, labelled = {}, {} if self.labelled_positions else None
        for seq, (rgb, gt) in sequences.items():
            videos[seq.name] = _numbered_pngs(require_dir(rgb, "SYNTHIA-Seq frame folder"))
            if labelled is not None:
                gt = require_dir(gt, "SYNTHIA-Seq label folder (labelled frames)")
                labelled.update({(seq.name, i): p if labels else None for i, p in _numbered_pngs(gt).items()})
        self._index(videos, labelled, lambda v, i, p: f"{v}_{Path(p).stem}.png")
        self._require_records(self.root)

    def load_label(self, rec: FrameRecord) -> tuple[np.ndarray, dict]:
        raw = read_synthia_label(rec.label_path)
        return remap(raw, SYNTHIA_SEQ_LUT, SYNTHIA_SEQ_NUM_IDS, rec.label_path), {}
